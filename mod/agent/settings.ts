/**
 * `meshd agent`'s settings. Each comes, in this order of precedence, from its flag, its
 * `MESHD_*` environment variable, the YAML `--config` file, the cluster.env file named by
 * `--cluster-env`, or its default. cluster.env holds `KEY=VALUE` lines (blank lines and `#`
 * comments are skipped, `export ` and matching quotes are stripped) using Istio's names where
 * Istio has one (see CLUSTER_ENV_KEYS) and `MESHD_<FLAG>` names for every setting.
 *
 * @module
 */
import { readFileSync } from "node:fs";
import { hostname, networkInterfaces } from "node:os";
import { isIP } from "node:net";
import { join } from "node:path";
import type { Settings } from "../cli/flags.ts";
import { convertValue, envName, LOG_SETTINGS, type SettingSpec, type SettingValue } from "../cli/setting.ts";
import { UsageError } from "../shared/errors.ts";
import type { LogLevel } from "../shared/logger.ts";
import type { ControlPlaneAuth } from "./bootstrap.ts";
import type { WorkloadInfo } from "./node.ts";
import type { NodeProxySettings } from "./node_proxy/node_proxy.ts";

/**
 * Labels a workload behind a node proxy carries (Istio's label for HBONE-capable workloads): the
 * agent adds them to its LABELS with --node-proxy, so that auto-registered WorkloadEntries carry
 * them and pilot marks their endpoints as reachable over HBONE.
 */
export const NODE_PROXY_LABELS: Readonly<Record<string, string>> = { "networking.istio.io/tunnel": "http" };

