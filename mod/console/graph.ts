/**
 * The service graph's data as the console draws it: nodes (workloads that call, services that
 * are called, VMs marked), edges with their label (request rate, error rate, p50/p99 latency,
 * the destination's mTLS mode), the SVG, and the live update the browser applies.
 *
 * @module
 */
import { createHash } from "node:crypto";
import { esc, fmtNum, fmtPct } from "./html.ts";
import { layoutGraph } from "./graph_layout.ts";
import type { MeshModel } from "./model.ts";
import type { GraphEdgeView, GraphView } from "./source.ts";

/** One edge ready to draw. */
export interface DrawnEdge {
  readonly id: string;
  readonly source: string;
  readonly destination: string;
  readonly label: string;
  readonly title: string;
  readonly err: boolean;
  readonly edge: GraphEdgeView;
  readonly mtls: string;
}

/** The graph ready to draw. */
export interface DrawnGraph {
  /** Node names (workloads "name.namespace", services by host). */
  readonly nodes: readonly string[];
  readonly edges: readonly DrawnEdge[];
  /** Service → workload pairs: a workload on the graph that is an endpoint of a service on it. */
  readonly serves: ReadonlyArray<readonly [string, string]>;
  /** A hash of the node and edge set: the layout changes exactly when it does. */
  readonly layout: string;
  readonly windowMs: number;
  readonly dropped: number;
  /** Edges within the filter, drawn or not. */
  readonly total: number;
}

/** The live update a browser applies to a drawn graph (see client/app.ts). */
export interface GraphUpdate {
  readonly layout: string;
  readonly edges: ReadonlyArray<{ id: string; label: string; title: string; err: boolean }>;
}

const serviceIndex = new WeakMap<MeshModel, Map<string, string>>();

/** The namespace of the service `host` in `model`, if it is declared. */
function serviceNamespace(model: MeshModel, host: string): string | undefined {
  let idx = serviceIndex.get(model);
  if (idx === undefined) {
    idx = new Map();
    for (const s of model.push.services) if (!idx.has(s.hostname)) idx.set(s.hostname, s.namespace);
    serviceIndex.set(model, idx);
  }
  return idx.get(host);
}

/** The mTLS column: "on" (STRICT), "off" (DISABLE), "permissive", or "?" for a service not declared. */
export function edgeMtls(model: MeshModel, destination: string): string {
  const ns = serviceNamespace(model, destination);
  if (ns === undefined) return "?";
  const mode = model.mtlsMode(ns);
  return mode === "STRICT" ? "on" : mode === "DISABLE" ? "off" : "permissive";
}

/** An edge's label: "12.5 rps · 0.0% err · p50 3.0 / p99 9.0 ms · mTLS on". */
export function edgeLabel(e: GraphEdgeView, mtls: string): string {
  const lat = e.latencyP50Ms !== undefined
    ? ` · p50 ${fmtNum(e.latencyP50Ms)} / p99 ${fmtNum(e.latencyP99Ms)} ms`
    : "";
  return `${fmtNum(e.requestRate)} rps · ${fmtPct(e.errorRate)} err${lat} · mTLS ${mtls}`;
}

/**
 * Which workloads on the graph serve which services on it (their WorkloadEntries are endpoints of
 * the service), so the layout puts a workload right of the service it serves and the calls it
 * makes further right again.
 */
export function servesPairs(model: MeshModel, names: ReadonlySet<string>): Array<readonly [string, string]> {
  const out: Array<readonly [string, string]> = [];
  for (const s of model.push.services) {
    if (!names.has(s.hostname)) continue;
    const seen = new Set<string>();
    for (const p of s.ports) {
      for (const e of model.push.endpoints(s, p.number)) {
        const m = /\/WorkloadEntry\/([^/]+)\/([^/]+)$/.exec(e.source);
        const w = m ? `${m[2]}.${m[1]}` : undefined;
        if (w !== undefined && names.has(w) && !seen.has(w)) {
          seen.add(w);
          out.push([s.hostname, w]);
        }
      }
    }
  }
  return out;
}

