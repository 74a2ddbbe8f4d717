/**
 * Starts meshd as a real process for end-to-end tests, on loopback with ports picked by the OS,
 * and reads its addresses from its JSON logs.
 */
import { spawn, type Subprocess } from "bun";
import { mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { readAdminToken } from "../../mod/admin/token.ts";

/** The repository root. */
export const ROOT = resolve(import.meta.dir, "../..");

/** A meshd process under test. */
export interface MeshdProcess {
  readonly proc: Subprocess<"ignore", "pipe", "pipe">;
  readonly adminAddr: string;
  readonly grpcAddr: string;
  /** The daemon's --data-dir (holds the admin token, see adminPost). */
  readonly dataDir: string;
  /** Every JSON log line so far. */
  readonly logs: Array<Record<string, unknown>>;
  /** The `addr` field of the first log line with this message, once it appears. */
  addrOf(msg: string): Promise<string>;
  /** Sends SIGTERM and resolves with the exit code. */
  stop(): Promise<number>;
}

/** Options for startMeshd. */
export interface StartOptions {
  /** Extra arguments after `serve`. */
  args?: string[];
  /** Command to run instead of `bun main.ts` (e.g. the compiled binary). */
  command?: string[];
  cwd?: string;
  env?: Record<string, string>;
  /** How long to wait for both servers to listen. */
  timeoutMs?: number;
}

/** Starts `meshd serve` and waits until both servers listen. */
export async function startMeshd(opts: StartOptions = {}): Promise<MeshdProcess> {
  const command = opts.command ?? [process.execPath, resolve(ROOT, "main.ts")];
  const extra = opts.args ?? [];
  // Every listener on loopback, and state in a fresh directory unless the test gives its own.
  const defaults = ["--grpc-tls-addr=127.0.0.1:0"];
  const given = extra.findLastIndex((a) => a.startsWith("--data-dir"));
  const dataDir = given < 0
    ? mkdtempSync(join(tmpdir(), "meshd-data-"))
    : extra[given]!.startsWith("--data-dir=")
    ? extra[given]!.slice("--data-dir=".length)
    : extra[given + 1]!;
  if (given < 0) defaults.push(`--data-dir=${dataDir}`);
  const proc = spawn(
    [
      ...command,
      "serve",
      "--grpc-addr=127.0.0.1:0",
      "--admin-addr=127.0.0.1:0",
      "--webhook-addr=127.0.0.1:0",
      "--log-format=json",
      ...defaults,
      ...extra,
    ],
    {
      cwd: opts.cwd ?? ROOT,
      stdin: "ignore",
      stdout: "pipe",
      stderr: "pipe",
      env: { ...process.env, ...opts.env },
    },
  );
  const logs: Array<Record<string, unknown>> = [];
  let admin: string | undefined;
  let grpc: string | undefined;
  let stderrText = "";
  const listening = new Promise<void>((resolveListening, reject) => {
    (async () => {
      const decoder = new TextDecoder();
      let buf = "";
      for await (const chunk of proc.stderr) {
        buf += decoder.decode(chunk, { stream: true });
        let nl: number;
        while ((nl = buf.indexOf("\n")) >= 0) {
          const line = buf.slice(0, nl);
          buf = buf.slice(nl + 1);
          stderrText += line + "\n";
          try {
            const rec = JSON.parse(line) as Record<string, unknown>;
            logs.push(rec);
            if (rec.msg === "admin server listening") admin = rec.addr as string;
            if (rec.msg === "gRPC server listening") grpc = rec.addr as string;
            if (admin && grpc) resolveListening();
          } catch {
            // not a JSON line
          }
        }
      }
      reject(new Error(`meshd exited before listening:\n${stderrText}`));
    })();
  });
  const timeout = opts.timeoutMs ?? 15_000;
  let timer: ReturnType<typeof setTimeout> | undefined;
  await Promise.race([
    listening,
    new Promise((_, reject) => {
      timer = setTimeout(
        () => reject(new Error(`meshd did not listen within ${timeout} ms:\n${stderrText}`)),
        timeout,
      );
    }),
  ]).catch((err) => {
    // A meshd that did not listen in time is not left running.
    proc.kill("SIGKILL");
    throw err;
  }).finally(() => clearTimeout(timer));
  return {
    proc,
    adminAddr: admin!,
    grpcAddr: grpc!,
    dataDir: resolve(opts.cwd ?? ROOT, dataDir),
    logs,
    async addrOf(msg) {
      let found: string | undefined;
      await eventually(() => {
        found = logs.find((l) => l.msg === msg)?.addr as string | undefined;
        return found !== undefined;
      });
      if (found === undefined) throw new Error(`no log line "${msg}"`);
      return found;
    },
    async stop() {
      if (proc.exitCode === null) proc.kill("SIGTERM");
      return await proc.exited;
    },
  };
}

/**
 * POSTs to the admin server of `m` (a state-changing /debug/ path) with the admin token from its
 * data directory, as `meshd ca` does.
 */
export async function adminPost(m: MeshdProcess, path: string): Promise<Response> {
  return await fetch(`http://${m.adminAddr}${path}`, {
    method: "POST",
    headers: { authorization: `Bearer ${readAdminToken(m.dataDir)}` },
  });
}

/** Runs `meshd ARGS` (a tool command, not serve) to completion. */
export async function runMeshdCommand(
  args: readonly string[],
): Promise<{ code: number; stdout: string; stderr: string }> {
  const proc = spawn([process.execPath, resolve(ROOT, "main.ts"), ...args], {
    cwd: ROOT,
    stdin: "ignore",
    stdout: "pipe",
    stderr: "pipe",
  });
  const [stdout, stderr, code] = await Promise.all([
    new Response(proc.stdout).text(),
    new Response(proc.stderr).text(),
    proc.exited,
  ]);
  return { code, stdout, stderr };
}

/** Polls `fn` until it returns true or `timeoutMs` passes; resolves with the last result. */
export async function eventually(
  fn: () => Promise<boolean> | boolean,
  timeoutMs = 10_000,
  stepMs = 50,
): Promise<boolean> {
  const end = Date.now() + timeoutMs;
  for (;;) {
    if (await fn()) return true;
    if (Date.now() > end) return false;
    await Bun.sleep(stepMs);
  }
}