/** Every setting of `meshd agent`. */
export const AGENT_SETTINGS: readonly SettingSpec[] = [
  {
    name: "cluster-env",
    kind: { type: "path" },
    help:
      "cluster.env file of KEY=VALUE lines (Istio's names, or MESHD_<FLAG>); flags, MESHD_* and --config win",
  },
  {
    name: "ca-addr",
    kind: { type: "addrs" },
    help:
      "CA's plaintext gRPC address (15010), or a comma list of replicas, for the first certificate with the token when no root is known",
  },
  {
    name: "ca-tls-addr",
    kind: { type: "addrs" },
    help:
      "CA's TLS gRPC address (15012) for renewals over mutual TLS, or a comma list of replicas (default: --discovery-addr)",
  },
  {
    name: "ca-server-name",
    kind: { type: "string" },
    help: "name the CA's and pilot's server certificate must carry (default: the address's host)",
  },
  {
    name: "discovery-addr",
    kind: { type: "addrs" },
    help:
      "pilot's xDS address, or a comma list of replicas to fail over between; written into the bootstraps, used to register --workload-group",
  },
  {
    name: "control-plane-auth",
    kind: { type: "enum", values: ["MUTUAL_TLS", "NONE"] },
    default: "MUTUAL_TLS",
    help: "MUTUAL_TLS: xDS over TLS with the workload certificate (15012); NONE: plaintext xDS (15010)",
  },
  {
    name: "token-file",
    kind: { type: "path" },
    help:
      "file holding the bootstrap token (meshd token create); read only while no valid certificate exists",
  },
  {
    name: "root-cert",
    kind: { type: "path" },
    help: "PEM roots of the mesh (from the onboarding bundle) to verify the CA before the first certificate",
  },
  { name: "namespace", kind: { type: "string" }, help: "the workload's namespace (required)" },
  { name: "service-account", kind: { type: "string" }, help: "the workload's service account (required)" },
  {
    name: "trust-domain",
    kind: { type: "string" },
    default: "cluster.local",
    help: "trust domain of the workload's SPIFFE ID",
  },
  {
    name: "workload-group",
    kind: { type: "string" },
    help:
      "WorkloadGroup (NAME in --namespace, or NAMESPACE/NAME) to auto-register into; needs --discovery-addr",
  },
  {
    name: "network",
    kind: { type: "string" },
    help:
      "the network this machine is in, when the mesh spans networks (MeshConfig meshNetworks): sent as node metadata NETWORK, so other networks reach it through their gateway",
  },
  {
    name: "workload-name",
    kind: { type: "string" },
    help: "the workload's name in its node id (default: host name)",
  },
  {
    name: "labels",
    kind: { type: "list" },
    default: [],
    help: "the workload's labels, KEY=VALUE,... (merged over the WorkloadGroup's when registering)",
  },
  {
    name: "instance-ip",
    kind: { type: "string" },
    help: "the workload's IP address (default: the first non-loopback IPv4 address of the host)",
  },
  {
    name: "output-dir",
    kind: { type: "path" },
    default: "/var/run/meshd-agent",
    help: "where cert-chain.pem, key.pem, root-cert.pem and the bootstraps are written (mode 0750)",
  },
  {
    name: "credential-dir",
    kind: { type: "path" },
    help:
      "gateway credentials served over SDS: DIR/NAME/tls.crt and tls.key as secret NAME, DIR/NAME/ca.crt as NAME-cacert (a Gateway's credentialName); re-read every 15s",
  },
  {
    name: "data-dir",
    kind: { type: "path" },
    default: "/var/lib/meshd-agent",
    help: "persistent copy of the key and certificate, so a restart renews without a token (mode 0700)",
  },
  { name: "sds-socket", kind: { type: "path" }, help: "SDS Unix socket (default <output-dir>/sds.sock)" },
  {
    name: "cert-ttl",
    kind: { type: "duration", min: 1000 },
    default: 24 * 3_600_000,
    help: "requested certificate lifetime; renewed at half of it",
  },
  {
    name: "admin-addr",
    kind: { type: "addr" },
    default: "127.0.0.1:15020",
    help: "agent admin HTTP address (/healthz/ready, /metrics, /debug/)",
  },
  {
    name: "metrics-addr",
    kind: { type: "addr" },
    help:
      "read-only HTTP address for scrapers (GET /metrics, /healthz/ready, /healthz/live; nothing else) on a port free on the machine; unset: off",
  },
  {
    name: "node-proxy",
    kind: { type: "bool" },
    default: false,
    help:
      "run the L4 node proxy: mTLS (HBONE on --tunnel-port), L4 policy and TCP telemetry for every process on the machine, config from --discovery-addr",
  },
  {
    name: "capture",
    kind: { type: "enum", values: ["mesh", "all", "none"] },
    default: "mesh",
    help:
      "node proxy capture: mesh (outbound TCP to mesh addresses), all (every outbound TCP), none (no rules; --outbound-port is an HTTP CONNECT proxy on 127.0.0.1)",
  },
  {
    name: "capture-backend",
    kind: { type: "enum", values: ["auto", "nft", "iptables"] },
    default: "auto",
    help: "how capture rules are installed: auto (nftables, iptables where nft is missing), nft, iptables",
  },
  {
    name: "capture-exclude-ports",
    kind: { type: "list" },
    default: [],
    help: "outbound destination ports never captured, PORT,...",
  },
  {
    name: "capture-exclude-cidrs",
    kind: { type: "list" },
    default: [],
    help: "outbound destination CIDRs never captured, CIDR,...",
  },
  {
    name: "capture-exclude-uids",
    kind: { type: "list" },
    help: "user ids whose connections are never captured, UID,... (default: the agent's own uid)",
  },
  {
    name: "outbound-port",
    kind: { type: "int", min: 1, max: 65535 },
    default: 15001,
    help: "node proxy port captured outbound connections are redirected to",
  },
  {
    name: "inbound-port",
    kind: { type: "int", min: 1, max: 65535 },
    default: 15006,
    help: "node proxy port captured inbound (plaintext) connections are redirected to",
  },
  {
    name: "tunnel-port",
    kind: { type: "int", min: 1, max: 65535 },
    default: 15008,
    help: "node proxy HBONE port (mTLS HTTP/2 CONNECT) on this machine and on its peers",
  },
  {
    name: "dns-addr",
    kind: { type: "addr" },
    default: "127.0.0.1:15053",
    help: "node proxy DNS proxy address (UDP and TCP): mesh host names answered, the rest forwarded",
  },
  {
    name: "dns-capture",
    kind: { type: "bool" },
    default: true,
    help: "redirect the machine's DNS queries (port 53) to --dns-addr while capturing",
  },
  {
    name: "mixer-addr",
    kind: { type: "addr" },
    help: "node proxy: report each closed connection to mixer at HOST:PORT (plaintext gRPC, e.g. 15010)",
  },
  ...LOG_SETTINGS,
];

/**
 * The cluster.env keys each setting reads, in order of preference (Istio's names). Every
 * setting except --cluster-env also reads its MESHD_<FLAG> name. Note that Istio's CA_ADDR is
 * the CA's TLS address, so it maps to --ca-tls-addr; the plaintext --ca-addr is MESHD_CA_ADDR.
 */
