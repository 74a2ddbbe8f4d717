/**
 * xDS fan-out benchmark: N simulated Envoy sidecars on one `meshd serve --modules pilot`, against
 * the physical floor of writing the same bytes over raw HTTP/2 in the same run.
 *
 * Usage: bun bench/xds.ts [--clients 1000,5000,10000] [--services 50] [--client-runtime node|bun]
 *          [--client-procs 1] [--per-conn 100] [--raw bun,node] [--reps 3] [--changes 3]
 *          [--settle 15] [--cpu-prof DIR] [--json]
 *
 * Setup. The config is the bookinfo sample (config/samples) plus `--services` generated
 * ServiceEntries in 5 namespaces (`bench-0`..`bench-4`, ports 9080/8080/7070/5000 in rotation),
 * each with two WorkloadEntries (v1, v2; TEST-NET-2/3 addresses), a DestinationRule (ISTIO_MUTUAL,
 * outlier detection, subsets v1/v2), and, for every other service, a VirtualService (90/10 split).
 * meshd runs from source (`bun main.ts serve --modules=pilot`, default `--push-debounce` 100ms,
 * default log level: one log line per stream connect), fresh for each N.
 *
 * Load generator (bench/xds_client.ts). A separate process: raw `node:http2`, hand-written
 * protobuf for only the fields needed, gRPC framing by hand. Each simulated sidecar is one ADS
 * stream with its own node id `sidecar~10.x.y.z~bench-I.bench~bench.svc.cluster.local`,
 * metadata NAMESPACE=bench and LABELS {app: bench-app-(I mod 10), version: v1} (10 distinct
 * proxy configurations, as ten deployments would have); it subscribes CDS and LDS wildcard, then
 * EDS/RDS for the names found in them, and ACKs everything, restating names. By default it runs
 * under Node (bundled with `bun build --target=node`): DESIGN.md measured Bun at 2-3x Node's CPU
 * with many streams per connection. `--per-conn` streams (default 100) share an HTTP/2
 * connection; each stream's receive window (SETTINGS_INITIAL_WINDOW_SIZE) is 4 MiB and each
 * connection's (setLocalWindowSize) 64 MiB, `peerMaxConcurrentStreams` = streams per connection,
 * `maxSessionMemory` 1 GiB, so flow control never throttles the server. Its CPU is read from
 * /proc and reported: on 2 cores it competes with meshd, so the figures say how much it took.
 *
 * Measured, for each N (meshd fresh for each):
 * 1. full config: from the start command (all N streams opened at once, a reconnect storm) to the
 *    last stream having ACKed CDS, LDS, EDS and RDS once;
 * 2. RSS per proxy: (meshd VmRSS `--settle` seconds after all N have full config − VmRSS idle
 *    before connecting) / N. Bun hands memory freed after the connection burst back to the OS
 *    about 10 s later, hence the wait; the peak (VmHWM) is reported too;
 * 3. change ACK time: one file written in the config dir (routing.yaml: the reviews canary
 *    90/10 -> 80/20, then 70/30, 60/40); from the write to the last client's ACK of an RDS
 *    version other than the one it held ("from write": galley's file debounce, pilot's push
 *    debounce, PushContext, translation, fan-out), and from the first client receiving it to the
 *    last ACK ("push part", the fan-out). The same for a DestinationRule change (outlier detection
 *    of one generated service: touches clusters and no route, so CDS goes whole to everyone) and
 *    for a change that touches no Envoy resource (a label in the reviews VirtualService's
 *    metadata; it should push nothing: the responses each client received are reported, with
 *    meshd's own pilot_xds_pushes). Each change is made `--changes` times; medians are printed;
 * 4. CPU per push: meshd's utime+stime (/proc/PID/stat, all threads) from the write until it is
 *    idle again (≤ 1 tick in 300 ms). The CPU that every other process on the machine used
 *    meanwhile is printed too (/proc/stat), as a measure of noise;
 * 5. raw floor: a bare node:http2 server (bench/xds_raw_server.ts, default settings like
 *    meshd's gRPC server) holding N streams from the same client setup writes the gRPC frames
 *    stream 0 received from meshd during that push to every stream; time from its first write
 *    to the last client's ACK, and its CPU (medians of `--reps` after one warm-up). Under Bun
 *    (meshd's runtime, the ratio's base) and Node. For the large CDS push the raw time is bound
 *    by the load generator receiving ~1 GB (it uses 2x the server's CPU), so for CDS the CPU
 *    ratio (meshd CPU / raw server CPU) is the better measure of meshd's own overhead.
 *
 * The orchestrator starts meshd with `--cpu-prof` (and `--cpu-prof-md`) into `--cpu-prof DIR`
 * when asked; the profile is written when meshd exits.
 *
 * Targets (printed beside the numbers): 10k proxies, at most 50 KB RSS per proxy, a one-service
 * change ACKed by all 10k within 1 s.
 */
import { type Subprocess } from "bun";
import {
  copyFileSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  writeFileSync,
} from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { parseConfig } from "../mod/galley/parse.ts";
import { validateResource } from "../mod/galley/validate.ts";
import { benchArgs } from "./_args.ts";

const ROOT = resolve(import.meta.dir, "..");
const BUN = process.execPath;
const now = () => performance.timeOrigin + performance.now();
/** Where a helper process runs. */
export type Runtime = "node" | "bun";

