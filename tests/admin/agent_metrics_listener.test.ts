/**
 * `meshd agent --metrics-addr`: the agent's read-only metrics listener, resolved from the flag
 * or MESHD_METRICS_ADDR and started beside the agent's admin server (against the real citadel
 * CA, in-process), serving the agent's registry and readiness and nothing else.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { startAgent } from "../../mod/agent/agent.ts";
import { AGENT_SETTINGS, type AgentConfig, resolveAgentConfig } from "../../mod/agent/settings.ts";
import { parseCommandLine } from "../../mod/cli/flags.ts";
import { systemClock } from "../../mod/shared/clock.ts";
import { createLogger } from "../../mod/shared/logger.ts";
import { createMetricsRegistry } from "../../mod/shared/metrics.ts";
import { type Citadel, startCitadel } from "../agent/_citadel.ts";
import { eventually } from "../e2e/_meshd.ts";

/** The agent's config from command-line flags and environment, on fixed host facts. */
function resolve(argv: string[], env: Record<string, string> = {}): AgentConfig {
  const parsed = parseCommandLine(AGENT_SETTINGS, argv, { command: "meshd agent", env });
  return resolveAgentConfig(parsed.settings, {
    readFile: (p) => {
      throw new Error(`ENOENT: ${p}`);
    },
    hostname: "vm-host",
    instanceIp: () => "192.0.2.10",
  }).config;
}

const REQUIRED = ["--namespace=ns", "--service-account=sa", "--ca-tls-addr=10.0.0.1:15012"];

describe("meshd agent --metrics-addr", () => {
  test("is off unless given, by flag or MESHD_METRICS_ADDR", () => {
    expect(resolve(REQUIRED).metricsAddr).toBeUndefined();
    expect(resolve([...REQUIRED, "--metrics-addr=0.0.0.0:15090"]).metricsAddr).toBe("0.0.0.0:15090");
    expect(resolve(REQUIRED, { MESHD_METRICS_ADDR: "127.0.0.1:15091" }).metricsAddr).toBe("127.0.0.1:15091");
    expect(() => resolve([...REQUIRED, "--metrics-addr=15090"])).toThrow(/metrics-addr/);
  });

  let ca: Citadel;
  let dir: string;
  beforeAll(async () => {
    ca = await startCitadel();
    dir = mkdtempSync(join(tmpdir(), "meshd-agent-metrics-"));
  });
  afterAll(async () => {
    await ca.close();
    rmSync(dir, { recursive: true, force: true });
  });

  test("serves the agent's metrics and readiness, 404 for its debug handlers, 405 for writes", async () => {
    mkdirSync(dir, { recursive: true });
    writeFileSync(join(dir, "token"), ca.token("vms", "app") + "\n");
    const cfg: AgentConfig = {
      caAddr: ca.plainAddr,
      caTlsAddr: ca.tlsAddr,
      controlPlaneAuth: "MUTUAL_TLS",
      tokenFile: join(dir, "token"),
      workload: {
        ip: "127.0.0.1",
        name: "vm",
        namespace: "vms",
        serviceAccount: "app",
        trustDomain: "cluster.local",
        labels: {},
      },
      outputDir: join(dir, "out"),
      dataDir: join(dir, "data"),
      sdsSocket: join(dir, "out", "sds.sock"),
      certTtlMs: 60_000,
      adminAddr: "127.0.0.1:0",
      metricsAddr: "127.0.0.1:0",
      logLevel: "info",
      logFormat: "json",
    };
    const agent = await startAgent(cfg, {
      clock: systemClock,
      logger: createLogger({ write: () => {} }),
      metrics: createMetricsRegistry(),
    });
    try {
      const addr = agent.metricsAddr!;
      expect(addr).toMatch(/^127\.0\.0\.1:\d+$/);
      expect(await eventually(() => agent.ready(), 5000)).toBe(true);
      expect((await fetch(`http://${addr}/healthz/ready`)).status).toBe(200);
      const admin = await (await fetch(`http://${agent.adminAddr}/metrics`)).text();
      const scraped = await (await fetch(`http://${addr}/metrics`)).text();
      const names = (s: string) => [...s.matchAll(/^# TYPE (\S+) /gm)].map((m) => m[1]!).sort();
      expect(names(scraped)).toEqual(names(admin));
      expect((await fetch(`http://${agent.adminAddr}/debug/settings`)).status).toBe(200);
      expect((await fetch(`http://${addr}/debug/settings`)).status).toBe(404);
      expect((await fetch(`http://${addr}/metrics`, { method: "POST" })).status).toBe(405);
    } finally {
      await agent.stop();
    }
    expect(await fetch(`http://${agent.metricsAddr}/metrics`).then(() => "open", () => "closed")).toBe(
      "closed",
    );
  });
});
