/**
 * The node proxy's test mesh across network-namespace machines (tests/netns/_harness.ts), shared
 * by tests/e2e/node_proxy.test.ts and bench/node_proxy.ts:
 *
 * - machine 1 (198.18.0.1): the control plane (`meshd serve`, pilot and citadel on 15010/15012)
 *   and a test DNS server on 198.18.0.1:53 standing for the machines' resolver;
 * - machine 2 (A, 198.18.0.2) and machine 3 (B, 198.18.0.3): `meshd agent --node-proxy`, run as
 *   root, with a route for the virtual-IP range (198.19.0.0/16) via eth0 and a resolv.conf naming
 *   198.18.0.1 (`ip netns exec` bind-mounts /etc/netns/NAME/resolv.conf over /etc/resolv.conf);
 *   applications run as uid 65534 (`setpriv`), so capture applies to them and not to the agent;
 * - machine 4 (198.18.0.4): outside the mesh, no agent.
 *
 * The mesh config lives in files of a watched --config-dir: `base.yaml` (the MeshConfig with the
 * virtual-IP range, B's WorkloadGroup and its ServiceEntries without addresses, so pilot allocates
 * their virtual IPs) and whatever the caller writes next to it (PeerAuthentication,
 * AuthorizationPolicy). Everything made is removed by `cleanup()`.
 *
 * @module
 */
import type { Subprocess } from "bun";
import {
  chmodSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  writeFileSync,
} from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { readAdminToken } from "../../mod/admin/token.ts";
import { createTestNetwork, type Machine, type RunResult, type TestNetwork } from "../netns/_harness.ts";
import { eventually, type MeshdProcess, ROOT, startMeshd } from "./_meshd.ts";
import { readPcap, type TcpSegment } from "./_node_proxy_pcap.ts";

/** The range pilot allocates virtual IPs from in the test mesh (inside 198.18.0.0/15). */
export const VIP_RANGE = "198.19.0.0/16";
/** B's namespace and the services it runs. */
export const APPS_NS = "apps";
export const WEB_HOST = `web.${APPS_NS}.svc.cluster.local`;
export const REDIS_HOST = `redis.${APPS_NS}.svc.cluster.local`;
export const BULK_HOST = `bulk.${APPS_NS}.svc.cluster.local`;
export const WEB_PORT = 8080;
export const REDIS_PORT = 6379;
/** A TCP sink/echo port on B for the benchmark (a mesh service port). */
export const BULK_PORT = 9000;
/** The same program on B on a port no service declares (reached directly, for comparison). */
export const DIRECT_PORT = 9001;
/** A's namespace and service account: its identity is spiffe://cluster.local/ns/clients/sa/client-a. */
export const CLIENT_NS = "clients";
export const CLIENT_SA = "client-a";
export const CLIENT_ID = `spiffe://cluster.local/ns/${CLIENT_NS}/sa/${CLIENT_SA}`;
export const SERVER_SA = "web-b";
export const SERVER_ID = `spiffe://cluster.local/ns/${APPS_NS}/sa/${SERVER_SA}`;
/** Names the test DNS server answers (anything else: NXDOMAIN). */
export const UPSTREAM_NAMES: Readonly<Record<string, string>> = { "outside.example.test": "198.18.0.4" };
/** The unprivileged user applications run as. */
export const APP_UID = 65534;

const PROGRAMS = resolve(import.meta.dir, "_node_proxy_programs.ts");
const MAIN = resolve(ROOT, "main.ts");

/** The mesh's starting config (base.yaml). */
export function baseConfig(): string {
  const se = (name: string, ports: string) =>
    `apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: { name: ${name}, namespace: ${APPS_NS} }
spec:
  hosts: [${name}.${APPS_NS}.svc.cluster.local]
  location: MESH_INTERNAL
  resolution: STATIC
  ports:
${ports}
  workloadSelector:
    labels: { app: b }
`;
  return [
    `apiVersion: config.meshd.io/v1alpha1
kind: MeshConfig
metadata: { name: mesh, namespace: istio-system }
spec:
  rootNamespace: istio-system
  autoAllocateVipRange: ${VIP_RANGE}
`,
    `apiVersion: networking.istio.io/v1
kind: WorkloadGroup
metadata: { name: b, namespace: ${APPS_NS} }
spec:
  metadata:
    labels: { app: b }
  template:
    serviceAccount: ${SERVER_SA}
`,
    se("web", `  - { number: ${WEB_PORT}, name: http, protocol: HTTP }`),
    se("redis", `  - { number: ${REDIS_PORT}, name: tcp-redis, protocol: TCP }`),
    se("bulk", `  - { number: ${BULK_PORT}, name: tcp-bulk, protocol: TCP }`),
  ].join("---\n");
}

