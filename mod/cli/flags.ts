/**
 * Reads a command's settings from its flags, then MESHD_* environment variables, then the
 * optional YAML config file (`--config`), and returns them checked and typed.
 */
import { readFileSync } from "node:fs";
import { isMap, isScalar, isSeq, LineCounter, parseDocument, type YAMLMap } from "yaml";
import { UsageError } from "../shared/errors.ts";
import { didYouMean } from "../shared/suggest.ts";
import { convertValue, envName, fileKey, type SettingSpec, type SettingValue } from "./setting.ts";

/** Where a setting's value came from. */
export type SettingSource = "flag" | "env" | "file" | "default";

/** Typed access to a command's settings. Asking for a setting the command lacks is a bug and throws. */
export interface Settings {
  string(name: string): string;
  optionalString(name: string): string | undefined;
  number(name: string): number;
  bool(name: string): boolean;
  list(name: string): readonly string[];
  /** Where the value came from. */
  source(name: string): SettingSource | undefined;
  /** All values, for /debug output. */
  entries(): Array<{ name: string; value: SettingValue | undefined; source: SettingSource | undefined }>;
}

/** The parsed command line. */
export interface ParsedCommandLine {
  readonly settings: Settings;
  readonly args: readonly string[];
  readonly help: boolean;
}

/** Inputs to parseCommandLine beyond argv. */
export interface ParseOptions {
  /** The command's name, for messages ("meshd serve"). */
  command: string;
  env?: Record<string, string | undefined>;
  /** Reads the --config file; defaults to the filesystem. */
  readFile?: (path: string) => string;
}

/** The setting every command has for its config file. */
export const CONFIG_SETTING: SettingSpec = {
  name: "config",
  kind: { type: "path" },
  help: "YAML file of settings (keys are the flags in camelCase); flags and MESHD_* variables win",
  notInFile: true,
};

/**
 * Parses argv (the words after the command name). Throws UsageError, whose message names the
 * flag, variable or file position, for any unknown flag or bad value.
 */
export function parseCommandLine(
  specs: readonly SettingSpec[],
  argv: readonly string[],
  opts: ParseOptions,
): ParsedCommandLine {
  const all = [...specs, CONFIG_SETTING];
  const byName = new Map(all.map((s) => [s.name, s]));
  const byShort = new Map(all.filter((s) => s.short).map((s) => [s.short!, s]));
  const env = opts.env ?? process.env;
  const values = new Map<string, SettingValue>();
  const sources = new Map<string, SettingSource>();
  const args: string[] = [];
  let help = false;
  const fail = (msg: string): never => {
    throw new UsageError(`${opts.command}: ${msg}`);
  };

  for (let i = 0; i < argv.length; i++) {
    const word = argv[i]!;
    if (word === "--") {
      args.push(...argv.slice(i + 1));
      break;
    }
    if (word === "-h" || word === "--help") {
      help = true;
      continue;
    }
    if (!word.startsWith("-") || word === "-") {
      args.push(word);
      continue;
    }
    const long = word.startsWith("--");
    const body = word.slice(long ? 2 : 1);
    const eq = body.indexOf("=");
    const name = eq < 0 ? body : body.slice(0, eq);
    const spec = long ? byName.get(name) : byShort.get(name);
    if (spec === undefined) {
      fail(
        `unknown flag ${word.slice(0, long ? 2 + name.length : 1 + name.length)}${
          long ? didYouMean(name, byName.keys()).replace(/mean (\S+)\?/, "mean --$1?") : ""
        }`,
      );
    }
    const flag = long ? `--${spec!.name}` : `-${spec!.short}`;
    let raw: string;
    if (eq >= 0) raw = body.slice(eq + 1);
    else if (spec!.kind.type === "bool") raw = "true";
    else if (i + 1 < argv.length) raw = argv[++i]!;
    else fail(`flag ${flag} needs a value`);
    try {
      const value = convertValue(spec!, raw!);
      // A list flag given again adds to the list (`--registry A --registry B`), as a comma does.
      const earlier = sources.get(spec!.name) === "flag" ? values.get(spec!.name) : undefined;
      values.set(spec!.name, Array.isArray(earlier) && Array.isArray(value) ? [...earlier, ...value] : value);
      sources.set(spec!.name, "flag");
    } catch (e) {
      fail(`flag ${flag}: ${(e as Error).message}`);
    }
  }

  for (const spec of all) {
    if (values.has(spec.name) || spec.flagOnly) continue;
    const raw = env[envName(spec)];
    if (raw === undefined || raw === "") continue;
    try {
      values.set(spec.name, convertValue(spec, raw));
      sources.set(spec.name, "env");
    } catch (e) {
      fail(`environment variable ${envName(spec)}: ${(e as Error).message}`);
    }
  }

  const configPath = values.get("config") as string | undefined;
  if (configPath !== undefined) {
    readConfigFile(configPath, specs, values, sources, opts, fail);
  }

  for (const spec of all) {
    if (!values.has(spec.name) && spec.default !== undefined) {
      values.set(spec.name, spec.default);
      sources.set(spec.name, "default");
    }
  }
  return { settings: makeSettings(byName, values, sources), args, help };
}

