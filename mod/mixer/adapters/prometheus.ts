/**
 * The prometheus adapter: turns reported telemetry into Prometheus metrics in meshd's registry
 * (served at the admin server's /metrics).
 *
 * A handler whose params list `metrics` records metric instances as configured: each metric
 * names the instance that feeds it (`instanceName`), its kind (COUNTER adds the instance's value,
 * GAUGE sets it, DISTRIBUTION observes it), its labels (read from the instance's dimensions) and
 * buckets. Names get the `namespace` prefix, `istio` by default (`requests_total` becomes
 * `istio_requests_total`), as Istio's adapter did.
 *
 * A handler without `metrics` records Istio's standard metrics (istio_requests_total,
 * istio_request_duration_milliseconds, istio_request_bytes, istio_response_bytes,
 * istio_tcp_sent_bytes_total, istio_tcp_received_bytes_total, istio_tcp_connections_opened_total,
 * istio_tcp_connections_closed_total) with Istio's labels, computed from the attributes of every
 * report a rule sends it, once per report whatever instances the rule names.
 *
 * Metrics live in a pool that outlives config changes: a handler rebuilt with the same metric
 * definitions keeps counting where it was; a metric no handler uses any more leaves the registry.
 * Each metric keeps at most {@link MAX_SERIES} label sets (more are dropped and counted), and
 * `metricsExpirationPolicy` removes label sets not updated for `metricsExpiryDuration`.
 *
 * @module
 */
import { Counter, Gauge, Histogram, type Metric } from "prom-client";
import type { PrometheusBuckets, PrometheusParams } from "../../api/mixer/mod.ts";
import type { Timer } from "../../shared/clock.ts";
import { parseDuration } from "../../shared/duration.ts";
import type { Logger } from "../../shared/logger.ts";
import type { MetricsRegistry } from "../../shared/metrics.ts";
import type { AttributeBag } from "../client/wire.ts";
import { type AdapterFactory, dimensionText, instanceNameMatches, type InstanceValue } from "./adapter.ts";

/** Most label sets one metric keeps. */
export const MAX_SERIES = 10_000;

/** A metric definition; two handlers may share a metric only with equal definitions. */
export interface MetricDef {
  readonly name: string;
  readonly help: string;
  readonly kind: "COUNTER" | "GAUGE" | "DISTRIBUTION";
  readonly labelNames: readonly string[];
  readonly buckets?: readonly number[];
}

type AnyMetric = Counter<string> | Gauge<string> | Histogram<string>;

interface PoolEntry {
  readonly def: MetricDef;
  readonly signature: string;
  readonly metric: AnyMetric;
  readonly owners: Set<object>;
  /** Label sets recorded, by key, with the time of their last update. */
  readonly series: Map<string, { labels: Record<string, string>; at: number }>;
}

/** Prometheus metrics shared by prometheus handlers across config changes. */
export interface MetricPool {
  /**
   * The metric for `def`, registered on first use. Throws when another live handler holds a metric
   * of that name with a different definition.
   */
  acquire(def: MetricDef, owner: object): PooledMetric;
  /** Marks owners that are being replaced: their metrics may be redefined by new handlers. */
  retiring(owners: Iterable<object>): void;
  /** Gives up every metric `owner` holds. */
  release(owner: object): void;
  /** Unregisters metrics no handler holds. */
  sweep(): void;
}

/** A metric as a handler uses it. */
export interface PooledMetric {
  readonly def: MetricDef;
  /** Records `value` under `labels`; false when the label set was dropped (too many series). */
  record(labels: Record<string, string>, value: number, now: number): boolean;
  /** Removes label sets not updated since `before`. Returns how many were removed. */
  expire(before: number): number;
}

