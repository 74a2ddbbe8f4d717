/**
 * The zipkin adapter: turns tracespan instances into Zipkin v2 spans and POSTs them as JSON
 * arrays to the handler's `url` (e.g. http://zipkin:9411/api/v2/spans), in batches of up to
 * {@link BATCH_SIZE} spans or every {@link FLUSH_MS}, whichever comes first.
 *
 * Trace context comes from the request as the sidecars propagate it, so the adapter's spans join
 * the sidecars' traces: `traceId` is a bare id (`request.headers["x-b3-traceid"]`, Istio's
 * tracespan instance), a W3C `traceparent` header value (`00-TRACE-SPAN-FLAGS`) or a B3 single
 * header value (`TRACE-SPAN[-SAMPLED[-PARENT]]`); from a whole header, the span and parent ids
 * fill `spanId` and `parentSpanId` where those are empty, and a trace the header marks as not
 * sampled is not reported (the sidecars do not report it either).
 *
 * Sampling (`sampleProbability`, default 1) is decided per trace id, so a trace is kept or dropped
 * whole. Spans whose ids are not Zipkin's hex ids are dropped. When the collector is slow or
 * down, at most {@link MAX_BUFFERED} spans wait; the rest are dropped and counted.
 *
 * @module
 */
import { Counter } from "prom-client";
import type { ZipkinParams } from "../../api/mixer/mod.ts";
import type { Timer } from "../../shared/clock.ts";
import { errorMessage } from "../../shared/errors.ts";
import type { MetricsRegistry } from "../../shared/metrics.ts";
import { type AdapterFactory, dimensionText, type InstanceValue } from "./adapter.ts";

/** Spans per POST. */
export const BATCH_SIZE = 100;
/** Longest a span waits before it is sent. */
export const FLUSH_MS = 1_000;
/** Spans held while the collector does not take them. */
export const MAX_BUFFERED = 10_000;
const POST_TIMEOUT_MS = 5_000;

/** A Zipkin v2 span. */
export interface ZipkinSpan {
  traceId: string;
  id: string;
  parentId?: string;
  name: string;
  kind: "CLIENT" | "SERVER";
  timestamp: number;
  duration: number;
  localEndpoint?: { serviceName?: string; ipv4?: string; ipv6?: string };
  remoteEndpoint?: { serviceName?: string; ipv4?: string; ipv6?: string };
  tags?: Record<string, string>;
}

const TRACE_ID = /^[0-9a-f]{16}([0-9a-f]{16})?$/;
const SPAN_ID = /^[0-9a-f]{16}$/;

function endpoint(name: unknown, ip: unknown): ZipkinSpan["localEndpoint"] {
  const e: NonNullable<ZipkinSpan["localEndpoint"]> = {};
  if (typeof name === "string" && name !== "") e.serviceName = name;
  if (ip instanceof Uint8Array && ip.length === 4) e.ipv4 = dimensionText(ip);
  if (ip instanceof Uint8Array && ip.length === 16) e.ipv6 = dimensionText(ip);
  return Object.keys(e).length > 0 ? e : undefined;
}

const micros = (v: unknown): number | undefined =>
  v instanceof Date ? v.getTime() * 1000 : typeof v === "number" && Number.isFinite(v) ? v * 1000 : undefined;

/** The trace context a `traceId` value carries. */
export interface TraceContext {
  readonly traceId: string;
  readonly spanId?: string;
  readonly parentId?: string;
  /** False when the header says the trace is not sampled; undefined when it does not say. */
  readonly sampled?: boolean;
}

const TRACEPARENT = /^([0-9a-f]{2})-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})$/;
const B3_SINGLE = /^([0-9a-f]{16}|[0-9a-f]{32})-([0-9a-f]{16})(?:-([01d]))?(?:-([0-9a-f]{16}))?$/;

/**
 * Reads a trace id as a bare hex id, a W3C `traceparent` value or a B3 single header value
 * (lower-cased first); anything else is returned as the trace id, for the caller to refuse.
 */
export function traceContext(value: string): TraceContext {
  const v = value.trim().toLowerCase();
  const w3c = TRACEPARENT.exec(v);
  if (w3c && w3c[1] !== "ff") {
    return { traceId: w3c[2]!, spanId: w3c[3]!, sampled: (parseInt(w3c[4]!, 16) & 1) === 1 };
  }
  const b3 = B3_SINGLE.exec(v);
  if (b3) {
    return {
      traceId: b3[1]!,
      spanId: b3[2]!,
      ...(b3[4] ? { parentId: b3[4] } : {}),
      ...(b3[3] === "0" ? { sampled: false } : b3[3] ? { sampled: true } : {}),
    };
  }
  return { traceId: v };
}

/** The lower-cased text of a string field, or "" for anything else. */
const idText = (v: unknown): string => (typeof v === "string" ? v.trim().toLowerCase() : "");

/**
 * Converts a tracespan instance to a Zipkin span, "unsampled" when its trace context says the
 * trace is not sampled, or explains why it cannot be a span.
 */
