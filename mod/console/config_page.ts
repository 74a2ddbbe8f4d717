/**
 * The config page: sources, files and resources with their status (errors as file:line:col),
 * analyzer findings, and the difference between two of the versions the console kept.
 *
 * @module
 */
import { html, raw } from "hono/html";
import type { ConfigStore, Diagnostic } from "../galley/mod.ts";
import { type ConfigHistory, diffSnapshots, lineDiff, resourceText } from "./history.ts";
import { badge, esc, type Html, pageOf, pager, table } from "./html.ts";
import { page } from "./layout.ts";

/** Rows per page of the resource list. */
export const RESOURCES_PER_PAGE = 200;

function diffSection(history: ConfigHistory, query: URLSearchParams): Html {
  const versions = history.versions();
  if (versions.length === 0) return html`<p class="muted">no config versions kept</p>`;
  const newest = versions.at(-1)!.version;
  const from = Number.parseInt(query.get("from") ?? String(versions.at(-2)?.version ?? newest), 10);
  const to = Number.parseInt(query.get("to") ?? String(newest), 10);
  const options = (sel: number) =>
    versions.map((s) =>
      `<option value="${s.version}"${s.version === sel ? " selected" : ""}>${s.version}</option>`
    ).join("");
  const form = html`
    <form method="get"
      action="/ui/config"><label>from version<select name="from">${raw(
        options(from),
      )}</select></label><label>to version<select name="to">${raw(
        options(to),
      )}</select></label><button>Compare</button></form>
  `;
  const a = history.get(from);
  const b = history.get(to);
  if (a === undefined || b === undefined) {
    return html`${form}<p class="muted">version ${
      a === undefined ? from : to
    } is no longer kept (the last ${versions.length} are)</p>`;
  }
  const d = diffSnapshots(a, b);
  const lines: string[] = [];
  for (const k of [...d.removed, ...d.added, ...d.changed]) {
    lines.push(`<b>${esc(k)}</b>`);
    for (const l of lineDiff(resourceText(a.resources.get(k)), resourceText(b.resources.get(k)))) {
      if (l.op === " ") continue;
      lines.push(`<span class="${l.op === "+" ? "add" : "del"}">${l.op} ${esc(l.text)}</span>`);
    }
  }
  return html`${form}<p>${d.added.length} added, ${d.removed.length} removed, ${d.changed.length} changed from version ${from} to ${to}</p>${
    lines.length > 0 ? html`<pre class="diff">${raw(lines.join("\n"))}</pre>` : ""
  }`;
}

/** Renders the config page. */
export function configPage(
  store: ConfigStore | undefined,
  findings: readonly Diagnostic[],
  history: ConfigHistory,
  query: URLSearchParams,
): Html {
  if (store === undefined) {
    return page("Config", "config", html`<p class="muted">galley does not run here</p>`);
  }
  const status = store.status();
  const errors = [
    ...status.origins.filter((o) => o.state !== "accepted").flatMap((o) =>
      o.errors.map((
        e,
      ) => [esc(o.origin), badge(o.state, o.state === "rejected" ? "bad" : "warn"), `<code>${esc(e)}</code>`])
    ),
    ...status.resources.filter((r) => r.state === "rejected").flatMap((r) =>
      r.errors.map((e) => [
        esc(r.resource),
        badge(r.servingPrevious ? "rejected, previous in force" : "rejected", "bad"),
        `<code>${esc(e)}</code>`,
      ])
    ),
  ];
  const q = (query.get("q") ?? "").toLowerCase();
  const list = status.resources.filter((r) =>
    q === "" || r.resource.toLowerCase().includes(q) || r.origin.toLowerCase().includes(q)
  );
  const p = pageOf(list.length, query.get("page") ?? undefined, RESOURCES_PER_PAGE);
  const rows = list.slice(p.from, p.to).map((r) => [
    esc(r.resource),
    r.state === "accepted" ? badge("accepted", "ok") : badge("rejected", "bad"),
    esc(r.origin),
    esc(r.source),
  ]);
  return page(
    "Config",
    "config",
    html`
      <p>version <b>${store.snapshot().version}</b>, ${status.resources.length} resources from ${status
        .origins.length} files or keys</p>
      <h2>Sources</h2>${table(
        ["source", "state", "resources", "bytes", "errors"],
        status.sources.map((s) => [
          esc(s.source),
          badge(s.state, s.state === "ok" ? "ok" : "bad"),
          String(s.resources),
          String(s.bytes),
          `<code>${esc(s.errors.join("; "))}</code>`,
        ]),
      )}
      <h2>Errors</h2>${table(["where", "state", "error"], errors, "no config errors")}
      <h2>Analyzer findings</h2>${table(
        ["code", "severity", "where", "finding"],
        findings.map((d) => [
          esc(d.code ?? ""),
          badge(d.severity, d.severity === "error" ? "bad" : d.severity === "warning" ? "warn" : "info"),
          `<code>${esc(d.pos ? `${d.pos.file}:${d.pos.line}:${d.pos.col}` : d.resource ?? "")}</code>`,
          esc(d.message),
        ]),
        "no findings",
      )}
      <h2>Resources</h2><form method="get"
        action="/ui/config"><label>filter<input name="q" value="${q}"></label><button>Filter</button></form>${table(
          ["resource", "state", "file or key", "source"],
          rows,
          "no resources",
        )}${raw(pager("/ui/config", query, p))}
      <h2>Compare versions</h2>${diffSection(history, query)}
    `,
  );
}
