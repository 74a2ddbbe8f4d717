/**
 * The service graph: edges from source workloads to destination services, kept from reported
 * telemetry, with request rate, error rate and latency percentiles over a window the reader
 * chooses: the default window (`--mixer-servicegraph-window`) or any up to the longest kept.
 *
 * Time is cut into {@link SLOT_MS} slots, kept over the longest window ({@link WINDOWS}' last, or
 * the default window when that is longer); each slot keeps per edge a request count, an error
 * count and up to {@link SAMPLES_PER_SLOT} latencies (a uniform reservoir sample). A view adds
 * the slots its window covers, so a window is exact to one slot. Memory stays bounded whatever
 * the traffic: at most {@link MAX_EDGES} edges (reports for further edges are counted as
 * dropped), a fixed number of slots, and at most {@link MAX_SAMPLES} latencies kept in all (past
 * it a slot keeps counts without latencies).
 *
 * @module
 */
import type { Clock } from "../shared/clock.ts";
import { parseDuration } from "../shared/duration.ts";
import type { AttributeBag } from "./client/wire.ts";

/** Latencies sampled per edge and slot. */
export const SAMPLES_PER_SLOT = 64;
/** Most edges kept. */
export const MAX_EDGES = 10_000;
/** Most latencies kept over all slots and edges (8 MB of numbers). */
export const MAX_SAMPLES = 1_000_000;
/** The length of a slot: a view's window is exact to this. */
export const SLOT_MS = 10_000;
/** The windows readers are offered (the console's choices): 1, 5 and 15 minutes. */
export const WINDOWS: readonly number[] = [60_000, 5 * 60_000, 15 * 60_000];

/** One edge as /debug/servicegraph shows it. */
export interface GraphEdge {
  /** "workload.namespace" of the caller, "unknown" when not reported. */
  readonly source: string;
  /** The destination service host. */
  readonly destination: string;
  /** Requests per second over the window. */
  readonly requestRate: number;
  /** Fraction of requests that failed (HTTP 5xx, or a gRPC status other than OK). */
  readonly errorRate: number;
  readonly requests: number;
  readonly errors: number;
  /** Latency percentiles in milliseconds, when durations were reported. */
  readonly latencyP50Ms?: number;
  readonly latencyP99Ms?: number;
}

/** The graph over a window. */
export interface ServiceGraphView {
  readonly windowMs: number;
  readonly edges: readonly GraphEdge[];
  /** Reports not recorded because the graph had {@link MAX_EDGES} edges. */
  readonly dropped: number;
}

/** Keeps the graph. */
export interface ServiceGraph {
  /** Records one reported request or connection. */
  record(bag: Readonly<AttributeBag>): void;
  /**
   * The graph over the last `windowMs` (default: the graph's own window), which must be
   * positive and at most {@link ServiceGraph.longestWindowMs}.
   */
  view(windowMs?: number): ServiceGraphView;
  /** The longest window a view may ask for. */
  readonly longestWindowMs: number;
}

interface SlotEdge {
  requests: number;
  errors: number;
  samples: number[];
  seen: number;
}

interface Slot {
  start: number;
  edges: Map<string, SlotEdge>;
}

function isError(bag: Readonly<AttributeBag>): boolean {
  const code = bag["response.code"];
  if (typeof code === "number" && code >= 500) return true;
  const grpc = bag["response.grpc_status"];
  return grpc !== undefined && grpc !== "" && grpc !== "0" && grpc !== "OK";
}

function percentile(sorted: readonly number[], p: number): number {
  const idx = Math.min(sorted.length - 1, Math.max(0, Math.ceil(p * sorted.length) - 1));
  return sorted[idx]!;
}

/**
 * The window a `?window=` query asks for (a duration such as "5m"; empty: `fallback`), or an
 * error naming the parameter.
 */
export function windowOf(
  text: string | null | undefined,
  fallback: number,
  longest: number,
): number | { error: string } {
  if (text === null || text === undefined || text === "") return fallback;
  const ms = parseDuration(text);
  if (ms === undefined || ms <= 0) {
    return { error: `window: ${JSON.stringify(text)} is not a duration (1m, 5m, 15m)` };
  }
  if (ms > longest) return { error: `window: ${text} is longer than the ${longest / 60_000}m kept` };
  return ms;
}

