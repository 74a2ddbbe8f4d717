/**
 * A console over real parts for the page tests: galley's store loaded with the bookinfo samples
 * (plus a file with an error), mixer's service graph fed with reported requests, the analyzers,
 * a metrics registry, and debug answers in the shapes the modules serve.
 */
import { readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { analyze } from "../../mod/galley/analyze.ts";
import { createConfigStore, type WritableConfigStore } from "../../mod/galley/store.ts";
import { createServiceGraph, type ServiceGraph } from "../../mod/mixer/service_graph.ts";
import type { DebugHandler } from "../../mod/runtime/module.ts";
import { type Console, createConsole, daemonConsoleSource } from "../../mod/console/mod.ts";
import { systemClock } from "../../mod/shared/clock.ts";
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
  close(): void;
}

/** Builds the fixture; `token` makes the console want the admin token. */
export function consoleFixture(opts: { token?: string; tickMs?: number } = {}): ConsoleFixture {
  const store = createConfigStore({ logger: createLogger({ write: () => {} }) });
  store.sink("dir").replace([...sampleOrigins(), {
    origin: "/cfg/broken.yaml",
    content: new TextEncoder().encode(BROKEN_YAML),
  }]);
  const graph = createServiceGraph({ clock: systemClock, windowMs: 60_000 });
  const answers = new Map<string, unknown>([["syncz", [NACKED_PROXY]]]);
  const handlers: DebugHandler[] = [
    { path: "servicegraph", description: "", handle: () => Response.json(graph.view()) },
    ...["syncz", "ca", "registrationz", "config_dump"].map((path): DebugHandler => ({
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
    graphMaxWaitMs: 2000,
  });
  return { console, store, graph, answers, close: () => console.close() };
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
