/**
 * The console's Hono routes under /ui/: the pages, the graph's SVG fragment, node details and
 * live events, and the static assets. Mounted on the admin server, behind its guard; beyond
 * loopback every route also wants the admin token (auth.ts).
 *
 * @module
 */
import { Hono } from "hono";
import type { Diagnostic } from "../galley/mod.ts";
import { APP_JS, APP_JS_HASH, STYLE, STYLE_HASH } from "./assets.ts";
import { requireToken } from "./auth.ts";
import { configPage } from "./config_page.ts";
import { drawGraph, type DrawnGraph, graphUpdate, renderSvg, vmNames } from "./graph.ts";
import { createGraphFeed, type GraphFeed, sseStream } from "./graph_feed.ts";
import { graphPage, nodeDetails } from "./graph_page.ts";
import { createConfigHistory, DEFAULT_HISTORY } from "./history.ts";
import type { Html } from "./html.ts";
import { type MeshModel, modelCache } from "./model.ts";
import { overviewPage } from "./overview_page.ts";
import {
  localSimulation,
  proxiesPage,
  proxyPage,
  simulationQuery,
  type SimulationView,
} from "./proxies_page.ts";
import { securityPage } from "./security_page.ts";
import { servicesPage } from "./services_page.ts";
import {
  asArray,
  asObject,
  type ConsoleSource,
  type GraphView,
  graphWindow,
  readCa,
  readGraph,
  readSync,
} from "./source.ts";

/** Most edges the graph draws: the busiest, within the namespace filter. */
export const MAX_DRAWN_EDGES = 150;
/** Most namespace filters and windows followed live at once. */
const MAX_FEEDS = 32;
/** Most live-update streams open at once, by default; further ones get 503. */
export const DEFAULT_MAX_GRAPH_WATCHERS = 256;

/**
 * The `limit` busiest edges (by requests) whose source or destination is in namespace `ns`
 * (workloads "name.ns", services "name.ns.svc..."); all namespaces when `ns` is empty.
 */
export function busiestEdges(view: GraphView, ns: string, limit: number): GraphView {
  const inNs = (node: string) => node.split(".")[1] === ns;
  const edges = view.edges.filter((e) => ns === "" || inNs(e.source) || inNs(e.destination));
  if (edges.length <= limit && edges.length === view.edges.length) return view;
  const kept = [...edges].sort((a, b) =>
    b.requests - a.requests || (a.source + a.destination < b.source + b.destination ? -1 : 1)
  )
    .slice(0, limit);
  return { ...view, edges: kept, total: edges.length };
}

/** Options for createConsole. */
export interface ConsoleOptions {
  readonly source: ConsoleSource;
  /** The admin token every request must carry (set when the admin server listens beyond loopback). */
  readonly token?: string;
  /** Config versions kept for comparison (default 16). */
  readonly historySize?: number;
  /** How often the graph is read while a browser watches (default 1000 ms). */
  readonly graphTickMs?: number;
  /** Heartbeat interval of a live-update stream when nothing changes (default 20 s). */
  readonly graphMaxWaitMs?: number;
  /** The reconnect delay a live-update stream tells the browser (default 1000 ms). */
  readonly graphRetryMs?: number;
  /** Longest a live-update stream stays open before the browser reconnects (default 10 min). */
  readonly graphMaxStreamMs?: number;
  /** Most live-update streams open at once (default {@link DEFAULT_MAX_GRAPH_WATCHERS}). */
  readonly graphMaxWatchers?: number;
}

/** The console: its routes and what it runs in the background. */
export interface Console {
  /** Routes under /ui/; mount on the admin server. */
  readonly app: Hono;
  /** Live graph update streams open (for tests and the benchmark). */
  graphWatchers(): number;
  /** Stops following config and answers waiting browsers. */
  close(): void;
}

