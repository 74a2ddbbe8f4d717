/**
 * The console's static assets: the browser script (transpiled when the program is bundled, see
 * client_bundle.ts) and the style sheet, each served under a content hash so that browsers may
 * keep them for good.
 *
 * @module
 */
import { createHash } from "node:crypto";
import { clientScript } from "./client_bundle.ts" with { type: "macro" };
import { STYLE } from "./style.ts";

/** The browser script. */
export const APP_JS: string = clientScript();

function hashOf(text: string): string {
  return createHash("sha256").update(text).digest("hex").slice(0, 12);
}

/** The script's content hash (its URL is /ui/app.js?v=HASH). */
export const APP_JS_HASH: string = hashOf(APP_JS);

/** The style sheet's content hash (/ui/style.css?v=HASH). */
export const STYLE_HASH: string = hashOf(STYLE);

export { STYLE };