/** Options of one benchmark run. */
export interface XdsBenchOptions {
  /** Numbers of simulated sidecars, one scenario each. */
  clients: number[];
  /** Generated ServiceEntries beside bookinfo. */
  services?: number;
  /** Streams per HTTP/2 connection. */
  perConn?: number;
  clientRuntime?: Runtime;
  /** Load-generator processes (the sidecars are split among them). */
  clientProcs?: number;
  /** Runtimes of the raw floor server. */
  rawRuntimes?: Runtime[];
  /** Raw pushes measured (after one warm-up); the median is reported. */
  reps?: number;
  /** Times each meshd change is made (at most 8); the median is reported. */
  changeReps?: number;
  /** Seconds to wait after full config before reading RSS (Bun returns freed memory lazily). */
  settleSec?: number;
  /** Write meshd CPU profiles (bun --cpu-prof, markdown too) into this directory. */
  cpuProfDir?: string;
  /** Progress lines. */
  log?: (line: string) => void;
}

/** One measured change. */
export interface ChangeSample {
  /** From the file write to the last ACK of the new version. */
  fromWriteMs?: number;
  /** From the first client receiving the new version to the last ACK (the fan-out). */
  pushMs?: number;
  /** From the write to the first client receiving it (debounces, rebuild, translation). */
  firstMs?: number;
  /** meshd CPU seconds from the write until idle. */
  cpuSec: number;
  /** Load-generator CPU seconds over the same time. */
  clientCpuSec: number;
  /** CPU seconds every other process on the machine used over the same time (noise). */
  otherCpuSec: number;
}

/** A kind of change, repeated: medians of the samples, and what the first one sent. */
export interface ChangeResult extends ChangeSample {
  /** Type whose new version marks the change; undefined for the no-op change. */
  type?: "RDS" | "CDS";
  samples: ChangeSample[];
  /** Responses all clients received after the (first) write, by type. */
  responses: Record<string, number>;
  /** Bytes of those responses (gRPC frames). */
  bytes: number;
  /** meshd's pilot_xds_pushes delta, by type. */
  meshdPushes: Record<string, number>;
  /** gRPC frames stream 0 received (replayed by the raw floor), base64. */
  frames: string[];
}

/** Raw floor of one push (medians over the measured pushes). */
export interface RawPush {
  /** From the first write to the last ACK. */
  ms: number;
  serverCpuSec: number;
  clientCpuSec: number;
}

/** Raw floor under one runtime. */
export interface RawResult {
  runtime: Runtime;
  /** By change type ("RDS", "CDS"). */
  pushes: Record<string, RawPush>;
}

/** Results for one N. */
export interface XdsScaleResult {
  clients: number;
  fullConfigMs: number;
  rssBeforeKiB: number;
  rssAfterKiB: number;
  /** VmHWM: the peak, reached while the clients connect. */
  rssPeakKiB: number;
  /** Bytes per proxy. */
  rssPerProxyBytes: number;
  /** meshd CPU seconds per second while idle before the clients connect (rescans, timers). */
  idleCpuPerSec: number;
  connectCpuSec: number;
  connectClientCpuSec: number;
  /** CPU seconds other processes on the machine used while the clients connected (noise). */
  connectOtherCpuSec: number;
  /** Streams meshd reports connected (pilot_xds_connected). */
  meshdConnected: number;
  /** Wall time of one GET /metrics with all N connected. */
  metricsScrapeMs: number;
  route: ChangeResult;
  cluster: ChangeResult;
  noop: ChangeResult;
  raw: RawResult[];
  /** meshd warnings and errors seen (first 10). */
  meshdWarnings: string[];
}

// ---------------------------------------------------------------- config

const PORTS = [9080, 8080, 7070, 5000];

/** The generated part of the mesh: services, workloads, destination rules, virtual services. */
export function generatedMesh(services: number, drSalt = 0): Map<string, string> {
  const se: string[] = [];
  const dr: string[] = [];
  const vs: string[] = [];
  for (let i = 0; i < services; i++) {
    const ns = `bench-${i % 5}`;
    const host = `svc-${i}.${ns}.svc.cluster.local`;
    const port = PORTS[i % PORTS.length]!;
    se.push(`apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: { name: svc-${i}, namespace: ${ns} }
spec:
  hosts: [${host}]
  location: MESH_INTERNAL
  resolution: STATIC
  ports: [{ number: ${port}, name: http, protocol: HTTP }]
  workloadSelector: { labels: { app: svc-${i} } }
`);
    for (const v of [1, 2]) {
      const n = i * 2 + v;
      const addr = n < 255 ? `198.51.100.${n}` : `203.0.113.${n - 254}`;
      se.push(`apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: { name: svc-${i}-v${v}, namespace: ${ns} }
spec:
  address: ${addr}
  labels: { app: svc-${i}, version: v${v} }
  serviceAccount: svc-${i}
  ports: { http: ${port} }
`);
    }
    const errors = i === 0 ? 5 + drSalt : 5;
    dr.push(`apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: { name: svc-${i}, namespace: ${ns} }
spec:
  host: ${host}
  trafficPolicy:
    tls: { mode: ISTIO_MUTUAL }
    outlierDetection: { consecutive5xxErrors: ${errors}, interval: 10s, baseEjectionTime: 30s }
  subsets:
  - { name: v1, labels: { version: v1 } }
  - { name: v2, labels: { version: v2 } }
`);
    if (i % 2 === 0) {
      vs.push(`apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: { name: svc-${i}, namespace: ${ns} }
spec:
  hosts: [${host}]
  http:
  - timeout: 5s
    retries: { attempts: 3, perTryTimeout: 2s, retryOn: "5xx,reset" }
    route:
    - { destination: { host: ${host}, subset: v1 }, weight: 90 }
    - { destination: { host: ${host}, subset: v2 }, weight: 10 }
`);
    }
  }
  return new Map([
    ["bench-services.yaml", se.join("---\n")],
    ["bench-destination-rules.yaml", dr.join("---\n")],
    ["bench-virtual-services.yaml", vs.join("---\n")],
  ]);
}

