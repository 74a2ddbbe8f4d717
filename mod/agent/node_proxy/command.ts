/**
 * Running the firewall tools (nft, iptables-restore, ...) that traffic capture drives: a
 * `CommandRunner` takes an argv and standard input and gives back the exit code and output, so
 * tests can run the same code inside a network namespace (`ip netns exec NS ...`).
 *
 * @module
 */
import { spawn } from "node:child_process";

/** What one command gave back. `code` is 127 when the program could not be started. */
export interface CommandResult {
  readonly code: number;
  readonly stdout: string;
  readonly stderr: string;
}

/** Runs `argv` to its end with `input` on standard input (none when undefined). Never rejects. */
export type CommandRunner = (argv: readonly string[], input?: string) => Promise<CommandResult>;

/** The exit code reported when a program is missing or cannot be started. */
export const NOT_STARTED = 127;

/** Runs commands on this machine, in this process's network namespace. */
export const runLocalCommand: CommandRunner = (argv, input) =>
  new Promise((resolve) => {
    let stdout = "";
    let stderr = "";
    let settled = false;
    const done = (r: CommandResult) => {
      if (!settled) resolve(r);
      settled = true;
    };
    const child = spawn(argv[0]!, argv.slice(1), { stdio: ["pipe", "pipe", "pipe"] });
    child.stdout.setEncoding("utf8").on("data", (c: string) => (stdout += c));
    child.stderr.setEncoding("utf8").on("data", (c: string) => (stderr += c));
    child.on("error", (err) => done({ code: NOT_STARTED, stdout, stderr: stderr + err.message }));
    child.on("close", (code) => done({ code: code ?? 1, stdout, stderr }));
    child.stdin.on("error", () => {}); // the program may exit without reading
    child.stdin.end(input ?? "");
  });

/** A command that failed: names the command, its exit code and what it wrote to stderr. */
export class CommandError extends Error {
  /** The command's result. */
  readonly result: CommandResult;
  constructor(argv: readonly string[], result: CommandResult) {
    const why = result.stderr.trim() || result.stdout.trim() || "no output";
    super(`${argv.join(" ")} exited with ${result.code}: ${why}`);
    this.name = "CommandError";
    this.result = result;
  }
}

/** Runs `argv` and throws a CommandError unless it exits 0; returns its standard output. */
export async function runChecked(
  run: CommandRunner,
  argv: readonly string[],
  input?: string,
): Promise<string> {
  const r = await run(argv, input);
  if (r.code !== 0) throw new CommandError(argv, r);
  return r.stdout;
}
