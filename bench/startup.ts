/**
 * Start-up benchmark of the compiled binary: size, time to first log line, time until
 * /healthz/ready answers 200, and idle RSS, against the bare runtime in the same run
 * (`meshd version`, which loads no module).
 *
 * Usage: bun bench/startup.ts [--runs N] [--binary PATH]
 */
import { spawn, spawnSync } from "bun";
import { mkdtempSync, readFileSync, rmSync, statSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { benchArgs } from "./_args.ts";

const ROOT = resolve(import.meta.dir, "..");

/** One start-up measurement. */
export interface StartupSample {
  firstLogMs: number;
  readyMs: number;
  idleRssKiB: number;
}

/** Builds the binary into a temporary directory; returns its path and a cleanup function. */
export function buildBinary(): { bin: string; cleanup: () => void } {
  const dir = mkdtempSync(join(tmpdir(), "meshd-bench-"));
  const bin = join(dir, "meshd");
  const res = spawnSync(
    [
      process.execPath,
      "build",
      join(ROOT, "main.ts"),
      "--compile",
      "--bytecode",
      "--format=esm",
      "--minify",
      "--outfile",
      bin,
    ],
    { cwd: ROOT, stdout: "pipe", stderr: "pipe" },
  );
  if (res.exitCode !== 0) throw new Error(`build failed: ${res.stderr.toString()}`);
  return { bin, cleanup: () => rmSync(dir, { recursive: true, force: true }) };
}

/** Time for `meshd version` to exit: the runtime's own start-up floor. */
export function bareStartMs(bin: string): number {
  const t0 = performance.now();
  const res = spawnSync([bin, "version"], { stdout: "pipe", stderr: "pipe" });
  if (res.exitCode !== 0) throw new Error("meshd version failed");
  return performance.now() - t0;
}

/** Starts `meshd serve` with the sample config, measures, and stops it. */
export async function measureStartup(bin: string, configDir: string, idleMs = 1000): Promise<StartupSample> {
  const dataDir = mkdtempSync(join(tmpdir(), "meshd-bench-data-"));
  try {
    return await measureOnce(bin, configDir, dataDir, idleMs);
  } finally {
    rmSync(dataDir, { recursive: true, force: true });
  }
}

async function measureOnce(
  bin: string,
  configDir: string,
  dataDir: string,
  idleMs: number,
): Promise<StartupSample> {
  const t0 = performance.now();
  const proc = spawn(
    [
      bin,
      "serve",
      "--grpc-addr=127.0.0.1:0",
      "--grpc-tls-addr=127.0.0.1:0",
      "--admin-addr=127.0.0.1:0",
      "--webhook-addr=127.0.0.1:0",
      `--config-dir=${configDir}`,
      `--data-dir=${dataDir}`,
      "--log-format=json",
    ],
    { cwd: "/", stdout: "ignore", stderr: "pipe" },
  );
  let firstLogMs = 0;
  let admin: string | undefined;
  const reader = (async () => {
    let buf = "";
    for await (const chunk of proc.stderr) {
      buf += new TextDecoder().decode(chunk);
      if (!firstLogMs && buf.includes("\n")) firstLogMs = performance.now() - t0;
      const m = /"msg":"admin server listening","addr":"([^"]+)"/.exec(buf);
      if (m) admin = m[1];
    }
  })();
  let readyMs = 0;
  const deadline = Date.now() + 20_000;
  while (Date.now() < deadline) {
    if (admin) {
      const ok = await fetch(`http://${admin}/healthz/ready`).then((r) => r.status === 200, () => false);
      if (ok) {
        readyMs = performance.now() - t0;
        break;
      }
    }
    await Bun.sleep(2);
  }
  if (!readyMs) {
    proc.kill("SIGKILL");
    throw new Error("meshd did not become ready within 20 s");
  }
  await Bun.sleep(idleMs);
  const status = readFileSync(`/proc/${proc.pid}/status`, "utf8");
  const idleRssKiB = Number(/VmRSS:\s+(\d+)/.exec(status)?.[1] ?? 0);
  proc.kill("SIGTERM");
  const code = await proc.exited;
  await reader;
  if (code !== 0) throw new Error(`meshd exited ${code} on SIGTERM`);
  return { firstLogMs, readyMs, idleRssKiB };
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)]!;
}

if (import.meta.main) {
  const args = benchArgs();
  const runs = args.number("--runs", 7) || 7;
  const given = args.string("--binary");
  const built = given ? { bin: given, cleanup: () => {} } : buildBinary();
  try {
    const size = statSync(built.bin).size;
    const bare: number[] = [];
    const samples: StartupSample[] = [];
    for (let i = 0; i < runs; i++) {
      bare.push(bareStartMs(built.bin));
      samples.push(await measureStartup(built.bin, join(ROOT, "config/samples"), 500));
    }
    const bareMs = median(bare);
    const ready = median(samples.map((s) => s.readyMs));
    const first = median(samples.map((s) => s.firstLogMs));
    const rss = median(samples.map((s) => s.idleRssKiB));
    console.log(`binary size           ${(size / 1e6).toFixed(1)} MB`);
    console.log(`meshd version (bare)  ${bareMs.toFixed(0)} ms (median of ${runs})`);
    console.log(
      `first log line        ${first.toFixed(0)} ms   ratio to bare ${(first / bareMs).toFixed(2)}`,
    );
    console.log(
      `ready (samples)       ${ready.toFixed(0)} ms   ratio to bare ${(ready / bareMs).toFixed(2)}`,
    );
    console.log(`idle RSS              ${(rss / 1024).toFixed(1)} MiB`);
  } finally {
    built.cleanup();
  }
}