/** The sample's routing.yaml with the reviews canary at `v1`/(100 − v1), and an optional label. */
export function routingYaml(v1Weight: number, label?: string): string {
  let text = readFileSync(join(ROOT, "config/samples/routing.yaml"), "utf8");
  const split = /weight: 90(\s+- destination:\s+host: reviews\s+subset: v3\s+)weight: 10/;
  if (!split.test(text)) {
    throw new Error("config/samples/routing.yaml: the reviews 90/10 split was not found");
  }
  text = text.replace(split, `weight: ${v1Weight}$1weight: ${100 - v1Weight}`);
  if (label !== undefined) {
    const meta = "  name: reviews\n  namespace: bookinfo\n";
    if (!text.includes(meta)) {
      throw new Error("config/samples/routing.yaml: the reviews metadata was not found");
    }
    text = text.replace(meta, `${meta}  labels:\n    bench-rev: "${label}"\n`);
  }
  return text;
}

/** Writes the sample plus the generated mesh into a new directory, after validating it. */
export function writeConfigDir(services: number): string {
  const dir = mkdtempSync(join(tmpdir(), "meshd-bench-xds-"));
  const samples = join(ROOT, "config/samples");
  for (const f of readdirSync(samples)) if (/\.ya?ml$/.test(f)) copyFileSync(join(samples, f), join(dir, f));
  const files = generatedMesh(services);
  files.set("routing.yaml", routingYaml(90, "0"));
  files.set("probe-dr.yaml", generatedMesh(services, 2).get("bench-destination-rules.yaml")!);
  files.set("probe-routing.yaml", routingYaml(80, "1"));
  for (const [name, text] of files) {
    const parsed = parseConfig(text, name);
    const problems = [
      ...parsed.diagnostics,
      ...parsed.resources.flatMap((r) => validateResource(r).filter((d) => d.severity === "error")),
    ];
    if (problems.length > 0) throw new Error(`generated ${name} is invalid: ${problems[0]!.message}`);
  }
  files.delete("probe-dr.yaml");
  files.delete("probe-routing.yaml");
  for (const [name, text] of files) writeFileSync(join(dir, name), text);
  return dir;
}

// ---------------------------------------------------------------- processes

/** CPU seconds (user + system, all threads) of a process. */
export function cpuSec(pid: number): number {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
    const f = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
    return (Number(f[11]) + Number(f[12])) / 100;
  } catch {
    return 0;
  }
}

/**
 * CPU seconds all processes on the machine spent in user and system mode (/proc/stat). Interrupt
 * and softirq time (loopback networking, charged to no process) and steal are left out.
 */
export function machineBusySec(): number {
  const f = readFileSync("/proc/stat", "utf8").split("\n")[0]!.trim().split(/\s+/).slice(1).map(Number);
  return (f[0]! + f[1]! + f[2]!) / 100;
}

/** A process's resident memory (VmRSS) or its peak (VmHWM), in KiB. */
export function rssKiB(pid: number, field: "VmRSS" | "VmHWM" = "VmRSS"): number {
  const status = readFileSync(`/proc/${pid}/status`, "utf8");
  return Number(new RegExp(`${field}:\\s+(\\d+)`).exec(status)?.[1] ?? 0);
}

/** Waits until `pid` has used at most one clock tick over `quietMs`, or `maxMs` passed. */
export async function idle(pid: number, quietMs = 300, maxMs = 15_000): Promise<void> {
  const end = Date.now() + maxMs;
  let last = cpuSec(pid);
  while (Date.now() < end) {
    await Bun.sleep(quietMs);
    const c = cpuSec(pid);
    if (c - last <= 0.011) return;
    last = c;
  }
}

/** One JSON line a child process printed. */
export type Event = Record<string, unknown> & { ev: string };

/** A child speaking JSON lines on stdin/stdout. */
export interface Child {
  readonly proc: Subprocess<"pipe", "pipe", "pipe">;
  send(cmd: Record<string, unknown>): void;
  /** The first not yet taken event matching `pred`, waiting up to `timeoutMs`. */
  take(pred: (ev: Event) => boolean, timeoutMs: number, what: string): Promise<Event>;
  stop(): Promise<void>;
}

