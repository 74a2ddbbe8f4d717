/**
 * Structured logs: one JSON object per line, or a readable line on a terminal.
 */

/** Log levels, from most to least verbose. */
export const LOG_LEVELS = ["debug", "info", "warn", "error"] as const;
/** One of LOG_LEVELS. */
export type LogLevel = (typeof LOG_LEVELS)[number];

/** Extra key/value pairs attached to a log line. */
export type LogFields = Record<string, unknown>;

/** Writes structured log lines. Safe to call from anywhere; never throws. */
export interface Logger {
  debug(msg: string, fields?: LogFields): void;
  info(msg: string, fields?: LogFields): void;
  warn(msg: string, fields?: LogFields): void;
  error(msg: string, fields?: LogFields): void;
  /** A logger that adds `fields` to every line. */
  child(fields: LogFields): Logger;
}

/** Options for createLogger. */
export interface LoggerOptions {
  level?: LogLevel;
  /** "json" always, "text" always, or "auto": text when `isTTY`. */
  format?: "json" | "text" | "auto";
  /** Where lines go; defaults to standard error. */
  write?: (line: string) => void;
  isTTY?: boolean;
  now?: () => number;
}

const RANK: Record<LogLevel, number> = { debug: 0, info: 1, warn: 2, error: 3 };

function jsonValue(v: unknown): unknown {
  if (v instanceof Error) return v.message;
  if (typeof v === "bigint") return v.toString();
  return v;
}

/** Creates a logger. */
export function createLogger(opts: LoggerOptions = {}): Logger {
  const min = RANK[opts.level ?? "info"];
  const write = opts.write ?? ((line: string) => process.stderr.write(line + "\n"));
  const isTTY = opts.isTTY ?? process.stderr.isTTY === true;
  const text = opts.format === "text" || ((opts.format ?? "auto") === "auto" && isTTY);
  const now = opts.now ?? Date.now;

  function emit(level: LogLevel, base: LogFields, msg: string, fields?: LogFields): void {
    if (RANK[level] < min) return;
    const all: LogFields = { ...base, ...fields };
    try {
      if (text) {
        const t = new Date(now()).toISOString().slice(11, 23);
        const kv = Object.entries(all).map(([k, v]) => `${k}=${JSON.stringify(jsonValue(v))}`).join(" ");
        write(`${t} ${level.toUpperCase().padEnd(5)} ${msg}${kv ? " " + kv : ""}`);
      } else {
        const rec: LogFields = { time: new Date(now()).toISOString(), level, msg };
        for (const [k, v] of Object.entries(all)) rec[k] = jsonValue(v);
        write(JSON.stringify(rec));
      }
    } catch {
      // A log line must never take the daemon down (e.g. a cyclic field or a closed pipe).
    }
  }

  function make(base: LogFields): Logger {
    return {
      debug: (m, f) => emit("debug", base, m, f),
      info: (m, f) => emit("info", base, m, f),
      warn: (m, f) => emit("warn", base, m, f),
      error: (m, f) => emit("error", base, m, f),
      child: (f) => make({ ...base, ...f }),
    };
  }
  return make({});
}