function readConfigFile(
  path: string,
  specs: readonly SettingSpec[],
  values: Map<string, SettingValue>,
  sources: Map<string, SettingSource>,
  opts: ParseOptions,
  fail: (msg: string) => never,
): void {
  let text: string;
  try {
    text = (opts.readFile ?? ((p: string) => readFileSync(p, "utf8")))(path);
  } catch (e) {
    return fail(`--config: cannot read ${path}: ${(e as Error).message}`);
  }
  const lines = new LineCounter();
  const doc = parseDocument(text, { lineCounter: lines, uniqueKeys: true });
  const at = (offset: number | undefined): string => {
    const p = lines.linePos(offset ?? 0);
    return `${path}:${p.line}:${p.col}`;
  };
  if (doc.errors.length > 0) {
    const e = doc.errors[0]!;
    fail(`${at(e.pos[0])}: ${e.message.split("\n")[0]}`);
  }
  if (doc.contents === null) return;
  if (!isMap(doc.contents)) fail(`${at(0)}: want a mapping of settings`);
  const keyed = new Map(specs.filter((s) => !s.flagOnly && !s.notInFile).map((s) => [fileKey(s), s]));
  for (const pair of (doc.contents as YAMLMap).items) {
    const keyNode = pair.key;
    const key = isScalar(keyNode) ? String(keyNode.value) : String(keyNode);
    const pos = at(isScalar(keyNode) ? keyNode.range?.[0] : undefined);
    const spec = keyed.get(key);
    if (spec === undefined) fail(`${pos}: unknown setting ${key}${didYouMean(key, keyed.keys())}`);
    if (values.has(spec!.name)) continue;
    const v = pair.value;
    const raw = isSeq(v) ? v.items.map((x) => (isScalar(x) ? x.value : x)) : isScalar(v) ? v.value : v;
    try {
      values.set(spec!.name, convertValue(spec!, raw));
      sources.set(spec!.name, "file");
    } catch (e) {
      fail(`${pos}: ${key}: ${(e as Error).message}`);
    }
  }
}

function makeSettings(
  specs: Map<string, SettingSpec>,
  values: Map<string, SettingValue>,
  sources: Map<string, SettingSource>,
): Settings {
  const get = (name: string): SettingValue | undefined => {
    if (!specs.has(name)) throw new Error(`setting ${name} is not declared by this command`);
    return values.get(name);
  };
  const must = <T>(name: string, type: string): T => {
    const v = get(name);
    if (v === undefined) throw new Error(`setting ${name} has no value and no default`);
    const actual = Array.isArray(v) ? "list" : typeof v;
    if (actual !== type) {
      throw new Error(`setting ${name} is not a ${type}`);
    }
    return v as T;
  };
  return {
    string: (n) => must<string>(n, "string"),
    optionalString: (n) => {
      const v = get(n);
      return v === undefined ? undefined : String(v);
    },
    number: (n) => must<number>(n, "number"),
    bool: (n) => must<boolean>(n, "boolean"),
    list: (n) => must<readonly string[]>(n, "list"),
    source: (n) => sources.get(n),
    entries: () =>
      [...specs.keys()].map((name) => ({ name, value: values.get(name), source: sources.get(name) })),
  };
}