export const CLUSTER_ENV_KEYS: Readonly<Record<string, readonly string[]>> = {
  "ca-tls-addr": ["CA_ADDR"],
  "discovery-addr": ["PILOT_ADDRESS", "DISCOVERY_ADDRESS"],
  "control-plane-auth": ["CONTROL_PLANE_AUTH_POLICY"],
  "token-file": ["TOKEN_FILE"],
  "root-cert": ["CA_ROOT_CA", "XDS_ROOT_CA"],
  namespace: ["POD_NAMESPACE", "NAMESPACE", "ISTIO_NAMESPACE"],
  "service-account": ["SERVICE_ACCOUNT"],
  "trust-domain": ["TRUST_DOMAIN"],
  "workload-group": ["ISTIO_META_WORKLOAD_GROUP", "WORKLOAD_GROUP", "ISTIO_META_AUTO_REGISTER_GROUP"],
  "workload-name": ["ISTIO_META_WORKLOAD_NAME", "POD_NAME"],
  network: ["ISTIO_META_NETWORK"],
  labels: ["ISTIO_METAJSON_LABELS"],
  "instance-ip": ["INSTANCE_IP"],
  "output-dir": ["OUTPUT_DIR", "OUTPUT_CERTS"],
  "cert-ttl": ["SECRET_TTL"],
};

/** One value of a cluster.env file, with where it was. */
export interface EnvFileEntry {
  readonly value: string;
  readonly line: number;
}

/** Parses cluster.env text. Throws, naming `path:line`, on a line that is not KEY=VALUE. */
export function parseClusterEnv(text: string, path: string): Map<string, EnvFileEntry> {
  const out = new Map<string, EnvFileEntry>();
  text.split(/\r?\n/).forEach((raw, i) => {
    const line = raw.trim();
    if (line === "" || line.startsWith("#")) return;
    const m = /^(?:export\s+)?([A-Za-z_][A-Za-z0-9_]*)=(.*)$/.exec(line);
    if (!m) throw new UsageError(`${path}:${i + 1}: want KEY=VALUE, got ${JSON.stringify(line)}`);
    let value = m[2]!.trim();
    if (value.length >= 2 && (value[0] === '"' || value[0] === "'") && value.at(-1) === value[0]) {
      value = value.slice(1, -1);
    }
    out.set(m[1]!, { value, line: i + 1 });
  });
  return out;
}

/** Reads ISTIO_METAJSON_LABELS ({"app":"x"}) as KEY=VALUE items. */
function jsonLabels(raw: string): string[] {
  const v = JSON.parse(raw) as unknown;
  if (typeof v !== "object" || v === null || Array.isArray(v)) {
    throw new Error("want a JSON object of labels");
  }
  return Object.entries(v).map(([k, x]) => {
    if (typeof x !== "string") throw new Error(`label ${k}: want a string value`);
    return `${k}=${x}`;
  });
}

/** Typed settings after merging in cluster.env. */
export interface AgentConfig {
  readonly caAddr?: string;
  /** HOST:PORT, or a comma list of replicas (endpoints.ts). */
  readonly caTlsAddr: string;
  readonly serverName?: string;
  /** HOST:PORT, or a comma list of replicas (endpoints.ts). */
  readonly discoveryAddr?: string;
  readonly controlPlaneAuth: ControlPlaneAuth;
  readonly tokenFile?: string;
  readonly rootCertFile?: string;
  readonly workload: WorkloadInfo;
  readonly outputDir: string;
  /** Gateway credentials served over SDS (sds_server.ts). */
  readonly credentialDir?: string;
  readonly dataDir: string;
  readonly sdsSocket: string;
  readonly certTtlMs: number;
  readonly adminAddr: string;
  /** The read-only metrics listener's address (--metrics-addr); undefined: off. */
  readonly metricsAddr?: string;
  /** The node proxy's settings with --node-proxy; undefined without. */
  readonly nodeProxy?: NodeProxySettings;
  readonly logLevel: LogLevel;
  readonly logFormat: "auto" | "json" | "text";
}

/** Where a merged value came from, for `/debug/settings`. */
export interface MergedSetting {
  readonly name: string;
  readonly value: SettingValue | undefined;
  /** flag, env, file (--config), cluster-env (with the key), default. */
  readonly source: string;
}

