/**
 * The stdio adapter: writes logentry (and metric) instances as lines, JSON by default, to
 * meshd's standard output or error, to a file, or to a file rotated by size and age.
 *
 * A logentry line holds `level`, `time` (the instance's timestamp), `instance` and the instance's
 * variables; its level is its `severity` mapped through `severityLevels` (key "default" for the
 * rest). Metric lines hold `value` and the dimensions, at `metricLevel`. Lines below
 * `outputLevel` are not written. Output the file cannot take fast enough is dropped beyond
 * {@link MAX_PENDING_BYTES} and counted, rather than held in memory without bound.
 *
 * @module
 */
import {
  createWriteStream,
  existsSync,
  openSync,
  renameSync,
  rmSync,
  statSync,
  type WriteStream,
} from "node:fs";
import { dirname } from "node:path";
import { mkdirSync } from "node:fs";
import { Counter } from "prom-client";
import type { StdioParams } from "../../api/mixer/mod.ts";
import { errorMessage } from "../../shared/errors.ts";
import type { MetricsRegistry } from "../../shared/metrics.ts";
import { type AdapterFactory, type InstanceValue, jsonFriendly } from "./adapter.ts";

/** Bytes waiting for a slow file beyond which lines are dropped. */
export const MAX_PENDING_BYTES = 16 * 1024 * 1024;

type Level = "INFO" | "WARNING" | "ERROR";
const RANK: Record<Level, number> = { INFO: 0, WARNING: 1, ERROR: 2 };

/** Writes lines to a file, rotating it by size and age into PATH.1, PATH.2, ... */
interface Sink {
  write(text: string): boolean;
  close(): Promise<void>;
}

function stdSink(stream: NodeJS.WriteStream): Sink {
  return {
    write: (text) => {
      if (stream.writableLength > MAX_PENDING_BYTES) return false;
      stream.write(text);
      return true;
    },
    close: () => Promise.resolve(),
  };
}

function fileSink(
  path: string,
  rotate: { maxBytes: number; maxAgeMs: number; maxFiles: number } | undefined,
  now: () => number,
): Sink {
  mkdirSync(dirname(path), { recursive: true });
  let stream: WriteStream;
  /** Streams of rotated files still flushing. */
  const ending: Promise<void>[] = [];
  let size = 0;
  let openedAt = 0;
  const open = () => {
    // Opened synchronously, so the stream writes to this file even if it is renamed at once.
    const fd = openSync(path, "a", 0o640);
    size = statSync(path).size;
    openedAt = now();
    stream = createWriteStream("", { fd, autoClose: true });
    stream.on("error", () => {});
  };
  const doRotate = () => {
    const old = stream;
    ending.push(new Promise<void>((resolve) => old.end(() => resolve())));
    const keep = Math.max(1, rotate!.maxFiles);
    if (existsSync(`${path}.${keep}`)) rmSync(`${path}.${keep}`, { force: true });
    for (let i = keep - 1; i >= 1; i--) {
      if (existsSync(`${path}.${i}`)) renameSync(`${path}.${i}`, `${path}.${i + 1}`);
    }
    renameSync(path, `${path}.1`);
    open();
  };
  open();
  return {
    write(text) {
      if (stream.writableLength > MAX_PENDING_BYTES) return false;
      const bytes = Buffer.byteLength(text);
      if (rotate && size > 0 && (size + bytes > rotate.maxBytes || now() - openedAt > rotate.maxAgeMs)) {
        doRotate();
      }
      stream.write(text);
      size += bytes;
      return true;
    },
    async close() {
      await Promise.all([...ending, new Promise<void>((resolve) => stream.end(() => resolve()))]);
    },
  };
}

let droppedCounter: Counter<string> | undefined;
let droppedRegistry: MetricsRegistry | undefined;

function dropped(registry: MetricsRegistry): Counter<string> {
  if (droppedRegistry !== registry || !droppedCounter) {
    droppedRegistry = registry;
    droppedCounter =
      (registry.getSingleMetric("mixer_stdio_dropped_lines_total") as Counter<string> | undefined) ??
        new Counter({
          name: "mixer_stdio_dropped_lines_total",
          help: "Log lines the stdio adapter dropped because its output could not keep up",
          labelNames: ["handler"],
          registers: [registry],
        });
  }
  return droppedCounter;
}

/** Builds a stdio handler. */
export const createStdio: AdapterFactory = (params, env) => {
  const p = (params ?? {}) as StdioParams;
  const stream = p.logStream ?? "STDOUT";
  const json = p.outputAsJson ?? true;
  const severityLevels: Record<string, Level> = { ...(p.severityLevels ?? {}) };
  const metricLevel: Level = p.metricLevel ?? "INFO";
  const outputLevel: Level = p.outputLevel ?? "INFO";
  const now = () => env.clock.now();
  let sink: Sink;
  try {
    sink = stream === "STDOUT"
      ? stdSink(process.stdout)
      : stream === "STDERR"
      ? stdSink(process.stderr)
      : fileSink(
        p.outputPath!,
        stream === "ROTATED_FILE"
          ? {
            maxBytes: (p.maxMegabytesBeforeRotation || 100) * 1024 * 1024,
            maxAgeMs: (p.maxDaysBeforeRotation || 30) * 86_400_000,
            maxFiles: p.maxRotatedFiles || 1000,
          }
          : undefined,
        now,
      );
  } catch (err) {
    throw new Error(`cannot open ${p.outputPath}: ${errorMessage(err)}`);
  }
  const droppedLines = dropped(env.metrics);

  const levelOf = (inst: InstanceValue): Level => {
    if (inst.template === "metric") return metricLevel;
    const sev = inst.fields.severity;
    const key = typeof sev === "string" ? sev : "default";
    return severityLevels[key] ?? severityLevels[key.toUpperCase()] ?? severityLevels.default ?? "INFO";
  };

  const format = (inst: InstanceValue, level: Level): string => {
    const f = inst.fields;
    const time = f.timestamp instanceof Date ? f.timestamp.toISOString() : new Date(now()).toISOString();
    const body: Record<string, unknown> = inst.template === "metric"
      ? { value: jsonFriendly(f.value), ...(jsonFriendly(f.dimensions ?? {}) as Record<string, unknown>) }
      : (jsonFriendly(f.variables ?? {}) as Record<string, unknown>);
    if (json) {
      return JSON.stringify({ level: level.toLowerCase(), time, instance: inst.name, ...body }) + "\n";
    }
    const kv = Object.entries(body).map(([k, v]) => `${k}=${typeof v === "string" ? v : JSON.stringify(v)}`);
    return `${time}\t${level.toLowerCase()}\t${inst.name}\t${kv.join("\t")}\n`;
  };

  return {
    report(instances) {
      let text = "";
      let lines = 0;
      for (const inst of instances) {
        const level = levelOf(inst);
        if (RANK[level] < RANK[outputLevel]) continue;
        text += format(inst, level);
        lines++;
      }
      if (lines > 0 && !sink.write(text)) droppedLines.inc({ handler: env.handler }, lines);
    },
    close: () => sink.close(),
  };
};
