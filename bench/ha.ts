/**
 * High-availability benchmark: `--replicas` meshd replicas on a real three-member etcd cluster,
 * `--proxies` simulated Envoy sidecars spread evenly over them.
 *
 * Usage: bun bench/ha.ts [--proxies 10000] [--replicas 3] [--services 50] [--per-conn 100]
 *          [--client-runtime c|node|bun] [--client-procs 1] [--jitter 500] [--changes 3]
 *          [--settle 10] [--push-debounce 100ms] [--cpu-prof DIR] [--json]
 *
 * Setup. etcd: Debian's etcd-server, three members on loopback (tests/store/_etcd.ts, the fixture
 * the store's tests use, imported as bench/mixer.ts imports its test harnesses). Config: the mesh
 * of bench/xds.ts (bookinfo plus `--services` generated services), taken into etcd with
 * `meshd config import`. Replicas: `bun main.ts serve --modules=galley,pilot --store etcd://...`,
 * each on its own loopback ports. Load: simulated sidecars in their own process, by default
 * bench/loadgen/xds_load.c (C on libnghttp2, built with cc once per source version, so that the
 * load generator leaves the cores to the replicas), or bench/xds.ts's bench/xds_client.ts under
 * Node or Bun (`--client-runtime node|bun`); both speak the same protocol and wire behaviour, in
 * failover mode: sidecar I starts on replica I mod R, knows every replica's address, and on a
 * broken stream waits a random time below `--jitter` ms and moves to the next address in its own
 * order (every other sidecar walks the other way, so a lost replica's sidecars spread over the
 * rest); each sidecar subscribes CDS, LDS, then EDS and RDS, and ACKs everything.
 *
 * Measured:
 * 1. full config at start: every sidecar has ACKed every subscribed type once;
 * 2. config write -> last ACK: `meshd config apply -f` of one changed VirtualService (the reviews
 *    canary, 90/10 -> 80/20, 70/30, ...) until every sidecar on every replica has ACKed the new RDS
 *    version. Counted from the commit (the first event seen by an `etcdctl watch` on the config
 *    prefix), and from the start of the apply command (which pays the CLI's own start);
 * 3. etcd reads and writes per config change: the change's delta of each member's /metrics
 *    (`etcd_mvcc_put_total`, `etcd_mvcc_range_total`, `etcd_mvcc_txn_total`,
 *    `etcd_debugging_mvcc_events_total` and the KV and Lease RPCs in `grpc_server_handled_total`),
 *    summed over the members (the benchmark's own watcher receives one event per change), next to the same counters over an
 *    idle window of the same length (what the replicas cost etcd while nothing changes);
 * 4. RSS per proxy on each replica: (VmRSS `--settle` s after full config − VmRSS before the
 *    sidecars connected) / its sidecars;
 * 5. failover: `kill -9` of replica 0, then the time from the kill to the last of its sidecars
 *    having ACKed every subscribed type on another replica, and where they went.
 *
 * Targets (printed beside the numbers): a config write ACKed by all within 1 s; a killed
 * replica's proxies fully re-served within 3 s.
 *
 * Everything binds to 127.0.0.1; every child (etcd members, replicas, load generators, the
 * watcher) is killed and every temporary directory removed on return, on failure, and on SIGINT or
 * SIGTERM.
 */