function spawnChild(cmd: string[], name: string): Child {
  const proc = Bun.spawn(cmd, { cwd: ROOT, stdin: "pipe", stdout: "pipe", stderr: "pipe" });
  const events: Event[] = [];
  let wake: (() => void) | undefined;
  let stderr = "";
  let exited = false;
  void proc.exited.then(() => {
    exited = true;
    wake?.();
  });
  void (async () => {
    for await (const chunk of proc.stderr) stderr = (stderr + new TextDecoder().decode(chunk)).slice(-4000);
  })();
  void (async () => {
    const dec = new TextDecoder();
    let buf = "";
    for await (const chunk of proc.stdout) {
      buf += dec.decode(chunk, { stream: true });
      let nl: number;
      while ((nl = buf.indexOf("\n")) >= 0) {
        const line = buf.slice(0, nl);
        buf = buf.slice(nl + 1);
        if (line.trim()) events.push(JSON.parse(line) as Event);
      }
      wake?.();
    }
  })();
  return {
    proc,
    send(cmd) {
      proc.stdin.write(JSON.stringify(cmd) + "\n");
      proc.stdin.flush();
    },
    async take(pred, timeoutMs, what) {
      const end = Date.now() + timeoutMs;
      for (;;) {
        const i = events.findIndex(pred);
        if (i >= 0) return events.splice(i, 1)[0]!;
        const left = end - Date.now();
        if (left <= 0 || exited) {
          throw new Error(
            `${name}: ${exited ? `exited (${proc.exitCode})` : `no ${what} within ${timeoutMs} ms`}${
              stderr ? `; stderr: ${stderr.slice(-1500)}` : ""
            }`,
          );
        }
        let timer: ReturnType<typeof setTimeout> | undefined;
        await new Promise<void>((r) => {
          wake = r;
          timer = setTimeout(r, Math.min(left, 1000));
        });
        clearTimeout(timer);
      }
    },
    async stop() {
      if (exited) return;
      try {
        proc.stdin.write(JSON.stringify({ cmd: "stop" }) + "\n");
        proc.stdin.flush();
      } catch {
        // already gone
      }
      const t = setTimeout(() => proc.kill("SIGKILL"), 3000);
      await proc.exited;
      clearTimeout(t);
    },
  };
}

/** A running meshd. */
interface Meshd {
  readonly proc: Subprocess<"ignore", "ignore", "pipe">;
  readonly grpcAddr: string;
  readonly adminAddr: string;
  readonly warnings: string[];
  metrics(): Promise<Map<string, number>>;
  stop(): Promise<void>;
}

async function startMeshd(configDir: string, dataDir: string, cpuProfDir?: string): Promise<Meshd> {
  const prof = cpuProfDir ? ["--cpu-prof", "--cpu-prof-md", `--cpu-prof-dir=${cpuProfDir}`] : [];
  const proc = Bun.spawn(
    [
      BUN,
      ...prof,
      join(ROOT, "main.ts"),
      "serve",
      "--modules=pilot",
      "--grpc-addr=127.0.0.1:0",
      "--admin-addr=127.0.0.1:0",
      "--webhook-addr=127.0.0.1:0",
      "--log-format=json",
      "--shutdown-grace=1s",
      `--config-dir=${configDir}`,
      `--data-dir=${dataDir}`,
    ],
    { cwd: ROOT, stdin: "ignore", stdout: "ignore", stderr: "pipe" },
  );
  const warnings: string[] = [];
  let grpcAddr = "";
  let adminAddr = "";
  let tail = "";
  const listening = (async () => {
    const dec = new TextDecoder();
    let buf = "";
    for await (const chunk of proc.stderr) {
      buf += dec.decode(chunk, { stream: true });
      let nl: number;
      while ((nl = buf.indexOf("\n")) >= 0) {
        const line = buf.slice(0, nl);
        buf = buf.slice(nl + 1);
        tail = (tail + line + "\n").slice(-3000);
        if (line.includes('"level":"warn"') || line.includes('"level":"error"')) {
          if (warnings.length < 10) warnings.push(line.slice(0, 400));
        }
        if (!grpcAddr || !adminAddr) {
          const m = /"msg":"(gRPC|admin) server listening".*?"addr":"([^"]+)"/.exec(line);
          if (m?.[1] === "gRPC") grpcAddr = m[2]!;
          if (m?.[1] === "admin") adminAddr = m[2]!;
        }
      }
    }
  })();
  const end = Date.now() + 30_000;
  while ((!grpcAddr || !adminAddr) && Date.now() < end && proc.exitCode === null) await Bun.sleep(20);
  if (!grpcAddr || !adminAddr) {
    proc.kill("SIGKILL");
    throw new Error(`meshd did not listen within 30 s:\n${tail}`);
  }
  let ready = false;
  while (!ready && Date.now() < end) {
    ready = await fetch(`http://${adminAddr}/healthz/ready`).then((r) => r.status === 200, () => false);
    if (!ready) await Bun.sleep(50);
  }
  if (!ready) {
    proc.kill("SIGKILL");
    throw new Error(`meshd was not ready within 30 s:\n${tail}`);
  }
  return {
    proc,
    grpcAddr,
    adminAddr,
    warnings,
    metrics: () => readMetrics(`http://${adminAddr}/metrics`),
    async stop() {
      proc.kill("SIGTERM");
      const t = setTimeout(() => proc.kill("SIGKILL"), 15_000);
      await proc.exited;
      clearTimeout(t);
      await listening.catch(() => {});
    },
  };
}

/** A Prometheus text page as a map from series (name and labels as written) to value. */
export async function readMetrics(url: string): Promise<Map<string, number>> {
  const text = await (await fetch(url)).text();
  const out = new Map<string, number>();
  for (const line of text.split("\n")) {
    if (line.startsWith("#") || !line) continue;
    const sp = line.lastIndexOf(" ");
    out.set(line.slice(0, sp), Number(line.slice(sp + 1)));
  }
  return out;
}

/** pilot_xds_pushes by type. */
function pushesOf(m: Map<string, number>): Record<string, number> {
  const out: Record<string, number> = {};
  for (const [k, v] of m) {
    const t = /^pilot_xds_pushes\{type="([^"]+)"\}$/.exec(k)?.[1];
    if (t) out[t] = v;
  }
  return out;
}

function diff(a: Record<string, number>, b: Record<string, number>): Record<string, number> {
  const out: Record<string, number> = {};
  for (const k of new Set([...Object.keys(a), ...Object.keys(b)])) {
    const d = (b[k] ?? 0) - (a[k] ?? 0);
    if (d) out[k] = d;
  }
  return out;
}

