/**
 * The overview page: modules and their readiness, version, counts of services, workloads, proxies
 * and agents, config errors and analyzer findings, and the CA (roots, expiry, rotation stage).
 *
 * @module
 */
import { html, raw } from "hono/html";
import type { Diagnostic } from "../galley/mod.ts";
import { versionInfo } from "../shared/version.ts";
import { badge, esc, fmtUntil, type Html, table } from "./html.ts";
import { page } from "./layout.ts";
import type { MeshModel } from "./model.ts";
import { asArray, asObject, type CaView, type ConsoleSource, readCa, readSync } from "./source.ts";

/** The CA's rotation stage from its roots: one root, a new root prepared, or old roots left to retire. */
export function rotationStage(ca: CaView): string {
  const roots = ca.roots ?? [];
  if (roots.length <= 1) return "steady (one root)";
  const signingIsNewest = roots.every((r) =>
    r.signing || (ca.signing !== undefined && r.notAfter <= ca.signing.notAfter)
  );
  return signingIsNewest
    ? `new root signing, ${roots.length - 1} old root(s) still trusted: retire once leaves are re-issued`
    : `new root prepared (trusted, not signing): activate once every workload trusts it`;
}

function card(label: string, value: number | string, href?: string): string {
  const v = `<b>${esc(String(value))}</b>${esc(label)}`;
  return `<div class="card">${href ? `<a href="${href}">${v}</a>` : v}</div>`;
}

/** Renders the overview. */
export async function overviewPage(
  src: ConsoleSource,
  model: MeshModel,
  findings: readonly Diagnostic[],
): Promise<Html> {
  const ready = src.readiness();
  const [sync, ca, regs] = await Promise.all([readSync(src), readCa(src), src.debug("registrationz")]);
  const agents = asArray(asObject(regs)?.registrations ?? regs).length;
  const workloads = new Set<string>();
  for (const r of model.push.config.list("networking.istio.io", "WorkloadEntry")) {
    workloads.add(`${r.metadata.namespace}/${r.metadata.name}`);
  }
  const status = src.config?.status();
  const rejected = status?.resources.filter((r) => r.state === "rejected") ?? [];
  const badOrigins = status?.origins.filter((o) => o.state !== "accepted") ?? [];
  const v = versionInfo() as unknown as Record<string, unknown>;
  const modules = ready.modules.map((
    m,
  ) => [esc(m), ready.notReady.includes(m) ? badge("not ready", "warn") : badge("ready", "ok")]);
  const errors = [
    ...badOrigins.flatMap((o) => o.errors.map((e) => [esc(o.origin), `<code>${esc(e)}</code>`])),
    ...rejected.flatMap((r) => r.errors.map((e) => [esc(r.resource), `<code>${esc(e)}</code>`])),
  ];
  const caRows = (ca?.roots ?? []).map((r) => [
    esc(r.subject),
    r.signing ? badge("signing", "ok") : badge("trusted", "info"),
    esc(r.notAfter),
    fmtUntil(r.notAfter, src.now()),
    `<code>${esc(r.fingerprint.slice(0, 16))}</code>`,
  ]);
  return page(
    "Overview",
    "",
    html`<p>version <code>${String(v.version ?? "")}</code> ${
      ready.stopping ? raw(badge("shutting down", "bad")) : ""
    }</p>
<div class="cards">${
      raw(
        [
          card("services", model.push.services.length, "/ui/services"),
          card("workloads", workloads.size, "/ui/services"),
          card("proxies", sync.length, "/ui/proxies"),
          card("agents", agents, "/ui/proxies"),
          card("config errors", errors.length, "/ui/config"),
          card("findings", findings.length, "/ui/config"),
        ].join(""),
      )
    }</div>
<h2>Modules</h2>${table(["module", "state"], modules)}
<h2>Config errors</h2>${table(["where", "error"], errors.slice(0, 50), "no config errors")}
<h2>Analyzer findings</h2>${
      table(
        ["code", "severity", "finding"],
        findings.slice(0, 50).map((d) => [
          esc(d.code ?? ""),
          badge(d.severity, d.severity === "error" ? "bad" : d.severity === "warning" ? "warn" : "info"),
          `<code>${esc(d.pos ? `${d.pos.file}:${d.pos.line}:${d.pos.col}: ` : "")}${esc(d.message)}</code>`,
        ]),
        "no findings",
      )
    }
<h2>Certificate authority</h2>${
      ca === undefined
        ? html`<p class="muted">citadel does not run here</p>`
        : html`<p>mode <b>${ca.mode ?? "starting"}</b>, trust domain <b>${
          ca.trustDomain ?? "–"
        }</b>, rotation: ${rotationStage(ca)}</p>${
          table(["root", "role", "expires", "", "fingerprint"], caRows)
        }`
    }`,
  );
}
