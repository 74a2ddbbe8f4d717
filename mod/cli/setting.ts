/**
 * Declarative settings: each one can be given as a flag (`--grpc-addr`), an environment
 * variable (`MESHD_GRPC_ADDR`) or a key in the YAML config file (`grpcAddr`), in that order of
 * precedence, and is checked the same way wherever it comes from.
 */
import { parseDuration } from "../shared/duration.ts";

/** The value kinds a setting can hold. */
export type SettingKind =
  | { readonly type: "string" }
  | { readonly type: "path" }
  | { readonly type: "bool" }
  | { readonly type: "int"; readonly min?: number; readonly max?: number }
  | { readonly type: "duration"; readonly min?: number }
  | { readonly type: "addr" }
  /** A comma list of HOST:PORT (replicas of one service); the value is the list, comma-joined. */
  | { readonly type: "addrs" }
  | { readonly type: "enum"; readonly values: readonly string[] }
  | { readonly type: "list"; readonly values?: readonly string[] };

/** A parsed setting value. Durations are milliseconds. */
export type SettingValue = string | number | boolean | readonly string[];

/** One setting of a command. */
export interface SettingSpec {
  /** Flag name without dashes, kebab-case: "grpc-addr". */
  readonly name: string;
  readonly kind: SettingKind;
  /** Value when given nowhere; undefined means "unset". */
  readonly default?: SettingValue;
  /** One line for --help and the README table. */
  readonly help: string;
  /** One-letter alias, e.g. "o" for "-o json". */
  readonly short?: string;
  /** Only a flag: no environment variable or config file key (e.g. -o). */
  readonly flagOnly?: boolean;
  /** A flag or environment variable, but not a config file key (--config itself). */
  readonly notInFile?: boolean;
}

/** MESHD_GRPC_ADDR for "grpc-addr". */
export function envName(spec: Pick<SettingSpec, "name">): string {
  return "MESHD_" + spec.name.toUpperCase().replaceAll("-", "_");
}

/** grpcAddr for "grpc-addr". */
export function fileKey(spec: Pick<SettingSpec, "name">): string {
  return spec.name.replace(/-([a-z0-9])/g, (_, c: string) => c.toUpperCase());
}

/** Splits "host:port" or "[v6]:port". Returns undefined when malformed. */
export function splitHostPort(addr: string): { host: string; port: number } | undefined {
  const m = /^(?:\[([0-9a-fA-F:.%a-zA-Z]+)\]|([^:[\]]*)):(\d{1,5})$/.exec(addr);
  if (m === null) return undefined;
  const port = Number(m[3]);
  if (port > 65535) return undefined;
  return { host: m[1] ?? m[2] ?? "", port };
}

/**
 * Splits a comma list of HOST:PORT ("a:15012,b:15012"), trimming blanks around each. Throws an
 * Error saying which item is malformed, or that the list is empty.
 */
export function splitAddrList(text: string): string[] {
  const items = text.split(",").map((a) => a.trim());
  if (items.every((a) => a === "")) throw new Error("want HOST:PORT[,HOST:PORT...], got an empty list");
  items.forEach((a, i) => {
    if (splitHostPort(a) === undefined) {
      const where = items.length > 1 ? `item ${i + 1} of the list: ` : "";
      throw new Error(`${where}want HOST:PORT (port 0-65535), got ${JSON.stringify(a)}`);
    }
  });
  return items;
}

/**
 * Converts a raw value (a string from a flag or env var, or a YAML scalar/sequence) into the
 * setting's kind. Throws an Error whose message says what was expected.
 */
export function convertValue(spec: SettingSpec, raw: unknown): SettingValue {
  const k = spec.kind;
  switch (k.type) {
    case "string":
    case "path": {
      if (typeof raw !== "string" && typeof raw !== "number") {
        throw new Error(`want a string, got ${show(raw)}`);
      }
      const s = String(raw);
      if (k.type === "path" && s === "") throw new Error("want a path, got an empty string");
      return s;
    }
    case "bool": {
      if (typeof raw === "boolean") return raw;
      if (raw === "true" || raw === "1") return true;
      if (raw === "false" || raw === "0") return false;
      throw new Error(`want true or false, got ${show(raw)}`);
    }
    case "int": {
      const n = typeof raw === "number"
        ? raw
        : typeof raw === "string" && /^-?\d+$/.test(raw)
        ? Number(raw)
        : NaN;
      if (!Number.isSafeInteger(n)) throw new Error(`want an integer, got ${show(raw)}`);
      if (k.min !== undefined && n < k.min) throw new Error(`must be at least ${k.min}, got ${n}`);
      if (k.max !== undefined && n > k.max) throw new Error(`must be at most ${k.max}, got ${n}`);
      return n;
    }
    case "duration": {
      const ms = typeof raw === "string" ? parseDuration(raw) : undefined;
      if (ms === undefined) throw new Error(`want a duration like 10s or 250ms, got ${show(raw)}`);
      if (ms < (k.min ?? 0)) throw new Error(`must not be negative, got ${show(raw)}`);
      return ms;
    }
    case "addr": {
      if (typeof raw !== "string" || splitHostPort(raw) === undefined) {
        throw new Error(`want HOST:PORT (port 0-65535), got ${show(raw)}`);
      }
      return raw;
    }
    case "addrs": {
      if (typeof raw !== "string") throw new Error(`want HOST:PORT[,HOST:PORT...], got ${show(raw)}`);
      return splitAddrList(raw).join(",");
    }
    case "enum": {
      if (typeof raw !== "string" || !k.values.includes(raw)) {
        throw new Error(`want one of ${k.values.join(", ")}, got ${show(raw)}`);
      }
      return raw;
    }
    case "list": {
      const items = Array.isArray(raw)
        ? raw.map(String)
        : typeof raw === "string"
        ? raw.split(",").map((s) => s.trim()).filter((s) => s !== "")
        : undefined;
      if (items === undefined) throw new Error(`want a comma-separated list, got ${show(raw)}`);
      if (k.values) {
        const bad = items.find((i) => !k.values!.includes(i));
        if (bad !== undefined) {
          throw new Error(`unknown value ${show(bad)}; want some of ${k.values.join(", ")}`);
        }
      }
      return items;
    }
  }
}

function show(v: unknown): string {
  return JSON.stringify(v) ?? String(v);
}

/** The logging settings every long-running command (`serve`, `agent`) has. */
export const LOG_SETTINGS: readonly SettingSpec[] = [
  {
    name: "log-level",
    kind: { type: "enum", values: ["debug", "info", "warn", "error"] },
    default: "info",
    help: "least severe log level written",
  },
  {
    name: "log-format",
    kind: { type: "enum", values: ["auto", "json", "text"] },
    default: "auto",
    help: "log format; auto is text on a terminal, JSON otherwise",
  },
];