/** A PeerAuthentication for B's namespace. */
export function peerAuthentication(mode: "STRICT" | "PERMISSIVE" | "DISABLE"): string {
  return `apiVersion: security.istio.io/v1
kind: PeerAuthentication
metadata: { name: default, namespace: ${APPS_NS} }
spec:
  mtls: { mode: ${mode} }
`;
}

/** An AuthorizationPolicy on B's workload. */
export function authorizationPolicy(
  name: string,
  action: "ALLOW" | "DENY" | "AUDIT",
  source: { principals?: string[]; namespaces?: string[] },
): string {
  const src = Object.entries(source).map(([k, v]) => `${k}: [${v.map((x) => JSON.stringify(x)).join(", ")}]`);
  return `apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: { name: ${name}, namespace: ${APPS_NS} }
spec:
  selector:
    matchLabels: { app: b }
  action: ${action}
  rules:
  - from:
    - source: { ${src.join(", ")} }
`;
}

/** A meshd agent running in a test machine. */
export interface MachineAgent {
  readonly machine: Machine;
  readonly proc: Subprocess<"ignore", "pipe", "pipe">;
  readonly pid: number;
  /** Its JSON log lines so far. */
  readonly logs: Array<Record<string, unknown>>;
  /** The last lines of its standard error, JSON or not (for failure messages). */
  tail(): string;
  /** Waits (bounded) for a log line matching `pred`; throws with the log tail when none came. */
  waitFor(
    pred: (l: Record<string, unknown>) => boolean,
    timeoutMs?: number,
  ): Promise<Record<string, unknown>>;
  /** SIGTERM, then the exit code (SIGKILL after 10 s). */
  stop(): Promise<number>;
  /** SIGKILL (a crash): nothing of the agent runs its shutdown. */
  kill9(): Promise<void>;
}

/** How an agent of the test mesh is started. */
export interface AgentSpec {
  readonly namespace: string;
  readonly serviceAccount: string;
  readonly workloadName: string;
  readonly labels?: readonly string[];
  /** WorkloadGroup to auto-register into ("NAME" in the namespace). */
  readonly workloadGroup?: string;
  /** Requested certificate lifetime (agent --cert-ttl), e.g. "20s". */
  readonly certTtl?: string;
  /** More agent flags. */
  readonly extra?: readonly string[];
}

/** The running test mesh. */
export interface NodeProxyMesh {
  readonly net: TestNetwork;
  readonly cp: Machine;
  readonly a: Machine;
  readonly b: Machine;
  readonly outside: Machine;
  /** Temporary directory holding config, state and captures. */
  readonly dir: string;
  readonly meshd: MeshdProcess;
  /** The test DNS server's queries so far. */
  readonly dnsQueries: Array<{ name: string; type: string }>;
  /** Writes (or replaces) `NAME.yaml` in the watched config directory. */
  writeConfig(name: string, yaml: string): void;
  /** Removes `NAME.yaml` from the config directory. */
  removeConfig(name: string): void;
  /** Starts an agent with --node-proxy in `m`; waits until it has a certificate. */
  startAgent(m: Machine, spec: AgentSpec): Promise<MachineAgent>;
  /** Runs `argv` in `m` as the application user (uid 65534). */
  runApp(m: Machine, argv: readonly string[], timeoutMs?: number): Promise<RunResult>;
  /** Starts `argv` in `m` as the application user; killed by cleanup(). */
  execApp(m: Machine, argv: readonly string[]): Subprocess<"ignore", "pipe", "pipe">;
  /** Starts one of _node_proxy_programs.ts's programs in `m` (as the application user unless `asRoot`). */
  execProgram(m: Machine, args: readonly string[], asRoot?: boolean): Subprocess<"ignore", "pipe", "pipe">;
  /** `nft list ruleset` in `m`. */
  nftRuleset(m: Machine): Promise<string>;
  /**
   * Starts tcpdump on `m`'s eth0 (TCP only); `stop()` returns what it saw. Immediate mode, since
   * packets still in a capture block when tcpdump is interrupted would never reach the file.
   */
  capture(m: Machine): Promise<{ stop(): Promise<TcpSegment[]> }>;
  /** POSTs to the control plane's admin server (inside machine 1) with its admin token. */
  adminPost(path: string): Promise<Record<string, unknown>>;
  /** GETs from the control plane's admin server. */
  adminGet(path: string): Promise<string>;
  /** For failure messages: the control plane's warnings and errors and every agent's log tail. */
  diagnostics(): string;
  /** Stops every agent and program, the control plane, removes the machines and files. */
  cleanup(): Promise<void>;
}

