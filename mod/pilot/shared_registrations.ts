/**
 * Auto-registrations shared between replicas through the store (`--store`), so that every
 * replica's EDS has every agent's workload.
 *
 * Each replica writes the workloads registered at it (the WorkloadEntry it would create, with
 * its health and the replica's id) to `PREFIX/registrations/NAMESPACE/GROUP/NAME`, attached to
 * the replica's lease: the key goes when the registration's grace ends at this replica, or when
 * the replica dies and its lease lapses. A workload that re-registers at another replica is
 * written there again under that replica's lease (last writer holds it). Every replica lists and
 * watches the prefix and serves what the others wrote next to its own.
 *
 * While etcd is unreachable the last known entries stay served and writes are retried; a lease
 * lost meanwhile is replaced and this replica's entries are written again under the new one.
 * Entries that are not what a replica writes are left out and logged, naming the key.
 *
 * @module
 */
import { type Clock, sleep, type Timer } from "../shared/clock.ts";
import { errorMessage } from "../shared/errors.ts";
import type { Logger } from "../shared/logger.ts";
import { EtcdCompactedError, type KeyValue, type LeaseKeeper, type Store } from "../store/mod.ts";
import type { Workload } from "./model/registry.ts";

/** One registration as the store holds it. */
export interface SharedRegistration {
  /** The replica that holds the workload's stream. */
  readonly replica: string;
  /** "NAMESPACE/NAME" of the WorkloadGroup. */
  readonly group: string;
  readonly workload: Workload;
}

/** Options for createSharedRegistrations. */
export interface SharedRegistrationsOptions {
  readonly store: Store;
  readonly keeper: LeaseKeeper;
  /** This replica's id. */
  readonly replica: string;
  readonly logger: Logger;
  readonly clock: Clock;
  /** Seconds from a write of this replica until its watch delivered it. */
  readonly onWatchLag?: (seconds: number) => void;
  /** Pause before retrying after etcd failed (default 1 s). */
  readonly retryMs?: number;
}

/** The shared registrations of one replica. */
export interface SharedRegistrations {
  /**
   * Makes the store hold `held` (this replica's connected registrations, by path
   * "NAMESPACE/GROUP/NAME"), leaves the paths in `kept` as they are (registrations in their
   * grace), and deletes the other entries this replica wrote.
   */
  publish(held: ReadonlyMap<string, SharedRegistration>, kept: ReadonlySet<string>): void;
  /** Entries other replicas hold, by path, as last known. */
  others(): ReadonlyMap<string, SharedRegistration>;
  /** Calls `listener` when others() changes. */
  watch(listener: () => void): () => void;
  status(): Record<string, unknown>;
  /** Stops watching and writing; the entries stay until the lease lapses. */
  close(): void;
}

const encoder = new TextEncoder();
const decoder = new TextDecoder();

/** The entry a value holds, or why it is not one. */
function parseSharedRegistration(value: Uint8Array): SharedRegistration | string {
  let v: unknown;
  try {
    v = JSON.parse(decoder.decode(value));
  } catch (err) {
    return `not JSON: ${errorMessage(err)}`;
  }
  const o = v as Record<string, unknown> | null;
  if (typeof o !== "object" || o === null) return "not a JSON object";
  if (typeof o.replica !== "string" || typeof o.group !== "string") return "replica or group is not a string";
  const w = o.workload as Record<string, unknown> | null;
  if (typeof w !== "object" || w === null) return "workload is not an object";
  if (typeof w.key !== "string" || typeof w.namespace !== "string" || typeof w.healthy !== "boolean") {
    return "workload.key, workload.namespace or workload.healthy is missing";
  }
  const spec = w.spec as Record<string, unknown> | null;
  if (typeof spec !== "object" || spec === null || typeof spec.address !== "string") {
    return "workload.spec.address is missing";
  }
  if (spec.labels !== undefined && (typeof spec.labels !== "object" || spec.labels === null)) {
    return "workload.spec.labels is not an object";
  }
  return o as unknown as SharedRegistration;
}

