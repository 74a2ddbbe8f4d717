/**
 * Whether this process is the compiled `meshd` binary (`npm run build`, i.e. `bun build
 * --compile`) or the runtime running the sources (`bun main.ts`).
 *
 * Measured with Bun 1.4 on Linux: in a compiled binary `Bun.main` is the entry point inside the
 * embedded file system (`/$bunfs/root/meshd`) and `process.execPath` is the binary itself, under
 * whatever name it was installed; run from the sources, `Bun.main` is the path of main.ts and
 * `process.execPath` is the Bun runtime. So the entry point tells, not the executable's name.
 *
 * @module
 */

/** Where Bun's compiled binaries keep their embedded entry point (Linux and macOS). */
const EMBEDDED_ROOT = "/$bunfs/";

/** What tells a compiled binary from the runtime; defaults are this process's values. */
export interface ProcessEntry {
  /** `Bun.main`: the entry point's path. */
  readonly main: string;
  /** `process.execPath`: the executable running. */
  readonly execPath: string;
}

/**
 * The path of the running executable when it is the compiled meshd binary, or undefined when
 * meshd runs from its sources under the Bun runtime.
 */
export function compiledExecutable(
  entry: ProcessEntry = { main: Bun.main, execPath: process.execPath },
): string | undefined {
  return entry.main.startsWith(EMBEDDED_ROOT) ? entry.execPath : undefined;
}
