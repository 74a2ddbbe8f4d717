/**
 * Galley's store: turns what sources report into an immutable, versioned snapshot of accepted
 * resources, and tells subscribers what changed.
 *
 * Guarantees:
 * - A resource whose new version is rejected keeps its last accepted version in force, and its
 *   status says rejected with the reasons.
 * - An origin that cannot be read or parsed keeps every resource it had; one that parses cleanly
 *   but no longer holds a resource removes it.
 * - The same resource defined in two origins: the one accepted first stays, the other is
 *   rejected with both places named.
 * - Each change to the accepted set produces exactly one new snapshot; nothing is applied half-way.
 * - Bounds hold across all sources: a listing or update that would take the config over the
 *   total resources or bytes allowed, or (with `refuseEmpty`) that would take a source from some
 *   resources to none at once, is refused as a whole; the last good snapshot stays and the
 *   source's status says which bound and by how much. Bytes are checked before anything is
 *   parsed, and parsing stops as soon as the resource limit is passed.
 */
import { Counter, Gauge } from "prom-client";
import type { Logger } from "../shared/logger.ts";
import type { MetricsRegistry } from "../shared/metrics.ts";
import { contentVersion } from "../shared/content_version.ts";
import { formatSize, inputBytes, parseConfig } from "./parse.ts";
import {
  type Diagnostic,
  formatDiagnostic,
  type Resource,
  resourceKey,
  resourceLabel,
} from "../api/resource.ts";
import {
  isDeleted,
  isError,
  type OriginChange,
  type OriginContent,
  type OriginError,
  type SinkVerdict,
  type SourceProblems,
  type SourceSink,
} from "../runtime/config_source.ts";
import { validateResource } from "./validate.ts";

/** An immutable view of every accepted resource. */
export interface ConfigSnapshot {
  /** Increases by one with every change to the accepted set. */
  readonly version: number;
  /** Accepted resources by resourceKey. */
  readonly resources: ReadonlyMap<string, Resource>;
  /** Resources of one kind, ordered by namespace then name. */
  list<S = unknown>(group: string, kind: string): readonly Resource<S>[];
  /** One resource, or undefined. */
  get<S = unknown>(group: string, kind: string, namespace: string, name: string): Resource<S> | undefined;
}

/** What one new snapshot changed, by resourceKey. */
export interface ConfigChange {
  readonly snapshot: ConfigSnapshot;
  readonly previous: ConfigSnapshot;
  readonly added: readonly string[];
  readonly updated: readonly string[];
  readonly removed: readonly string[];
}

/** The status of one resource, as /debug/configz and the CLI show it. */
export interface ResourceStatus {
  readonly key: string;
  /** "Kind namespace/name". */
  readonly resource: string;
  readonly source: string;
  readonly origin: string;
  readonly state: "accepted" | "rejected";
  /** Formatted reasons, when rejected. */
  readonly errors: readonly string[];
  /** Rejected, but an earlier accepted version is still in force. */
  readonly servingPrevious: boolean;
}

/** The status of one origin (a file, a key). */
export interface OriginStatus {
  readonly source: string;
  readonly origin: string;
  /** Rejected: the origin could not be read or parsed at all; partial: some resources rejected. */
  readonly state: "accepted" | "partial" | "rejected";
  readonly errors: readonly string[];
  readonly resources: number;
}

/** The status of one source as a whole. */
export interface SourceStatus {
  readonly source: string;
  /** Refused: the source's newest state is not in force (see errors); the one before it is. */
  readonly state: "ok" | "refused";
  /** Why the newest state is not in force: a bound it broke, or what the source withheld. */
  readonly errors: readonly string[];
  /** What the source skipped or wants seen (a directory loop, say). */
  readonly warnings: readonly string[];
  /** Resources in force from this source, and the bytes of config they came from. */
  readonly resources: number;
  readonly bytes: number;
}

