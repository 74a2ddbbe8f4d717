/** Build identity, compiled into the binary. */
import pkg from "../../package.json" with { type: "json" };

/** meshd's version (from package.json). */
export const VERSION: string = pkg.version;

/** Version details as `/version` and `meshd version` print them. */
export function versionInfo(): { version: string; runtime: string; platform: string } {
  return { version: VERSION, runtime: `bun ${Bun.version}`, platform: `${process.platform}/${process.arch}` };
}
