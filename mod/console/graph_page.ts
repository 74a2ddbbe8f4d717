/**
 * The service graph page, its SVG fragment, a node's details, and the live-update events.
 *
 * @module
 */
import { html, raw } from "hono/html";
import { formatDuration } from "../shared/duration.ts";
import { drawGraph, type DrawnGraph, renderSvg } from "./graph.ts";
import { badge, esc, fmtNum, fmtPct, type Html, table } from "./html.ts";
import { page } from "./layout.ts";
import type { MeshModel } from "./model.ts";
import { GRAPH_WINDOWS } from "./source.ts";

/** The window select's options, `chosen` selected ("" is mixer's default window). */
function windowOptions(chosen: string): string {
  return GRAPH_WINDOWS.map((w) =>
    `<option value="${w}"${w === chosen ? " selected" : ""}>${w === "" ? "default" : w}</option>`
  ).join("");
}

/** The graph page around a drawn graph: `window` and the namespace filter `ns` as the query had them. */
export function graphPage(
  g: DrawnGraph,
  vms: ReadonlySet<string>,
  q: { readonly window: string; readonly ns: string; readonly limit: number },
): Html {
  const win = g.windowMs > 0 ? formatDuration(g.windowMs) : "–";
  const window = q.window;
  return page(
    "Service graph",
    "graph",
    html`
      <form method="get"
        action="/ui/graph"><label>namespace<input name="ns" value="${q
          .ns}" placeholder="all"></label><label>window<select name="window" data-submit>${raw(
            windowOptions(q.window),
          )}</select></label><button>Show</button></form>
      <p>Requests reported to mixer over the last <b>${win}</b>${q.window === ""
        ? raw(" (the default window, <code>--mixer-servicegraph-window</code>)")
        : ""}, updated live; updated at <span id="graph-at">${new Date()
        .toISOString()}</span>. ${g.total > g.edges.length
        ? `The ${g.edges.length} busiest of ${g.total} edges`
        : `${g.edges.length} edges`}, ${g.nodes.length} nodes${g.dropped > 0
        ? raw(` ${badge(`${g.dropped} reports dropped (edge limit)`, "warn")}`)
        : ""}. Click a node for its details.</p>
      <div id="graph" data-layout="${g.layout}" data-window="${window}" data-ns="${q.ns}">${raw(
        renderSvg(g, vms),
      )}</div>
      <div id="node-details"></div>
      <h2>Edges</h2>${table(
        ["source", "destination", "requests", "rate", "errors", "p50", "p99", "mTLS"],
        g.edges.map((e) => [
          esc(e.source),
          esc(e.destination),
          String(e.edge.requests),
          `${fmtNum(e.edge.requestRate)}/s`,
          fmtPct(e.edge.errorRate),
          fmtNum(e.edge.latencyP50Ms, " ms"),
          fmtNum(e.edge.latencyP99Ms, " ms"),
          esc(e.mtls),
        ]),
        "no traffic in the window",
      )}
    `,
  );
}

/** A node's details: what it calls, who calls it, and for a service its declaration. */
export function nodeDetails(g: DrawnGraph, model: MeshModel, vms: ReadonlySet<string>, name: string): Html {
  const out = g.edges.filter((e) => e.source === name);
  const inc = g.edges.filter((e) => e.destination === name);
  const svc = model.push.services.find((s) => s.hostname === name);
  const rows = (list: typeof out, other: (e: (typeof out)[number]) => string) =>
    list.map((e) => [esc(other(e)), String(e.edge.requests), fmtPct(e.edge.errorRate), esc(e.label)]);
  return html`<h2>${name}${vms.has(name) ? raw(` ${badge("VM", "warn")}`) : ""}</h2>${
    svc
      ? html`<p>service in <b>${svc.namespace}</b>, ports ${
        svc.ports.map((p) => `${p.name} ${p.number}/${p.protocol}`).join(", ")
      } — <a href="/ui/services?q=${encodeURIComponent(svc.hostname)}">details</a></p>`
      : ""
  }<h2>Calls</h2>${
    table(["destination", "requests", "errors", "edge"], rows(out, (e) => e.destination), "calls nothing")
  }
<h2>Called by</h2>${
    table(["source", "requests", "errors", "edge"], rows(inc, (e) => e.source), "no callers")
  }`;
}

export { drawGraph };
