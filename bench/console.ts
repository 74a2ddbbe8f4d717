/**
 * Console benchmark: the web console at /ui/ of a mesh of N services (default 1,000) with
 * 10,000 proxies, served by a real admin server over HTTP. Measures the bytes of the first load
 * (the overview page, its style sheet and script), each page's render time (median and worst of
 * several loads), and the CPU share of the graph's live updates for W watching browsers while
 * the graph keeps changing; each against its target (≤ 200 KB, ≤ 300 ms, ≤ 5% of one core).
 *
 * Real parts: galley's store with the generated config (ServiceEntries, WorkloadEntries,
 * VirtualServices, DestinationRules), mixer's service graph fed with reported requests (two
 * edges per service), the analyzers, the admin server and its guard. The proxies' sync state is
 * synthetic (/debug/syncz in pilot's shape, built per call as pilot does): 10,000 real streams
 * would measure the load generator and pilot, not the console.
 *
 * Usage: bun bench/console.ts [--services N] [--proxies P] [--watchers W] [--seconds S] [--runs R]
 */
import { startAdminServer } from "../mod/admin/mod.ts";
import { createConsole, daemonConsoleSource } from "../mod/console/mod.ts";
import { analyze } from "../mod/galley/analyze.ts";
import { createConfigStore } from "../mod/galley/store.ts";
import { createServiceGraph, windowOf } from "../mod/mixer/service_graph.ts";
import { endpointzHandler } from "../mod/pilot/endpointz.ts";
import { createPushContext } from "../mod/pilot/model/push_context.ts";
import { proxyOfNodeId, simulateDebugHandler } from "../mod/pilot/simulate/debug.ts";
import { createPilotProvider } from "../mod/pilot/xds/generator.ts";
import type { DebugHandler } from "../mod/runtime/module.ts";
import { systemClock } from "../mod/shared/clock.ts";
import { createLogger } from "../mod/shared/logger.ts";
import { createMetricsRegistry } from "../mod/shared/metrics.ts";
import { benchArgs } from "./_args.ts";

/** Targets from the issue. */
export const TARGETS = { firstLoadBytes: 200 * 1024, renderMs: 300, liveCpuShare: 0.05 };

/** The generated config: per service a ServiceEntry, two WorkloadEntries, a VirtualService, a DestinationRule. */
export function consoleConfig(services: number): string {
  const docs: string[] = [];
  for (let i = 0; i < services; i++) {
    const ns = `team-${i % 20}`;
    const host = `svc-${i}.${ns}.svc.cluster.local`;
    docs.push(`apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: svc-${i}, namespace: ${ns}}
spec:
  hosts: [${host}]
  location: MESH_INTERNAL
  resolution: STATIC
  ports: [{number: 8080, name: http, protocol: HTTP}]
  workloadSelector: {labels: {app: svc-${i}}}
---
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {name: svc-${i}-v1, namespace: ${ns}}
spec: {address: 10.${(i >> 8) & 255}.${
      i & 255
    }.1, labels: {app: svc-${i}, version: v1}, serviceAccount: svc-${i}}
---
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {name: svc-${i}-v2, namespace: ${ns}}
spec: {address: 10.${(i >> 8) & 255}.${
      i & 255
    }.2, labels: {app: svc-${i}, version: v2}, serviceAccount: svc-${i}}
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: svc-${i}, namespace: ${ns}}
spec:
  host: ${host}
  subsets: [{name: v1, labels: {version: v1}}, {name: v2, labels: {version: v2}}]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: svc-${i}, namespace: ${ns}}
spec:
  hosts: [${host}]
  http:
  - route:
    - {destination: {host: ${host}, subset: v1}, weight: 90}
    - {destination: {host: ${host}, subset: v2}, weight: 10}
`);
  }
  return docs.join("---\n");
}

/** /debug/syncz for `n` proxies, every tenth with a NACKed RDS. */
export function syntheticSync(n: number, services: number): unknown[] {
  return Array.from({ length: n }, (_, i) => {
    const svc = i % services;
    const ns = `team-${svc % 20}`;
    const v = "3f2a9c1e";
    const nack = i % 10 === 0;
    return {
      proxy: `sidecar~10.${(i >> 16) & 255}.${(i >> 8) & 255}.${
        i & 255
      }~svc-${svc}-${i}.${ns}~${ns}.svc.cluster.local`,
      connection: `c${i}`,
      mode: "sotw",
      connectedAt: "2026-12-01T00:00:00.000Z",
      types: {
        CDS: { state: "SYNCED", sentVersion: v, ackedVersion: v, resources: 40, sentBytes: 20_000 },
        LDS: { state: "SYNCED", sentVersion: v, ackedVersion: v, resources: 12, sentBytes: 30_000 },
        EDS: { state: "SYNCED", sentVersion: v, ackedVersion: v, resources: 40, sentBytes: 8_000 },
        RDS: nack
          ? {
            state: "NACKED",
            sentVersion: "b",
            ackedVersion: v,
            nackedVersion: "b",
            nackMessage: "route: bad weight",
          }
          : { state: "SYNCED", sentVersion: v, ackedVersion: v, resources: 1, sentBytes: 4_000 },
      },
    };
  });
}

