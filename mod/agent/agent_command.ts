/**
 * `meshd agent`: the node agent on a VM or bare-metal host.
 *
 * @module
 */
import type { Command } from "../cli/command.ts";
import { systemClock } from "../shared/clock.ts";
import { createLogger } from "../shared/logger.ts";
import { createMetricsRegistry } from "../shared/metrics.ts";
import { SettingError } from "./failure.ts";
import { AGENT_SETTINGS, CLUSTER_ENV_KEYS, resolveAgentConfig } from "./settings.ts";

const mapping = Object.entries(CLUSTER_ENV_KEYS).map(([flag, keys]) => `${keys.join("/")} -> --${flag}`).join(
  ", ",
);

/** `meshd agent`. */
export const agentCommand: Command = {
  name: "agent",
  summary:
    "run the node agent: workload certificate, SDS, bootstraps, auto-registration and health; optionally the L4 node proxy",
  usage:
    "meshd agent --cluster-env FILE | --namespace NS --service-account SA --discovery-addr HOST:PORT [flags]",
  description: [
    "Generates the workload's EC P-256 key locally, obtains a certificate for",
    "spiffe://TRUST_DOMAIN/ns/NS/sa/SA (first with the --token-file token, then always over mutual TLS with the",
    "current certificate), renews it at half its lifetime, and writes cert-chain.pem, key.pem (0600) and",
    "root-cert.pem into --output-dir and --data-dir. Serves them over SDS (secrets default and ROOTCA) on",
    "--sds-socket, writes envoy-bootstrap.json and grpc-bootstrap.json, and with --workload-group keeps an ADS",
    "stream to pilot that registers the workload and reports the group's probe results.",
    "",
    "With --node-proxy the agent is also the machine's L4 node proxy: traffic capture rules (--capture mesh|all|none,",
    "removed on stop and after a crash) send outbound TCP to --outbound-port (15001), inbound to --inbound-port",
    "(15006) and DNS to --dns-addr (15053); connections to mesh services travel in mTLS HTTP/2 CONNECT tunnels",
    "(HBONE) to the destination machine's --tunnel-port (15008), where PeerAuthentication and L4",
    "AuthorizationPolicy apply, with Istio's TCP metrics on --admin-addr and one access-log line per connection.",
    "The config comes from pilot over xDS (--discovery-addr). With --capture=none nothing is captured and",
    "--outbound-port is an HTTP CONNECT proxy on 127.0.0.1 (curl -x http://127.0.0.1:15001 ...).",
    "",
    `Settings: flag > MESHD_* environment > --config file > --cluster-env file > default. cluster.env keys: ${mapping};`,
    "every setting also reads MESHD_<FLAG> from cluster.env.",
    "",
    "Failures that pass by themselves (connection refused or reset, timeouts, DNS, UNAVAILABLE) are retried with",
    "backoff; pilot refusing the registration is logged as an error, reported by /healthz/ready and retried slowly.",
    "A failure that only a change of a setting fixes ends the agent with one error line naming the setting: no",
    "valid certificate and no --token-file, the token refused by the CA (redeemed, expired, another key), TLS",
    "spoken to a plaintext port, a server certificate the roots do not trust or that is for other names.",
    "",
    "Exit codes: 0 stopped by SIGTERM or SIGINT; 1 a setting must change (the error line names it) or the agent",
    "could not start; 2 a usage error (unknown flag, bad or missing value).",
  ].join("\n"),
  settings: () => AGENT_SETTINGS,
  args: { min: 0, max: 0, name: "" },
  async run(inv) {
    const { config, merged } = resolveAgentConfig(inv.settings);
    const logger = createLogger({ level: config.logLevel, format: config.logFormat });
    const { startAgent } = await import("./agent.ts");
    const cannotContinue = (err: SettingError) => {
      logger.error("cannot continue until a setting changes; exiting", {
        err: err.message,
        exitCode: err.exitCode,
      });
      return err.exitCode;
    };
    let agent;
    try {
      agent = await startAgent(config, {
        clock: systemClock,
        logger,
        metrics: createMetricsRegistry(),
        settings: merged,
      });
    } catch (err) {
      if (err instanceof SettingError) return cannotContinue(err);
      throw err;
    }
    const stopped = new Promise<undefined>((resolve) => {
      if (inv.signal.aborted) resolve(undefined);
      else inv.signal.addEventListener("abort", () => resolve(undefined), { once: true });
    });
    const fatal = await Promise.race([stopped, agent.fatal]);
    if (fatal) {
      const code = cannotContinue(fatal);
      await agent.stop();
      return code;
    }
    logger.info("shutting down");
    await agent.stop();
    logger.info("stopped");
    return 0;
  },
};
