/**
 * Runs `meshd agent` as a real process for end-to-end tests, reading its JSON logs.
 */
import { spawn, type Subprocess } from "bun";
import { resolve } from "node:path";
import { eventually, ROOT } from "../e2e/_meshd.ts";

/** A running agent process. */
export interface AgentProcess {
  readonly proc: Subprocess<"ignore", "pipe", "pipe">;
  /** Every JSON log line so far. */
  readonly logs: Array<Record<string, unknown>>;
  /** Every line of standard error so far, JSON or not. */
  readonly lines: string[];
  /** The exit code once the process ended by itself; undefined if it still runs after `timeoutMs`. */
  exited(timeoutMs?: number): Promise<number | undefined>;
  /** Waits for a log line matching `pred` (bounded); throws with the log when none came. */
  waitFor(
    pred: (l: Record<string, unknown>) => boolean,
    timeoutMs?: number,
  ): Promise<Record<string, unknown>>;
  /** The agent's admin address, once it listens. */
  adminAddr(): Promise<string>;
  /** SIGTERM, then the exit code. */
  stop(): Promise<number>;
}

/** Starts `bun main.ts agent ARGS --log-format=json --admin-addr=127.0.0.1:0`. */
export function startAgentProcess(args: readonly string[], env: Record<string, string> = {}): AgentProcess {
  const proc = spawn([
    process.execPath,
    resolve(ROOT, "main.ts"),
    "agent",
    "--log-format=json",
    "--admin-addr=127.0.0.1:0",
    ...args,
  ], {
    cwd: ROOT,
    stdin: "ignore",
    stdout: "pipe",
    stderr: "pipe",
    env: { ...process.env, ...env },
  });
  const logs: Array<Record<string, unknown>> = [];
  const lines: string[] = [];
  let text = "";
  let drained!: () => void;
  const stderrDone = new Promise<void>((r) => (drained = r));
  (async () => {
    const dec = new TextDecoder();
    let buf = "";
    for await (const chunk of proc.stderr) {
      buf += dec.decode(chunk, { stream: true });
      let nl: number;
      while ((nl = buf.indexOf("\n")) >= 0) {
        const line = buf.slice(0, nl);
        buf = buf.slice(nl + 1);
        text = (text + line + "\n").slice(-30_000);
        lines.push(line);
        try {
          logs.push(JSON.parse(line) as Record<string, unknown>);
        } catch {
          // not JSON (a usage error)
        }
      }
    }
    drained();
  })();
  const self: AgentProcess = {
    proc,
    logs,
    lines,
    async exited(timeoutMs = 15_000) {
      let timer: ReturnType<typeof setTimeout> | undefined;
      const code = await Promise.race([
        proc.exited,
        new Promise<undefined>((r) => (timer = setTimeout(() => r(undefined), timeoutMs))),
      ]);
      clearTimeout(timer);
      if (code !== undefined) await stderrDone;
      return code;
    },
    async waitFor(pred, timeoutMs = 15_000) {
      let found: Record<string, unknown> | undefined;
      await eventually(
        () => (found = logs.find(pred)) !== undefined || proc.exitCode !== null,
        timeoutMs,
        50,
      );
      if (!found) {
        throw new Error(
          `agent: no matching log line within ${timeoutMs} ms (exit ${proc.exitCode}):\n${text}`,
        );
      }
      return found;
    },
    async adminAddr() {
      return (await self.waitFor((l) => l.msg === "agent admin server listening")).addr as string;
    },
    async stop() {
      if (proc.exitCode === null) proc.kill("SIGTERM");
      const t = setTimeout(() => proc.kill("SIGKILL"), 5000);
      const code = await proc.exited;
      clearTimeout(t);
      return code;
    },
  };
  return self;
}

/** Runs `bun main.ts ARGS` to completion and returns stdout; throws with stderr on failure. */
export function meshdCli(args: readonly string[]): string {
  const r = Bun.spawnSync([process.execPath, resolve(ROOT, "main.ts"), ...args], {
    cwd: ROOT,
    stdout: "pipe",
    stderr: "pipe",
  });
  if (r.exitCode !== 0) {
    throw new Error(`meshd ${args.join(" ")}: exit ${r.exitCode}: ${r.stderr.toString()}`);
  }
  return r.stdout.toString();
}