/** The first non-internal IPv4 address of the host, or 127.0.0.1. */
export function defaultInstanceIp(ifaces = networkInterfaces()): string {
  for (const list of Object.values(ifaces)) {
    for (const a of list ?? []) if (a.family === "IPv4" && !a.internal) return a.address;
  }
  return "127.0.0.1";
}

/** Options for resolveAgentConfig. */
export interface ResolveOptions {
  readonly readFile?: (path: string) => string;
  readonly hostname?: string;
  readonly instanceIp?: () => string;
  /** The agent's user id (default: process.getuid()). */
  readonly uid?: number;
}

/** Items of a list setting as integers in [min, max]; throws UsageError naming the flag. */
function intList(flag: string, items: readonly string[], min: number, max: number): number[] {
  return items.map((item) => {
    const n = Number(item);
    if (!/^\d+$/.test(item.trim()) || n < min || n > max) {
      throw new UsageError(
        `meshd agent: --${flag}: want integers from ${min} to ${max}, got ${JSON.stringify(item)}`,
      );
    }
    return n;
  });
}

/** Checks CIDR items (ADDRESS or ADDRESS/LENGTH) and writes each with its length; throws UsageError naming the flag. */
function cidrList(flag: string, items: readonly string[]): string[] {
  return items.map((item) => {
    const m = /^([^/\s]+)(?:\/(\d{1,3}))?$/.exec(item.trim());
    const family = m ? isIP(m[1]!) : 0;
    const max = family === 6 ? 128 : 32;
    const bits = m?.[2] === undefined ? max : Number(m[2]);
    if (family === 0 || bits > max) {
      throw new UsageError(`meshd agent: --${flag}: want ADDRESS/LENGTH, got ${JSON.stringify(item)}`);
    }
    return `${m![1]}/${bits}`;
  });
}

/** The node proxy's settings from the merged values, or undefined without --node-proxy. */
function nodeProxySettings(
  values: ReadonlyMap<string, SettingValue | undefined>,
  uid: number,
): NodeProxySettings | undefined {
  if (values.get("node-proxy") !== true) return undefined;
  const list = (n: string) => (values.get(n) as readonly string[] | undefined) ?? [];
  const uids = values.get("capture-exclude-uids") as readonly string[] | undefined;
  const ports = {
    outboundPort: values.get("outbound-port") as number,
    inboundPort: values.get("inbound-port") as number,
    tunnelPort: values.get("tunnel-port") as number,
  };
  const names = {
    outboundPort: "outbound-port",
    inboundPort: "inbound-port",
    tunnelPort: "tunnel-port",
  } as const;
  const seen = new Map<number, string>();
  for (const [k, p] of Object.entries(ports) as [keyof typeof ports, number][]) {
    const other = seen.get(p);
    if (other !== undefined) {
      throw new UsageError(
        `meshd agent: --${names[k]} and --${other} are both ${p}; each needs its own port`,
      );
    }
    seen.set(p, names[k]);
  }
  return {
    capture: values.get("capture") as NodeProxySettings["capture"],
    captureBackend: values.get("capture-backend") as NodeProxySettings["captureBackend"],
    excludePorts: intList("capture-exclude-ports", list("capture-exclude-ports"), 1, 65535),
    excludeCidrs: cidrList("capture-exclude-cidrs", list("capture-exclude-cidrs")),
    excludeUids: uids === undefined ? [uid] : intList("capture-exclude-uids", uids, 0, 4294967294),
    ...ports,
    dnsAddr: values.get("dns-addr") as string,
    dnsCapture: values.get("dns-capture") as boolean,
    ...(values.get("mixer-addr") ? { mixerAddr: values.get("mixer-addr") as string } : {}),
  };
}

/**
 * Merges settings with cluster.env and checks them. Throws UsageError naming the setting (and
 * its cluster.env key and line) for a missing or bad value.
 */