/** Load-generator processes sharing `total` sidecars. */
export interface Clients {
  readonly children: Child[];
  /** Starts every sidecar against `addr` (`extra` joins the start command); returns the time. */
  start(addr: string, extra?: Record<string, unknown>): number;
  cpuSec(): number;
  /** Waits for one event per child; returns them. */
  all(ev: string, timeoutMs: number, id?: string): Promise<Event[]>;
  stop(): Promise<void>;
}

/** The command that runs a load generator under `runtime` (bundled into `bundleDir` for Node). */
export function clientCommand(runtime: Runtime, bundleDir: string): string[] {
  if (runtime === "bun") return [BUN, join(ROOT, "bench/xds_client.ts")];
  return ["node", bundle("xds_client", bundleDir)];
}

/** Bundles bench/NAME.ts for Node into `dir` (once); returns the file. */
function bundle(name: string, dir: string): string {
  const out = join(dir, `${name}.mjs`);
  try {
    readFileSync(out);
    return out;
  } catch {
    // not built yet
  }
  const res = Bun.spawnSync(
    [BUN, "build", join(ROOT, `bench/${name}.ts`), "--target=node", "--format=esm", "--outfile", out],
    { cwd: ROOT, stdout: "pipe", stderr: "pipe" },
  );
  if (res.exitCode !== 0) throw new Error(`bundling bench/${name}.ts failed: ${res.stderr.toString()}`);
  return out;
}

/** Starts `procs` load generators sharing `total` sidecars, `perConn` streams per connection. */
export function spawnClients(total: number, procs: number, cmd: string[], perConn: number): Clients {
  const children: Child[] = [];
  const counts: number[] = [];
  for (let p = 0; p < procs; p++) {
    counts.push(Math.floor(total / procs) + (p < total % procs ? 1 : 0));
    children.push(spawnChild(cmd, `load generator ${p}`));
  }
  return {
    children,
    start(addr, extra = {}) {
      const t = now();
      let offset = 0;
      children.forEach((c, p) => {
        c.send({
          cmd: "start",
          addr,
          count: counts[p],
          offset,
          perConn,
          windowMiB: 4,
          connWindowMiB: 64,
          namespace: "bench",
          apps: 10,
          ...extra,
        });
        offset += counts[p]!;
      });
      return t;
    },
    cpuSec: () => children.reduce((s, c) => s + cpuSec(c.proc.pid), 0),
    async all(ev, timeoutMs, id) {
      const want = (e: Event) => e.ev === ev && (id === undefined || e.id === id);
      try {
        return await Promise.all(children.map((c) => c.take(want, timeoutMs, ev)));
      } catch (err) {
        // Say how far each load generator got: streams opened, with full config, closed, errors.
        const status = await Promise.all(children.map(async (c) => {
          c.send({ cmd: "status" });
          return await c.take((e) => e.ev === "status", 2000, "status").catch(() => ({ ev: "no status" }));
        }));
        throw new Error(`${(err as Error).message}; load generators: ${JSON.stringify(status)}`);
      }
    },
    stop: () => Promise.all(children.map((c) => c.stop())).then(() => {}),
  };
}

let armSeq = 0;

interface Sampled {
  sample: ChangeSample;
  responses: Record<string, number>;
  bytes: number;
  meshdPushes: Record<string, number>;
  frames: string[];
}

/** Arms the clients for `type`, runs `write`, waits for convergence (unless `type` is undefined). */
async function measureChange(
  meshd: Meshd,
  clients: Clients,
  type: "RDS" | "CDS" | undefined,
  write: () => void,
  timeoutMs: number,
): Promise<Sampled> {
  const id = `c${++armSeq}`;
  for (const c of clients.children) c.send({ cmd: "arm", id, type: type ?? "RDS", mode: "changed" });
  await clients.all("armed", 10_000, id);
  const m0 = pushesOf(await meshd.metrics());
  await idle(meshd.proc.pid, 200);
  const cpu0 = cpuSec(meshd.proc.pid);
  const ccpu0 = clients.cpuSec();
  const busy0 = machineBusySec();
  const tWrite = now();
  write();
  let tFirst = 0;
  let tLast = 0;
  if (type) {
    const conv = await clients.all("converged", timeoutMs, id);
    tFirst = Math.min(...conv.map((e) => e.tFirstRecv as number));
    tLast = Math.max(...conv.map((e) => e.tLastAck as number));
  } else {
    // Galley's file debounce (100 ms quiet, 1 s at most) and pilot's push debounce, then idle.
    await Bun.sleep(1500);
  }
  await idle(meshd.proc.pid);
  const cpuSecUsed = cpuSec(meshd.proc.pid) - cpu0;
  const clientCpuSec = clients.cpuSec() - ccpu0;
  const otherCpuSec = machineBusySec() - busy0 - cpuSecUsed - clientCpuSec;
  const m1 = pushesOf(await meshd.metrics());
  for (const c of clients.children) c.send({ cmd: "stats", id });
  const stats = await clients.all("stats", 10_000, id);
  const responses: Record<string, number> = {};
  let bytes = 0;
  for (const s of stats) {
    for (const [k, v] of Object.entries(s.responses as Record<string, number>)) {
      responses[k] = (responses[k] ?? 0) + v;
    }
    bytes += s.bytes as number;
  }
  return {
    sample: {
      fromWriteMs: type ? tLast - tWrite : undefined,
      pushMs: type ? tLast - tFirst : undefined,
      firstMs: type ? tFirst - tWrite : undefined,
      cpuSec: cpuSecUsed,
      clientCpuSec,
      otherCpuSec,
    },
    responses,
    bytes,
    meshdPushes: diff(m0, m1),
    frames: stats[0]!.frames as string[],
  };
}

