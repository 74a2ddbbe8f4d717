/**
 * Mixer's core, below the wire protocols: the dispatch table in force (rebuilt on every config
 * snapshot, swapped atomically, the previous one kept when a rebuild fails), the mesh settings,
 * the service graph, and the metrics and logs of checks, quotas, reports and refused requests.
 *
 * @module
 */
import { Counter, Gauge, Histogram } from "prom-client";
import {
  defaultMeshConfig,
  mergeMeshConfig,
  type MeshConfig,
  meshConfigGroup,
} from "../api/kinds/mesh_config.ts";
import type { ConfigSnapshot } from "../galley/mod.ts";
import type { Clock } from "../shared/clock.ts";
import { errorMessage } from "../shared/errors.ts";
import type { Logger } from "../shared/logger.ts";
import type { MetricsRegistry } from "../shared/metrics.ts";
import type { QuotaArgs, QuotaOutcome } from "./adapters/adapter.ts";
import { createMetricPool, type MetricPool } from "./adapters/prometheus.ts";
import type { AttributeBag } from "./client/wire.ts";
import {
  buildTable,
  type CheckDecision,
  closeHandlers,
  type DispatchTable,
  type QuotaCharge,
  type QuotaDecision,
} from "./dispatch.ts";
import { createServiceGraph, type ServiceGraph } from "./service_graph.ts";

/** Options of {@link createMixerCore}. */
export interface MixerCoreOptions {
  readonly logger: Logger;
  readonly clock: Clock;
  readonly metrics: MetricsRegistry;
  /** Reuse of a decision no adapter limited: milliseconds and count. */
  readonly defaultValidDurationMs: number;
  readonly defaultValidUseCount: number;
  /** The service graph's sliding window. */
  readonly graphWindowMs: number;
}

/** The APIs' view of mixer. */
export interface MixerCore {
  /** The table in force. */
  table(): DispatchTable;
  /** The mesh settings in force. */
  mesh(): MeshConfig;
  /** Runs check rules. `api` labels the metrics. */
  check(api: string, bag: Readonly<AttributeBag>): Promise<CheckDecision>;
  /** Allocates a named quota (Mixer Check API). */
  quota(bag: Readonly<AttributeBag>, name: string, args: QuotaArgs): Promise<QuotaDecision>;
  /** Allocates every matching quota (rate-limit API). */
  quotaAll(bag: Readonly<AttributeBag>, args: QuotaArgs, only?: string): Promise<QuotaCharge[]>;
  /** Ingests telemetry: report rules and the service graph. */
  report(api: string, bags: readonly Readonly<AttributeBag>[]): Promise<void>;
  /** Logs (at most once per 10 s per API) and counts a refused request. */
  refuse(api: string, reason: string): void;
  readonly graph: ServiceGraph;
  /** Builds a table from `snapshot` and puts it in force; keeps the previous one if that fails. */
  apply(snapshot: ConfigSnapshot): void;
  /** Closes every handler. */
  close(): Promise<void>;
}