/** Creates the pool over `registry`. */
export function createMetricPool(registry: MetricsRegistry, logger: Logger): MetricPool {
  const entries = new Map<string, PoolEntry>();
  const retired = new Set<object>();
  const dropped = new Counter({
    name: "mixer_prometheus_series_dropped_total",
    help: "Reports not recorded because a metric already had its maximum number of label sets",
    labelNames: ["metric"],
    registers: [registry],
  });

  const make = (def: MetricDef): AnyMetric => {
    const common = { name: def.name, help: def.help, labelNames: [...def.labelNames], registers: [registry] };
    switch (def.kind) {
      case "COUNTER":
        return new Counter(common);
      case "GAUGE":
        return new Gauge(common);
      case "DISTRIBUTION":
        return new Histogram({ ...common, buckets: [...(def.buckets ?? [])] });
    }
  };

  const view = (e: PoolEntry): PooledMetric => ({
    def: e.def,
    record(labels, value, now) {
      const key = e.def.labelNames.map((l) => labels[l] ?? "").join("\u0000");
      const s = e.series.get(key);
      if (s) s.at = now;
      else {
        if (e.series.size >= MAX_SERIES) {
          dropped.inc({ metric: e.def.name });
          return false;
        }
        e.series.set(key, { labels, at: now });
      }
      const m = e.metric;
      if (m instanceof Counter) {
        if (value > 0) m.inc(labels, value);
        else if (!s) m.inc(labels, 0);
      } else if (m instanceof Gauge) m.set(labels, value);
      else m.observe(labels, value);
      return true;
    },
    expire(before) {
      let n = 0;
      for (const [key, s] of e.series) {
        if (s.at < before) {
          e.series.delete(key);
          e.metric.remove(s.labels);
          n++;
        }
      }
      return n;
    },
  });

  return {
    acquire(def, owner) {
      const signature = JSON.stringify([def.kind, def.labelNames, def.buckets ?? null]);
      let e = entries.get(def.name);
      if (e && e.signature !== signature) {
        const live = [...e.owners].filter((o) => !retired.has(o));
        if (live.length > 0) {
          throw new Error(
            `metric ${def.name} is already defined by another handler as ${e.def.kind} ` +
              `with labels [${e.def.labelNames.join(", ")}]`,
          );
        }
        registry.removeSingleMetric(def.name);
        entries.delete(def.name);
        e = undefined;
      }
      if (!e) {
        if (registry.getSingleMetric(def.name) as Metric | undefined) {
          throw new Error(`metric ${def.name} is already registered by meshd itself`);
        }
        e = { def, signature, metric: make(def), owners: new Set(), series: new Map() };
        entries.set(def.name, e);
      }
      e.owners.add(owner);
      return view(e);
    },
    retiring(owners) {
      for (const o of owners) retired.add(o);
    },
    release(owner) {
      for (const e of entries.values()) e.owners.delete(owner);
      retired.delete(owner);
    },
    sweep() {
      for (const [name, e] of entries) {
        if (e.owners.size === 0) {
          registry.removeSingleMetric(name);
          entries.delete(name);
          logger.debug("prometheus metric unregistered", { metric: name });
        }
      }
    },
  };
}

/** The buckets of a DISTRIBUTION metric, as upper bounds. */
export function bucketBounds(b: PrometheusBuckets | undefined): number[] {
  if (b?.explicitBuckets) return [...b.explicitBuckets.bounds];
  if (b?.linearBuckets) {
    const { numFiniteBuckets: n, width, offset = 0 } = b.linearBuckets;
    return Array.from({ length: n }, (_, i) => offset + width * i);
  }
  if (b?.exponentialBuckets) {
    const { numFiniteBuckets: n, growthFactor, scale } = b.exponentialBuckets;
    return Array.from({ length: n }, (_, i) => scale * growthFactor ** i);
  }
  return [];
}

// ---------------------------------------------------------------------------------------------
// Istio's standard metrics
// ---------------------------------------------------------------------------------------------

const WORKLOAD_LABELS = [
  "reporter",
  "source_workload",
  "source_workload_namespace",
  "source_principal",
  "source_app",
  "source_version",
  "destination_workload",
  "destination_workload_namespace",
  "destination_principal",
  "destination_app",
  "destination_version",
  "destination_service",
  "destination_service_name",
  "destination_service_namespace",
  "request_protocol",
];

/** Labels of Istio's HTTP and gRPC metrics. */
export const HTTP_LABELS: readonly string[] = [
  ...WORKLOAD_LABELS,
  "response_code",
  "grpc_response_status",
  "response_flags",
  "connection_security_policy",
];

/** Labels of Istio's TCP metrics. */
export const TCP_LABELS: readonly string[] = [
  ...WORKLOAD_LABELS,
  "response_flags",
  "connection_security_policy",
];

const DURATION_BUCKETS = [
  0.5,
  1,
  5,
  10,
  25,
  50,
  100,
  250,
  500,
  1000,
  2500,
  5000,
  10000,
  30000,
  60000,
  300000,
  600000,
];
const BYTE_BUCKETS = [1, 10, 100, 1000, 10000, 100000, 1000000, 10000000, 100000000];