/** Creates a graph whose default window is `windowMs`. */
export function createServiceGraph(opts: { clock: Clock; windowMs: number }): ServiceGraph {
  const longest = Math.max(opts.windowMs, ...WINDOWS);
  const slots: Slot[] = [];
  /** Every edge in the slots kept, with the start of the last slot that saw it. */
  const known = new Map<string, number>();
  let dropped = 0;
  let samples = 0;

  const current = (now: number): Slot => {
    const start = now - (now % SLOT_MS);
    let s = slots[slots.length - 1];
    if (!s || s.start !== start) {
      s = { start, edges: new Map() };
      slots.push(s);
    }
    let shifted = false;
    while (slots.length > 0 && slots[0]!.start <= now - longest - SLOT_MS) {
      for (const e of slots[0]!.edges.values()) samples -= e.samples.length;
      slots.shift();
      shifted = true;
    }
    if (shifted) {
      const oldest = slots[0]?.start ?? start;
      for (const [k, at] of known) if (at < oldest) known.delete(k);
    }
    return s;
  };

  return {
    longestWindowMs: longest,
    record(bag) {
      const host = bag["destination.service.host"];
      if (typeof host !== "string" || host === "") return;
      const wl = bag["source.workload.name"];
      const ns = bag["source.workload.namespace"] ?? bag["source.namespace"];
      const source = typeof wl === "string" && wl !== ""
        ? (typeof ns === "string" && ns !== "" ? `${wl}.${ns}` : wl)
        : "unknown";
      const key = `${source}\u0000${host}`;
      const slot = current(opts.clock.now());
      let e = slot.edges.get(key);
      if (!e) {
        if (!known.has(key) && known.size >= MAX_EDGES) {
          dropped++;
          return;
        }
        e = { requests: 0, errors: 0, samples: [], seen: 0 };
        slot.edges.set(key, e);
        known.set(key, slot.start);
      }
      e.requests++;
      if (isError(bag)) e.errors++;
      const d = bag["response.duration"];
      if (typeof d === "number" && Number.isFinite(d)) {
        e.seen++;
        if (e.samples.length < SAMPLES_PER_SLOT) {
          if (samples < MAX_SAMPLES) {
            e.samples.push(d);
            samples++;
          }
        } else {
          const j = Math.floor(Math.random() * e.seen);
          if (j < SAMPLES_PER_SLOT) e.samples[j] = d;
        }
      }
    },
    view(windowMs = opts.windowMs) {
      if (!(windowMs > 0) || windowMs > longest) {
        throw new RangeError(`service graph: window ${windowMs} ms is not within (0, ${longest}] ms`);
      }
      const now = opts.clock.now();
      current(now);
      const from = now - windowMs;
      const totals = new Map<string, { requests: number; errors: number; samples: number[] }>();
      for (const s of slots) {
        if (s.start + SLOT_MS <= from) continue;
        for (const [k, e] of s.edges) {
          let t = totals.get(k);
          if (!t) totals.set(k, t = { requests: 0, errors: 0, samples: [] });
          t.requests += e.requests;
          t.errors += e.errors;
          for (const x of e.samples) t.samples.push(x);
        }
      }
      const seconds = windowMs / 1000;
      const edges: GraphEdge[] = [...totals].map(([k, t]) => {
        const [source, destination] = k.split("\u0000") as [string, string];
        const sorted = t.samples.sort((a, b) => a - b);
        return {
          source,
          destination,
          requestRate: t.requests / seconds,
          errorRate: t.requests > 0 ? t.errors / t.requests : 0,
          requests: t.requests,
          errors: t.errors,
          ...(sorted.length > 0
            ? { latencyP50Ms: percentile(sorted, 0.5), latencyP99Ms: percentile(sorted, 0.99) }
            : {}),
        };
      });
      edges.sort((a, b) => (a.source + a.destination < b.source + b.destination ? -1 : 1));
      return { windowMs, edges, dropped };
    },
  };
}