/** Reads config, and learns of changes. */
export interface ConfigStore {
  /** The current snapshot. Cheap; never null (starts empty at version 0). */
  snapshot(): ConfigSnapshot;
  /**
   * Calls `listener` after every new snapshot, synchronously and in order. Returns an
   * unsubscribe function. A listener that throws is logged and does not affect others.
   */
  subscribe(listener: (change: ConfigChange) => void): () => void;
  /** Statuses of resources, origins and sources, sorted. */
  status(): { resources: ResourceStatus[]; origins: OriginStatus[]; sources: SourceStatus[] };
}

/** A ConfigStore that sources write into. */
export interface WritableConfigStore extends ConfigStore {
  /** A sink for the named source. Each source must use its own name. */
  sink(source: string): SourceSink;
}

/** Options for createConfigStore. */
export interface StoreOptions {
  logger: Logger;
  metrics?: MetricsRegistry;
  /** Largest origin accepted, in bytes. */
  maxBytes?: number;
  /** Most resources held across all sources (accepted or rejected); unlimited when unset. */
  maxResources?: number;
  /** Most bytes of config held across all sources; unlimited when unset. */
  maxTotalBytes?: number;
  /**
   * Refuse a change that takes a source from some accepted resources to none at once (every
   * file removed, a directory emptied), keeping its last good config.
   */
  refuseEmpty?: boolean;
}

interface OriginState {
  readonly source: string;
  readonly origin: string;
  /** Resources of this origin in force, by key. */
  accepted: Map<string, Resource>;
  /** Keys whose newest definition here was rejected, with the reasons. */
  rejected: Map<string, { label: string; errors: Diagnostic[] }>;
  /** Errors not tied to one resource (unreadable file, YAML syntax). */
  originErrors: Diagnostic[];
  /** Size of the content the resources in force came from. */
  bytes: number;
}

/** The next state of each origin a change touches; undefined: the origin goes away. */
type Plan = Map<string, OriginState | undefined>;

interface SourceState {
  /** Why the source's last change was refused, until one is applied. */
  refused?: string;
  problems: SourceProblems;
}

const EMPTY: ConfigSnapshot = makeSnapshot(0, new Map());

