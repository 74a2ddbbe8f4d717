/**
 * Mixer benchmark: Check latency over loopback gRPC against a meshd process, the client cache's
 * hit cost, report ingestion with the prometheus adapter, and quota decisions per second with
 * memquota and redisquota (a real redis-server).
 *
 * Check latency is measured twice:
 * - server side, with an independent load generator (bench/loadgen/grpc_load.c, C on libnghttp2,
 *   its own process) at rising concurrency and paced at the target rate, each run next to the same
 *   run against the runtime's floor (bench/loadgen/unary_floor_server.ts: a bare node:http2 server
 *   on Bun answering every call with nothing), so the two share the machine's conditions;
 * - through the client library (grpc-js in the benchmark process, on the same cores), which is
 *   what a proxyless app pays on a cache miss.
 *
 * Usage: bun bench/mixer.ts [--seconds S] [--rate R]
 */
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { create, toBinary } from "@bufbuild/protobuf";
import { spawn } from "bun";
import { CheckRequestSchema } from "#gen/meshd/mixer/v1/mixer_pb.ts";
import { createMixerClient, encodeBag } from "../mod/mixer/client/mod.ts";
import { type GrpcLoadResult, runGrpcLoad } from "./loadgen/grpc_load.ts";
import { startMeshd } from "../tests/e2e/_meshd.ts";
import { coreHarness, docs, mixerYaml, startRedis } from "../tests/mixer/_harness.ts";
import { benchArgs } from "./_args.ts";

/** Options of {@link runMixerBench}. */
export interface MixerBenchOptions {
  /** Seconds each measured phase runs. */
  readonly seconds: number;
  /** Closed-loop concurrency levels for Check latency. */
  readonly concurrency: readonly number[];
  /** Paced Check rate (checks/s) for the latency target. */
  readonly rate: number;
  /** Entries per Report call. */
  readonly reportBatch: number;
}

/** Latency percentiles of one phase. */
export interface LatencyResult {
  readonly concurrency: number;
  readonly checksPerSec: number;
  readonly p50Ms: number;
  readonly p99Ms: number;
}

/** One server-side load run against meshd and, next to it, against the runtime's floor. */
export interface ServerLoadResult {
  /** Closed loop: calls in flight; or undefined for the paced run. */
  readonly inflight?: number;
  /** Paced run: calls started per second. */
  readonly rate?: number;
  readonly meshd: GrpcLoadResult;
  readonly floor: GrpcLoadResult;
}

/** Everything the benchmark measured. */
export interface MixerBenchResult {
  /** Independent load generator: closed loops at `concurrency`, then paced at `rate`. */
  readonly server: readonly ServerLoadResult[];
  readonly closedLoop: readonly LatencyResult[];
  readonly paced: LatencyResult & { readonly targetRate: number };
  /** Server-side decision time (inside meshd, from its histogram): bucket bounds holding p50 and p99. */
  readonly serverP50Ms: number;
  readonly serverP99Ms: number;
  readonly cacheHitUs: number;
  readonly cachedCheckPerSec: number;
  readonly reportEntriesPerSec: number;
  readonly memquotaPerSec: number;
  readonly redisquotaPerSec: number;
}

const CONFIG = docs(
  mixerYaml("handler", "users", {
    compiledAdapter: "listchecker",
    params: { overrides: ["alice", "bob"], cachingInterval: "1m", cachingUseCount: 1_000_000_000 },
  }),
  mixerYaml("instance", "user", {
    compiledTemplate: "listentry",
    params: { value: 'request.headers["x-user"]' },
  }),
  mixerYaml("rule", "users", {
    match: 'request.path.startsWith("/shop.")',
    actions: [{ handler: "users", instances: ["user"] }],
  }),
  mixerYaml("handler", "prom", { compiledAdapter: "prometheus" }),
  mixerYaml("instance", "requestmetric", { compiledTemplate: "metric", params: { value: "1" } }),
  mixerYaml("rule", "telemetry", { actions: [{ handler: "prom", instances: ["requestmetric"] }] }),
);

const pct = (sorted: number[], p: number) =>
  sorted[Math.min(sorted.length - 1, Math.floor(p * sorted.length))] ?? 0;

