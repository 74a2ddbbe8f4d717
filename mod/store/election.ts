/**
 * Leader election on etcd's KV API, for duties that must run on one replica at a time.
 *
 * etcd's v3election service is not among the protos meshd generates (rpc, kv, auth), so this is
 * the recipe that service implements, on transactions and watches: a replica claims
 * `PREFIX/leader/DUTY` by creating it (the transaction holds only when the key is absent),
 * holding its replica id and attached to the replica's lease. Whoever created the key leads.
 * The others watch the key; when it goes (the leader resigned, or died and its lease lapsed),
 * each tries to create it again and one wins. A replica that loses etcd stops counting itself
 * leader until etcd confirms the key is still its own.
 *
 * Elections that campaign elsewhere (a Kubernetes Lease, mod/kube) keep the same contract; an
 * `ElectionBoard` lists every election of one daemon, whatever it campaigns through, and
 * `/debug/leaderz` is served from it.
 *
 * @module
 */
import type { DebugHandler } from "../runtime/module.ts";
import { linkKey } from "../runtime/links.ts";
import { type Clock, sleep, systemClock } from "../shared/clock.ts";
import { errorMessage } from "../shared/errors.ts";
import type { Logger } from "../shared/logger.ts";
import { createIfAbsent } from "./create_if_absent.ts";
import type { EtcdClient } from "./etcd_client.ts";
import type { LeaseKeeper } from "./lease_keeper.ts";

/** Options for createElection. */
export interface ElectionOptions {
  /** What the leader does, e.g. "token-pruning"; one key per duty. */
  readonly duty: string;
  /** This replica's id (what the key holds while it leads). */
  readonly id: string;
  /** The store's prefix ("/meshd"). */
  readonly prefix: string;
  readonly keeper: LeaseKeeper;
  readonly logger: Logger;
  readonly clock?: Clock;
  /** Called when the leader this replica sees changes to another replica (or to none). */
  readonly onLeaderChange?: (leader: string | undefined) => void;
  /** Pause after a failed etcd call before trying again (default 1 s). */
  readonly retryMs?: number;
}

/** One duty's election, as /debug/leaderz shows it. */
export interface ElectionStatus {
  readonly duty: string;
  /** The leading replica's id, when known. */
  readonly leader?: string;
  /** When this replica saw the current leader take over (ISO). */
  readonly since?: string;
  /** This replica's id. */
  readonly self: string;
  readonly leading: boolean;
  /** Why the leader is unknown (etcd unreachable). */
  readonly error?: string;
  /** What the election campaigns through. */
  readonly via?: "etcd" | "kubernetes";
  /** The Lease campaigned for (Kubernetes elections). */
  readonly lease?: { readonly namespace: string; readonly name: string };
  /** The holder's last renewal as the record last read says (ISO; Kubernetes elections). */
  readonly lastRenew?: string;
}

/** A running campaign for one duty. */
export interface Election {
  readonly duty: string;
  /** True while this replica holds the duty. */
  leading(): boolean;
  status(): ElectionStatus;
  /** Stops campaigning; a leader deletes its key so another takes over at once. */
  close(): Promise<void>;
}

/** The elections of one daemon, whatever each campaigns through, as /debug/leaderz lists them. */
export interface ElectionBoard {
  /** Lists `election` until the returned function is called (calling it again does nothing). */
  add(election: Election): () => void;
  /** The status of every listed election, in the order they were added. */
  statuses(): ElectionStatus[];
}

/** The link under which the daemon offers its board, so every module lists its elections there. */
export const ELECTIONS = linkKey<ElectionBoard>("store.elections");

/** Creates an empty board. */
export function createElectionBoard(): ElectionBoard {
  const listed = new Set<{ readonly election: Election }>();
  return {
    add(election) {
      const entry = { election };
      listed.add(entry);
      return () => void listed.delete(entry);
    },
    statuses: () => [...listed].map((e) => e.election.status()),
  };
}

/**
 * `/debug/leaderz`: each listed duty with its leader (the holder), whether this replica leads,
 * and for a Lease its name and last renewal; `self` is this replica's id in the store, when it
 * has one.
 */
export function leaderzHandler(board: ElectionBoard, self?: string): DebugHandler {
  return {
    path: "leaderz",
    description:
      "duties that run on one replica (--store, a Kubernetes Lease): the leader of each, since when, and this replica",
    handle: () => Response.json({ ...(self === undefined ? {} : { self }), duties: board.statuses() }),
  };
}

/** The key of a duty's leader. */
export function leaderKey(prefix: string, duty: string): string {
  return `${prefix}/leader/${duty}`;
}

const encoder = new TextEncoder();
const decoder = new TextDecoder();

/** Starts campaigning for `opts.duty` at once. */
export function createElection(client: EtcdClient, opts: ElectionOptions): Election {
  const clock = opts.clock ?? systemClock;
  const key = leaderKey(opts.prefix, opts.duty);
  const log = opts.logger;
  const stop = new AbortController();
  let leader: string | undefined;
  let since: number | undefined;
  let ownRevision = 0;
  let error: string | undefined;

  function observe(next: string | undefined, revision: number): void {
    if (next === opts.id) ownRevision = revision;
    if (next === leader) return;
    const was = leader;
    leader = next;
    since = clock.now();
    if (next === opts.id) log.info("leading duty", { duty: opts.duty });
    else if (was === opts.id) log.info("no longer leading duty", { duty: opts.duty, leader: next });
    opts.onLeaderChange?.(next);
  }

  /**
   * Claims the key, or learns who holds it; resolves with the revision to watch from, or
   * undefined when the key went between the two (so the claim is tried again).
   */
  async function campaign(): Promise<number | undefined> {
    const lease = await opts.keeper.lease();
    const { kv: held } = await createIfAbsent(client, key, encoder.encode(opts.id), lease);
    if (held === undefined) return undefined;
    observe(decoder.decode(held.value), held.modRevision);
    return held.modRevision + 1;
  }

  /** Waits until the key is deleted (or changes hands). */
  async function follow(fromRevision: number): Promise<void> {
    for await (const batch of client.watch(key, fromRevision, stop.signal)) {
      for (const e of batch.events) {
        if (e.kv.key !== key) continue; // a duty whose name extends this one
        if (e.type === "delete") return;
        observe(decoder.decode(e.kv.value), e.kv.modRevision);
      }
    }
  }

  const running = (async () => {
    while (!stop.signal.aborted) {
      try {
        const from = await campaign();
        error = undefined;
        if (from === undefined) continue;
        await follow(from);
        if (!stop.signal.aborted) observe(undefined, 0);
      } catch (err) {
        if (stop.signal.aborted) break;
        error = errorMessage(err);
        log.warn("election: etcd call failed; leader unknown until it answers", {
          duty: opts.duty,
          err: error,
        });
        observe(undefined, 0);
        await sleep(clock, opts.retryMs ?? 1_000, stop.signal);
      }
    }
  })();

  return {
    duty: opts.duty,
    leading: () => leader === opts.id,
    status: () => ({
      duty: opts.duty,
      ...(leader === undefined ? {} : { leader }),
      ...(since === undefined ? {} : { since: new Date(since).toISOString() }),
      self: opts.id,
      leading: leader === opts.id,
      ...(error === undefined ? {} : { error }),
      via: "etcd",
    }),
    async close() {
      const wasLeading = leader === opts.id;
      stop.abort();
      await running;
      if (wasLeading) {
        await client.txn([{ key, modRevision: ownRevision }], [{ delete: key }]).catch(() => {});
      }
    },
  };
}
