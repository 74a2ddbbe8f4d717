/**
 * Services and workloads: the list (filtered, paged), and one service's endpoints with their
 * health, its subsets, the VirtualService rules that route to it, and the PeerAuthentication and
 * AuthorizationPolicy resources that apply to its workloads.
 *
 * @module
 */
import { html, raw } from "hono/html";
import { resolveHost } from "../api/hosts.ts";
import type { Resource } from "../galley/mod.ts";
import { badge, esc, type Html, pageOf, pager, table } from "./html.ts";
import { page } from "./layout.ts";
import type { MeshModel } from "./model.ts";
import { asObject } from "./source.ts";

/** Rows per page of the list. */
export const SERVICES_PER_PAGE = 100;

type Service = MeshModel["push"]["services"][number];

function endpointsOf(model: MeshModel, s: Service) {
  return s.ports.flatMap((p) => model.push.endpoints(s, p.number));
}

/** An endpoint as the service page shows it: from pilot's /debug/endpointz or the console's model. */
export interface EndpointView {
  readonly address: string;
  readonly port: number;
  readonly healthy: boolean;
  readonly labels: Readonly<Record<string, string>>;
  readonly locality?: string;
  /** The resource it came from (for auto-registered VMs, a WorkloadEntry that is not in config). */
  readonly source: string;
}

/** The endpoints in pilot's /debug/endpointz answer, or undefined when it gave none (pilot not here). */
export function pilotEndpoints(endpointz: unknown): EndpointView[] | undefined {
  const list = asObject(endpointz)?.endpoints;
  if (!Array.isArray(list)) return undefined;
  return list.map((x) => {
    const e = asObject(x) ?? {};
    return {
      address: String(e.address ?? ""),
      port: typeof e.port === "number" ? e.port : 0,
      healthy: e.healthy === true,
      labels: (asObject(e.labels) ?? {}) as Record<string, string>,
      ...(typeof e.locality === "string" ? { locality: e.locality } : {}),
      source: String(e.source ?? ""),
    };
  });
}

/** The badges of an endpoint's source: a VM, and one registered by its agent rather than in config. */
function sourceBadges(model: MeshModel, source: string): string {
  if (!source.includes("/WorkloadEntry/")) return "";
  const auto = !model.push.config.resources.has(source);
  return ` ${badge("VM", "warn")}${auto ? ` ${badge("auto-registered", "info")}` : ""}`;
}

/** Where a resource was read, as "file:line" when known. */
function where(r: Resource): string {
  return `${r.source.file}:${r.source.line}`;
}

function label(r: Resource): string {
  return `${r.kind} ${r.metadata.namespace}/${r.metadata.name}`;
}

/** VirtualService http/tcp/tls rules whose destinations include `host`, as "VS: rule" lines. */
export function rulesRoutingTo(model: MeshModel, host: string): string[][] {
  const rows: string[][] = [];
  for (const vs of model.push.config.list<Record<string, unknown>>("networking.istio.io", "VirtualService")) {
    const ns = vs.metadata.namespace ?? "default";
    for (const kind of ["http", "tcp", "tls"] as const) {
      const rules = (vs.spec[kind] ?? []) as Array<
        {
          name?: string;
          match?: unknown;
          route?: Array<
            { destination?: { host?: string; subset?: string; port?: { number?: number } }; weight?: number }
          >;
        }
      >;
      rules.forEach((rule, i) => {
        const hits = (rule.route ?? []).filter((d) =>
          d.destination?.host && resolveHost(d.destination.host, ns) === host
        );
        if (hits.length === 0) return;
        rows.push([
          esc(label(vs)),
          esc(`${kind}[${i}]${rule.name ? ` ${rule.name}` : ""}`),
          `<code>${esc(rule.match ? JSON.stringify(rule.match) : "any")}</code>`,
          esc(
            hits.map((d) =>
              `${d.destination!.subset ?? "(all)"}${d.weight !== undefined ? ` ${d.weight}%` : ""}`
            ).join(", "),
          ),
        ]);
      });
    }
  }
  return rows;
}

