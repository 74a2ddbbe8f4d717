/**
 * Turns the browser script (client/app.ts) into minified JavaScript. Imported as a Bun macro
 * (`with { type: "macro" }`), so it runs when the code is bundled — by `bun build --compile`
 * into the binary, or by Bun's transpiler when run from source — and the page script is a string
 * constant in the program: nothing is read from disk or fetched at run time.
 *
 * @module
 */
import { readFileSync } from "node:fs";

/** The browser script as minified JavaScript. */
export function clientScript(): string {
  const ts = readFileSync(new URL("./client/app.ts", import.meta.url), "utf8");
  const t = new Bun.Transpiler({ loader: "ts", target: "browser", minifyWhitespace: true });
  return t.transformSync(ts);
}