function bag(i: number): Record<string, unknown> {
  return {
    "request.path": "/shop.Cart/Add",
    "request.headers": { "x-user": i % 2 === 0 ? "alice" : "bob", "x-request-id": String(i) },
    "source.workload.name": "frontend",
    "source.workload.namespace": "shop",
    "destination.service.host": "cart.shop.svc.cluster.local",
    "request.time": new Date(),
  };
}

/** Runs every scenario; `opts.seconds` bounds each phase. */
export async function runMixerBench(opts: MixerBenchOptions): Promise<MixerBenchResult> {
  const dir = mkdtempSync(join(tmpdir(), "meshd-bench-mixer-"));
  writeFileSync(join(dir, "mixer.yaml"), CONFIG);
  const meshd = await startMeshd({
    args: ["--modules=mixer", `--config-dir=${dir}`, "--mixer-default-valid-use-count=1000000000"],
  });
  const uncached = createMixerClient({ address: meshd.grpcAddr, cacheEntries: 0, failOpen: false });
  const floor = await startFloorServer();
  try {
    // Server side: the same calls from the independent generator, to meshd and to the floor.
    const bodies = join(dir, "check-requests.bin");
    writeFileSync(bodies, framedRequests(256));
    const server: ServerLoadResult[] = [];
    const loads: Array<{ inflight?: number; rate?: number }> = [
      ...opts.concurrency.map((inflight) => ({ inflight })),
      { rate: opts.rate },
    ];
    for (const load of loads) {
      const run = (addr: string) =>
        runGrpcLoad({ addr, path: CHECK_PATH, bodies, seconds: opts.seconds, ...load });
      const floorRun = await run(floor.addr);
      const meshdRun = await run(meshd.grpcAddr);
      server.push({ ...load, meshd: meshdRun, floor: floorRun });
    }

    for (let i = 0; i < 200; i++) await uncached.check(bag(i)); // warm-up: connection, JIT
    const closedLoop: LatencyResult[] = [];
    for (const c of opts.concurrency) {
      const lat: number[] = [];
      const end = performance.now() + opts.seconds * 1000;
      let n = 0;
      await Promise.all(
        Array.from({ length: c }, async () => {
          while (performance.now() < end) {
            const t0 = performance.now();
            const v = await uncached.check(bag(n++));
            if (!v.allowed) throw new Error(`check denied: ${v.message}`);
            lat.push(performance.now() - t0);
          }
        }),
      );
      lat.sort((a, b) => a - b);
      closedLoop.push({
        concurrency: c,
        checksPerSec: lat.length / opts.seconds,
        p50Ms: pct(lat, 0.5),
        p99Ms: pct(lat, 0.99),
      });
    }

    // Paced: start a check every 1/rate seconds, whatever the previous ones are doing.
    const paced: number[] = [];
    const total = Math.round(opts.rate * opts.seconds);
    const start = performance.now();
    const inflight: Promise<void>[] = [];
    let maxConcurrent = 0;
    let concurrent = 0;
    for (let i = 0; i < total; i++) {
      const due = start + (i * 1000) / opts.rate;
      const wait = due - performance.now();
      if (wait > 1) await Bun.sleep(wait);
      concurrent++;
      maxConcurrent = Math.max(maxConcurrent, concurrent);
      const t0 = performance.now();
      inflight.push(
        uncached.check(bag(i)).then(() => {
          paced.push(performance.now() - t0);
          concurrent--;
        }),
      );
    }
    await Promise.all(inflight);
    const pacedSec = (performance.now() - start) / 1000;
    paced.sort((a, b) => a - b);
    const decision = await serverDecisionTime(meshd.adminAddr);

    // Cache hits: the same decision, reused in-process.
    const cached = createMixerClient({ address: meshd.grpcAddr });
    await cached.check(bag(0));
    const hot = bag(0);
    const hits = 200_000;
    for (let i = 0; i < 10_000; i++) cached.tryCached(hot);
    const h0 = performance.now();
    for (let i = 0; i < hits; i++) if (!cached.tryCached(hot)) throw new Error("cache miss");
    const cacheHitUs = ((performance.now() - h0) * 1000) / hits;
    const c0 = performance.now();
    for (let i = 0; i < hits; i++) await cached.check(hot);
    const cachedCheckPerSec = hits / ((performance.now() - c0) / 1000);
    await cached.close();

    // Report ingestion through the prometheus adapter.
    const reporter = createMixerClient({
      address: meshd.grpcAddr,
      report: { maxEntries: opts.reportBatch, maxDelayMs: 5, maxPending: 1_000_000 },
    });
    const r0 = performance.now();
    let sent = 0;
    const rEnd = r0 + opts.seconds * 1000;
    while (performance.now() < rEnd) {
      for (let i = 0; i < opts.reportBatch * 4; i++) {
        reporter.report({
          ...bag(sent++),
          "response.code": 200,
          "response.duration": 3,
          "context.protocol": "grpc",
        });
      }
      await reporter.flush();
    }
    const reportEntriesPerSec = reporter.stats().reportsSent / ((performance.now() - r0) / 1000);
    await reporter.close();

    // Quota decisions in-process: memquota, and redisquota against a real redis-server.
    const memquotaPerSec = await quotaRate("memquota", "", opts.seconds);
    const redis = await startRedis();
    let redisquotaPerSec = 0;
    try {
      redisquotaPerSec = await quotaRate("redisquota", redis.url, opts.seconds);
    } finally {
      await redis.stop();
    }
    return {
      server,
      closedLoop,
      paced: {
        concurrency: maxConcurrent,
        checksPerSec: paced.length / pacedSec,
        p50Ms: pct(paced, 0.5),
        p99Ms: pct(paced, 0.99),
        targetRate: opts.rate,
      },
      serverP50Ms: decision.p50Ms,
      serverP99Ms: decision.p99Ms,
      cacheHitUs,
      cachedCheckPerSec,
      reportEntriesPerSec,
      memquotaPerSec,
      redisquotaPerSec,
    };
  } finally {
    floor.stop();
    await uncached.close();
    await meshd.stop();
    rmSync(dir, { recursive: true, force: true });
  }
}