import { type Subprocess } from "bun";
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { loadavg, tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { type EtcdCluster, startEtcd } from "../tests/store/_etcd.ts";
import { eventually, type MeshdProcess, ROOT, startMeshd } from "../tests/e2e/_meshd.ts";
import { benchArgs } from "./_args.ts";
import { buildC } from "./loadgen/build_c.ts";
import {
  clientCommand,
  type Clients,
  cpuSec,
  type Event,
  idle,
  machineBusySec,
  median,
  readMetrics,
  routingYaml,
  rssKiB,
  type Runtime,
  spawnClients,
  writeConfigDir,
} from "./xds.ts";

const now = () => performance.timeOrigin + performance.now();
const PREFIX = "/bench";

/** Where the simulated sidecars run: the C load generator, or bench/xds_client.ts under Node or Bun. */
export type HaClientRuntime = Runtime | "c";

const CLIENT_RUNTIMES: readonly HaClientRuntime[] = ["c", "node", "bun"];

const XDS_LOAD_SOURCE = resolve(import.meta.dir, "loadgen/xds_load.c");

/**
 * Compiles bench/loadgen/xds_load.c (cc -O2, libnghttp2) into the temporary directory, once per
 * source version; returns the executable's path.
 */
export function buildXdsLoad(): Promise<string> {
  return buildC(
    XDS_LOAD_SOURCE,
    ["-lnghttp2", "-lm"],
    "needs cc and libnghttp2-dev: scripts/system_deps.sh installs them; or run with --client-runtime node",
  );
}

/** The command of one load-generator process under `runtime`. */
async function haClientCommand(runtime: HaClientRuntime, bundleDir: string): Promise<string[]> {
  return runtime === "c" ? [await buildXdsLoad()] : clientCommand(runtime, bundleDir);
}

/** Options of {@link runHaBench}. */
export interface HaBenchOptions {
  /** Simulated sidecars, spread evenly over the replicas. */
  proxies: number;
  replicas?: number;
  /** Generated ServiceEntries beside bookinfo (bench/xds.ts's mesh). */
  services?: number;
  /** Streams per HTTP/2 connection of the load generator. */
  perConn?: number;
  /** Where the sidecars run (default "c": bench/loadgen/xds_load.c). */
  clientRuntime?: HaClientRuntime;
  /** Load-generator processes (the sidecars are split among them). */
  clientProcs?: number;
  /** The longest random wait of a sidecar before it reconnects, in milliseconds. */
  jitterMs?: number;
  /** Config changes measured (at most 8); medians are reported. */
  changes?: number;
  /** Seconds to wait after full config before reading RSS (Bun returns freed memory lazily). */
  settleSec?: number;
  /** The replicas' `--push-debounce`. */
  pushDebounce?: string;
  /** Write the replicas' CPU profiles (bun --cpu-prof, markdown too) into this directory (not the killed one's). */
  cpuProfDir?: string;
  /** Progress lines. */
  log?: (line: string) => void;
}

/** etcd's counters over one window, summed over the members. */
export interface EtcdOps {
  /** etcd_mvcc_put_total: every member applies every write, so one put counts once per member. */
  puts: number;
  /** etcd_mvcc_range_total: reads served. */
  ranges: number;
  /** etcd_mvcc_txn_total. */
  txns: number;
  /** etcd_debugging_mvcc_events_total: watch events sent (one per watcher and changed key). */
  watchEvents: number;
  /** Unary KV and Lease RPCs answered (grpc_server_handled_total), by method. */
  rpcs: Record<string, number>;
}

/** One measured config change. */
export interface HaChange {
  /** From the commit (seen by a watcher) to the last sidecar's ACK. */
  fromCommitMs: number;
  /** From the start of `meshd config apply` to the last ACK. */
  fromApplyMs: number;
  /** The apply command's own run time (process start to exit). */
  applyMs: number;
  /** From the commit to the first sidecar receiving the new version. */
  firstMs: number;
  etcd: EtcdOps;
  /** meshd CPU seconds of each replica from the apply until idle. */
  replicaCpuSec: number[];
}

/** One replica's share. */
export interface HaReplica {
  grpcAddr: string;
  /** Streams it reports connected (pilot_xds_connected) once all have full config. */
  connected: number;
  rssBeforeKiB: number;
  rssAfterKiB: number;
  rssPeakKiB: number;
  rssPerProxyBytes: number;
  /** After the failover: streams connected and RSS (the killed replica: 0). */
  connectedAfterFailover: number;
  rssAfterFailoverKiB: number;
}

/** Where a phase's CPU went: each replica, the load generators, every other process on the machine. */
export interface PhaseCpu {
  replicaSec: number[];
  clientSec: number;
  otherSec: number;
}

/** Starts counting a phase's CPU; the returned function ends it. */
function phaseCpu(replicas: readonly MeshdProcess[], clients: Clients): () => PhaseCpu {
  const r0 = replicas.map((r) => cpuSec(r.proc.pid));
  const c0 = clients.cpuSec();
  const m0 = machineBusySec();
  return () => {
    const replicaSec = replicas.map((r, i) => cpuSec(r.proc.pid) - r0[i]!);
    const clientSec = clients.cpuSec() - c0;
    const otherSec = machineBusySec() - m0 - clientSec - replicaSec.reduce((a, b) => a + b, 0);
    return { replicaSec, clientSec, otherSec };
  };
}

/** Everything the benchmark measured. */
export interface HaResult {
  proxies: number;
  /** Where the sidecars ran, and in how many load-generator processes. */
  clientRuntime: HaClientRuntime;
  clientProcs: number;
  replicas: HaReplica[];
  fullConfigMs: number;
  /** CPU seconds while the sidecars connected, until the replicas were idle. */
  connectCpu: PhaseCpu;
  changes: HaChange[];
  /** Medians of the changes. */
  change: { fromCommitMs: number; fromApplyMs: number; applyMs: number; firstMs: number };
  /** etcd counters over an idle window as long as the median change's measurement. */
  idleEtcd: EtcdOps;
  idleWindowMs: number;
  failover: {
    /** Sidecars that were on the killed replica and moved. */
    moved: number;
    /** From the kill to the last moved sidecar having ACKed every subscribed type. */
    fullMs: number;
    /** From the kill to the first broken stream seen by a sidecar. */
    firstBreakMs: number;
    /** Sidecars per address afterwards. */
    byAddr: Record<string, number>;
    /** CPU seconds from the kill until the surviving replicas were idle. */
    cpu: PhaseCpu;
  };
  /** Load average (1, 5, 15 min) before and after the run. */
  loadBefore: number[];
  loadAfter: number[];
  /** Warnings and errors the replicas logged (first 10). */
  warnings: string[];
}

/** The reviews VirtualService alone from the sample's routing.yaml, canary at `v1`/(100 − v1). */
export function reviewsVirtualService(v1Weight: number): string {
  const doc = routingYaml(v1Weight).split(/^---\s*$/m).find((d) =>
    /kind: VirtualService/.test(d) && /\n {2}name: reviews\n/.test(d)
  );
  if (doc === undefined) {
    throw new Error("config/samples/routing.yaml: the reviews VirtualService was not found");
  }
  return doc.trim() + "\n";
}

const COUNTERS = [
  "etcd_mvcc_put_total",
  "etcd_mvcc_range_total",
  "etcd_mvcc_txn_total",
  "etcd_debugging_mvcc_events_total",
];

/** etcd's counters of every member. */
async function etcdCounters(etcd: EtcdCluster): Promise<Map<string, number>> {
  const out = new Map<string, number>();
  const pages = await Promise.all(
    etcd.members.filter((m) => m.running()).map((m) => readMetrics(`http://${m.addr}/metrics`)),
  );
  for (const page of pages) {
    for (const [series, v] of page) {
      const name = series.replace(/\{.*$/, "");
      let key: string | undefined;
      if (COUNTERS.includes(name)) {
        key = name;
      } else if (name === "grpc_server_handled_total") {
        const service = /grpc_service="etcdserverpb\.(KV|Lease)"/.exec(series)?.[1];
        const method = /grpc_method="([^"]+)"/.exec(series)?.[1];
        if (service && method) key = `rpc ${method}`;
      }
      if (key) out.set(key, (out.get(key) ?? 0) + v);
    }
  }
  return out;
}