/** Creates an empty store. */
export function createConfigStore(opts: StoreOptions): WritableConfigStore {
  const log = opts.logger;
  const origins = new Map<string, OriginState>();
  /** Order in which a key was first accepted from an origin: decides duplicates. */
  const claims = new Map<string, number>();
  let claimSeq = 0;
  let current = EMPTY;
  let hashes = new Map<string, string>();
  /** Duplicates found by the last rebuild: key -> losing origin ids and the reason. */
  let duplicates = new Map<string, Map<string, string>>();
  const listeners = new Set<(c: ConfigChange) => void>();
  const sources = new Map<string, SourceState>();

  const m = opts.metrics
    ? {
      rejected: new Counter({
        name: "galley_validation_failed_total",
        help: "Resources or origins rejected by parsing or validation",
        labelNames: ["kind"],
        registers: [opts.metrics],
      }),
      resources: new Gauge({
        name: "galley_resources",
        help: "Accepted resources in the current snapshot, by kind",
        labelNames: ["kind"],
        registers: [opts.metrics],
      }),
      version: new Gauge({
        name: "galley_snapshot_version",
        help: "Version of the current snapshot",
        registers: [opts.metrics],
      }),
      updates: new Counter({
        name: "galley_snapshot_updates_total",
        help: "Snapshots published",
        registers: [opts.metrics],
      }),
      refused: new Counter({
        name: "galley_config_changes_refused_total",
        help: "Listings or updates refused as a whole, by the bound they broke (resources, bytes, empty)",
        labelNames: ["bound"],
        registers: [opts.metrics],
      }),
    }
    : undefined;

  const originId = (source: string, origin: string) => `${source}\u0000${origin}`;
  const claimId = (oid: string, key: string) => `${oid}\u0000${key}`;

  /** The next state of an origin from new content; `budget` stops parsing past that many resources. */
  function planContent(prev: OriginState | undefined, source: string, c: OriginContent, budget?: number) {
    const parsed = parseConfig(c.content, c.origin, { maxBytes: opts.maxBytes, maxResources: budget });
    const previousAccepted = prev?.accepted ?? new Map<string, Resource>();
    const unkeyed = parsed.diagnostics.filter((d) => d.severity === "error" && d.resource === undefined);
    const keyedParseErrors = new Map<string, Diagnostic[]>();
    for (const d of parsed.diagnostics) {
      if (d.severity !== "error" || d.resource === undefined) continue;
      const r = parsed.resources.find((x) => resourceLabel(x) === d.resource);
      const key = r ? resourceKey(r) : `label:${d.resource}`;
      keyedParseErrors.set(key, [...(keyedParseErrors.get(key) ?? []), d]);
    }
    const nextAccepted = new Map<string, Resource>();
    const nextRejected = new Map<string, { label: string; errors: Diagnostic[] }>();
    for (const r of parsed.resources) {
      const key = resourceKey(r);
      const errors = [
        ...(keyedParseErrors.get(key) ?? []),
        ...validateResource(r).filter((d) => d.severity === "error"),
      ];
      if (errors.length === 0) {
        nextAccepted.set(key, r);
      } else {
        nextRejected.set(key, { label: resourceLabel(r), errors });
        m?.rejected.inc({ kind: r.kind });
        const previous = previousAccepted.get(key);
        if (previous) nextAccepted.set(key, previous);
      }
    }
    for (const [key, errors] of keyedParseErrors) {
      if (key.startsWith("label:")) nextRejected.set(key, { label: key.slice(6), errors });
    }
    if (unkeyed.length > 0) {
      // Part of the origin could not be read as resources: keep everything it had before.
      m?.rejected.inc({ kind: "" });
      for (const [key, r] of previousAccepted) if (!nextAccepted.has(key)) nextAccepted.set(key, r);
    }
    for (const d of [...unkeyed, ...[...nextRejected.values()].flatMap((x) => x.errors)]) {
      log.warn("config rejected", { origin: c.origin, error: formatDiagnostic(d) });
    }
    const next: OriginState = {
      source,
      origin: c.origin,
      accepted: nextAccepted,
      rejected: nextRejected,
      originErrors: unkeyed,
      bytes: inputBytes(c.content),
    };
    return { next, truncated: parsed.truncated === true };
  }

  function planError(prev: OriginState | undefined, source: string, e: OriginError): OriginState {
    m?.rejected.inc({ kind: "" });
    log.warn("config origin unreadable; keeping its previous resources", {
      origin: e.origin,
      error: e.error,
    });
    return {
      ...(prev ?? { source, origin: e.origin, accepted: new Map(), rejected: new Map(), bytes: 0 }),
      originErrors: [{ severity: "error", message: e.error, pos: { file: e.origin, line: 1, col: 1 } }],
    };
  }

  /**
   * Works out what `changes` would make of the source's origins without touching the store:
   * the plan, or why the change is refused as a whole. Bytes are checked before anything is
   * parsed; parsing stops once the resources read pass the limit.
   */
  function plan(
    source: string,
    changes: readonly OriginChange[],
    relist: boolean,
  ): { plan: Plan } | { refused: string; bound: string } {
    const next: Plan = new Map();
    const touched = new Set(changes.map((c) => originId(source, c.origin)));
    if (relist) {
      for (const [oid, s] of origins) if (s.source === source && !touched.has(oid)) next.set(oid, undefined);
    }
    let restBytes = 0;
    let restHeld = 0;
    for (const [oid, s] of origins) {
      if (touched.has(oid) || next.has(oid)) continue;
      restBytes += s.bytes;
      restHeld += held(s);
    }
    const before = (c: OriginChange) => origins.get(originId(source, c.origin));
    if (opts.maxTotalBytes !== undefined) {
      let total = restBytes;
      for (const c of changes) {
        if (isDeleted(c)) continue;
        total += isError(c) ? before(c)?.bytes ?? 0 : inputBytes(c.content);
      }
      if (total > opts.maxTotalBytes) {
        return {
          bound: "bytes",
          refused: `this change would bring the config across all sources to ` +
            `${totalBytesExcess(total, opts.maxTotalBytes)}; keeping the last good config`,
        };
      }
    }
    let total = restHeld;
    for (const c of changes) {
      const oid = originId(source, c.origin);
      const prev = next.has(oid) ? next.get(oid) : origins.get(oid);
      if (isDeleted(c)) {
        next.set(oid, undefined);
        continue;
      }
      if (isError(c)) {
        const s = planError(prev, source, c);
        next.set(oid, s);
        total += held(s);
        continue;
      }
      const budget = opts.maxResources === undefined ? undefined : Math.max(0, opts.maxResources - total);
      const { next: s, truncated } = planContent(prev, source, c, budget);
      next.set(oid, s);
      total += held(s);
      if (opts.maxResources !== undefined && total > opts.maxResources) {
        const exact = !truncated && c === changes.at(-1);
        return {
          bound: "resources",
          refused:
            `this change would hold ${exact ? "" : "at least "}${total} resources across all sources, ` +
            `${total - opts.maxResources} over the limit of ${opts.maxResources} (--config-max-resources); ` +
            `keeping the last good config`,
        };
      }
    }
    if (opts.refuseEmpty) {
      let had = 0;
      let keeps = 0;
      for (const [oid, s] of origins) {
        if (s.source !== source) continue;
        had += s.accepted.size;
        if (!next.has(oid)) keeps += s.accepted.size;
      }
      for (const s of next.values()) if (s !== undefined) keeps += s.accepted.size;
      if (had > 0 && keeps === 0) {
        return {
          bound: "empty",
          refused: `emptied: kept ${had} resources; pass --allow-empty-config to allow`,
        };
      }
    }
    return { plan: next };
  }

  /** Puts a plan in force (claims decide duplicates by first acceptance, in the plan's order). */
  function commit(next: Plan): void {
    for (const [oid, s] of next) {
      const prev = origins.get(oid);
      if (s === undefined) {
        removeOrigin(oid);
        continue;
      }
      for (const key of s.accepted.keys()) {
        if (!claims.has(claimId(oid, key))) claims.set(claimId(oid, key), ++claimSeq);
      }
      for (const key of prev?.accepted.keys() ?? []) {
        if (!s.accepted.has(key)) claims.delete(claimId(oid, key));
      }
      origins.set(oid, s);
    }
  }

  function removeOrigin(oid: string): void {
    const state = origins.get(oid);
    if (!state) return;
    for (const key of state.accepted.keys()) claims.delete(claimId(oid, key));
    origins.delete(oid);
  }

  function rebuild(): void {
    const candidates = new Map<string, Array<{ oid: string; r: Resource; seq: number }>>();
    for (const [oid, s] of origins) {
      for (const [key, r] of s.accepted) {
        const list = candidates.get(key) ?? [];
        list.push({ oid, r, seq: claims.get(claimId(oid, key)) ?? Number.MAX_SAFE_INTEGER });
        candidates.set(key, list);
      }
    }
    const resources = new Map<string, Resource>();
    const nextDuplicates = new Map<string, Map<string, string>>();
    for (const [key, list] of candidates) {
      list.sort((a, b) => a.seq - b.seq || (a.oid < b.oid ? -1 : 1));
      const winner = list[0]!;
      resources.set(key, winner.r);
      if (list.length > 1) {
        const losers = new Map<string, string>();
        const w = winner.r.source;
        for (const l of list.slice(1)) {
          losers.set(l.oid, `${resourceLabel(l.r)} is already defined at ${w.file}:${w.line}:${w.col}`);
          m?.rejected.inc({ kind: l.r.kind });
          log.warn("duplicate resource rejected", {
            resource: resourceLabel(l.r),
            at: `${l.r.source.file}:${l.r.source.line}`,
            kept: `${w.file}:${w.line}`,
          });
        }
        nextDuplicates.set(key, losers);
      }
    }
    duplicates = nextDuplicates;
    const nextHashes = new Map<string, string>();
    const added: string[] = [];
    const updated: string[] = [];
    for (const [key, r] of resources) {
      const h = contentHash(r);
      nextHashes.set(key, h);
      const old = hashes.get(key);
      if (old === undefined) added.push(key);
      else if (old !== h) updated.push(key);
    }
    const removed = [...hashes.keys()].filter((k) => !resources.has(k));
    if (added.length + updated.length + removed.length === 0) return;
    // Unchanged resources keep their previous object, so consumers can compare by identity.
    const fresh = new Set([...added, ...updated]);
    for (const [key] of resources) {
      if (!fresh.has(key)) resources.set(key, current.resources.get(key)!);
    }
    hashes = nextHashes;
    const previous = current;
    current = makeSnapshot(previous.version + 1, resources);
    if (m) {
      m.version.set(current.version);
      m.updates.inc();
      const counts = new Map<string, number>();
      for (const r of resources.values()) counts.set(r.kind, (counts.get(r.kind) ?? 0) + 1);
      m.resources.reset();
      for (const [kind, n] of counts) m.resources.set({ kind }, n);
    }
    const change: ConfigChange = { snapshot: current, previous, added, updated, removed };
    log.info("config snapshot", {
      version: current.version,
      added: added.length,
      updated: updated.length,
      removed: removed.length,
    });
    for (const l of listeners) {
      try {
        l(change);
      } catch (err) {
        log.error("config subscriber failed", { err });
      }
    }
  }

  return {
    snapshot: () => current,
    subscribe(listener) {
      listeners.add(listener);
      return () => listeners.delete(listener);
    },
    status() {
      const resources: ResourceStatus[] = [];
      const originStatuses: OriginStatus[] = [];
      for (const [oid, s] of origins) {
        const errors: string[] = s.originErrors.map(formatDiagnostic);
        const keys = new Set([...s.accepted.keys(), ...s.rejected.keys()]);
        let rejectedCount = 0;
        for (const key of keys) {
          const rej = s.rejected.get(key);
          const dup = duplicates.get(key)?.get(oid);
          const r = s.accepted.get(key);
          const reasons = [...(rej?.errors.map(formatDiagnostic) ?? []), ...(dup ? [dup] : [])];
          if (reasons.length > 0) rejectedCount++;
          resources.push({
            key,
            resource: r ? resourceLabel(r) : rej!.label,
            source: s.source,
            origin: s.origin,
            state: reasons.length > 0 ? "rejected" : "accepted",
            errors: reasons,
            servingPrevious: reasons.length > 0 && r !== undefined && dup === undefined,
          });
        }
        originStatuses.push({
          source: s.source,
          origin: s.origin,
          state: errors.length > 0 ? "rejected" : rejectedCount > 0 ? "partial" : "accepted",
          errors,
          resources: s.accepted.size,
        });
      }
      resources.sort((a, b) => (a.key < b.key ? -1 : a.key > b.key ? 1 : a.origin < b.origin ? -1 : 1));
      originStatuses.sort((a, b) => (a.origin < b.origin ? -1 : 1));
      const sourceStatuses: SourceStatus[] = [];
      for (const [source, st] of sources) {
        let count = 0;
        let bytes = 0;
        for (const s of origins.values()) {
          if (s.source !== source) continue;
          count += s.accepted.size;
          bytes += s.bytes;
        }
        const errors = [st.refused, st.problems.withheld].filter((e): e is string => e !== undefined);
        sourceStatuses.push({
          source,
          state: errors.length > 0 ? "refused" : "ok",
          errors,
          warnings: st.problems.warnings,
          resources: count,
          bytes,
        });
      }
      sourceStatuses.sort((a, b) => (a.source < b.source ? -1 : 1));
      return { resources, origins: originStatuses, sources: sourceStatuses };
    },
    sink(source) {
      const st: SourceState = sources.get(source) ?? { problems: { warnings: [] } };
      sources.set(source, st);
      const change = (changes: readonly OriginChange[], relist: boolean): SinkVerdict => {
        const planned = plan(source, changes, relist);
        if ("refused" in planned) {
          if (st.refused !== planned.refused) {
            log.warn("config change refused; keeping the last good config", {
              source,
              reason: planned.refused,
            });
          }
          st.refused = planned.refused;
          m?.refused.inc({ bound: planned.bound });
          return { applied: false, reason: planned.refused };
        }
        if (st.refused !== undefined) {
          log.info("config change applied; the earlier refusal is over", { source });
        }
        st.refused = undefined;
        commit(planned.plan);
        rebuild();
        return { applied: true };
      };
      return {
        replace: (list) => change(list, true),
        update: (changes) => change(changes, false),
        report(problems) {
          st.problems = problems;
        },
      };
    },
  };
}