/** Repeats a change (`write(rep)` must produce new content each time); medians, and the first one's traffic. */
async function repeatChange(
  meshd: Meshd,
  clients: Clients,
  type: "RDS" | "CDS" | undefined,
  reps: number,
  write: (rep: number) => void,
  timeoutMs: number,
): Promise<ChangeResult> {
  const runs: Sampled[] = [];
  for (let rep = 1; rep <= reps; rep++) {
    runs.push(await measureChange(meshd, clients, type, () => write(rep), timeoutMs));
  }
  const samples = runs.map((r) => r.sample);
  const med = (
    f: (s: ChangeSample) => number | undefined,
  ) => (type ? median(samples.map((s) => f(s)!)) : undefined);
  return {
    type,
    fromWriteMs: med((s) => s.fromWriteMs),
    pushMs: med((s) => s.pushMs),
    firstMs: med((s) => s.firstMs),
    cpuSec: median(samples.map((s) => s.cpuSec)),
    clientCpuSec: median(samples.map((s) => s.clientCpuSec)),
    otherCpuSec: median(samples.map((s) => s.otherCpuSec)),
    samples,
    responses: runs[0]!.responses,
    bytes: runs[0]!.bytes,
    meshdPushes: runs[0]!.meshdPushes,
    frames: runs[0]!.frames,
  };
}

/** The raw floor: the recorded frames of each push written to N streams by a bare server. */
async function measureRaw(
  runtime: Runtime,
  n: number,
  pushes: Record<string, string[]>,
  opts: Required<Pick<XdsBenchOptions, "perConn" | "clientProcs" | "reps">> & {
    clientCmd: string[];
    bundleDir: string;
  },
): Promise<RawResult> {
  const cmd = runtime === "bun"
    ? [BUN, join(ROOT, "bench/xds_raw_server.ts")]
    : ["node", bundle("xds_raw_server", opts.bundleDir)];
  const server = spawnChild(cmd, `raw server (${runtime})`);
  const clients = spawnClients(n, opts.clientProcs, opts.clientCmd, opts.perConn);
  try {
    const { addr } = await server.take((e) => e.ev === "listening", 10_000, "listening");
    clients.start(addr as string);
    await clients.all("opened", 60_000 + n * 10);
    await idle(server.proc.pid);
    const out: Record<string, RawPush> = {};
    for (const [type, frames] of Object.entries(pushes)) {
      if (frames.length === 0) continue;
      const samples: RawPush[] = [];
      // One warm-up push (the clients subscribe EDS/RDS on their first CDS/LDS), then `reps`.
      for (let rep = 0; rep <= opts.reps; rep++) {
        const id = `r${++armSeq}`;
        for (const c of clients.children) c.send({ cmd: "arm", id, type, mode: "any" });
        await clients.all("armed", 10_000, id);
        const s0 = cpuSec(server.proc.pid);
        const c0 = clients.cpuSec();
        server.send({ cmd: "push", frames });
        const pushed = await server.take((e) => e.ev === "pushed", 60_000, "pushed");
        const conv = await clients.all("converged", 60_000, id);
        const tLast = Math.max(...conv.map((e) => e.tLastAck as number));
        await idle(server.proc.pid, 200);
        if (rep > 0) {
          samples.push({
            ms: tLast - (pushed.t0 as number),
            serverCpuSec: cpuSec(server.proc.pid) - s0,
            clientCpuSec: clients.cpuSec() - c0,
          });
        }
      }
      out[type] = {
        ms: median(samples.map((x) => x.ms)),
        serverCpuSec: median(samples.map((x) => x.serverCpuSec)),
        clientCpuSec: median(samples.map((x) => x.clientCpuSec)),
      };
    }
    return { runtime, pushes: out };
  } finally {
    await clients.stop();
    await server.stop();
  }
}

/** The median (the upper one of an even count). */
export function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)] ?? NaN;
}