/** The measurements. */
export interface ConsoleBench {
  readonly services: number;
  readonly proxies: number;
  readonly edges: number;
  /** Overview HTML + style sheet + script, in bytes. */
  readonly firstLoadBytes: number;
  /** Per page: median and worst render time over the runs (ms), and its bytes. */
  readonly pages: ReadonlyArray<{ path: string; medianMs: number; maxMs: number; bytes: number }>;
  /** CPU seconds per second the live updates added for `watchers` browsers (1 = a whole core). */
  readonly liveCpuShare: number;
  readonly watchers: number;
  /** Live updates the watchers received. */
  readonly liveUpdates: number;
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)]!;
}

function cpuSeconds(): number {
  const u = process.cpuUsage();
  return (u.user + u.system) / 1e6;
}

/** Runs the benchmark. */
export async function runConsoleBench(opts: {
  services: number;
  proxies: number;
  watchers: number;
  seconds: number;
  runs: number;
}): Promise<ConsoleBench> {
  const store = createConfigStore({ logger: createLogger({ write: () => {} }) });
  store.sink("bench").replace([{
    origin: "/bench/mesh.yaml",
    content: new TextEncoder().encode(consoleConfig(opts.services)),
  }]);
  const graph = createServiceGraph({ clock: systemClock, windowMs: 60_000 });
  const callers = (
    i: number,
  ) => [`svc-${(i + 1) % opts.services}-v1.team-${(i + 1) % opts.services % 20}`, `gateway.team-${i % 20}`];
  let seq = 0;
  const traffic = (n: number) => {
    for (let k = 0; k < n; k++) {
      const i = seq++ % opts.services;
      const [a, b] = callers(i);
      const host = `svc-${i}.team-${i % 20}.svc.cluster.local`;
      for (const from of [a!, b!]) {
        const [name, ns] = from.split(".");
        graph.record({
          "source.workload.name": name!,
          "source.workload.namespace": ns!,
          "destination.service.host": host,
          "response.code": seq % 50 === 0 ? 503 : 200,
          "response.duration": 2 + (seq % 40),
        });
      }
    }
  };
  traffic(opts.services * 3);
  const sync = syntheticSync(opts.proxies, opts.services);
  // Pilot's provider over the same config, for /debug/simulate and /debug/endpointz; the proxy simulated below has
  // been served already, as a connected proxy (or one with the same key) would have been.
  const provider = createPilotProvider({
    initial: createPushContext({ config: store.snapshot() }),
    logger: createLogger({ write: () => {} }),
  });
  const simulated = (sync[5] as { proxy: string }).proxy;
  provider.servedOf(proxyOfNodeId(provider.push(), simulated));
  const handlers: DebugHandler[] = [
    {
      path: "servicegraph",
      description: "",
      handle: (req) => {
        const w = windowOf(new URL(req.url).searchParams.get("window"), 60_000, graph.longestWindowMs);
        return typeof w === "number" ? Response.json(graph.view(w)) : Response.json(w, { status: 400 });
      },
    },
    { path: "syncz", description: "", handle: () => Response.json(sync) },
    { path: "registrationz", description: "", handle: () => Response.json([]) },
    simulateDebugHandler(provider),
    endpointzHandler(() => provider.push()),
  ];
  const metrics = createMetricsRegistry();
  const ui = createConsole({
    source: daemonConsoleSource({
      debugHandlers: () => handlers,
      readiness: () => ({ notReady: [], stopping: false }),
      modules: ["galley", "pilot", "mixer", "citadel"],
      config: store,
      analyze,
      metrics,
    }),
    graphTickMs: 1000,
  });
  const admin = await startAdminServer("127.0.0.1:0", {
    metrics,
    readiness: () => ({ notReady: [], stopping: false }),
    debugHandlers: () => handlers,
    mounts: [ui.app],
  });
  const base = `http://127.0.0.1:${admin.port}`;
  try {
    const get = async (path: string) => {
      const t0 = performance.now();
      const res = await fetch(base + path);
      const body = await res.text();
      const ms = performance.now() - t0;
      if (res.status !== 200) throw new Error(`${path}: HTTP ${res.status}: ${body.slice(0, 200)}`);
      return { ms, bytes: Buffer.byteLength(body), body };
    };
    // First load: the overview and what it links.
    const overview = await get("/ui/");
    const assets = [...overview.body.matchAll(/(?:href|src)="(\/ui\/(?:style\.css|app\.js)\?v=[0-9a-f]+)"/g)]
      .map((m) => m[1]!);
    let firstLoadBytes = overview.bytes;
    for (const a of assets) firstLoadBytes += (await get(a)).bytes;
    const proxyId = (sync[5] as { proxy: string }).proxy;
    const paths = [
      "/ui/",
      "/ui/graph",
      "/ui/graph?window=15m",
      "/ui/services",
      `/ui/services?host=svc-7.team-7.svc.cluster.local`,
      "/ui/proxies",
      "/ui/proxies?state=NACKED",
      `/ui/proxies?id=${encodeURIComponent(proxyId)}`,
      // Running simulate: over the listeners and routes pilot serves the proxy (/debug/simulate).
      `/ui/proxies?id=${encodeURIComponent(proxyId)}&host=svc-3.team-3.svc.cluster.local&port=8080`,
      "/ui/config",
      "/ui/security",
    ];
    const pages: ConsoleBench["pages"][number][] = [];
    for (const path of paths) {
      const times: number[] = [];
      let bytes = 0;
      for (let r = 0; r < opts.runs; r++) {
        const x = await get(path);
        times.push(x.ms);
        bytes = x.bytes;
      }
      pages.push({ path, medianMs: median(times), maxMs: Math.max(...times), bytes });
    }
    // Live updates: the same traffic with and without watchers; the difference is the feed's.
    const phase = async (watchers: number): Promise<{ cpu: number; updates: number }> => {
      const stop = AbortSignal.timeout(opts.seconds * 1000);
      let updates = 0;
      const tick = setInterval(() => traffic(Math.max(1, opts.services / 10)), 100);
      const c0 = cpuSeconds();
      const t0 = performance.now();
      // Each watcher holds one event stream, as a browser's EventSource does, and counts its events.
      await Promise.all(Array.from({ length: watchers }, async () => {
        try {
          const res = await fetch(`${base}/ui/graph/events`, { signal: stop });
          const reader = res.body!.getReader();
          const dec = new TextDecoder();
          for (;;) {
            const r = await reader.read();
            if (r.done) break;
            updates += (dec.decode(r.value).match(/^event: graph$/gm) ?? []).length;
          }
        } catch {
          // the phase ended: the stream was aborted
        }
      }));
      if (watchers === 0) await new Promise((r) => setTimeout(r, opts.seconds * 1000));
      clearInterval(tick);
      const wall = (performance.now() - t0) / 1000;
      return { cpu: (cpuSeconds() - c0) / wall, updates };
    };
    const without = await phase(0);
    const withWatchers = await phase(opts.watchers);
    return {
      services: opts.services,
      proxies: opts.proxies,
      edges: graph.view().edges.length,
      firstLoadBytes,
      pages,
      liveCpuShare: Math.max(0, withWatchers.cpu - without.cpu),
      watchers: opts.watchers,
      liveUpdates: withWatchers.updates,
    };
  } finally {
    ui.close();
    await admin.stop();
  }
}