/** Creates the console over `opts.source`. */
export function createConsole(opts: ConsoleOptions): Console {
  const src = opts.source;
  const model = modelCache(src);
  const history = createConfigHistory(src.config, opts.historySize ?? DEFAULT_HISTORY);
  const findingsMemo = new WeakMap<MeshModel, readonly Diagnostic[]>();
  const findings = (m: MeshModel): readonly Diagnostic[] => {
    let f = findingsMemo.get(m);
    if (f === undefined) {
      f = src.analyze?.([...m.push.config.resources.values()]) ?? [];
      findingsMemo.set(m, f);
    }
    return f;
  };
  /** The graph drawn for namespace filter `ns` over `window` (one of GRAPH_WINDOWS). */
  const graph = async (
    ns: string,
    window: string,
  ): Promise<{ g: DrawnGraph; m: MeshModel; vms: Set<string> }> => {
    const [view, regs] = await Promise.all([readGraph(src, window), src.debug("registrationz")]);
    const m = model();
    return { g: drawGraph(busiestEdges(view, ns, MAX_DRAWN_EDGES), m), m, vms: vmNames(m, asArray(regs)) };
  };
  // One feed per namespace filter and window, so each watcher gets the edges it draws; few distinct ones.
  const feeds = new Map<string, GraphFeed>();
  const feedFor = (ns: string, window: string): GraphFeed => {
    const key = `${window}|${ns}`;
    let f = feeds.get(key);
    if (f === undefined) {
      if (feeds.size >= MAX_FEEDS) {
        const [oldest, gone] = [...feeds].find(([, x]) => x.waiting() === 0) ?? [...feeds][0]!;
        gone.close();
        feeds.delete(oldest);
      }
      f = createGraphFeed({
        read: async () => JSON.stringify(graphUpdate((await graph(ns, window)).g)),
        tickMs: opts.graphTickMs,
        maxWaitMs: opts.graphMaxWaitMs,
      });
      feeds.set(key, f);
    }
    return f;
  };
  const retryMs = opts.graphRetryMs ?? 1000;
  const maxStreamMs = opts.graphMaxStreamMs ?? 10 * 60_000;
  const maxWatchers = opts.graphMaxWatchers ?? DEFAULT_MAX_GRAPH_WATCHERS;
  let watchers = 0;
  /** Aborted by close(): ends every open stream. */
  const closing = new AbortController();

  const app = new Hono();
  const html = async (body: Html | Promise<Html> | string): Promise<Response> =>
    new Response(String(await body), {
      headers: { "content-type": "text/html; charset=utf-8", "cache-control": "no-store" },
    });
  app.use("/ui/*", requireToken(opts.token));
  app.use("/ui", requireToken(opts.token));
  app.get("/ui", (c) => c.redirect("/ui/"));
  app.get("/ui/app.js", (c) =>
    c.body(APP_JS, 200, {
      "content-type": "text/javascript; charset=utf-8",
      "cache-control": c.req.query("v") === APP_JS_HASH ? "public, max-age=31536000, immutable" : "no-cache",
      etag: `"${APP_JS_HASH}"`,
    }));
  app.get("/ui/style.css", (c) =>
    c.body(STYLE, 200, {
      "content-type": "text/css; charset=utf-8",
      "cache-control": c.req.query("v") === STYLE_HASH ? "public, max-age=31536000, immutable" : "no-cache",
      etag: `"${STYLE_HASH}"`,
    }));
  app.get("/ui/", async () => {
    const m = model();
    return await html(overviewPage(src, m, findings(m)));
  });
  app.get("/ui/graph", async (c) => {
    const ns = c.req.query("ns") ?? "";
    const window = graphWindow(c.req.query("window"));
    const { g, vms } = await graph(ns, window);
    return await html(graphPage(g, vms, { window, ns, limit: MAX_DRAWN_EDGES }));
  });
  app.get("/ui/graph/svg", async (c) => {
    const { g, vms } = await graph(c.req.query("ns") ?? "", graphWindow(c.req.query("window")));
    return await html(renderSvg(g, vms));
  });
  app.get("/ui/graph/node", async (c) => {
    const { g, m, vms } = await graph(c.req.query("ns") ?? "", graphWindow(c.req.query("window")));
    return await html(nodeDetails(g, m, vms, c.req.query("name") ?? ""));
  });
  app.get("/ui/graph/events", (c) => {
    if (watchers >= maxWatchers) {
      return c.text(`too many live graph streams open (${maxWatchers})`, 503, { "retry-after": "10" });
    }
    const last = Number.parseInt(c.req.header("last-event-id") ?? "", 10);
    watchers++;
    const ns = c.req.query("ns") ?? "";
    const window = graphWindow(c.req.query("window"));
    const body = sseStream(() => feedFor(ns, window), {
      after: Number.isFinite(last) ? last : -1,
      retryMs,
      maxAgeMs: maxStreamMs,
      signal: AbortSignal.any([c.req.raw.signal, closing.signal]),
      onClose: () => watchers--,
    });
    return c.body(body, 200, {
      "content-type": "text/event-stream; charset=utf-8",
      "cache-control": "no-store",
    });
  });
  app.get("/ui/services", async (c) => {
    const query = new URL(c.req.url).searchParams;
    const host = query.get("host");
    const endpointz = host ? await src.debug("endpointz", { host }) : undefined;
    return await html(servicesPage(model(), query, endpointz));
  });
  app.get("/ui/proxies", async (c) => {
    const query = new URL(c.req.url).searchParams;
    const id = query.get("id");
    if (id) {
      const sq = simulationQuery(id, query);
      const [sync, dump, simulated] = await Promise.all([
        readSync(src),
        src.debug("config_dump", { proxyID: id }),
        sq && src.debug("simulate", sq),
      ]);
      // Pilot's answer reuses what it serves; without pilot here, the console simulates itself.
      const sim = asObject(simulated) as SimulationView | undefined ?? localSimulation(model(), id, query);
      return await html(proxyPage(sim, sync.find((p) => p.proxy === id), dump, id, query));
    }
    const [sync, regs] = await Promise.all([readSync(src), src.debug("registrationz")]);
    return await html(proxiesPage(sync, regs, query));
  });
  app.get("/ui/config", async (c) => {
    const m = model();
    return await html(configPage(src.config, findings(m), history, new URL(c.req.url).searchParams));
  });
  app.get("/ui/security", async (c) => {
    const [ca, regs, certz] = await Promise.all([
      readCa(src),
      src.debug("registrationz"),
      src.debug("certz"),
    ]);
    return await html(securityPage(ca, src.metrics, regs, src.now(), certz, new URL(c.req.url).searchParams));
  });
  return {
    app,
    graphWatchers: () => watchers,
    close() {
      closing.abort();
      history.close();
      for (const f of feeds.values()) f.close();
      feeds.clear();
    },
  };
}
