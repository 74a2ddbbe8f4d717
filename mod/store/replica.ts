/**
 * This daemon as one replica among those sharing a store: its id, its kept-alive lease, the
 * duties it campaigns for, `/debug/leaderz` and the metrics of both. Every replica campaigns for
 * `housekeeping`, whose leader compacts etcd's history (compactor.ts).
 *
 * @module
 */
import { hostname } from "node:os";
import { randomBytes } from "node:crypto";
import { Counter, Histogram } from "prom-client";
import type { DebugHandler } from "../runtime/module.ts";
import type { Clock } from "../shared/clock.ts";
import type { Logger } from "../shared/logger.ts";
import type { MetricsRegistry } from "../shared/metrics.ts";
import { startCompactor } from "./compactor.ts";
import {
  createElection,
  createElectionBoard,
  type Election,
  type ElectionBoard,
  leaderzHandler,
} from "./election.ts";
import { createLeaseKeeper, type LeaseKeeper } from "./lease_keeper.ts";
import type { Store } from "./links.ts";

/** Options for createReplica. */
export interface ReplicaOptions {
  /** TTL of the replica's lease: how long its keys outlive it. */
  readonly ttlSeconds: number;
  readonly logger: Logger;
  readonly clock: Clock;
  readonly metrics: MetricsRegistry;
  /** How often the housekeeping leader compacts etcd's history; 0: never. */
  readonly compactIntervalMs: number;
  /**
   * Where the replica lists its elections, shared with the daemon's other elections (a
   * Kubernetes Lease) so /debug/leaderz shows them all (default a board of its own).
   */
  readonly board?: ElectionBoard;
}

/** One replica. */
export interface Replica {
  /** "HOST-PID-RANDOM": unique per process, so a restarted replica is a new one. */
  readonly id: string;
  readonly keeper: LeaseKeeper;
  /** Campaigns for `duty` (once per duty). */
  elect(duty: string): Election;
  /** Records how long a write of this replica took to come back on its watch. */
  watchLag(seconds: number): void;
  /** The /debug/leaderz handler: every election on the replica's board. */
  readonly leaderz: DebugHandler;
  /** Resigns every duty and stops renewing the lease (its keys lapse after the TTL). */
  close(): Promise<void>;
}

/** Creates the replica's lease keeper (nothing is granted until a key needs it). */
export function createReplica(store: Store, opts: ReplicaOptions): Replica {
  const id = `${hostname()}-${process.pid}-${randomBytes(3).toString("hex")}`;
  const keeper = createLeaseKeeper(store.client, {
    ttlSeconds: opts.ttlSeconds,
    logger: opts.logger,
    clock: opts.clock,
  });
  const elections = new Map<string, Election>();
  const board = opts.board ?? createElectionBoard();
  const unlist: Array<() => void> = [];
  const leaderChanges = new Counter({
    name: "meshd_store_leader_changes_total",
    help: "Changes of the leader this replica sees, by duty",
    labelNames: ["duty"],
    registers: [opts.metrics],
  });
  const lag = new Histogram({
    name: "meshd_store_watch_lag_seconds",
    help: "Seconds from a write of this replica to etcd until its own watch delivered it",
    buckets: [0.005, 0.01, 0.05, 0.1, 0.5, 1, 5, 10],
    registers: [opts.metrics],
  });
  store.addStatus("lease", () => keeper.status());
  const replica: Replica = {
    id,
    keeper,
    elect(duty) {
      if (elections.has(duty)) throw new Error(`election for duty ${duty} started twice`);
      const e = createElection(store.client, {
        duty,
        id,
        prefix: store.prefix,
        keeper,
        logger: opts.logger,
        clock: opts.clock,
        onLeaderChange: () => leaderChanges.inc({ duty }),
      });
      elections.set(duty, e);
      unlist.push(board.add(e));
      return e;
    },
    watchLag: (seconds) => lag.observe(seconds),
    leaderz: leaderzHandler(board, id),
    async close() {
      compactor.stop();
      await Promise.all([...elections.values()].map((e) => e.close()));
      for (const remove of unlist) remove();
      await keeper.close();
    },
  };
  const compactor = startCompactor({
    client: store.client,
    election: replica.elect("housekeeping"),
    intervalMs: opts.compactIntervalMs,
    logger: opts.logger,
    clock: opts.clock,
    metrics: opts.metrics,
  });
  store.addStatus("compaction", () => compactor.status());
  return replica;
}