export function toZipkinSpan(inst: InstanceValue): ZipkinSpan | "unsampled" | string {
  const f = inst.fields;
  const ctx = traceContext(typeof f.traceId === "string" ? f.traceId : "");
  if (ctx.sampled === false) return "unsampled";
  const traceId = ctx.traceId;
  const id = idText(f.spanId) || (ctx.spanId ?? "");
  if (!TRACE_ID.test(traceId)) {
    return `traceId ${JSON.stringify(String(f.traceId).slice(0, 40))} is not a Zipkin trace id`;
  }
  if (!SPAN_ID.test(id)) {
    return `spanId ${JSON.stringify(String(f.spanId).slice(0, 40))} is not a Zipkin span id`;
  }
  const start = micros(f.startTime);
  const end = micros(f.endTime);
  if (start === undefined || end === undefined) return "startTime and endTime must be timestamps";
  const client = f.clientSpan === true;
  const span: ZipkinSpan = {
    traceId,
    id,
    name: typeof f.spanName === "string" && f.spanName !== "" ? f.spanName : "unknown",
    kind: client ? "CLIENT" : "SERVER",
    timestamp: Math.round(start),
    duration: Math.max(1, Math.round(end - start)),
  };
  const parent = idText(f.parentSpanId) || (ctx.parentId ?? "");
  if (SPAN_ID.test(parent)) span.parentId = parent;
  const src = endpoint(f.sourceName, f.sourceIp);
  const dst = endpoint(f.destinationName, f.destinationIp);
  if (client ? src : dst) span.localEndpoint = client ? src : dst;
  if (client ? dst : src) span.remoteEndpoint = client ? dst : src;
  const tags: Record<string, string> = {};
  if (typeof f.spanTags === "object" && f.spanTags !== null) {
    for (const [k, v] of Object.entries(f.spanTags)) {
      if (v !== undefined && v !== null) tags[k] = dimensionText(v);
    }
  }
  if (typeof f.httpStatusCode === "number" && f.httpStatusCode > 0) {
    tags["http.status_code"] = String(f.httpStatusCode);
  }
  if (typeof f.apiProtocol === "string" && f.apiProtocol !== "") tags["protocol"] = f.apiProtocol;
  for (
    const [field, tag] of [
      ["requestSize", "request_size"],
      ["responseSize", "response_size"],
      ["requestTotalSize", "request_total_size"],
      ["responseTotalSize", "response_total_size"],
    ] as const
  ) {
    if (typeof f[field] === "number") tags[tag] = String(f[field]);
  }
  if (Object.keys(tags).length > 0) span.tags = tags;
  return span;
}

/** Whether a trace is sampled at probability `p`, decided by its id so every span agrees. */
export function sampled(traceId: string, p: number): boolean {
  if (p >= 1) return true;
  if (p <= 0) return false;
  return parseInt(traceId.slice(-8), 16) / 0x1_0000_0000 < p;
}

let spansCounter: Counter<string> | undefined;
let spansRegistry: MetricsRegistry | undefined;

function spansMetric(registry: MetricsRegistry): Counter<string> {
  if (spansRegistry !== registry || !spansCounter) {
    spansRegistry = registry;
    spansCounter = (registry.getSingleMetric("mixer_zipkin_spans_total") as Counter<string> | undefined) ??
      new Counter({
        name: "mixer_zipkin_spans_total",
        help: "Spans handled by zipkin handlers, by outcome (sent, failed, dropped, invalid, unsampled)",
        labelNames: ["handler", "outcome"],
        registers: [registry],
      });
  }
  return spansCounter;
}

/** Builds a zipkin handler. */
export const createZipkin: AdapterFactory = (params, env) => {
  const p = params as ZipkinParams;
  const probability = p.sampleProbability ?? 1;
  const spans = spansMetric(env.metrics);
  const count = (outcome: string, n = 1) => n > 0 && spans.inc({ handler: env.handler, outcome }, n);
  let buffer: ZipkinSpan[] = [];
  let timer: Timer | undefined;
  let inFlight = Promise.resolve();
  /** Spans handed to POSTs that have not finished. */
  let queued = 0;
  let lastLog = 0;

  const post = async (batch: ZipkinSpan[]) => {
    try {
      const res = await fetch(p.url, {
        method: "POST",
        headers: { "content-type": "application/json" },
        body: JSON.stringify(batch),
        signal: AbortSignal.timeout(POST_TIMEOUT_MS),
      });
      await res.arrayBuffer().catch(() => undefined);
      if (res.status >= 300) throw new Error(`HTTP ${res.status}`);
      count("sent", batch.length);
    } catch (err) {
      count("failed", batch.length);
      const t = env.clock.now();
      if (t - lastLog > 10_000) {
        lastLog = t;
        env.logger.warn("zipkin: could not send spans", {
          handler: env.handler,
          url: p.url,
          error: errorMessage(err),
        });
      }
    }
  };

  const flush = () => {
    timer?.cancel();
    timer = undefined;
    while (buffer.length > 0) {
      const batch = buffer.slice(0, BATCH_SIZE);
      buffer = buffer.slice(BATCH_SIZE);
      queued += batch.length;
      inFlight = inFlight.then(() => post(batch)).finally(() => (queued -= batch.length));
    }
    return inFlight;
  };

  return {
    report(instances) {
      for (const inst of instances) {
        const span = toZipkinSpan(inst);
        if (typeof span === "string") {
          count(span === "unsampled" ? "unsampled" : "invalid");
          continue;
        }
        if (!sampled(span.traceId, probability)) {
          count("unsampled");
          continue;
        }
        if (buffer.length + queued >= MAX_BUFFERED) {
          count("dropped");
          continue;
        }
        buffer.push(span);
      }
      if (buffer.length >= BATCH_SIZE) void flush();
      else if (buffer.length > 0 && !timer) timer = env.clock.setTimer(FLUSH_MS, () => void flush());
    },
    async close() {
      await flush();
    },
  };
};
