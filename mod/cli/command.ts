/**
 * A subcommand of the meshd binary, and how `--help` describes it.
 */
import type { Settings } from "./flags.ts";
import { envName, fileKey, type SettingSpec } from "./setting.ts";
import { formatDuration } from "../shared/duration.ts";

/** What a command's run() receives. */
export interface Invocation {
  readonly settings: Settings;
  /** Positional arguments. */
  readonly args: readonly string[];
  /** Aborted on SIGTERM or SIGINT. */
  readonly signal: AbortSignal;
  /** Standard output and error, injectable for tests. */
  readonly out: (text: string) => void;
  readonly err: (text: string) => void;
}

/** One `meshd <name>` subcommand. */
export interface Command {
  readonly name: string;
  /** One line for `meshd help`. */
  readonly summary: string;
  /** e.g. "meshd validate [flags] FILE|DIR..." */
  readonly usage: string;
  /** A paragraph or two for `--help`, after the usage line. */
  readonly description?: string;
  /** The command's settings. A function so that loading them stays cheap and lazy. */
  settings(): readonly SettingSpec[];
  /** Bounds on positional arguments. */
  readonly args?: { readonly min: number; readonly max: number; readonly name: string };
  /** Runs the command; resolves with the process exit code. */
  run(inv: Invocation): Promise<number>;
}

function describeDefault(spec: SettingSpec): string {
  const d = spec.default;
  if (d === undefined) return "";
  if (spec.kind.type === "duration" && typeof d === "number") return ` (default ${formatDuration(d)})`;
  if (Array.isArray(d)) return d.length ? ` (default ${d.join(",")})` : "";
  return d === "" || d === false ? "" : ` (default ${String(d)})`;
}

function valueName(spec: SettingSpec): string {
  switch (spec.kind.type) {
    case "bool":
      return "";
    case "addr":
      return " HOST:PORT";
    case "addrs":
      return " HOST:PORT,...";
    case "duration":
      return " DURATION";
    case "int":
      return " N";
    case "path":
      return " PATH";
    case "enum":
      return ` ${spec.kind.values.join("|")}`;
    case "list":
      return " A,B,...";
    case "string":
      return " STRING";
  }
}

/** The text of `meshd <command> --help`. */
export function renderCommandHelp(cmd: Command, allSettings: readonly SettingSpec[]): string {
  const rows = [
    ...allSettings.map((s) => [
      `${s.short ? `-${s.short}, ` : "    "}--${s.name}${valueName(s)}`,
      `${s.help}${describeDefault(s)}`,
    ]),
    ["-h, --help", "show this help"],
  ];
  const width = Math.min(40, Math.max(...rows.map((r) => r[0]!.length)) + 2);
  const lines = rows.map(([a, b]) =>
    `  ${a!.length > width - 2 ? `${a}\n  ${" ".repeat(width)}` : a!.padEnd(width)}${b}`
  );
  return [
    `meshd ${cmd.name}: ${cmd.summary}`,
    "",
    `Usage: ${cmd.usage}`,
    ...(cmd.description ? ["", cmd.description] : []),
    "",
    "Flags (each can also be set as MESHD_<FLAG> in the environment or as a camelCase key in the --config file):",
    ...lines,
    "",
  ].join("\n");
}

/** A Markdown table of settings (flag, environment variable, config key, default, meaning). */
export function renderSettingsTable(specs: readonly SettingSpec[]): string {
  const head = "| flag | environment | config file | default | meaning |\n| --- | --- | --- | --- | --- |";
  const rows = specs.map((s) => {
    const def = describeDefault(s).replace(/^ \(default (.*)\)$/, "$1") || "—";
    const env = s.flagOnly ? "—" : `\`${envName(s)}\``;
    const key = s.flagOnly || s.notInFile ? "—" : `\`${fileKey(s)}\``;
    return `| \`--${s.name}\` | ${env} | ${key} | ${def === "—" ? def : `\`${def}\``} | ${
      s.help.replaceAll("|", "\\|")
    } |`;
  });
  return [head, ...rows].join("\n");
}
