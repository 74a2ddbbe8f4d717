/**
 * The security page: the CA (mode, trust domain, signing certificate, roots and their expiry),
 * the workload certificates issued (identity, serial, issued at, expiry; citadel's
 * /debug/certz, filtered and paged) and the requests the CA refused with their reasons,
 * authorization denials by mixer, VM registrations refused, and admin requests refused.
 *
 * @module
 */
import { html, raw } from "hono/html";
import type { MetricsRegistry } from "../shared/metrics.ts";
import { badge, esc, fmtUntil, type Html, pageOf, pager, table } from "./html.ts";
import { page } from "./layout.ts";
import { rotationStage } from "./overview_page.ts";
import { asArray, asObject, type CaView } from "./source.ts";

/** One labelled value of a counter. */
export interface CounterValue {
  readonly labels: Readonly<Record<string, string | number>>;
  readonly value: number;
}

/** The values of the counters named, from the metrics registry (absent counters: empty). */
export async function counters(
  metrics: MetricsRegistry | undefined,
  names: readonly string[],
): Promise<Map<string, CounterValue[]>> {
  const out = new Map<string, CounterValue[]>(names.map((n) => [n, []]));
  if (metrics === undefined) return out;
  for (const name of names) {
    const m = metrics.getSingleMetric(name);
    if (m === undefined) continue;
    const got = await m.get();
    out.set(
      name,
      got.values.map((v) => ({ labels: v.labels as Record<string, string | number>, value: v.value })),
    );
  }
  return out;
}

const ISSUED = "citadel_certs_issued_total";
const CSR_REFUSED = "citadel_csr_refused_total";
const CHECKS = "mixer_check_total";
const ADMIN_REFUSED = "meshd_admin_requests_refused_total";

/** Issued certificates listed per page. */
export const CERTS_PER_PAGE = 100;
/** Refusals listed. */
export const MAX_REFUSAL_ROWS = 50;

/** Rows of the issued certificates in `certz` whose identity contains `q`, for the page asked. */
export function issuedRows(
  certz: unknown,
  query: URLSearchParams,
  now: number,
): { rows: string[][]; total: number; shown: number; pager: string } {
  const q = (query.get("q") ?? "").toLowerCase();
  const all = asArray(asObject(certz)?.issued).map((x) => asObject(x) ?? {});
  const list = all.filter((c) => q === "" || String(c.identity ?? "").toLowerCase().includes(q));
  const p = pageOf(list.length, query.get("page") ?? undefined, CERTS_PER_PAGE);
  const rows = list.slice(p.from, p.to).map((c) => [
    esc(String(c.identity ?? "")),
    `<code>${esc(String(c.serial ?? ""))}</code>`,
    esc(String(c.issuedAt ?? "")),
    esc(String(c.notAfter ?? "")),
    fmtUntil(String(c.notAfter ?? ""), now),
    esc(String(c.via ?? "")),
  ]);
  return { rows, total: all.length, shown: list.length, pager: pager("/ui/security", query, p) };
}

/** Rows of the newest refusals in `certz`. */
export function refusalRows(certz: unknown): string[][] {
  return asArray(asObject(certz)?.refused).slice(0, MAX_REFUSAL_ROWS).map((x) => {
    const r = asObject(x) ?? {};
    return [
      esc(String(r.at ?? "")),
      badge(String(r.reason ?? "?"), "bad"),
      esc(String(r.caller ?? "")),
      esc(String(r.requested ?? "")),
      `<code>${esc(String(r.message ?? ""))}</code>`,
    ];
  });
}

/** Renders the security page; `certz` is citadel's /debug/certz (undefined when citadel does not run here). */
export async function securityPage(
  ca: CaView | undefined,
  metrics: MetricsRegistry | undefined,
  registrations: unknown,
  now: number,
  certz?: unknown,
  query: URLSearchParams = new URLSearchParams(),
): Promise<Html> {
  const issued = issuedRows(certz, query, now);
  const limit = asObject(certz)?.limit;
  const c = await counters(metrics, [ISSUED, CSR_REFUSED, CHECKS, ADMIN_REFUSED]);
  const sum = (n: string) => (c.get(n) ?? []).reduce((s, v) => s + v.value, 0);
  const byLabel = (n: string, label: string, skip?: (v: CounterValue) => boolean) =>
    (c.get(n) ?? []).filter((v) => v.value > 0 && !(skip?.(v) ?? false)).map((v) => [
      esc(String(v.labels[label] ?? "")),
      String(v.value),
    ]);
  const denied = (c.get(CHECKS) ?? []).filter((v) =>
    v.value > 0 && String(v.labels.code) !== "0" && v.labels.code !== "OK"
  );
  const refusedRegs = asArray(registrations).map((r) => asObject(r) ?? {}).filter((r) =>
    r.state === "REFUSED"
  );
  const certRows = ca?.signing
    ? [ca.signing, ...(ca.roots ?? []).filter((r) => r.fingerprint !== ca.signing?.fingerprint)].map((x) => [
      esc(x.subject),
      x.fingerprint === ca.signing?.fingerprint ? badge("signing", "ok") : badge("trusted root", "info"),
      esc(x.notAfter),
      fmtUntil(x.notAfter, now),
      esc(x.leavesValidUntil ?? ""),
    ])
    : [];
  return page(
    "Security",
    "security",
    html`
      ${ca === undefined
        ? html`<p class="muted">citadel does not run here</p>`
        : html`<p>mode <b>${ca.mode ?? "starting"}</b>, trust domain <b>${
          ca.trustDomain ?? "–"
        }</b>; rotation: ${rotationStage(ca)}</p>${
          table(["certificate", "role", "expires", "", "leaves it signed valid until"], certRows)
        }`}
      <h2>Workload certificates</h2><p>${sum(ISSUED)} issued since start; ${sum(
        CSR_REFUSED,
      )} requests refused.</p>
      <form method="get"
        action="/ui/security"><label>identity<input name="q" value="${query.get("q") ??
          ""}" placeholder="spiffe://…"></label><button>Filter</button></form>
      <h2>Issued (${issued.shown} of the last ${issued.total}${typeof limit === "number"
        ? `, at most ${limit} kept`
        : ""})</h2>${table(
          ["identity", "serial", "issued at", "expires", "", "via"],
          issued.rows,
          certz === undefined ? "citadel does not run here" : "no workload certificates issued since start",
        )}${raw(issued.pager)}
      <h2>Recent refusals by the CA</h2>${table(
        ["when", "reason", "caller", "requested identity", "message"],
        refusalRows(certz),
        "no certificate requests refused since start",
      )}${table(
        ["refusal reason", "count"],
        byLabel(CSR_REFUSED, "reason"),
        "no certificate requests refused",
      )}
      <h2>Authorization denials (mixer)</h2>${table(
        ["API", "status code", "count"],
        denied.map((
          v,
        ) => [esc(String(v.labels.api ?? "")), esc(String(v.labels.code ?? "")), String(v.value)]),
        "no checks denied",
      )}
      <h2>Registrations refused</h2>${table(
        ["workload", "group", "identity", "reason", "when"],
        refusedRegs.map((r) => [
          esc(String(r.workload ?? "")),
          esc(String(r.group ?? "")),
          esc(String(r.identity ?? "")),
          `<code>${esc(String(r.reason ?? ""))}</code>`,
          esc(String(r.refusedAt ?? "")),
        ]),
        "none",
      )}
      <h2>Admin requests refused</h2>${table(["reason", "count"], byLabel(ADMIN_REFUSED, "reason"), "none")}
    `,
  );
}