/** Istio's standard metrics. */
export const STANDARD_METRICS: readonly MetricDef[] = [
  {
    name: "istio_requests_total",
    help: "Requests, by source, destination and response",
    kind: "COUNTER",
    labelNames: HTTP_LABELS,
  },
  {
    name: "istio_request_duration_milliseconds",
    help: "Request durations in milliseconds",
    kind: "DISTRIBUTION",
    labelNames: HTTP_LABELS,
    buckets: DURATION_BUCKETS,
  },
  {
    name: "istio_request_bytes",
    help: "Request sizes in bytes",
    kind: "DISTRIBUTION",
    labelNames: HTTP_LABELS,
    buckets: BYTE_BUCKETS,
  },
  {
    name: "istio_response_bytes",
    help: "Response sizes in bytes",
    kind: "DISTRIBUTION",
    labelNames: HTTP_LABELS,
    buckets: BYTE_BUCKETS,
  },
  {
    name: "istio_tcp_sent_bytes_total",
    help: "Bytes sent by the destination over TCP",
    kind: "COUNTER",
    labelNames: TCP_LABELS,
  },
  {
    name: "istio_tcp_received_bytes_total",
    help: "Bytes received by the destination over TCP",
    kind: "COUNTER",
    labelNames: TCP_LABELS,
  },
  {
    name: "istio_tcp_connections_opened_total",
    help: "TCP connections opened",
    kind: "COUNTER",
    labelNames: TCP_LABELS,
  },
  {
    name: "istio_tcp_connections_closed_total",
    help: "TCP connections closed",
    kind: "COUNTER",
    labelNames: TCP_LABELS,
  },
];

function str(bag: Readonly<AttributeBag>, name: string, fallback = "unknown"): string {
  const v = bag[name];
  return v === undefined || v === null || v === "" ? fallback : dimensionText(v);
}

function label(bag: Readonly<AttributeBag>, map: string, key: string): string {
  const m = bag[map];
  const v = m instanceof Map
    ? m.get(key)
    : typeof m === "object" && m !== null
    ? (m as Record<string, unknown>)[key]
    : undefined;
  return typeof v === "string" && v !== "" ? v : "unknown";
}

/** Istio's standard labels for one report's attributes. */
export function standardLabels(bag: Readonly<AttributeBag>, tcp: boolean): Record<string, string> {
  const outbound = bag["context.reporter.kind"] === "outbound";
  const l: Record<string, string> = {
    reporter: outbound ? "source" : "destination",
    source_workload: str(bag, "source.workload.name"),
    source_workload_namespace: str(bag, "source.workload.namespace", str(bag, "source.namespace")),
    source_principal: str(bag, "source.principal"),
    source_app: label(bag, "source.labels", "app"),
    source_version: label(bag, "source.labels", "version"),
    destination_workload: str(bag, "destination.workload.name"),
    destination_workload_namespace: str(
      bag,
      "destination.workload.namespace",
      str(bag, "destination.namespace"),
    ),
    destination_principal: str(bag, "destination.principal"),
    destination_app: label(bag, "destination.labels", "app"),
    destination_version: label(bag, "destination.labels", "version"),
    destination_service: str(bag, "destination.service.host"),
    destination_service_name: str(bag, "destination.service.name"),
    destination_service_namespace: str(bag, "destination.service.namespace"),
    request_protocol: tcp ? "tcp" : str(bag, "api.protocol", str(bag, "context.protocol")),
    response_flags: str(bag, "context.proxy_error_code", "-"),
    connection_security_policy: outbound
      ? "unknown"
      : bag["connection.mtls"] === true
      ? "mutual_tls"
      : "none",
  };
  if (!tcp) {
    l.response_code = str(bag, "response.code", "200");
    l.grpc_response_status = str(bag, "response.grpc_status", "");
  }
  // In Istio's order, so /metrics reads the same as Istio's.
  const ordered: Record<string, string> = {};
  for (const name of tcp ? TCP_LABELS : HTTP_LABELS) ordered[name] = l[name]!;
  return ordered;
}

const num = (v: unknown): number | undefined =>
  typeof v === "number" && Number.isFinite(v) ? v : typeof v === "bigint" ? Number(v) : undefined;