/** The list page. */
export function servicesPage(model: MeshModel, query: URLSearchParams, endpointz?: unknown): Html {
  const host = query.get("host");
  if (host) return servicePage(model, host, pilotEndpoints(endpointz));
  const q = (query.get("q") ?? "").toLowerCase();
  const all = model.push.services.filter((s) =>
    q === "" || s.hostname.includes(q) || s.namespace.includes(q)
  );
  const p = pageOf(all.length, query.get("page") ?? undefined, SERVICES_PER_PAGE);
  const rows = all.slice(p.from, p.to).map((s) => {
    const eps = endpointsOf(model, s);
    const healthy = eps.filter((e) => e.healthy).length;
    return [
      `<a href="/ui/services?host=${encodeURIComponent(s.hostname)}">${esc(s.hostname)}</a>`,
      esc(s.namespace),
      esc(s.ports.map((x) => `${x.number}/${x.protocol}`).join(", ")),
      `${healthy}/${eps.length} ${eps.length > 0 && healthy < eps.length ? badge("unhealthy", "warn") : ""}`,
      esc(s.location === "MESH_EXTERNAL" ? "external" : "mesh"),
    ];
  });
  const workloads = model.push.config.list<{ address?: string; labels?: Record<string, string> }>(
    "networking.istio.io",
    "WorkloadEntry",
  ).filter((w) => q === "" || w.metadata.name.includes(q) || (w.metadata.namespace ?? "").includes(q));
  return page(
    "Services and workloads",
    "services",
    html`
      <form method="get"
        action="/ui/services"><label>filter<input name="q" value="${q}" placeholder="host or namespace"></label><button>Filter</button></form>
      <h2>Services (${all.length})</h2>${table(
        ["host", "namespace", "ports", "healthy endpoints", "location"],
        rows,
        "no services",
      )}${raw(pager("/ui/services", query, p))}
      <h2>Workloads (${workloads.length})</h2>${table(
        ["workload", "address", "labels", "kind"],
        workloads.slice(0, SERVICES_PER_PAGE).map((w) => [
          esc(`${w.metadata.name}.${w.metadata.namespace}`),
          esc(w.spec.address ?? ""),
          `<code>${esc(Object.entries(w.spec.labels ?? {}).map(([k, v]) => `${k}=${v}`).join(" "))}</code>`,
          badge("VM", "warn"),
        ]),
        "no workload entries",
      )}
    `,
  );
}

/**
 * One service; `fromPilot` are its endpoints in pilot's push (every registry, auto-registered
 * VMs too) when pilot runs here, else the config's are shown.
 */
export function servicePage(model: MeshModel, host: string, fromPilot?: readonly EndpointView[]): Html {
  const svc = model.push.services.find((s) => s.hostname === host);
  if (svc === undefined) {
    return page("Service", "services", html`<p>no service <code>${host}</code> in the current config</p>`);
  }
  const eps: readonly EndpointView[] = fromPilot ?? endpointsOf(model, svc);
  const dr = model.push.config.list<
    { host?: string; subsets?: Array<{ name: string; labels?: Record<string, string> }> }
  >(
    "networking.istio.io",
    "DestinationRule",
  ).filter((r) =>
    r.spec.host !== undefined && resolveHost(r.spec.host, r.metadata.namespace ?? "default") === host
  );
  const subsets = dr.flatMap((r) =>
    (r.spec.subsets ?? []).map((s) => [
      esc(s.name),
      `<code>${esc(Object.entries(s.labels ?? {}).map(([k, v]) => `${k}=${v}`).join(" "))}</code>`,
      esc(label(r)),
    ])
  );
  const seen = new Set<string>();
  const policies: string[][] = [];
  const workloads = eps.length > 0 ? eps : [];
  const addPolicies = (labels: Readonly<Record<string, string>>) => {
    const w = { namespace: svc.namespace, labels };
    for (const r of [...model.push.peerAuthentications(w), ...model.push.authorizationPolicies(w)]) {
      const k = label(r);
      if (seen.has(k)) continue;
      seen.add(k);
      const spec = r.spec as { mtls?: { mode?: string }; action?: string };
      policies.push([
        esc(k),
        esc(
          r.kind === "PeerAuthentication"
            ? `mTLS ${spec.mtls?.mode ?? "inherited"}`
            : `action ${spec.action ?? "ALLOW"}`,
        ),
        esc(where(r)),
      ]);
    }
  };
  if (workloads.length === 0) addPolicies({});
  for (const e of workloads) addPolicies(e.labels);
  return page(
    `Service ${host}`,
    "services",
    html`<p>namespace <b>${svc.namespace}</b>, ports ${
      svc.ports.map((p) => `${p.name} ${p.number}/${p.protocol}`).join(", ")
    }, addresses ${svc.addresses.join(", ") || "none"}, resolution ${svc.resolution}, mTLS ${
      model.mtlsMode(svc.namespace)
    }; declared by <code>${svc.source}</code></p>
<h2>Endpoints (${eps.length})</h2><p class="muted">${
      fromPilot
        ? "as pilot serves them, from every registry"
        : "as the config declares them (pilot does not run here)"
    }</p>${
      table(
        ["address", "port", "health", "labels", "locality", "source"],
        eps.map((e) => [
          esc(e.address),
          String(e.port),
          e.healthy ? badge("healthy", "ok") : badge("unhealthy", "bad"),
          `<code>${esc(Object.entries(e.labels).map(([k, v]) => `${k}=${v}`).join(" "))}</code>`,
          esc(e.locality ?? ""),
          esc(e.source) + sourceBadges(model, e.source),
        ]),
        "no endpoints",
      )
    }
<h2>Subsets</h2>${table(["subset", "labels", "DestinationRule"], subsets, "no subsets")}
<h2>VirtualService rules routing here</h2>${
      table(["VirtualService", "rule", "match", "to"], rulesRoutingTo(model, host), "none")
    }
<h2>Policies applying</h2>${table(["policy", "effect", "where"], policies, "none")}`,
  );
}