function etcdDelta(a: Map<string, number>, b: Map<string, number>): EtcdOps {
  const d = (k: string) => (b.get(k) ?? 0) - (a.get(k) ?? 0);
  const rpcs: Record<string, number> = {};
  for (const k of b.keys()) {
    if (k.startsWith("rpc ") && d(k) !== 0) rpcs[k.slice(4)] = d(k);
  }
  return {
    puts: d("etcd_mvcc_put_total"),
    ranges: d("etcd_mvcc_range_total"),
    txns: d("etcd_mvcc_txn_total"),
    watchEvents: d("etcd_debugging_mvcc_events_total"),
    rpcs,
  };
}

/** `etcdctl watch` on the config prefix. */
interface Watcher {
  readonly proc: Subprocess;
  /** The time of its first output at or after `t` (a change committed). */
  after(t: number, timeoutMs: number): Promise<number>;
}

function startWatcher(etcd: EtcdCluster): Watcher {
  const proc = Bun.spawn([
    "/usr/bin/etcdctl",
    `--endpoints=${etcd.endpoints}`,
    "watch",
    "--prefix",
    `${PREFIX}/config/`,
  ], {
    stdin: "ignore",
    stdout: "pipe",
    stderr: "ignore",
    env: { ...process.env, ETCDCTL_API: "3" },
  });
  const seen: number[] = [];
  void (async () => {
    for await (const _ of proc.stdout) seen.push(now());
  })();
  return {
    proc,
    async after(t, timeoutMs) {
      let found: number | undefined;
      const ok = await eventually(() => (found = seen.find((x) => x >= t)) !== undefined, timeoutMs, 5);
      if (!ok) throw new Error(`etcdctl watch saw no change within ${timeoutMs} ms`);
      return found!;
    },
  };
}