export function resolveAgentConfig(
  settings: Settings,
  opts: ResolveOptions = {},
): { config: AgentConfig; merged: MergedSetting[] } {
  const read = opts.readFile ?? ((p: string) => readFileSync(p, "utf8"));
  const envPath = settings.optionalString("cluster-env");
  let file = new Map<string, EnvFileEntry>();
  if (envPath !== undefined) {
    let text: string;
    try {
      text = read(envPath);
    } catch (err) {
      throw new UsageError(`meshd agent: --cluster-env: cannot read ${envPath}: ${(err as Error).message}`);
    }
    file = parseClusterEnv(text, envPath);
  }
  const values = new Map<string, SettingValue | undefined>();
  const merged: MergedSetting[] = [];
  for (const spec of AGENT_SETTINGS) {
    const src = settings.source(spec.name);
    let value: SettingValue | undefined = settings.entries().find((e) => e.name === spec.name)?.value;
    let source: string = src ?? "unset";
    if (src === undefined || src === "default") {
      const keys = spec.name === "cluster-env" ? [] : [envName(spec), ...(CLUSTER_ENV_KEYS[spec.name] ?? [])];
      const key = keys.find((k) => file.has(k) && file.get(k)!.value !== "");
      if (key !== undefined) {
        const e = file.get(key)!;
        try {
          value = convertValue(spec, key === "ISTIO_METAJSON_LABELS" ? jsonLabels(e.value) : e.value);
        } catch (err) {
          throw new UsageError(
            `meshd agent: ${envPath}:${e.line}: ${key} (--${spec.name}): ${(err as Error).message}`,
          );
        }
        source = `cluster-env ${key}`;
      }
    }
    values.set(spec.name, value);
    merged.push({ name: spec.name, value, source });
  }
  const str = (n: string) => values.get(n) as string | undefined;
  const need = (n: string, keys: string) => {
    const v = str(n);
    if (v === undefined || v === "") {
      throw new UsageError(`meshd agent: --${n} is required (or ${keys} in --cluster-env)`);
    }
    return v;
  };
  const namespace = need("namespace", "POD_NAMESPACE");
  const serviceAccount = need("service-account", "SERVICE_ACCOUNT");
  const labels: Record<string, string> = {};
  for (const item of values.get("labels") as readonly string[]) {
    const eq = item.indexOf("=");
    if (eq <= 0) throw new UsageError(`meshd agent: --labels: want KEY=VALUE, got ${JSON.stringify(item)}`);
    labels[item.slice(0, eq)] = item.slice(eq + 1);
  }
  const nodeProxy = nodeProxySettings(values, opts.uid ?? process.getuid?.() ?? 0);
  if (nodeProxy) Object.assign(labels, NODE_PROXY_LABELS);
  const ip = str("instance-ip") ?? (opts.instanceIp ?? defaultInstanceIp)();
  if (isIP(ip) === 0) {
    throw new UsageError(`meshd agent: --instance-ip: want an IP address, got ${JSON.stringify(ip)}`);
  }
  const discoveryAddr = str("discovery-addr");
  const group = str("workload-group");
  if (group !== undefined && discoveryAddr === undefined) {
    throw new UsageError(
      "meshd agent: --workload-group needs --discovery-addr (PILOT_ADDRESS) to register with",
    );
  }
  const outputDir = values.get("output-dir") as string;
  const auth = values.get("control-plane-auth") as ControlPlaneAuth;
  const caTlsAddr = str("ca-tls-addr") ?? (auth === "MUTUAL_TLS" ? discoveryAddr : undefined);
  if (caTlsAddr === undefined) {
    throw new UsageError(
      "meshd agent: no CA address for renewals over mutual TLS: set --ca-tls-addr (CA_ADDR), " +
        "or --discovery-addr (PILOT_ADDRESS) with --control-plane-auth MUTUAL_TLS",
    );
  }
  const config: AgentConfig = {
    caAddr: str("ca-addr"),
    caTlsAddr,
    serverName: str("ca-server-name"),
    discoveryAddr,
    controlPlaneAuth: auth,
    tokenFile: str("token-file"),
    rootCertFile: str("root-cert"),
    workload: {
      ip,
      name: str("workload-name") ?? opts.hostname ?? hostname(),
      namespace,
      serviceAccount,
      trustDomain: values.get("trust-domain") as string,
      labels,
      ...(group ? { workloadGroup: group } : {}),
      ...(str("network") ? { network: str("network")! } : {}),
    },
    outputDir,
    ...(str("credential-dir") === undefined ? {} : { credentialDir: str("credential-dir")! }),
    dataDir: values.get("data-dir") as string,
    sdsSocket: str("sds-socket") ?? join(outputDir, "sds.sock"),
    certTtlMs: values.get("cert-ttl") as number,
    adminAddr: values.get("admin-addr") as string,
    ...(str("metrics-addr") === undefined ? {} : { metricsAddr: str("metrics-addr")! }),
    ...(nodeProxy ? { nodeProxy } : {}),
    logLevel: values.get("log-level") as LogLevel,
    logFormat: values.get("log-format") as AgentConfig["logFormat"],
  };
  return { config, merged };
}