/** Starts listing and watching the prefix. */
export function createSharedRegistrations(o: SharedRegistrationsOptions): SharedRegistrations {
  const client = o.store.client;
  const root = `${o.store.prefix}/registrations/`;
  const log = o.logger;
  const retryMs = o.retryMs ?? 1_000;
  const stop = new AbortController();
  const listeners = new Set<() => void>();
  /** Every entry under the prefix, as last listed or watched. */
  const entries = new Map<string, { value: string; reg: SharedRegistration }>();
  /** What this replica wrote and still holds: path to value and revision. */
  const written = new Map<string, { value: string; revision: number }>();
  let held = new Map<string, string>();
  let kept = new Set<string>();
  let flushing = false;
  let dirty = false;
  let retry: Timer | undefined;
  let revision = 0;
  let relists = 0;
  let lastError: string | undefined;
  const bad = new Map<string, string>();
  /** Revisions of this replica's writes not yet seen by its watch, with when they were made. */
  const lagProbes: Array<{ revision: number; at: number }> = [];

  const notify = () => {
    for (const l of listeners) l();
  };

  function apply(kv: KeyValue, deleted: boolean): boolean {
    const path = kv.key.slice(root.length);
    const mine = written.get(path);
    if (mine && (deleted || kv.modRevision > mine.revision)) {
      // Lapsed with a lost lease, or written by another replica the workload moved to.
      written.delete(path);
      if (held.has(path)) schedule(0);
    }
    if (deleted) {
      bad.delete(path);
      return entries.delete(path);
    }
    const value = decoder.decode(kv.value);
    if (entries.get(path)?.value === value) return false;
    const reg = parseSharedRegistration(kv.value);
    if (typeof reg === "string") {
      if (bad.get(path) !== reg) log.warn("registration in the store ignored", { key: kv.key, reason: reg });
      bad.set(path, reg);
      return entries.delete(path);
    }
    bad.delete(path);
    entries.set(path, { value, reg });
    return true;
  }

  /** When the watch last delivered, and up to which revision. */
  let watchedAt = 0;
  function sawRevision(rev: number): void {
    watchedAt = o.clock.now();
    while (lagProbes.length > 0 && lagProbes[0]!.revision <= rev) {
      const probe = lagProbes.shift()!;
      o.onWatchLag?.((o.clock.now() - probe.at) / 1000);
    }
  }

  async function follow(): Promise<void> {
    while (!stop.signal.aborted) {
      try {
        const listed = await client.list(root, { signal: stop.signal });
        const seen = new Set<string>();
        let changed = false;
        for (const kv of listed.kvs) {
          seen.add(kv.key.slice(root.length));
          changed = apply(kv, false) || changed;
        }
        for (const path of [...entries.keys()]) {
          if (!seen.has(path)) changed = apply({ key: root + path } as KeyValue, true) || changed;
        }
        for (const path of [...written.keys()]) {
          if (!seen.has(path)) apply({ key: root + path, modRevision: listed.revision } as KeyValue, true);
        }
        revision = listed.revision;
        sawRevision(revision);
        lastError = undefined;
        if (changed) notify();
        for await (const batch of client.watch(root, revision + 1, stop.signal)) {
          let c = false;
          for (const e of batch.events) c = apply(e.kv, e.type === "delete") || c;
          revision = Math.max(revision, batch.revision);
          sawRevision(batch.revision);
          if (c) notify();
        }
      } catch (err) {
        if (stop.signal.aborted) return;
        lastError = errorMessage(err);
        if (!(err instanceof EtcdCompactedError)) {
          log.warn("registrations watch failed; keeping the last known ones and listing again", {
            err: lastError,
          });
        }
      }
      relists++;
      await sleep(o.clock, retryMs, stop.signal);
    }
  }

  function schedule(ms: number): void {
    if (stop.signal.aborted) return;
    if (ms === 0) {
      void flush();
      return;
    }
    retry ??= o.clock.setTimer(ms, () => {
      retry = undefined;
      void flush();
    });
  }

  /** Writes what changed since the last flush; one at a time, again while something changed. */
  async function flush(): Promise<void> {
    if (flushing) {
      dirty = true;
      return;
    }
    flushing = true;
    try {
      do {
        dirty = false;
        for (const [path, value] of held) {
          if (written.get(path)?.value === value) continue;
          const lease = await o.keeper.lease();
          const at = o.clock.now();
          const res = await client.txn([], [{ put: root + path, value: encoder.encode(value), lease }]);
          written.set(path, { value, revision: res.revision });
          // The watch may deliver the write before the transaction's answer arrives.
          if (revision >= res.revision) o.onWatchLag?.(Math.max(0, watchedAt - at) / 1000);
          else lagProbes.push({ revision: res.revision, at });
        }
        for (const [path, w] of [...written]) {
          if (held.has(path) || kept.has(path)) continue;
          // Only while the key is still this replica's write: another may hold it now.
          await client.txn([{ key: root + path, modRevision: w.revision }], [{ delete: root + path }]);
          written.delete(path);
        }
      } while (dirty && !stop.signal.aborted);
      lastError = undefined;
    } catch (err) {
      lastError = errorMessage(err);
      log.warn("registrations not written to the store; trying again", { err: lastError });
      schedule(retryMs);
    } finally {
      flushing = false;
    }
  }

  const offLease = o.keeper.onNewLease(() => {
    written.clear();
    void flush();
  });
  void follow();

  return {
    publish(h, k) {
      held = new Map([...h].map(([path, reg]) => [path, JSON.stringify(reg)]));
      kept = new Set(k);
      void flush();
    },
    others() {
      const out = new Map<string, SharedRegistration>();
      for (const [path, e] of entries) if (e.reg.replica !== o.replica) out.set(path, e.reg);
      return out;
    },
    watch(l) {
      listeners.add(l);
      return () => listeners.delete(l);
    },
    status: () => ({
      replica: o.replica,
      revision,
      relists,
      entries: entries.size,
      written: written.size,
      ...(bad.size > 0 ? { ignored: Object.fromEntries([...bad].map(([p, r]) => [root + p, r])) } : {}),
      ...(lastError === undefined ? {} : { lastError }),
    }),
    close() {
      stop.abort();
      retry?.cancel();
      offLease();
    },
  };
}
