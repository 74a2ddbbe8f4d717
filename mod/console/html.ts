/**
 * Small HTML building blocks the pages share, on hono/html: tables, badges, links, time and
 * number formats. Every value put in a page goes through hono/html's escaping.
 *
 * @module
 */
import { html, raw } from "hono/html";
import type { HtmlEscapedString } from "hono/utils/html";

/** A piece of HTML (what hono/html's template tag returns). */
export type Html = HtmlEscapedString | Promise<HtmlEscapedString>;

/** Escapes text for HTML element content and attribute values. */
export function esc(s: string): string {
  return s.replace(/[&<>"']/g, (ch) => `&#${ch.charCodeAt(0)};`);
}

/** A table of `rows` under `head`; cells are HTML already (use html`` or esc). */
export function table(head: readonly string[], rows: readonly (readonly string[])[], empty = "none"): Html {
  if (rows.length === 0) return html`<p class="muted">${empty}</p>`;
  const th = head.map((h) => `<th>${esc(h)}</th>`).join("");
  const body = rows.map((r) => `<tr>${r.map((c) => `<td>${c}</td>`).join("")}</tr>`).join("");
  return html`
    <table>
      <thead>
        <tr>${raw(th)}</tr>
      </thead>
      <tbody>${raw(body)}</tbody>
    </table>
  `;
}

/** A coloured label: "ok", "warn" or "bad". */
export function badge(text: string, tone: "ok" | "warn" | "bad" | "info"): string {
  return `<span class="b ${tone}">${esc(text)}</span>`;
}

/** A rate with three significant digits. */
export function fmtNum(n: number | undefined, unit = ""): string {
  if (n === undefined || !Number.isFinite(n)) return "–";
  const s = n === 0
    ? "0"
    : Math.abs(n) >= 100
    ? n.toFixed(0)
    : Math.abs(n) >= 1
    ? n.toFixed(2)
    : n.toPrecision(2);
  return s + unit;
}

/** A fraction as a percentage. */
export function fmtPct(n: number | undefined): string {
  return n === undefined || !Number.isFinite(n) ? "–" : `${(n * 100).toFixed(n > 0 && n < 0.01 ? 2 : 1)}%`;
}

/** How long until (or since) `iso`, from `now`, e.g. "in 3d 4h" or "2h ago". */
export function fmtUntil(iso: string | undefined | null, now: number): string {
  if (!iso) return "–";
  const t = Date.parse(iso);
  if (!Number.isFinite(t)) return esc(iso);
  const d = t - now;
  const a = Math.abs(d);
  const parts = a >= 86_400_000
    ? `${Math.floor(a / 86_400_000)}d ${Math.floor((a % 86_400_000) / 3_600_000)}h`
    : a >= 3_600_000
    ? `${Math.floor(a / 3_600_000)}h ${Math.floor((a % 3_600_000) / 60_000)}m`
    : `${Math.floor(a / 60_000)}m ${Math.floor((a % 60_000) / 1000)}s`;
  return d >= 0 ? `in ${parts}` : `${parts} ago`;
}

/** Query-string page numbers: rows `[from, to)` of page `page` (0-based) of `size`. */
export function pageOf(
  total: number,
  pageParam: string | undefined,
  size: number,
): { page: number; from: number; to: number; pages: number } {
  const pages = Math.max(1, Math.ceil(total / size));
  const want = Number.parseInt(pageParam ?? "0", 10);
  const page = Number.isFinite(want) ? Math.min(Math.max(0, want), pages - 1) : 0;
  return { page, from: page * size, to: Math.min(total, (page + 1) * size), pages };
}

/** Links to the previous and next page, keeping the other query parameters. */
export function pager(base: string, query: URLSearchParams, p: { page: number; pages: number }): string {
  if (p.pages <= 1) return "";
  const at = (n: number) => {
    const q = new URLSearchParams(query);
    q.set("page", String(n));
    return `${base}?${esc(q.toString())}`;
  };
  const prev = p.page > 0 ? `<a href="${at(p.page - 1)}">← previous</a>` : "";
  const next = p.page < p.pages - 1 ? `<a href="${at(p.page + 1)}">next →</a>` : "";
  return `<p class="pager">${prev} page ${p.page + 1} of ${p.pages} ${next}</p>`;
}