/** The argv prefix that runs a command as the application user. */
export const AS_APP = ["setpriv", `--reuid=${APP_UID}`, `--regid=${APP_UID}`, "--clear-groups", "--"];

/** Lines of a stream, as they come, handed to `onLine`. */
async function readLines(stream: ReadableStream<Uint8Array>, onLine: (l: string) => void): Promise<void> {
  const dec = new TextDecoder();
  let buf = "";
  for await (const chunk of stream) {
    buf += dec.decode(chunk, { stream: true });
    let nl: number;
    while ((nl = buf.indexOf("\n")) >= 0) {
      onLine(buf.slice(0, nl));
      buf = buf.slice(nl + 1);
    }
  }
  if (buf !== "") onLine(buf);
}

/** Waits until `proc` prints a line matching `re` on `stream`; throws with what it printed otherwise. */
export async function waitForLine(
  proc: Subprocess<"ignore", "pipe", "pipe">,
  stream: "stdout" | "stderr",
  re: RegExp,
  timeoutMs = 10_000,
): Promise<{ lines: string[] }> {
  const lines: string[] = [];
  let seen = false;
  const done = readLines(proc[stream], (l) => {
    lines.push(l);
    if (re.test(l)) seen = true;
  });
  const ok = await eventually(() => seen || proc.exitCode !== null, timeoutMs, 20);
  if (!ok || !seen) {
    throw new Error(`no line matching ${re} on ${stream} (exit ${proc.exitCode}):\n${lines.join("\n")}`);
  }
  void done;
  return { lines };
}

/** /etc/netns entries of this harness whose owning test process is gone. */
function sweepStaleNetnsEtc(): void {
  if (!existsSync("/etc/netns")) return;
  for (const name of readdirSync("/etc/netns")) {
    const m = /^msh-(\d+)-/.exec(name);
    if (!m || Number(m[1]) === process.pid) continue;
    try {
      process.kill(Number(m[1]), 0);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === "ESRCH") {
        rmSync(join("/etc/netns", name), { recursive: true, force: true });
      }
    }
  }
}

