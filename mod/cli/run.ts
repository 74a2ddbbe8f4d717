/**
 * Dispatches `meshd <command> [flags] [args]`: help, flag errors (exit 2), and running.
 */
import { errorMessage, UsageError } from "../shared/errors.ts";
import { didYouMean } from "../shared/suggest.ts";
import { type Command, renderCommandHelp } from "./command.ts";
import { CONFIG_SETTING, parseCommandLine } from "./flags.ts";

/** What runCli needs from the process. */
export interface CliIO {
  env: Record<string, string | undefined>;
  out: (text: string) => void;
  err: (text: string) => void;
  signal: AbortSignal;
}

/** The text of `meshd help`. */
export function renderTopHelp(commands: readonly Command[]): string {
  const w = Math.max(...commands.map((c) => c.name.length)) + 2;
  return [
    "meshd: a service mesh control plane and node agent in one binary.",
    "",
    "Usage: meshd <command> [flags] [args]",
    "",
    "Commands:",
    ...commands.map((c) => `  ${c.name.padEnd(w)}${c.summary}`),
    `  ${"help".padEnd(w)}show help for meshd or a command`,
    "",
    "Run 'meshd <command> --help' for a command's flags.",
    "",
  ].join("\n");
}

/** Runs one invocation and resolves with the exit code. Never throws. */
export async function runCli(
  commands: readonly Command[],
  argv: readonly string[],
  io: CliIO,
): Promise<number> {
  const [name, ...rest] = argv;
  if (name === undefined || name === "help" || name === "--help" || name === "-h") {
    const topic = name === "help" ? rest[0] : undefined;
    const cmd = topic === undefined ? undefined : commands.find((c) => c.name === topic);
    if (topic !== undefined && cmd === undefined) {
      io.err(`meshd help: unknown command ${topic}${didYouMean(topic, commands.map((c) => c.name))}\n`);
      return 2;
    }
    io.out(cmd ? renderCommandHelp(cmd, [...cmd.settings(), CONFIG_SETTING]) : renderTopHelp(commands));
    return name === undefined ? 2 : 0;
  }
  if (name === "--version") return runCli(commands, ["version"], io);
  const cmd = commands.find((c) => c.name === name);
  if (cmd === undefined) {
    io.err(
      `meshd: unknown command ${name}${
        didYouMean(name, [...commands.map((c) => c.name), "help"])
      }; run 'meshd help'\n`,
    );
    return 2;
  }
  try {
    const specs = cmd.settings();
    const parsed = parseCommandLine(specs, rest, { command: `meshd ${cmd.name}`, env: io.env });
    if (parsed.help) {
      io.out(renderCommandHelp(cmd, [...specs, CONFIG_SETTING]));
      return 0;
    }
    const bounds = cmd.args ?? { min: 0, max: 0, name: "" };
    if (parsed.args.length < bounds.min) {
      throw new UsageError(`meshd ${cmd.name}: missing ${bounds.name}; usage: ${cmd.usage}`);
    }
    if (parsed.args.length > bounds.max) {
      throw new UsageError(
        `meshd ${cmd.name}: unexpected argument ${parsed.args[bounds.max]}; usage: ${cmd.usage}`,
      );
    }
    return await cmd.run({
      settings: parsed.settings,
      args: parsed.args,
      signal: io.signal,
      out: io.out,
      err: io.err,
    });
  } catch (e) {
    if (e instanceof UsageError) {
      io.err(e.message + "\n");
      return e.exitCode;
    }
    io.err(`meshd ${cmd.name}: ${errorMessage(e)}\n`);
    return 1;
  }
}