/** Builds the drawable graph from the service graph and the mesh model. */
export function drawGraph(view: GraphView, model: MeshModel): DrawnGraph {
  const names = new Set<string>();
  const edges: DrawnEdge[] = view.edges.map((e) => {
    names.add(e.source);
    names.add(e.destination);
    const mtls = edgeMtls(model, e.destination);
    return {
      id: `${e.source}->${e.destination}`,
      source: e.source,
      destination: e.destination,
      label: edgeLabel(e, mtls),
      title: `${e.source} → ${e.destination}: ${e.requests} requests, ${e.errors} errors`,
      err: e.errorRate > 0,
      edge: e,
      mtls,
    };
  });
  const nodes = [...names].sort();
  const serves = servesPairs(model, names);
  const h = createHash("sha256");
  for (const n of nodes) h.update(n + "\n");
  for (const e of edges) h.update(e.id + "\n");
  return {
    nodes,
    edges,
    serves,
    layout: h.digest("hex").slice(0, 16),
    windowMs: view.windowMs,
    dropped: view.dropped,
    total: view.total ?? edges.length,
  };
}

/** The update a browser applies for `g`. */
export function graphUpdate(g: DrawnGraph): GraphUpdate {
  return {
    layout: g.layout,
    edges: g.edges.map((e) => ({ id: e.id, label: e.label, title: e.title, err: e.err })),
  };
}

/**
 * The workloads that are VMs: those WorkloadEntries declare and those VM agents registered
 * (`registrationz`), as "name.namespace".
 */
export function vmNames(model: MeshModel, registrations: readonly unknown[]): Set<string> {
  const out = new Set(model.vms);
  for (const r of registrations) {
    const o = r as { workload?: unknown; group?: unknown; state?: unknown };
    if (typeof o.workload !== "string" || typeof o.group !== "string" || o.state === "REFUSED") continue;
    out.add(`${o.workload}.${o.group.split("/")[0]}`);
  }
  return out;
}

/** The SVG of `g`: nodes as circles (VMs, named in `vms`, marked), edges as arrows with their labels. */
export function renderSvg(g: DrawnGraph, vms: ReadonlySet<string>): string {
  if (g.nodes.length === 0) {
    return `<p class="muted">no traffic reported in the window yet: the graph is drawn from telemetry mixer receives (Report, access logs)</p>`;
  }
  const layout = layoutGraph(g.nodes, [
    ...g.edges.map((e) => [e.source, e.destination] as const),
    ...g.serves,
  ]);
  const at = new Map(layout.nodes.map((n) => [n.name, n]));
  const parts: string[] = [
    `<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 ${layout.width} ${layout.height}" width="${layout.width}" height="${layout.height}" role="img" aria-label="service graph">`,
    `<defs><marker id="arrow" viewBox="0 0 10 10" refX="10" refY="5" markerWidth="7" markerHeight="7" orient="auto"><path d="M0 0L10 5L0 10z" fill="#7a8499"/></marker></defs>`,
  ];
  for (const [svc, w] of g.serves) {
    const a = at.get(svc)!;
    const b = at.get(w)!;
    parts.push(
      `<path class="s" d="M${a.x + 20} ${a.y}L${b.x - 20} ${b.y}"><title>${esc(w)} serves ${
        esc(svc)
      }</title></path>`,
    );
  }
  for (const e of g.edges) {
    const a = at.get(e.source)!;
    const b = at.get(e.destination)!;
    const self = a === b;
    const path = self
      ? `M${a.x - 10} ${a.y - 18}C${a.x - 40} ${a.y - 70} ${a.x + 40} ${a.y - 70} ${a.x + 10} ${a.y - 18}`
      : `M${a.x + (b.x >= a.x ? 20 : -20)} ${a.y}L${b.x + (b.x >= a.x ? -22 : 22)} ${b.y}`;
    // The label sits a fixed distance from the caller, so labels of long edges stay by their source.
    const t = self ? 0 : Math.min(0.5, 190 / Math.max(1, Math.abs(b.x - a.x)));
    const lx = self ? a.x : a.x + (b.x - a.x) * t;
    const ly = self ? a.y - 60 : a.y + (b.y - a.y) * t - 6;
    parts.push(
      `<g class="e${e.err ? " err" : ""}" data-edge="${esc(e.id)}"><title>${
        esc(e.title)
      }</title><path d="${path}"/><text x="${lx}" y="${ly}" text-anchor="middle">${esc(e.label)}</text></g>`,
    );
  }
  for (const n of layout.nodes) {
    const vm = vms.has(n.name);
    parts.push(
      `<g class="n${vm ? " vm" : ""}" data-node="${
        esc(n.name)
      }"><circle cx="${n.x}" cy="${n.y}" r="18"/><text x="${n.x}" y="${n.y + 32}">${esc(n.name)}${
        vm ? " (VM)" : ""
      }</text></g>`,
    );
  }
  parts.push("</svg>");
  return parts.join("");
}
