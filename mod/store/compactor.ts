/**
 * Compaction of etcd's history, a duty of the elected housekeeping leader.
 *
 * etcd keeps every revision of every key until it is compacted, and Debian's etcd 3.4 does not
 * compact on its own: with registrations, probe health and config writes the history grows
 * until the member reaches its space quota and refuses every write. meshd's watchers only need
 * recent history (a watch resumes from the revision after its last event, and a watch whose
 * revision is gone relists), so the leader compacts on a fixed interval to the revision it read
 * one interval earlier: every watcher has at least one interval to catch up before the history
 * it may still ask for is dropped. A replica that gains leadership starts afresh, so it waits two
 * intervals before its first compaction; a replica that loses it stops at once.
 *
 * @module
 */
import { Counter, Gauge } from "prom-client";
import { type Clock, systemClock, type Timer } from "../shared/clock.ts";
import { errorMessage } from "../shared/errors.ts";
import type { Logger } from "../shared/logger.ts";
import type { MetricsRegistry } from "../shared/metrics.ts";
import type { Election } from "./election.ts";
import type { EtcdClient } from "./etcd_client.ts";

/** Options for {@link startCompactor}. */
export interface CompactorOptions {
  readonly client: EtcdClient;
  /** The duty whose leader compacts. */
  readonly election: Pick<Election, "leading">;
  /** Time between the revision read and the compaction to it; 0 disables compaction. */
  readonly intervalMs: number;
  readonly logger: Logger;
  readonly clock?: Clock;
  readonly metrics?: MetricsRegistry;
}

/** What /debug/storez shows of compaction. */
export interface CompactorStatus {
  readonly intervalMs: number;
  /** The revision the next compaction goes to, once read. */
  readonly pending?: number;
  /** The last revision this replica compacted to, and when (ISO). */
  readonly compacted?: number;
  readonly compactedAt?: string;
  readonly lastError?: string;
}

/** A running compaction loop. */
export interface Compactor {
  /** One round: what the timer runs (exported for tests and for running at once). */
  tick(): Promise<void>;
  status(): CompactorStatus;
  stop(): void;
}

/** Starts compacting every `intervalMs` while `election` leads. */
export function startCompactor(opts: CompactorOptions): Compactor {
  const clock = opts.clock ?? systemClock;
  const log = opts.logger;
  const counter = opts.metrics &&
    new Counter({
      name: "meshd_store_compactions_total",
      help: "Compactions of etcd's history by this replica as housekeeping leader, by result",
      labelNames: ["result"],
      registers: [opts.metrics],
    });
  const gauge = opts.metrics &&
    new Gauge({
      name: "meshd_store_compacted_revision",
      help: "The etcd revision this replica last compacted to",
      registers: [opts.metrics],
    });
  let pending: number | undefined;
  let compacted: number | undefined;
  let compactedAt: number | undefined;
  let lastError: string | undefined;
  let running = false;

  async function tick(): Promise<void> {
    if (running) return;
    if (!opts.election.leading()) {
      pending = undefined;
      return;
    }
    running = true;
    try {
      const now = await opts.client.revision();
      const target = pending;
      pending = now;
      if (target === undefined || (compacted !== undefined && target <= compacted)) return;
      // Leadership may have moved while the revision was read.
      if (!opts.election.leading()) {
        pending = undefined;
        return;
      }
      const done = await opts.client.compact(target);
      compacted = target;
      compactedAt = clock.now();
      lastError = undefined;
      gauge?.set(target);
      counter?.inc({ result: done ? "compacted" : "already" });
      log.info("compacted etcd's history", { revision: target, current: now, already: !done });
    } catch (err) {
      lastError = errorMessage(err);
      counter?.inc({ result: "failed" });
      log.warn("compacting etcd's history failed; trying again next interval", { reason: lastError });
    } finally {
      running = false;
    }
  }

  let timer: Timer | undefined;
  let stopped = false;
  const schedule = () => {
    if (stopped || opts.intervalMs <= 0) return;
    timer = clock.setTimer(opts.intervalMs, () => void tick().finally(schedule));
  };
  schedule();
  return {
    tick,
    status: () => ({
      intervalMs: opts.intervalMs,
      ...(pending === undefined ? {} : { pending }),
      ...(compacted === undefined ? {} : { compacted, compactedAt: new Date(compactedAt!).toISOString() }),
      ...(lastError === undefined ? {} : { lastError }),
    }),
    stop() {
      stopped = true;
      timer?.cancel();
    },
  };
}