/** The report, with each figure's ratio to its target (≤ 1 meets it). */
export function formatConsoleBench(r: ConsoleBench): string {
  const lines = [
    `console: ${r.services} services, ${r.proxies} proxies, ${r.edges} graph edges`,
    `first load: ${(r.firstLoadBytes / 1024).toFixed(1)} KB (target ≤ 200 KB, ratio ${
      (r.firstLoadBytes / TARGETS.firstLoadBytes).toFixed(2)
    })`,
    "page renders (median / worst ms, KB; target ≤ 300 ms):",
    ...r.pages.map((p) =>
      `  ${(p.path.length > 60 ? p.path.slice(0, 40) + "…" + p.path.slice(-19) : p.path).padEnd(60)} ${
        p.medianMs.toFixed(1).padStart(7)
      } / ${p.maxMs.toFixed(1).padStart(7)} ms  ${(p.bytes / 1024).toFixed(1).padStart(7)} KB  ratio ${
        (p.maxMs / TARGETS.renderMs).toFixed(2)
      }`
    ),
    `graph live updates: ${
      (r.liveCpuShare * 100).toFixed(2)
    }% of one core for ${r.watchers} watchers, ${r.liveUpdates} updates received (target ≤ 5%, ratio ${
      (r.liveCpuShare / TARGETS.liveCpuShare).toFixed(2)
    })`,
  ];
  return lines.join("\n");
}

if (import.meta.main) {
  const a = benchArgs();
  const r = await runConsoleBench({
    services: a.number("--services", 1000),
    proxies: a.number("--proxies", 10_000),
    watchers: a.number("--watchers", 5),
    seconds: a.number("--seconds", 10),
    runs: a.number("--runs", 5),
  });
  console.log(formatConsoleBench(r));
}
