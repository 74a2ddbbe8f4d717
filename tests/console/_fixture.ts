/**
 * A console over real parts for the page tests: galley's store loaded with the bookinfo samples
 * (plus a file with an error), mixer's service graph fed with reported requests, the analyzers,
 * a metrics registry, and debug answers in the shapes the modules serve.
 */
import { readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { analyze } from "../../mod/galley/analyze.ts";
import { createConfigStore, type WritableConfigStore } from "../../mod/galley/store.ts";
import { createServiceGraph, type ServiceGraph, windowOf } from "../../mod/mixer/service_graph.ts";
import { endpointzHandler } from "../../mod/pilot/endpointz.ts";
import { createPushContext } from "../../mod/pilot/model/push_context.ts";
import type { Workload } from "../../mod/pilot/model/registry.ts";
import { simulateDebugHandler } from "../../mod/pilot/simulate/debug.ts";
import { createPilotProvider } from "../../mod/pilot/xds/generator.ts";
import type { DebugHandler } from "../../mod/runtime/module.ts";
import { type Console, createConsole, daemonConsoleSource } from "../../mod/console/mod.ts";
import { type Clock, systemClock } from "../../mod/shared/clock.ts";
import { createLogger } from "../../mod/shared/logger.ts";
import { createMetricsRegistry } from "../../mod/shared/metrics.ts";
import { ROOT } from "../e2e/_meshd.ts";

/** A file with a validation error on line 6 (the route's weight). */
export const BROKEN_YAML = `apiVersion: networking.istio.io/v1
kind: VirtualService
metadata:
  name: broken
  namespace: bookinfo
spec:
  hosts: [ratings]
  http:
    - route:
        - destination: {host: ratings}
          weight: -5
`;

/** The bookinfo samples as origins. */
export function sampleOrigins(): { origin: string; content: Uint8Array }[] {
  const dir = join(ROOT, "config/samples");
  return readdirSync(dir).filter((f) => f.endsWith(".yaml")).sort().map((f) => ({
    origin: join(dir, f),
    content: readFileSync(join(dir, f)),
  }));
}

/** A VM of the reviews service registered by its agent, as pilot's auto-registry keeps it. */
export const AUTO_VM: Workload = {
  key: "networking.istio.io/WorkloadEntry/bookinfo/reviews-vms-198.18.7.9",
  namespace: "bookinfo",
  spec: {
    address: "198.18.7.9",
    labels: { app: "reviews", version: "v2" },
    serviceAccount: "bookinfo-reviews",
  },
  healthy: true,
};

/** A proxy that NACKed RDS, in /debug/syncz's shape. */
export const NACKED_PROXY = {
  proxy: "sidecar~10.0.0.9~reviews-v1.bookinfo~bookinfo.svc.cluster.local",
  connection: "c1",
  mode: "sotw",
  connectedAt: "2026-01-01T00:00:00.000Z",
  types: {
    CDS: { state: "SYNCED", sentVersion: "a", ackedVersion: "a" },
    RDS: {
      state: "NACKED",
      sentVersion: "b",
      nackedVersion: "b",
      nackMessage: "route: weights do not add up",
    },
  },
};

/** The fixture. */
export interface ConsoleFixture {
  readonly console: Console;
  readonly store: WritableConfigStore;
  readonly graph: ServiceGraph;
  /** Debug answers by path, changeable by tests. */
  readonly answers: Map<string, unknown>;
  /** The debug handlers the console calls (tests may replace or remove one). */
  readonly handlers: DebugHandler[];
  close(): void;
}

/** Builds the fixture; `token` makes the console want the admin token. */
export function consoleFixture(
  opts: { token?: string; tickMs?: number; maxWaitMs?: number; maxWatchers?: number; clock?: Clock } = {},
): ConsoleFixture {
  const store = createConfigStore({ logger: createLogger({ write: () => {} }) });
  store.sink("dir").replace([...sampleOrigins(), {
    origin: "/cfg/broken.yaml",
    content: new TextEncoder().encode(BROKEN_YAML),
  }]);
  const graph = createServiceGraph({ clock: opts.clock ?? systemClock, windowMs: 60_000 });
  const answers = new Map<string, unknown>([["syncz", [NACKED_PROXY]]]);
  // Pilot's provider over the config plus a VM its agent registered (not in config), for
  // /debug/simulate and /debug/endpointz as pilot serves them.
  const pushOf = () =>
    createPushContext({
      config: store.snapshot(),
      registries: [{ services: [], endpoints: [], workloads: [AUTO_VM] }],
    });
  const provider = createPilotProvider({ initial: pushOf(), logger: createLogger({ write: () => {} }) });
  store.subscribe(() => provider.update(pushOf(), { configs: new Map(), full: true, reasons: ["config"] }));
  const handlers: DebugHandler[] = [
    {
      path: "servicegraph",
      description: "",
      handle(req) {
        const w = windowOf(new URL(req.url).searchParams.get("window"), 60_000, graph.longestWindowMs);
        return typeof w === "number" ? Response.json(graph.view(w)) : Response.json(w, { status: 400 });
      },
    },
    simulateDebugHandler(provider),
    endpointzHandler(() => provider.push()),
    ...["syncz", "ca", "registrationz", "config_dump", "certz"].map((path): DebugHandler => ({
      path,
      description: "",
      handle: () =>
        answers.has(path)
          ? Response.json(answers.get(path))
          : Response.json({ error: "none" }, { status: 404 }),
    })),
  ];
  const console = createConsole({
    source: daemonConsoleSource({
      debugHandlers: () => handlers,
      readiness: () => ({ notReady: ["citadel"], stopping: false }),
      modules: ["galley", "pilot", "mixer", "citadel"],
      config: store,
      analyze,
      metrics: createMetricsRegistry(),
    }),
    token: opts.token,
    graphTickMs: opts.tickMs ?? 20,
    graphMaxWaitMs: opts.maxWaitMs ?? 2000,
    graphMaxWatchers: opts.maxWatchers,
  });
  return { console, store, graph, answers, handlers, close: () => console.close() };
}

/** Records `n` requests from `source` ("name.namespace") to `host` into the graph. */
export function report(graph: ServiceGraph, source: string, host: string, n: number, code = 200): void {
  const [name, ns] = source.split(".");
  for (let i = 0; i < n; i++) {
    graph.record({
      "source.workload.name": name!,
      "source.workload.namespace": ns!,
      "destination.service.host": host,
      "response.code": code,
      "response.duration": 5 + i,
    });
  }
}

/** One server-sent event as a browser's EventSource sees it. */
export interface SseEvent {
  readonly id: string;
  readonly event: string;
  readonly data: string;
}

/** The events of a server-sent-events body, read as they arrive (comments and retry skipped). */
export async function* sseEvents(body: ReadableStream<Uint8Array>): AsyncGenerator<SseEvent> {
  const reader = body.getReader();
  const dec = new TextDecoder();
  let buf = "";
  try {
    for (;;) {
      let end = buf.indexOf("\n\n");
      while (end < 0) {
        const r = await reader.read();
        if (r.done) return;
        buf += dec.decode(r.value, { stream: true });
        end = buf.indexOf("\n\n");
      }
      const block = buf.slice(0, end);
      buf = buf.slice(end + 2);
      const field = (name: string) =>
        block.split("\n").find((l) => l.startsWith(`${name}: `))?.slice(name.length + 2) ?? "";
      if (field("data") !== "" || field("event") !== "") {
        yield { id: field("id"), event: field("event") || "message", data: field("data") };
      }
    }
  } finally {
    await reader.cancel().catch(() => {});
  }
}