const hashCache = new WeakMap<Resource, string>();

/** How far `total` bytes of config pass `limit`, the bound on total config, in words. */
export function totalBytesExcess(total: number, limit: number): string {
  return `${formatSize(total)} (${total} bytes), ${formatSize(total - limit)} over the limit of ` +
    `${formatSize(limit)} (--config-max-total-size)`;
}

/** Resources an origin holds: accepted, and rejected without an accepted version. */
function held(s: OriginState): number {
  let n = s.accepted.size;
  for (const key of s.rejected.keys()) if (!s.accepted.has(key)) n++;
  return n;
}

/** A hash of what a resource says; cached per object, since unchanged resources keep their object. */
function contentHash(r: Resource): string {
  let h = hashCache.get(r);
  if (h === undefined) {
    const { name, namespace, labels, annotations } = r.metadata;
    h = contentVersion(
      JSON.stringify([
        r.group,
        r.version,
        r.kind,
        name,
        namespace,
        labels ?? null,
        annotations ?? null,
        r.spec,
      ]),
    );
    hashCache.set(r, h);
  }
  return h;
}

function makeSnapshot(version: number, resources: Map<string, Resource>): ConfigSnapshot {
  // Per-kind lists are built on first use: most snapshots are read for a few kinds only.
  let byKind: Map<string, Resource[]> | undefined;
  const lists = new Map<string, Resource[]>();
  const byName = (a: Resource, b: Resource) =>
    a.metadata.namespace === b.metadata.namespace
      ? a.metadata.name < b.metadata.name ? -1 : 1
      : a.metadata.namespace < b.metadata.namespace
      ? -1
      : 1;
  return {
    version,
    resources,
    list<S>(group: string, kind: string) {
      const k = `${group}/${kind}`;
      let list = lists.get(k);
      if (!list) {
        if (!byKind) {
          byKind = new Map();
          for (const r of resources.values()) {
            const rk = `${r.group}/${r.kind}`;
            const l = byKind.get(rk);
            if (l) l.push(r);
            else byKind.set(rk, [r]);
          }
        }
        list = (byKind.get(k) ?? []).sort(byName);
        lists.set(k, list);
      }
      return list as Resource<S>[];
    },
    get: <S>(group: string, kind: string, namespace: string, name: string) =>
      resources.get(`${group}/${kind}/${namespace}/${name}`) as Resource<S> | undefined,
  };
}