/** Runs `meshd config ARGS` against the store; throws with its output when it fails. */
async function meshdConfig(store: string, args: readonly string[]): Promise<void> {
  const proc = Bun.spawn([process.execPath, join(ROOT, "main.ts"), "config", ...args], {
    cwd: ROOT,
    stdin: "ignore",
    stdout: "pipe",
    stderr: "pipe",
    env: { ...process.env, MESHD_STORE: store },
  });
  const [out, err, code] = await Promise.all([
    new Response(proc.stdout).text(),
    new Response(proc.stderr).text(),
    proc.exited,
  ]);
  if (code !== 0) {
    throw new Error(`meshd config ${args.join(" ")} failed (${code}): ${err.trim()} ${out.trim()}`);
  }
}

/**
 * Resources per file taken into etcd: `meshd config` writes a file in one transaction, and etcd
 * refuses a transaction of more than `--max-txn-ops` (default 128) operations.
 */
const TXN_DOCS = 100;

/** Splits every YAML file in `dir` holding more than `most` documents into files of at most `most`. */
function splitFiles(dir: string, most: number): void {
  for (const name of readdirSync(dir)) {
    const docs = readFileSync(join(dir, name), "utf8").split(/^---\s*$/m).filter((d) => d.trim() !== "");
    if (docs.length <= most) continue;
    rmSync(join(dir, name));
    for (let i = 0; i < docs.length; i += most) {
      writeFileSync(join(dir, `${i / most}-${name}`), docs.slice(i, i + most).join("---\n"));
    }
  }
}

const loadAverage = () => loadavg().map((x) => Number(x.toFixed(2)));

