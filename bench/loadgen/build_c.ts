/**
 * Compiles the benchmarks' C load generators (bench/loadgen/*.c, on libnghttp2) into the temporary
 * directory, once per source version, so that every benchmark and test run reuses one executable.
 */
import { spawn } from "bun";
import { createHash } from "node:crypto";
import { existsSync, readFileSync, renameSync } from "node:fs";
import { tmpdir } from "node:os";
import { basename, join } from "node:path";

const built = new Map<string, string>();

/**
 * Compiles `source` with `cc -O2 -Wall` and links `libs` (e.g. ["-lnghttp2"]); returns the
 * executable's path, named after the source and a hash of its text. `hint` is appended to the error
 * when the build fails (how to get the compiler and libraries, or what to run instead).
 */
export async function buildC(source: string, libs: readonly string[], hint: string): Promise<string> {
  const cached = built.get(source);
  if (cached) return cached;
  const hash = createHash("sha256").update(readFileSync(source)).digest("hex").slice(0, 16);
  const out = join(tmpdir(), `meshd-${basename(source, ".c").replaceAll("_", "-")}-${hash}`);
  if (!existsSync(out)) {
    const tmp = `${out}.${process.pid}`;
    const cc = spawn(["cc", "-O2", "-Wall", "-o", tmp, source, ...libs], {
      stderr: "pipe",
      stdout: "ignore",
    });
    const [code, err] = await Promise.all([cc.exited, new Response(cc.stderr).text()]);
    if (code !== 0) throw new Error(`building ${source} failed (${hint}):\n${err}`);
    renameSync(tmp, out);
  }
  built.set(source, out);
  return out;
}
