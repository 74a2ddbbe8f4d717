/**
 * The service graph: edges from source workloads to destination services, kept from reported
 * telemetry over a sliding window, with request rate, error rate and latency percentiles.
 *
 * The window is cut into slots; each slot keeps per edge a request count, an error count and up
 * to {@link SAMPLES_PER_SLOT} latencies (a uniform reservoir sample), so memory stays bounded
 * whatever the traffic. At most {@link MAX_EDGES} edges are kept; reports for further edges are
 * counted as dropped.
 *
 * @module
 */
import type { Clock } from "../shared/clock.ts";
import type { AttributeBag } from "./client/wire.ts";

/** Latencies sampled per edge and slot. */
export const SAMPLES_PER_SLOT = 256;
/** Most edges kept. */
export const MAX_EDGES = 10_000;
const SLOTS = 12;

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

/** The graph over the window. */
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
  /** The graph now. */
  view(): ServiceGraphView;
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

/** Creates a graph over a window of `windowMs`. */
export function createServiceGraph(opts: { clock: Clock; windowMs: number }): ServiceGraph {
  const slotMs = Math.max(1, Math.ceil(opts.windowMs / SLOTS));
  const slots: Slot[] = [];
  /** Every edge in the window, with the start of the last slot that saw it. */
  const known = new Map<string, number>();
  let dropped = 0;

  const current = (now: number): Slot => {
    const start = now - (now % slotMs);
    let s = slots[slots.length - 1];
    if (!s || s.start !== start) {
      s = { start, edges: new Map() };
      slots.push(s);
    }
    let shifted = false;
    while (slots.length > 0 && slots[0]!.start <= now - opts.windowMs - slotMs) {
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
        if (e.samples.length < SAMPLES_PER_SLOT) e.samples.push(d);
        else {
          const j = Math.floor(Math.random() * e.seen);
          if (j < SAMPLES_PER_SLOT) e.samples[j] = d;
        }
      }
    },
    view() {
      const now = opts.clock.now();
      current(now);
      const from = now - opts.windowMs;
      const totals = new Map<string, { requests: number; errors: number; samples: number[] }>();
      for (const s of slots) {
        if (s.start + slotMs <= from) continue;
        for (const [k, e] of s.edges) {
          let t = totals.get(k);
          if (!t) totals.set(k, t = { requests: 0, errors: 0, samples: [] });
          t.requests += e.requests;
          t.errors += e.errors;
          for (const x of e.samples) t.samples.push(x);
        }
      }
      const seconds = opts.windowMs / 1000;
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
      return { windowMs: opts.windowMs, edges, dropped };
    },
  };
}