/** Runs the scenario for one N. */
async function runScale(n: number, o: Resolved, bundleDir: string): Promise<XdsScaleResult> {
  const log = o.log;
  const configDir = writeConfigDir(o.services);
  const dataDir = mkdtempSync(join(tmpdir(), "meshd-bench-xds-data-"));
  const clientCmd = clientCommand(o.clientRuntime, bundleDir);
  let meshd: Meshd | undefined;
  let clients: Clients | undefined;
  try {
    if (o.cpuProfDir) mkdirSync(o.cpuProfDir, { recursive: true });
    meshd = await startMeshd(configDir, dataDir, o.cpuProfDir);
    const pid = meshd.proc.pid;
    await Bun.sleep(500);
    await idle(pid);
    const idle0 = cpuSec(pid);
    await Bun.sleep(2000);
    const idleCpuPerSec = (cpuSec(pid) - idle0) / 2;
    const rssBeforeKiB = rssKiB(pid);
    clients = spawnClients(n, o.clientProcs, clientCmd, o.perConn);
    await Bun.sleep(300); // let the load generators load
    const cpu0 = cpuSec(pid);
    const ccpu0 = clients.cpuSec();
    const busy0 = machineBusySec();
    log(`  ${n} clients: connecting`);
    const tStart = clients.start(meshd.grpcAddr);
    const full = await clients.all("full", 60_000 + n * 20);
    const fullConfigMs = Math.max(...full.map((e) => e.t as number)) - tStart;
    await idle(pid);
    const connectCpuSec = cpuSec(pid) - cpu0;
    const connectClientCpuSec = clients.cpuSec() - ccpu0;
    const connectOtherCpuSec = machineBusySec() - busy0 - connectCpuSec - connectClientCpuSec;
    // Bun gives memory freed after the connection burst back to the OS about 10 s later.
    await Bun.sleep(o.settleSec * 1000);
    const rssAfterKiB = rssKiB(pid);
    const rssPeakKiB = rssKiB(pid, "VmHWM");
    const t0 = performance.now();
    const meshdConnected = (await meshd.metrics()).get("pilot_xds_connected") ?? NaN;
    const metricsScrapeMs = performance.now() - t0;
    log(
      `  ${n} clients: full config in ${fullConfigMs.toFixed(0)} ms, RSS ${
        (rssAfterKiB / 1024).toFixed(0)
      } MiB; route change`,
    );
    const timeout = 60_000 + n * 10;
    const reviewsWeight = (rep: number) => 90 - 10 * rep;
    const route = await repeatChange(meshd, clients, "RDS", o.changeReps, (rep) => {
      writeFileSync(join(configDir, "routing.yaml"), routingYaml(reviewsWeight(rep), "0"));
    }, timeout);
    log(`  ${n} clients: route change ACKed in ${route.fromWriteMs!.toFixed(0)} ms; cluster change`);
    const cluster = await repeatChange(meshd, clients, "CDS", o.changeReps, (rep) => {
      const dr = generatedMesh(o.services, rep).get("bench-destination-rules.yaml")!;
      writeFileSync(join(configDir, "bench-destination-rules.yaml"), dr);
    }, timeout);
    log(`  ${n} clients: cluster change ACKed in ${cluster.fromWriteMs!.toFixed(0)} ms; no-op change`);
    const noop = await repeatChange(meshd, clients, undefined, o.changeReps, (rep) => {
      writeFileSync(join(configDir, "routing.yaml"), routingYaml(reviewsWeight(o.changeReps), String(rep)));
    }, timeout);
    await clients.stop();
    clients = undefined;
    const warnings = meshd.warnings;
    await meshd.stop();
    meshd = undefined;
    const raw: RawResult[] = [];
    for (const runtime of o.rawRuntimes) {
      log(`  ${n} clients: raw floor under ${runtime}`);
      const pushes = { RDS: route.frames, CDS: cluster.frames };
      const rawOpts = { perConn: o.perConn, clientProcs: o.clientProcs, reps: o.reps, clientCmd, bundleDir };
      raw.push(await measureRaw(runtime, n, pushes, rawOpts));
    }
    return {
      clients: n,
      fullConfigMs,
      rssBeforeKiB,
      rssAfterKiB,
      rssPeakKiB,
      rssPerProxyBytes: ((rssAfterKiB - rssBeforeKiB) * 1024) / n,
      idleCpuPerSec,
      connectCpuSec,
      connectClientCpuSec,
      connectOtherCpuSec,
      meshdConnected,
      metricsScrapeMs,
      route,
      cluster,
      noop,
      raw,
      meshdWarnings: warnings,
    };
  } finally {
    await clients?.stop();
    await meshd?.stop();
    rmSync(configDir, { recursive: true, force: true });
    rmSync(dataDir, { recursive: true, force: true });
  }
}

type Resolved = Required<Omit<XdsBenchOptions, "cpuProfDir">> & { cpuProfDir?: string };

/** Runs every scale in turn. */
export async function runXdsBench(opts: XdsBenchOptions): Promise<XdsScaleResult[]> {
  const o = {
    services: 50,
    perConn: 100,
    clientRuntime: "node" as Runtime,
    clientProcs: 1,
    rawRuntimes: ["bun", "node"] as Runtime[],
    reps: 3,
    changeReps: 3,
    settleSec: 15,
    log: () => {},
    ...opts,
  };
  const bundleDir = mkdtempSync(join(tmpdir(), "meshd-bench-xds-bundle-"));
  try {
    const out: XdsScaleResult[] = [];
    for (const n of o.clients) out.push(await runScale(n, o, bundleDir));
    return out;
  } finally {
    rmSync(bundleDir, { recursive: true, force: true });
  }
}

// ---------------------------------------------------------------- report

const ms = (x: number | undefined) => (x === undefined || Number.isNaN(x) ? "-" : `${x.toFixed(0)} ms`);
const kb = (bytes: number) => `${(bytes / 1000).toFixed(1)} KB`;
const sec = (x: number | undefined) => (x === undefined || Number.isNaN(x) ? "-" : `${x.toFixed(2)} s`);
const times = (
  a: number | undefined,
  b: number | undefined,
) => (a === undefined || !b ? "-" : `${(a / b).toFixed(1)}×`);
const counts = (r: Record<string, number>) =>
  Object.keys(r).length === 0 ? "none" : Object.entries(r).sort().map(([k, v]) => `${k} ${v}`).join(", ");