const CHECK_PATH = "/meshd.mixer.v1.Mixer/Check";

/** `n` Check requests (the benchmark's bags), gRPC-framed back to back. */
function framedRequests(n: number): Uint8Array {
  const parts: Uint8Array[] = [];
  for (let i = 0; i < n; i++) {
    const msg = toBinary(CheckRequestSchema, create(CheckRequestSchema, { attributes: encodeBag(bag(i)) }));
    const framed = new Uint8Array(5 + msg.length);
    new DataView(framed.buffer).setUint32(1, msg.length);
    framed.set(msg, 5);
    parts.push(framed);
  }
  return Buffer.concat(parts);
}

/** Starts bench/loadgen/unary_floor_server.ts on this runtime. */
async function startFloorServer(): Promise<{ addr: string; stop: () => void }> {
  const p = spawn([process.execPath, join(import.meta.dir, "loadgen/unary_floor_server.ts")], {
    stdout: "pipe",
    stderr: "inherit",
  });
  const reader = p.stdout.getReader();
  let text = "";
  while (!text.includes("\n")) {
    const { value, done } = await reader.read();
    if (done) throw new Error("the floor server exited before listening");
    text += new TextDecoder().decode(value);
  }
  reader.releaseLock();
  const { addr } = JSON.parse(text.slice(0, text.indexOf("\n"))) as { addr: string };
  return { addr, stop: () => p.kill() };
}

/** Reads meshd's mixer_check_duration_seconds histogram: the bucket bounds that hold p50 and p99. */
async function serverDecisionTime(adminAddr: string): Promise<{ p50Ms: number; p99Ms: number }> {
  const text = await (await fetch(`http://${adminAddr}/metrics`)).text();
  const buckets = [...text.matchAll(/^mixer_check_duration_seconds_bucket\{le="([^"]+)"\} (\d+)/gm)].map((
    m,
  ) => ({
    le: m[1] === "+Inf" ? Infinity : Number(m[1]),
    n: Number(m[2]),
  }));
  const total = buckets[buckets.length - 1]?.n ?? 0;
  const at = (p: number) => (buckets.find((b) => b.n >= p * total)?.le ?? Infinity) * 1000;
  return { p50Ms: at(0.5), p99Ms: at(0.99) };
}

