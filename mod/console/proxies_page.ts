/**
 * Proxies and agents: per proxy and type the sync state with NACK messages, the VM agents'
 * registrations, one proxy's generated config (what `meshd proxy-config` shows), and a form that
 * runs `meshd simulate`'s code against the running config. The form is a GET: simulating reads.
 *
 * @module
 */
import { html, raw } from "hono/html";
import { proxyFromNode, simulate } from "../pilot/mod.ts";
import { errorMessage } from "../shared/errors.ts";
import { badge, esc, type Html, pageOf, pager, table } from "./html.ts";
import { page } from "./layout.ts";
import type { MeshModel } from "./model.ts";
import { asArray, asObject, type ProxySyncView, type TypeSyncView } from "./source.ts";

/** Rows per page of the proxy list. */
export const PROXIES_PER_PAGE = 100;
/** NACKs listed at the top of the page; the state filter shows them all. */
export const MAX_NACK_ROWS = 20;

const TYPES = ["CDS", "LDS", "EDS", "RDS"] as const;

function stateBadge(t: TypeSyncView | undefined): string {
  if (t === undefined) return `<span class="muted">–</span>`;
  const tone = t.state === "SYNCED"
    ? "ok"
    : t.state === "NACKED"
    ? "bad"
    : t.state === "STALE"
    ? "warn"
    : "info";
  return badge(t.state, tone);
}

/** Every NACK message in `sync`, as rows (proxy, type, version, message). */
export function nackRows(sync: readonly ProxySyncView[]): string[][] {
  const rows: string[][] = [];
  for (const p of sync) {
    for (const type of TYPES) {
      const t = p.types[type];
      if (t?.state === "NACKED" || (t?.nackMessage && t.nackedVersion !== undefined)) {
        rows.push([
          `<a href="/ui/proxies?id=${encodeURIComponent(p.proxy)}">${esc(p.proxy)}</a>`,
          type,
          `<code>${esc(t.nackedVersion ?? "")}</code>`,
          `<code>${esc(t.nackMessage ?? "")}</code>`,
        ]);
      }
    }
  }
  return rows;
}

/** The list: sync states (filtered, paged), NACKs, and agents' registrations. */
export function proxiesPage(
  sync: readonly ProxySyncView[],
  registrations: unknown,
  query: URLSearchParams,
): Html {
  const q = (query.get("q") ?? "").toLowerCase();
  const only = query.get("state") ?? "";
  const list = sync.filter((p) =>
    (q === "" || p.proxy.toLowerCase().includes(q)) &&
    (only === "" || TYPES.some((t) => p.types[t]?.state === only))
  );
  const p = pageOf(list.length, query.get("page") ?? undefined, PROXIES_PER_PAGE);
  const rows = list.slice(p.from, p.to).map((x) => [
    `<a href="/ui/proxies?id=${encodeURIComponent(x.proxy)}">${esc(x.proxy)}</a>`,
    esc(x.mode),
    ...TYPES.map((t) => stateBadge(x.types[t])),
  ]);
  const regs = asArray(registrations).map((r) => asObject(r) ?? {});
  const nacks = nackRows(sync);
  const states = ["", "SYNCED", "STALE", "NACKED", "NOT SENT"]
    .map((s) => `<option value="${s}"${s === only ? " selected" : ""}>${s || "any"}</option>`).join("");
  return page(
    "Proxies and agents",
    "proxies",
    html`
      <form method="get"
        action="/ui/proxies"><label>node id<input name="q" value="${q}"></label><label>state<select name="state" data-submit>${raw(
          states,
        )}</select></label><button>Filter</button></form>
      <h2>NACKs (${nacks.length})</h2>${table(
        ["proxy", "type", "rejected version", "message"],
        nacks.slice(0, MAX_NACK_ROWS),
        "no proxy rejected its config",
      )}${nacks.length > MAX_NACK_ROWS
        ? raw(
          `<p><a href="/ui/proxies?state=NACKED">all ${nacks.length} NACKs</a> are listed below with the NACKED filter</p>`,
        )
        : ""}
      <h2>Proxies (${list.length} of ${sync.length})</h2>${table(
        ["proxy", "mode", ...TYPES],
        rows,
        "no proxies connected",
      )}${raw(pager("/ui/proxies", query, p))}
      <h2>Agents (${regs.length})</h2>${table(
        ["workload", "group", "address", "state", "health", "identity"],
        regs.map((r) => [
          esc(String(r.workload ?? "")),
          esc(String(r.group ?? "")),
          esc(String(r.address ?? "")),
          r.state === "REGISTERED"
            ? badge("REGISTERED", "ok")
            : badge(String(r.state ?? "?"), r.state === "REFUSED" ? "bad" : "warn") +
              (r.reason ? ` <code>${esc(String(r.reason))}</code>` : ""),
          r.hasProbe ? (r.healthy ? badge("healthy", "ok") : badge("unhealthy", "bad")) : "–",
          esc(String(r.identity ?? "")),
        ]),
        "no VM agents registered",
      )}
    `,
  );
}

/** Names of a config dump's resources of one kind. */
function names(list: unknown): string[] {
  return asArray(list).map((x) => {
    const o = asObject(x) ?? {};
    return String(o.name ?? o.clusterName ?? "");
  });
}

/** A simulation request from the form's query parameters, or undefined when the form is empty. */
export function simulationFrom(
  query: URLSearchParams,
): { host: string; port: number; path: string; method: string; inbound: boolean } | undefined {
  const host = query.get("host");
  const port = Number.parseInt(query.get("port") ?? "", 10);
  if (!host || !Number.isFinite(port)) return undefined;
  return {
    host,
    port,
    path: query.get("path") || "/",
    method: query.get("method") || "GET",
    inbound: query.get("inbound") === "on",
  };
}