/** The results as Markdown tables plus detail lines. */
export function formatResults(rs: XdsScaleResult[]): string {
  const raw = (r: XdsScaleResult, rt: Runtime, t: string) => r.raw.find((x) => x.runtime === rt)?.pushes[t];
  const changeTable = (title: string, pick: (r: XdsScaleResult) => ChangeResult, t: "RDS" | "CDS") => [
    `| ${title} | from write | first client | push part | raw floor, Bun (Node) | push / raw | meshd CPU | raw server CPU, Bun (Node) | CPU / raw CPU |`,
    "| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ...rs.map((r) => {
      const c = pick(r);
      const b = raw(r, "bun", t);
      const nd = raw(r, "node", t);
      return `| ${r.clients.toLocaleString("en")} | ${ms(c.fromWriteMs)} | ${ms(c.firstMs)} | ${
        ms(c.pushMs)
      } | ${ms(b?.ms)} (${ms(nd?.ms)}) | ${times(c.pushMs, b?.ms)} | ${sec(c.cpuSec)} | ${
        sec(b?.serverCpuSec)
      } (${sec(nd?.serverCpuSec)}) | ${times(c.cpuSec, b?.serverCpuSec)} |`;
    }),
  ];
  const lines = [
    "| proxies | full config | RSS / proxy (target ≤ 50 KB) | route change ACKed by all, from write (target ≤ 1 s) | meshd CPU per push | raw floor (Bun) | push part / raw |",
    "| ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ...rs.map((r) =>
      `| ${r.clients.toLocaleString("en")} | ${ms(r.fullConfigMs)} | ${kb(r.rssPerProxyBytes)} | ${
        ms(r.route.fromWriteMs)
      } | ${sec(r.route.cpuSec)} | ${ms(raw(r, "bun", "RDS")?.ms)} | ${
        times(r.route.pushMs, raw(r, "bun", "RDS")?.ms)
      } |`
    ),
    "",
    ...changeTable("route change (RDS)", (r) => r.route, "RDS"),
    "",
    ...changeTable("cluster change (CDS)", (r) => r.cluster, "CDS"),
    "",
  ];
  for (const r of rs) {
    const cpu = (c: ChangeResult) =>
      `meshd CPU ${sec(c.cpuSec)} (${((c.cpuSec / r.clients) * 1e6).toFixed(0)} µs/proxy), load generator ${
        sec(c.clientCpuSec)
      }, other processes ${sec(c.otherCpuSec)}`;
    const change = (name: string, c: ChangeResult) =>
      `  ${name}: ${c.samples.map((s) => ms(s.fromWriteMs)).join(", ")} from write; responses ${
        counts(c.responses)
      } (${kb(c.bytes)}); meshd pushes ${counts(c.meshdPushes)}; ${cpu(c)}`;
    const mib = (k: number) => `${(k / 1024).toFixed(1)} MiB`;
    lines.push(
      `${r.clients} proxies: meshd reports ${r.meshdConnected} connected; RSS ${mib(r.rssBeforeKiB)} → ${
        mib(r.rssAfterKiB)
      } (peak ${mib(r.rssPeakKiB)}); idle CPU ${(r.idleCpuPerSec * 100).toFixed(1)} %; connect: meshd CPU ${
        sec(r.connectCpuSec)
      }, load generator ${sec(r.connectClientCpuSec)}, other processes ${
        sec(r.connectOtherCpuSec)
      }; one GET /metrics ${ms(r.metricsScrapeMs)}`,
      change("route change", r.route),
      change("cluster change", r.cluster),
      `  no-op change (a metadata label): responses ${counts(r.noop.responses)}; meshd pushes ${
        counts(r.noop.meshdPushes)
      }; ${cpu(r.noop)}`,
      ...r.raw.map((x) =>
        `  raw floor (${x.runtime}): ${
          Object.entries(x.pushes).map(([t, p]) =>
            `${t} ${ms(p.ms)} (server CPU ${sec(p.serverCpuSec)}, load generator ${sec(p.clientCpuSec)})`
          ).join("; ")
        }`
      ),
      ...(r.meshdWarnings.length ? [`  meshd warnings: ${r.meshdWarnings.join(" | ")}`] : []),
    );
  }
  const big = rs.find((r) => r.clients >= 10_000);
  if (big) {
    const t = big.route.fromWriteMs ?? Infinity;
    lines.push(
      "",
      `targets at ${big.clients} proxies: RSS/proxy ${kb(big.rssPerProxyBytes)} vs 50 KB (${
        big.rssPerProxyBytes <= 50_000 ? "met" : `missed by ${(big.rssPerProxyBytes / 50_000).toFixed(1)}×`
      }); one-service change ${ms(t)} vs 1 s (${t <= 1000 ? "met" : `missed by ${(t / 1000).toFixed(1)}×`})`,
    );
  }
  return lines.join("\n");
}

if (import.meta.main) {
  const args = benchArgs();
  const arg = args.string;
  const list = args.list;
  const opts: XdsBenchOptions = {
    clients: list("--clients")?.map(Number) ?? [1000, 5000, 10_000],
    services: Number(arg("--services") ?? 50),
    perConn: Number(arg("--per-conn") ?? 100),
    clientRuntime: (arg("--client-runtime") ?? "node") as Runtime,
    clientProcs: Number(arg("--client-procs") ?? 1),
    rawRuntimes: (list("--raw") ?? ["bun", "node"]) as Runtime[],
    reps: Number(arg("--reps") ?? 3),
    changeReps: Number(arg("--changes") ?? 3),
    settleSec: Number(arg("--settle") ?? 15),
    cpuProfDir: arg("--cpu-prof"),
    log: (l) => console.error(l),
  };
  console.error(`bun ${Bun.version}, node ${Bun.spawnSync(["node", "--version"]).stdout.toString().trim()}`);
  const rs = await runXdsBench(opts);
  console.log(formatResults(rs));
  if (args.flag("--json")) {
    const noFrames = (c: ChangeResult) => ({ ...c, frames: c.frames.length });
    const plain = rs.map((r) => ({
      ...r,
      route: noFrames(r.route),
      cluster: noFrames(r.cluster),
      noop: noFrames(r.noop),
    }));
    console.log(JSON.stringify(plain, null, 2));
  }
}