/** Creates the core with an empty table. */
export function createMixerCore(opts: MixerCoreOptions): MixerCore {
  const log = opts.logger;
  const m = opts.metrics;
  const pool: MetricPool = createMetricPool(m, log);
  let mesh = defaultMeshConfig;
  const checks = new Counter({
    name: "mixer_check_total",
    help: "Policy checks answered, by API and status code",
    labelNames: ["api", "code"],
    registers: [m],
  });
  const checkSeconds = new Histogram({
    name: "mixer_check_duration_seconds",
    help: "Time to decide a policy check inside meshd",
    buckets: [0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.05, 0.25],
    registers: [m],
  });
  const quotas = new Counter({
    name: "mixer_quota_total",
    help: "Quota allocations, by outcome (granted, exhausted, error)",
    labelNames: ["outcome"],
    registers: [m],
  });
  const reports = new Counter({
    name: "mixer_report_entries_total",
    help: "Telemetry entries ingested, by API",
    labelNames: ["api"],
    registers: [m],
  });
  const refused = new Counter({
    name: "mixer_requests_refused_total",
    help: "Requests refused as malformed or too large, by API",
    labelNames: ["api"],
    registers: [m],
  });
  const version = new Gauge({
    name: "mixer_config_version",
    help: "Config snapshot version of the dispatch table in force",
    registers: [m],
  });
  const problems = new Gauge({
    name: "mixer_config_problems",
    help: "Actions or handlers the dispatch table in force had to leave out (see /debug/mixerz)",
    registers: [m],
  });
  const rebuildFailures = new Counter({
    name: "mixer_config_rebuild_failures_total",
    help: "Dispatch table rebuilds that failed; the previous table stayed in force",
    registers: [m],
  });
  /** The check counter's children, by API and code (labels resolved once). */
  const checkCounters = new Map<string, { inc(): void }>();
  const graph = createServiceGraph({ clock: opts.clock, windowMs: opts.graphWindowMs });
  const dispatchOptions = {
    logger: log,
    clock: opts.clock,
    metrics: m,
    pool,
    mesh: () => mesh,
    defaultValidDurationMs: opts.defaultValidDurationMs,
    defaultValidUseCount: opts.defaultValidUseCount,
  };
  const emptySnapshot: ConfigSnapshot = {
    version: 0,
    resources: new Map(),
    list: () => [],
    get: () => undefined,
  };
  let current = buildTable(emptySnapshot, undefined, dispatchOptions).table;
  const lastRefusal = new Map<string, number>();
  const countQuota = (o: QuotaOutcome) =>
    quotas.inc({ outcome: o.status.code !== 0 ? "error" : o.granted > 0 ? "granted" : "exhausted" });

  return {
    table: () => current,
    mesh: () => mesh,
    graph,

    async check(api, bag) {
      const t0 = performance.now();
      const d = await current.check(bag);
      checkSeconds.observe((performance.now() - t0) / 1000);
      const key = `${api} ${d.status.code}`;
      let counter = checkCounters.get(key);
      if (!counter) {
        counter = checks.labels(api, String(d.status.code));
        checkCounters.set(key, counter);
      }
      counter.inc();
      return d;
    },

    async quota(bag, name, args) {
      const q = await current.quota(bag, name, args);
      if (q.matched) countQuota(q);
      return q;
    },

    async quotaAll(bag, args, only) {
      const out = await current.quotaAll(bag, args, only);
      for (const o of out) countQuota(o);
      return out;
    },

    async report(api, bags) {
      reports.inc({ api }, bags.length);
      for (const b of bags) graph.record(b);
      await current.report(bags);
    },

    refuse(api, reason) {
      refused.inc({ api });
      const t = opts.clock.now();
      if (t - (lastRefusal.get(api) ?? -Infinity) >= 10_000) {
        lastRefusal.set(api, t);
        log.warn("mixer refused a request", { api, reason });
      }
    },

    apply(snapshot) {
      const meshResources = snapshot.list(meshConfigGroup, "MeshConfig");
      const nextMesh = meshResources.length > 0 ? mergeMeshConfig(meshResources[0]) : defaultMeshConfig;
      const previousMesh = mesh;
      mesh = nextMesh;
      let built: ReturnType<typeof buildTable>;
      try {
        built = buildTable(snapshot, current, dispatchOptions);
      } catch (err) {
        mesh = previousMesh;
        rebuildFailures.inc();
        log.error("mixer dispatch table rebuild failed; keeping the previous one", {
          version: snapshot.version,
          error: errorMessage(err),
        });
        return;
      }
      current = built.table;
      version.set(snapshot.version);
      problems.set(built.table.problems.length);
      log.info("mixer config applied", {
        version: snapshot.version,
        handlers: built.table.handlers.size,
        checkRules: built.table.counts.check,
        quotaRules: built.table.counts.quota,
        reportRules: built.table.counts.report,
        problems: built.table.problems.length,
      });
      void closeHandlers(built.retired, log, pool);
    },

    async close() {
      await closeHandlers([...current.handlers.values()], log, pool);
    },
  };
}