/** Makes the machines, starts the control plane and the test DNS server. */
export async function startNodeProxyMesh(
  opts: { extraConfig?: Record<string, string> } = {},
): Promise<NodeProxyMesh> {
  sweepStaleNetnsEtc();
  const net = createTestNetwork({ machines: 4 });
  const [cp, a, b, outside] = net.machines as [Machine, Machine, Machine, Machine];
  const dir = mkdtempSync(join(tmpdir(), "meshd-node-proxy-"));
  chmodSync(dir, 0o755);
  const etcDirs: string[] = [];
  const agents: MachineAgent[] = [];
  const procs: Array<Subprocess<"ignore", "pipe", "pipe">> = [];
  let meshd: MeshdProcess | undefined;
  const cleanup = async () => {
    await Promise.all(agents.map((x) => x.stop()));
    for (const p of procs) if (p.exitCode === null) p.kill("SIGKILL");
    await meshd?.stop();
    net.cleanup();
    for (const d of etcDirs) rmSync(d, { recursive: true, force: true });
    rmSync(dir, { recursive: true, force: true });
  };
  try {
    for (const m of [a, b, outside]) {
      // A route for the virtual IPs, so applications' connects to them leave through eth0.
      const r = await net.run(m, ["ip", "route", "add", VIP_RANGE, "dev", "eth0"]);
      if (r.exitCode !== 0) throw new Error(`ip route add ${VIP_RANGE} in ${m.netns}: ${r.stderr}`);
      const etc = join("/etc/netns", m.netns);
      mkdirSync(etc, { recursive: true });
      etcDirs.push(etc);
      writeFileSync(join(etc, "resolv.conf"), `nameserver ${cp.ip}\noptions timeout:2 attempts:2\n`);
    }
    const configDir = join(dir, "config");
    mkdirSync(configDir);
    writeFileSync(join(configDir, "base.yaml"), baseConfig());
    for (const [name, yaml] of Object.entries(opts.extraConfig ?? {})) {
      writeFileSync(join(configDir, `${name}.yaml`), yaml);
    }
    const dataDir = join(dir, "cp-data");
    meshd = await startMeshd({
      command: ["ip", "netns", "exec", cp.netns, process.execPath, MAIN],
      args: [
        "--modules=pilot,citadel",
        `--config-dir=${configDir}`,
        `--data-dir=${dataDir}`,
        "--grpc-addr=0.0.0.0:15010",
        "--grpc-tls-addr=0.0.0.0:15012",
        "--push-debounce=10ms",
      ],
      timeoutMs: 60_000,
    });
    await meshd.addrOf("citadel TLS listening");
    const dnsNames = Object.entries(UPSTREAM_NAMES).map(([k, v]) => `${k}=${v}`).join(",");
    const dns = net.exec(cp, [process.execPath, PROGRAMS, "dns", `${cp.ip}:53`, dnsNames]);
    procs.push(dns);
    const dnsQueries: Array<{ name: string; type: string }> = [];
    let dnsUp = false;
    void readLines(dns.stdout, (l) => {
      try {
        const rec = JSON.parse(l) as { listening?: boolean; name?: string; type?: string };
        if (rec.listening) dnsUp = true;
        else dnsQueries.push({ name: rec.name ?? "", type: rec.type ?? "" });
      } catch {
        // not JSON
      }
    });
    if (!(await eventually(() => dnsUp || dns.exitCode !== null, 10_000))) {
      throw new Error(`test DNS server did not start: ${await new Response(dns.stderr).text()}`);
    }
    const adminCurl = (method: string, path: string) =>
      net.run(cp, [
        "curl",
        "-sS",
        "-X",
        method,
        "-H",
        `authorization: Bearer ${readAdminToken(meshd!.dataDir)}`,
        "-w",
        "\n%{http_code}",
        `http://${meshd!.adminAddr}${path}`,
      ]);
    const mesh: NodeProxyMesh = {
      net,
      cp,
      a,
      b,
      outside,
      dir,
      meshd,
      dnsQueries,
      writeConfig(name, yaml) {
        // Written beside and renamed, so the watcher never reads half a file.
        const tmp = join(dir, `.${name}.yaml.tmp`);
        writeFileSync(tmp, yaml);
        Bun.spawnSync(["mv", "-f", tmp, join(configDir, `${name}.yaml`)]);
      },
      removeConfig(name) {
        rmSync(join(configDir, `${name}.yaml`), { force: true });
      },
      async startAgent(m, spec) {
        const base = join(dir, `machine${m.index}`);
        mkdirSync(base, { recursive: true });
        const tokenFile = join(base, "token");
        if (!existsSync(tokenFile)) {
          const t = Bun.spawnSync([
            process.execPath,
            MAIN,
            "token",
            "create",
            `--data-dir=${dataDir}`,
            `--namespace=${spec.namespace}`,
            `--service-account=${spec.serviceAccount}`,
            "--ttl=1h",
          ], { cwd: ROOT, stdout: "pipe", stderr: "pipe" });
          if (t.exitCode !== 0) throw new Error(`meshd token create: ${t.stderr.toString()}`);
          writeFileSync(tokenFile, t.stdout.toString().trim(), { mode: 0o600 });
        }
        const argv = [
          process.execPath,
          MAIN,
          "agent",
          "--log-format=json",
          "--admin-addr=127.0.0.1:15020",
          `--ca-addr=${cp.ip}:15010`,
          `--ca-tls-addr=${cp.ip}:15012`,
          `--discovery-addr=${cp.ip}:15012`,
          `--namespace=${spec.namespace}`,
          `--service-account=${spec.serviceAccount}`,
          `--workload-name=${spec.workloadName}`,
          `--token-file=${tokenFile}`,
          `--instance-ip=${m.ip}`,
          `--output-dir=${join(base, "out")}`,
          `--data-dir=${join(base, "data")}`,
          `--cert-ttl=${spec.certTtl ?? "1h"}`,
          ...(spec.labels?.length ? [`--labels=${spec.labels.join(",")}`] : []),
          ...(spec.workloadGroup ? [`--workload-group=${spec.workloadGroup}`] : []),
          "--node-proxy",
          ...(spec.extra ?? []),
        ];
        const proc = net.exec(m, argv, { cwd: ROOT });
        procs.push(proc);
        const logs: Array<Record<string, unknown>> = [];
        let tail = "";
        void readLines(proc.stderr, (l) => {
          tail = (tail + l + "\n").slice(-40_000);
          try {
            logs.push(JSON.parse(l) as Record<string, unknown>);
          } catch {
            // a usage error
          }
        });
        const agent: MachineAgent = {
          machine: m,
          proc,
          pid: proc.pid,
          logs,
          tail: () => tail,
          async waitFor(pred, timeoutMs = 30_000) {
            let found: Record<string, unknown> | undefined;
            await eventually(
              () => (found = logs.find(pred)) !== undefined || proc.exitCode !== null,
              timeoutMs,
            );
            if (!found) {
              throw new Error(
                `agent in ${m.netns}: no such log line within ${timeoutMs} ms (exit ${proc.exitCode}):\n${tail}`,
              );
            }
            return found;
          },
          async stop() {
            if (proc.exitCode === null) proc.kill("SIGTERM");
            const t = setTimeout(() => proc.kill("SIGKILL"), 10_000);
            const code = await proc.exited;
            clearTimeout(t);
            return code;
          },
          async kill9() {
            proc.kill("SIGKILL");
            await proc.exited;
          },
        };
        agents.push(agent);
        await agent.waitFor((l) => l.msg === "certificate issued", 60_000);
        return agent;
      },
      runApp: (m, argv, timeoutMs = 30_000) =>
        net.run(m, [...AS_APP, ...argv], { timeoutMs, env: { HOME: "/tmp" } }),
      execApp(m, argv) {
        const p = net.exec(m, [...AS_APP, ...argv], { env: { HOME: "/tmp" } });
        procs.push(p);
        return p;
      },
      execProgram(m, args, asRoot = false) {
        const argv = [process.execPath, PROGRAMS, ...args];
        const p = net.exec(m, asRoot ? argv : [...AS_APP, ...argv], { env: { HOME: "/tmp" } });
        procs.push(p);
        return p;
      },
      async nftRuleset(m) {
        const r = await net.run(m, ["nft", "list", "ruleset"]);
        if (r.exitCode !== 0) throw new Error(`nft list ruleset in ${m.netns}: ${r.stderr}`);
        return r.stdout;
      },
      async capture(m) {
        const file = join(dir, `capture-m${m.index}-${Date.now()}.pcap`);
        const p = net.exec(m, [
          "tcpdump",
          "-i",
          "eth0",
          "-n",
          "--immediate-mode",
          "-U",
          "-s",
          "0",
          "-Z",
          "root",
          "-w",
          file,
          "tcp",
        ]);
        procs.push(p);
        await waitForLine(p, "stderr", /listening on eth0/);
        return {
          async stop() {
            p.kill("SIGINT");
            await p.exited;
            return readPcap(readFileSync(file));
          },
        };
      },
      async adminPost(path) {
        const r = await adminCurl("POST", path);
        const nl = r.stdout.lastIndexOf("\n");
        const [body, status] = [r.stdout.slice(0, nl), r.stdout.slice(nl + 1)];
        if (status !== "200") throw new Error(`POST ${path}: ${status} ${body} ${r.stderr}`);
        return JSON.parse(body) as Record<string, unknown>;
      },
      async adminGet(path) {
        const r = await adminCurl("GET", path);
        return r.stdout.slice(0, r.stdout.lastIndexOf("\n"));
      },
      diagnostics() {
        const cpLines = meshd!.logs.filter((l) => l.level !== "info" || l.msg === "config snapshot")
          .map((l) => JSON.stringify(l)).slice(-40);
        return [
          `control plane:\n${cpLines.join("\n")}`,
          ...agents.map((x) => `agent in machine ${x.machine.index}:\n${x.tail().slice(-8000)}`),
        ].join("\n");
      },
      cleanup,
    };
    return mesh;
  } catch (err) {
    await cleanup();
    throw err;
  }
}