async function quotaRate(
  adapter: "memquota" | "redisquota",
  redisUrl: string,
  seconds: number,
): Promise<number> {
  const h = coreHarness();
  h.load(docs(
    mixerYaml("handler", "q", {
      compiledAdapter: adapter,
      params: {
        ...(adapter === "redisquota" ? { redisServerUrl: redisUrl } : {}),
        quotas: [{ name: "requestcount", maxAmount: 1_000_000_000, validDuration: "1h" }],
      },
    }),
    mixerYaml("instance", "requestcount", {
      compiledTemplate: "quota",
      params: { dimensions: { source: "source.workload.name" } },
    }),
    mixerYaml("rule", "quota", { actions: [{ handler: "q", instances: ["requestcount"] }] }),
  ));
  try {
    const end = performance.now() + seconds * 1000;
    const t0 = performance.now();
    let n = 0;
    await Promise.all(
      Array.from({ length: adapter === "redisquota" ? 64 : 1 }, async (_, w) => {
        const b = { "source.workload.name": `w${w % 8}` };
        while (performance.now() < end) {
          const q = await h.core.quota(b, "requestcount", { amount: 1, bestEffort: false });
          if (q.granted !== 1) throw new Error(`quota not granted: ${q.status.message}`);
          n++;
        }
      }),
    );
    return n / ((performance.now() - t0) / 1000);
  } finally {
    await h.close();
  }
}

const ms = (us: number) => (us / 1000).toFixed(2);

/** The server-side runs as a Markdown table. */
export function formatServerResults(r: MixerBenchResult): string {
  const cell = (g: GrpcLoadResult, paced: boolean) => {
    const l = paced ? g.latencyUs.fromDue : g.latencyUs.fromSent;
    const sent = paced ? ` (from sent: p99 ${ms(g.latencyUs.fromSent.p99)})` : "";
    return `${g.callsPerSec.toFixed(0)}/s, p50 ${ms(l.p50)}, p99 ${ms(l.p99)}, p99.9 ${ms(l.p999)} ms${sent}`;
  };
  return [
    "| load from grpc_load (one HTTP/2 connection) | meshd Check | runtime floor (empty answer) |",
    "| --- | --- | --- |",
    ...r.server.map((s) => {
      const paced = s.rate !== undefined;
      const what = paced
        ? `paced at ${s.rate}/s (latency from when each call was due)`
        : `${s.inflight} in flight`;
      return `| ${what} | ${cell(s.meshd, paced)} | ${cell(s.floor, paced)} |`;
    }),
  ].join("\n");
}

/** The results as Markdown tables. */
export function formatMixerResults(r: MixerBenchResult): string {
  const rows = [
    formatServerResults(r),
    "",
    "| measure | value |",
    "| --- | --- |",
    ...r.closedLoop.map((c) =>
      `| Check through the client library, no cache, ${c.concurrency} in flight | ${
        c.checksPerSec.toFixed(0)
      } checks/s, p50 ${c.p50Ms.toFixed(2)} ms, p99 ${c.p99Ms.toFixed(2)} ms |`
    ),
    `| Check through the client library paced at ${r.paced.targetRate}/s, no cache | ${
      r.paced.checksPerSec.toFixed(0)
    } checks/s achieved, p50 ${r.paced.p50Ms.toFixed(2)} ms, p99 ${
      r.paced.p99Ms.toFixed(2)
    } ms (at most ${r.paced.concurrency} in flight) |`,
    `| decision time inside meshd (histogram bucket bounds) | p50 ≤ ${r.serverP50Ms} ms, p99 ≤ ${r.serverP99Ms} ms |`,
    `| client cache hit (\`tryCached\`) | ${r.cacheHitUs.toFixed(2)} µs |`,
    `| \`check()\` answered from the cache | ${r.cachedCheckPerSec.toFixed(0)} checks/s |`,
    `| Report ingestion, prometheus adapter | ${r.reportEntriesPerSec.toFixed(0)} entries/s |`,
    `| quota decisions, memquota (in-process) | ${r.memquotaPerSec.toFixed(0)} /s |`,
    `| quota decisions, redisquota (64 in flight, real redis-server) | ${r.redisquotaPerSec.toFixed(0)} /s |`,
  ];
  return rows.join("\n");
}

if (import.meta.main) {
  const args = benchArgs();
  const r = await runMixerBench({
    seconds: args.number("--seconds", 5),
    concurrency: [1, 4, 16, 64],
    rate: args.number("--rate", 5000),
    reportBatch: 100,
  });
  console.log(formatMixerResults(r));
}
