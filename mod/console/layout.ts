/**
 * The frame every console page shares: the document head (style sheet and script by content
 * hash), the navigation, and the page's own content.
 *
 * @module
 */
import { html, raw } from "hono/html";
import { APP_JS_HASH, STYLE_HASH } from "./assets.ts";
import type { Html } from "./html.ts";

/** The pages, in navigation order: path below /ui/ and title. */
export const PAGES: ReadonlyArray<readonly [string, string]> = [
  ["", "Overview"],
  ["graph", "Service graph"],
  ["services", "Services"],
  ["proxies", "Proxies"],
  ["config", "Config"],
  ["security", "Security"],
];

/** A whole page: `title`, the navigation with `active` marked, and `body`. */
export function page(title: string, active: string, body: Html): Html {
  const nav = PAGES.map(([path, name]) =>
    `<a href="/ui/${path}"${path === active ? ' class="on"' : ""}>${name}</a>`
  ).join("");
  return html`
    <!doctype html>
    <html lang="en">
      <head>
        <meta charset="utf-8">
        <meta name="viewport" content="width=device-width,initial-scale=1">
        <title>${title} · meshd</title>
        <link rel="icon" href="data:,">
        <link rel="stylesheet" href="/ui/style.css?v=${STYLE_HASH}">
        <script defer src="/ui/app.js?v=${APP_JS_HASH}"></script>
      </head>
      <body>
        <header><b>meshd</b>${raw(nav)}</header>
        <main><h1>${title}</h1>${body}</main>
      </body>
    </html>
  `;
}