/** Runs the scenario once. */
export async function runHaBench(opts: HaBenchOptions): Promise<HaResult> {
  const o = {
    replicas: 3,
    services: 50,
    perConn: 100,
    clientRuntime: "c" as HaClientRuntime,
    clientProcs: 1,
    jitterMs: 500,
    changes: 3,
    settleSec: 10,
    pushDebounce: "100ms",
    log: () => {},
    ...opts,
  };
  if (o.replicas < 2) throw new Error(`--replicas ${o.replicas}: a failover needs at least 2`);
  if (o.changes < 1 || o.changes > 8) throw new Error(`--changes ${o.changes}: want 1 to 8`);
  if (!CLIENT_RUNTIMES.includes(o.clientRuntime)) {
    throw new Error(`--client-runtime ${o.clientRuntime}: want one of ${CLIENT_RUNTIMES.join(", ")}`);
  }
  const n = o.proxies;
  const log = o.log;
  const loadBefore = loadAverage();
  const root = mkdtempSync(join(tmpdir(), "meshd-bench-ha-"));
  let configDir: string | undefined;
  let etcd: EtcdCluster | undefined;
  let replicas: MeshdProcess[] = [];
  let clients: Clients | undefined;
  let watcher: Watcher | undefined;
  const cleanup = async () => {
    watcher?.proc.kill("SIGKILL");
    await clients?.stop();
    await Promise.all(replicas.map(async (r) => {
      if (r.proc.exitCode !== null || r.proc.signalCode !== null) return;
      r.proc.kill("SIGTERM");
      const t = setTimeout(() => r.proc.kill("SIGKILL"), 10_000);
      await r.proc.exited;
      clearTimeout(t);
    }));
    await etcd?.stop();
    if (configDir) rmSync(configDir, { recursive: true, force: true });
    rmSync(root, { recursive: true, force: true });
  };
  const onSignal = () => void cleanup().finally(() => process.exit(130));
  process.once("SIGINT", onSignal);
  process.once("SIGTERM", onSignal);
  try {
    log(`etcd: starting 3 members`);
    etcd = await startEtcd(3);
    const store = `etcd://${etcd.endpoints}${PREFIX}`;
    configDir = writeConfigDir(o.services);
    splitFiles(configDir, TXN_DOCS);
    await meshdConfig(store, ["import", configDir]);
    log(`replicas: starting ${o.replicas}`);
    const args = (i: number) => [
      "--modules=galley,pilot",
      `--store=${store}`,
      `--data-dir=${join(root, `data-${i}`)}`,
      `--push-debounce=${o.pushDebounce}`,
      "--shutdown-grace=1s",
    ];
    for (let i = 0; i < o.replicas; i++) mkdirSync(join(root, `data-${i}`));
    const prof = o.cpuProfDir ? ["--cpu-prof", "--cpu-prof-md", `--cpu-prof-dir=${o.cpuProfDir}`] : [];
    if (o.cpuProfDir) mkdirSync(o.cpuProfDir, { recursive: true });
    const command = [process.execPath, ...prof, join(ROOT, "main.ts")];
    const started = await Promise.allSettled(
      Array.from({ length: o.replicas }, (_, i) => startMeshd({ command, args: args(i), timeoutMs: 60_000 })),
    );
    // Those that started are stopped by the cleanup even when another did not.
    replicas = started.flatMap((x) => x.status === "fulfilled" ? [x.value] : []);
    const failed = started.find((x) => x.status === "rejected");
    if (failed) throw failed.reason;
    const ready = (r: MeshdProcess) =>
      fetch(`http://${r.adminAddr}/healthz/ready`).then((x) => x.status === 200, () => false);
    for (const r of replicas) {
      if (!await eventually(() => ready(r), 60_000, 100)) {
        throw new Error(`replica ${r.grpcAddr} was not ready within 60 s`);
      }
    }
    const metric = async (r: MeshdProcess, name: string) =>
      (await readMetrics(`http://${r.adminAddr}/metrics`)).get(name) ?? 0;
    await Promise.all(replicas.map((r) => idle(r.proc.pid)));
    const rssBefore = replicas.map((r) => rssKiB(r.proc.pid));

    const bundleDir = join(root, "bundle");
    mkdirSync(bundleDir);
    clients = spawnClients(n, o.clientProcs, await haClientCommand(o.clientRuntime, bundleDir), o.perConn);
    await Bun.sleep(300);
    const addrs = replicas.map((r) => r.grpcAddr);
    log(`${n} sidecars: connecting to ${addrs.join(", ")}`);
    const endConnect = phaseCpu(replicas, clients);
    const tStart = clients.start(addrs[0]!, { addrs, jitterMs: o.jitterMs });
    const full = await clients.all("full", 60_000 + n * 20);
    const fullConfigMs = Math.max(...full.map((e) => e.t as number)) - tStart;
    await Promise.all(replicas.map((r) => idle(r.proc.pid)));
    const connectCpu = endConnect();
    await Bun.sleep(o.settleSec * 1000);
    const connected = await Promise.all(replicas.map((r) => metric(r, "pilot_xds_connected")));
    const rssAfter = replicas.map((r) => rssKiB(r.proc.pid));
    const rssPeak = replicas.map((r) => rssKiB(r.proc.pid, "VmHWM"));
    log(`${n} sidecars: full config in ${fullConfigMs.toFixed(0)} ms; connected ${connected.join(", ")}`);

    const watch = startWatcher(etcd);
    watcher = watch;
    await Bun.sleep(500);
    const changes: HaChange[] = [];
    for (let rep = 1; rep <= o.changes; rep++) {
      const id = `ha${rep}`;
      for (const c of clients.children) c.send({ cmd: "arm", id, type: "RDS", mode: "changed" });
      await clients.all("armed", 10_000, id);
      const file = join(root, `reviews-${rep}.yaml`);
      writeFileSync(file, reviewsVirtualService(90 - 10 * rep));
      await Promise.all(replicas.map((r) => idle(r.proc.pid, 200)));
      const e0 = await etcdCounters(etcd);
      const cpu0 = replicas.map((r) => cpuSec(r.proc.pid));
      const tApply = now();
      const applied = meshdConfig(store, ["apply", "-f", file]).then(() => now());
      const tCommit = await watch.after(tApply, 30_000);
      const conv = await clients.all("converged", 60_000 + n * 10, id);
      const tApplied = await applied;
      const tFirst = Math.min(...conv.map((e) => e.tFirstRecv as number));
      const tLast = Math.max(...conv.map((e) => e.tLastAck as number));
      await Promise.all(replicas.map((r) => idle(r.proc.pid)));
      const e1 = await etcdCounters(etcd);
      changes.push({
        fromCommitMs: tLast - tCommit,
        fromApplyMs: tLast - tApply,
        applyMs: tApplied - tApply,
        firstMs: tFirst - tCommit,
        etcd: etcdDelta(e0, e1),
        replicaCpuSec: replicas.map((r, i) => cpuSec(r.proc.pid) - cpu0[i]!),
      });
      log(`change ${rep}: last ACK ${(tLast - tCommit).toFixed(0)} ms after the commit`);
    }
    const idleWindowMs = Math.max(1000, median(changes.map((c) => c.fromApplyMs)) + 1000);
    const i0 = await etcdCounters(etcd);
    await Bun.sleep(idleWindowMs);
    const idleEtcd = etcdDelta(i0, await etcdCounters(etcd));

    log(`failover: killing replica 0 (${addrs[0]})`);
    await Promise.all(replicas.map((r) => idle(r.proc.pid)));
    for (const c of clients.children) c.send({ cmd: "failover", id: "kill", addr: addrs[0] });
    await clients.all("armed", 10_000, "kill");
    const survivors = replicas.slice(1);
    const endFailover = phaseCpu(survivors, clients);
    const tKill = now();
    replicas[0]!.proc.kill("SIGKILL");
    const moved = await clients.all("failover", 60_000 + n * 20, "kill");
    await Promise.all(survivors.map((r) => idle(r.proc.pid)));
    const byAddr: Record<string, number> = {};
    for (const e of moved) {
      for (const [a, k] of Object.entries(e.byAddr as Record<string, number>)) {
        byAddr[a] = (byAddr[a] ?? 0) + k;
      }
    }
    const breaks = moved.map((e) => e.tFirstBreak as number).filter((t) => t > 0);
    const failover = {
      moved: moved.reduce((s, e) => s + (e.moved as number), 0),
      fullMs: Math.max(...moved.map((e: Event) => e.tLastFull as number)) - tKill,
      firstBreakMs: breaks.length ? Math.min(...breaks) - tKill : NaN,
      byAddr,
      cpu: endFailover(),
    };
    log(
      `failover: ${failover.moved} sidecars fully re-served ${failover.fullMs.toFixed(0)} ms after the kill`,
    );
    const connectedAfter = [0, ...await Promise.all(survivors.map((r) => metric(r, "pilot_xds_connected")))];
    const rssAfterFailover = [0, ...survivors.map((r) => rssKiB(r.proc.pid))];
    const warnings = replicas.flatMap((r) =>
      r.logs.filter((l) => l.level === "warn" || l.level === "error").map((l) =>
        `${r.grpcAddr}: ${JSON.stringify(l).slice(0, 300)}`
      )
    ).slice(0, 10);
    const med = (f: (c: HaChange) => number) => median(changes.map(f));
    return {
      proxies: n,
      clientRuntime: o.clientRuntime,
      clientProcs: o.clientProcs,
      replicas: replicas.map((r, i) => ({
        grpcAddr: r.grpcAddr,
        connected: connected[i]!,
        rssBeforeKiB: rssBefore[i]!,
        rssAfterKiB: rssAfter[i]!,
        rssPeakKiB: rssPeak[i]!,
        rssPerProxyBytes: connected[i]! > 0 ? ((rssAfter[i]! - rssBefore[i]!) * 1024) / connected[i]! : NaN,
        connectedAfterFailover: connectedAfter[i]!,
        rssAfterFailoverKiB: rssAfterFailover[i]!,
      })),
      fullConfigMs,
      connectCpu,
      changes,
      change: {
        fromCommitMs: med((c) => c.fromCommitMs),
        fromApplyMs: med((c) => c.fromApplyMs),
        applyMs: med((c) => c.applyMs),
        firstMs: med((c) => c.firstMs),
      },
      idleEtcd,
      idleWindowMs,
      failover,
      loadBefore,
      loadAfter: loadAverage(),
      warnings,
    };
  } finally {
    process.off("SIGINT", onSignal);
    process.off("SIGTERM", onSignal);
    await cleanup();
  }
}