/** What a simulation gave: pilot's /debug/simulate answer or the console's own run. */
export interface SimulationView {
  readonly listener?: string;
  readonly filterChain?: string;
  readonly routeConfig?: string;
  readonly virtualHost?: string;
  readonly route?: string;
  readonly cluster?: string;
  readonly weightedClusters?: readonly { readonly name: string; readonly weight: number }[];
  readonly directResponse?: number;
  readonly redirect?: string;
  readonly error?: string;
}

/**
 * Runs `meshd simulate`'s code for proxy `id` over the console's model of the config (pilot's
 * /debug/simulate is preferred: it reuses what pilot serves; this is for when pilot does not
 * run here). Undefined when the form is empty.
 */
export function localSimulation(
  model: MeshModel,
  id: string,
  query: URLSearchParams,
): SimulationView | undefined {
  const req = simulationFrom(query);
  if (req === undefined) return undefined;
  try {
    const bare = proxyFromNode({ id, metadata: {} });
    const labels = { ...(model.push.instancesOf(bare)[0]?.labels ?? {}) };
    const proxy = proxyFromNode({ id, metadata: { NAMESPACE: bare.namespace, LABELS: labels } });
    return simulate(model.push, proxy, {
      host: req.host,
      port: req.port,
      path: req.path,
      method: req.method,
      ...(req.inbound ? { direction: "inbound" as const } : {}),
    });
  } catch (err) {
    return { error: errorMessage(err) };
  }
}

/** The query of pilot's /debug/simulate for the form's request, or undefined when the form is empty. */
export function simulationQuery(id: string, query: URLSearchParams): Record<string, string> | undefined {
  const req = simulationFrom(query);
  if (req === undefined) return undefined;
  return {
    proxyID: id,
    host: req.host,
    port: String(req.port),
    path: req.path,
    method: req.method,
    ...(req.inbound ? { inbound: "true" } : {}),
  };
}

/** A simulation's outcome as rows, in `meshd simulate`'s order. */
export function simulationRows(r: SimulationView | undefined): string[][] {
  if (r === undefined) return [];
  const rows: string[][] = [];
  if (r.listener !== undefined) rows.push(["LISTENER", r.listener || "(none)"]);
  if (r.filterChain !== undefined) rows.push(["FILTER CHAIN", r.filterChain]);
  if (r.routeConfig !== undefined) rows.push(["ROUTE CONFIG", r.routeConfig]);
  if (r.virtualHost !== undefined) rows.push(["VIRTUAL HOST", r.virtualHost]);
  if (r.route !== undefined) rows.push(["ROUTE", r.route]);
  if (r.cluster !== undefined) rows.push(["CLUSTER", r.cluster]);
  for (const w of r.weightedClusters ?? []) rows.push(["CLUSTER", `${w.name} (weight ${w.weight})`]);
  if (r.directResponse !== undefined) rows.push(["DIRECT RESPONSE", String(r.directResponse)]);
  if (r.redirect !== undefined) rows.push(["REDIRECT", r.redirect]);
  if (r.error !== undefined) rows.push(["ERROR", r.error]);
  return rows.map(([a, b]) => [esc(a!), `<code>${esc(b!)}</code>`]);
}

/** One proxy: its sync state, generated config, and the simulate form. */
export function proxyPage(
  sim: SimulationView | undefined,
  sync: ProxySyncView | undefined,
  dump: unknown,
  id: string,
  query: URLSearchParams,
): Html {
  const d = asObject(dump) ?? {};
  const types = TYPES.map((t) => {
    const s = sync?.types[t];
    return [
      t,
      stateBadge(s),
      `<code>${esc(s?.sentVersion ?? "")}</code>`,
      `<code>${esc(s?.ackedVersion ?? "")}</code>`,
      String(s?.resources ?? ""),
      s?.nackMessage ? `<code>${esc(s.nackMessage)}</code>` : "",
    ];
  });
  const req = simulationFrom(query);
  const rows = simulationRows(sim);
  const config = ["clusters", "listeners", "routes", "endpoints"].map((k) => {
    const n = names(d[k]);
    return [
      esc(k),
      String(n.length),
      `<code>${esc(n.slice(0, 40).join(" "))}${n.length > 40 ? " …" : ""}</code>`,
    ];
  });
  return page(
    "Proxy",
    "proxies",
    html`
      <p><code>${id}</code>${sync
        ? ` · ${sync.mode} · connected ${sync.connectedAt}`
        : " · not connected"}</p>
      <h2>Sync state</h2>${table(["type", "state", "sent", "ACKed", "resources", "NACK message"], types)}
      <h2>Simulate a request</h2><form method="get"
        action="/ui/proxies"><input type="hidden" name="id" value="${id}"><label>host<input name="host" value="${req
          ?.host ?? ""}" required></label><label>port<input name="port" type="number" value="${req?.port ??
          ""}" required></label><label>path<input name="path" value="${req?.path ??
          "/"}"></label><label>method<input name="method" value="${req?.method ??
          "GET"}" size="6"></label><label>inbound<input type="checkbox" name="inbound"${req?.inbound
          ? raw(" checked")
          : ""}></label><button>Simulate</button></form>${rows.length > 0 ? table(["", ""], rows) : ""}
      <h2>Generated config (meshd proxy-config)</h2>${d.error
        ? html`<p class="muted">${String(d.error)}</p>`
        : table(["kind", "count", "names"], config)}${d.error ? "" : html`
        <details>
          <summary>as JSON</summary>
          <pre>${JSON.stringify(dump, null, 1)}</pre>
        </details>
      `}
    `,
  );
}