// ---------------------------------------------------------------------------------------------
// The handler
// ---------------------------------------------------------------------------------------------

/** Builds a prometheus handler on the pool `pool` (the module passes its pool). */
export function prometheusFactory(pool: MetricPool): AdapterFactory {
  return (params, env) => {
    const p = (params ?? {}) as PrometheusParams;
    const owner = {};
    const log = env.logger;
    const configured: Array<
      { instanceName: string; metric: PooledMetric; valueOf: (v: unknown) => number | undefined }
    > = [];
    const standard = new Map<string, PooledMetric>();
    try {
      if (p.metrics && p.metrics.length > 0) {
        for (const m of p.metrics) {
          const name = `${m.namespace ?? "istio"}_${m.name}`;
          try {
            const metric = pool.acquire(
              {
                name,
                help: m.description || `${m.name} from instance ${m.instanceName}`,
                kind: m.kind,
                labelNames: m.labelNames ?? [],
                buckets: m.kind === "DISTRIBUTION" ? bucketBounds(m.buckets) : undefined,
              },
              owner,
            );
            configured.push({ instanceName: m.instanceName, metric, valueOf: num });
          } catch (err) {
            log.error("prometheus: metric skipped", {
              handler: env.handler,
              metric: name,
              error: String(err),
            });
          }
        }
      } else {
        for (const def of STANDARD_METRICS) standard.set(def.name, pool.acquire(def, owner));
      }
    } catch (err) {
      pool.release(owner);
      throw err;
    }

    const expiryMs = parseDuration(p.metricsExpirationPolicy?.metricsExpiryDuration ?? "0") ?? 0;
    const checkMs = parseDuration(p.metricsExpirationPolicy?.expiryCheckIntervalDuration ?? "0") ||
      Math.max(1000, expiryMs / 2);
    let timer: Timer | undefined;
    const all = () => [...configured.map((c) => c.metric), ...standard.values()];
    const expire = () => {
      const before = env.clock.now() - expiryMs;
      for (const m of all()) m.expire(before);
      timer = env.clock.setTimer(checkMs, expire);
    };
    if (expiryMs > 0) timer = env.clock.setTimer(checkMs, expire);

    const recordStandard = (bag: Readonly<AttributeBag>, now: number) => {
      const tcp = bag["context.protocol"] === "tcp";
      const labels = standardLabels(bag, tcp);
      const rec = (name: string, value: number | undefined) => {
        if (value !== undefined) standard.get(name)!.record(labels, value, now);
      };
      if (tcp) {
        rec("istio_tcp_sent_bytes_total", num(bag["connection.sent.bytes"]));
        rec("istio_tcp_received_bytes_total", num(bag["connection.received.bytes"]));
        if (bag["connection.event"] === "open") rec("istio_tcp_connections_opened_total", 1);
        if (bag["connection.event"] === "close") rec("istio_tcp_connections_closed_total", 1);
        return;
      }
      rec("istio_requests_total", 1);
      rec("istio_request_duration_milliseconds", num(bag["response.duration"]));
      rec("istio_request_bytes", num(bag["request.total_size"]) ?? num(bag["request.size"]));
      rec("istio_response_bytes", num(bag["response.total_size"]) ?? num(bag["response.size"]));
    };

    const recordConfigured = (inst: InstanceValue, now: number) => {
      for (const c of configured) {
        if (!instanceNameMatches(c.instanceName, inst.name, env.namespace)) continue;
        const value = c.valueOf(inst.fields.value);
        if (value === undefined) continue;
        const dims = (inst.fields.dimensions ?? {}) as Record<string, unknown>;
        const labels: Record<string, string> = {};
        for (const l of c.metric.def.labelNames) {
          labels[l] = dims[l] === undefined ? "" : dimensionText(dims[l]);
        }
        c.metric.record(labels, value, now);
      }
    };

    return {
      owner,
      report(instances) {
        const now = env.clock.now();
        if (standard.size > 0) {
          const seen = new Set<Readonly<AttributeBag>>();
          for (const inst of instances) {
            if (!inst.bag || seen.has(inst.bag)) continue;
            seen.add(inst.bag);
            recordStandard(inst.bag, now);
          }
          return;
        }
        for (const inst of instances) recordConfigured(inst, now);
      },
      close() {
        timer?.cancel();
        pool.release(owner);
      },
    };
  };
}