// ---------------------------------------------------------------- report

const ms = (x: number) => (Number.isNaN(x) ? "-" : `${x.toFixed(0)} ms`);
const kb = (bytes: number) => (Number.isNaN(bytes) ? "-" : `${(bytes / 1000).toFixed(1)} KB`);
const ops = (e: EtcdOps) =>
  `puts ${e.puts}, ranges ${e.ranges}, txns ${e.txns}, watch events ${e.watchEvents}; RPCs ${
    Object.keys(e.rpcs).length
      ? Object.entries(e.rpcs).sort().map(([k, v]) => `${k} ${v}`).join(", ")
      : "none"
  }`;
const against = (x: number, target: number) =>
  `${(x / target).toFixed(2)}× the ${target / 1000} s target (${x <= target ? "met" : "missed"})`;

const cpu = (c: PhaseCpu) =>
  `CPU: replicas ${c.replicaSec.map((x) => x.toFixed(2)).join("/")} s, load generator ${
    c.clientSec.toFixed(2)
  } s, other processes ${c.otherSec.toFixed(2)} s`;

/** The results as a Markdown table plus detail lines. */
export function formatHaResults(r: HaResult): string {
  const lines = [
    `| measure (${r.proxies.toLocaleString("en")} proxies, ${r.replicas.length} replicas) | value | target |`,
    "| --- | --- | --- |",
    `| full config at start (all sidecars, all types ACKed) | ${ms(r.fullConfigMs)} | |`,
    `| config write → last ACK, from the commit (median of ${r.changes.length}) | ${
      ms(r.change.fromCommitMs)
    } | ${against(r.change.fromCommitMs, 1000)} |`,
    `| the same from the start of \`meshd config apply\` (the CLI alone: ${ms(r.change.applyMs)}) | ${
      ms(r.change.fromApplyMs)
    } | |`,
    `| replica killed → its ${r.failover.moved} proxies fully re-served elsewhere | ${
      ms(r.failover.fullMs)
    } | ${against(r.failover.fullMs, 3000)} |`,
    `| etcd per config change (summed over 3 members) | ${ops(r.changes[0]!.etcd)} | |`,
    `| etcd over an idle ${ms(r.idleWindowMs)} window | ${ops(r.idleEtcd)} | |`,
    ...r.replicas.map((x, i) =>
      `| replica ${i}: RSS per proxy (${x.connected} proxies) | ${kb(x.rssPerProxyBytes)} (${
        (x.rssBeforeKiB / 1024).toFixed(0)
      } → ${(x.rssAfterKiB / 1024).toFixed(0)} MiB, peak ${(x.rssPeakKiB / 1024).toFixed(0)} MiB) | |`
    ),
    "",
    `changes (from commit): ${r.changes.map((c) => ms(c.fromCommitMs)).join(", ")}; first sidecar saw it ${
      r.changes.map((c) => ms(c.firstMs)).join(", ")
    } after the commit; replica CPU per change ${
      r.changes.map((c) => c.replicaCpuSec.map((s) => s.toFixed(2)).join("/") + " s").join(", ")
    }`,
    `etcd per change: ${r.changes.map((c) => ops(c.etcd)).join(" | ")}`,
    `load generator: ${
      r.clientRuntime === "c" ? "bench/loadgen/xds_load.c" : `bench/xds_client.ts under ${r.clientRuntime}`
    }, ${r.clientProcs} process${r.clientProcs === 1 ? "" : "es"}`,
    `connect: ${cpu(r.connectCpu)}`,
    `failover: first break seen ${
      ms(r.failover.firstBreakMs)
    } after the kill; sidecars per address afterwards ${
      JSON.stringify(r.failover.byAddr)
    }; surviving replicas report ${
      r.replicas.slice(1).map((x) => x.connectedAfterFailover).join(" + ")
    } connected; ${cpu(r.failover.cpu)}; RSS after ${
      r.replicas.slice(1).map((x) => `${(x.rssAfterFailoverKiB / 1024).toFixed(0)} MiB`).join(", ")
    }`,
    `load average before ${r.loadBefore.join(" ")}, after ${r.loadAfter.join(" ")}`,
    ...(r.warnings.length ? [`replica warnings: ${r.warnings.join(" | ")}`] : []),
  ];
  return lines.join("\n");
}

if (import.meta.main) {
  const args = benchArgs();
  const r = await runHaBench({
    proxies: args.number("--proxies", 10_000),
    replicas: args.number("--replicas", 3),
    services: args.number("--services", 50),
    perConn: args.number("--per-conn", 100),
    clientRuntime: (args.string("--client-runtime") ?? "c") as HaClientRuntime,
    clientProcs: args.number("--client-procs", 1),
    jitterMs: args.number("--jitter", 500),
    changes: args.number("--changes", 3),
    settleSec: args.number("--settle", 10),
    pushDebounce: args.string("--push-debounce") ?? "100ms",
    cpuProfDir: args.string("--cpu-prof"),
    log: (l) => console.error(l),
  });
  console.log(formatHaResults(r));
  if (args.flag("--json")) console.log(JSON.stringify(r, null, 2));
}
