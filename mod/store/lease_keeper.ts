/**
 * A replica's etcd lease, kept alive: keys this replica writes for as long as it lives (its
 * auto-registrations, its claim to lead a duty) are attached to it, so they go by themselves
 * when the replica dies and stops renewing.
 *
 * The keeper renews the lease every third of its TTL. While etcd is unreachable it keeps the
 * lease id and tries again at the next renewal; when etcd answers that the lease is gone (it
 * lapsed during the outage), the keeper grants a new one and tells its listeners, which write
 * their keys again under it.
 *
 * @module
 */
import { type Clock, systemClock, type Timer } from "../shared/clock.ts";
import { errorMessage } from "../shared/errors.ts";
import type { Logger } from "../shared/logger.ts";
import type { EtcdClient } from "./etcd_client.ts";

/** Options for createLeaseKeeper. */
export interface LeaseKeeperOptions {
  /** The lease's time to live: how long keys outlive a replica that stopped renewing. */
  readonly ttlSeconds: number;
  readonly logger: Logger;
  readonly clock?: Clock;
}

/** The keeper's state, for debug pages. */
export interface LeaseKeeperStatus {
  /** The lease id (hexadecimal, as etcdctl prints it), when one is held. */
  readonly lease?: string;
  readonly ttlSeconds: number;
  /** Leases granted so far: more than one means a lease was lost and replaced. */
  readonly grants: number;
  readonly lastRenewedAt?: string;
  readonly lastError?: string;
}

/** A kept-alive lease. */
export interface LeaseKeeper {
  /** The current lease, granted first if there is none; rejects while etcd cannot grant one. */
  lease(): Promise<bigint>;
  /**
   * Calls `listener` with each lease granted to replace a lost one (the keys attached to the old
   * one are gone). Returns a function that removes the listener.
   */
  onNewLease(listener: (id: bigint) => void): () => void;
  status(): LeaseKeeperStatus;
  /** Stops renewing; with `revoke`, revokes the lease so that its keys go at once. */
  close(opts?: { revoke?: boolean }): Promise<void>;
}

/** Creates a keeper. Grants nothing until lease() is first called. */
export function createLeaseKeeper(client: EtcdClient, opts: LeaseKeeperOptions): LeaseKeeper {
  const clock = opts.clock ?? systemClock;
  const ttl = Math.max(1, Math.ceil(opts.ttlSeconds));
  const log = opts.logger;
  const listeners = new Set<(id: bigint) => void>();
  let id: bigint | undefined;
  let granting: Promise<bigint> | undefined;
  let grants = 0;
  let lastRenewedAt: number | undefined;
  let lastError: string | undefined;
  let timer: Timer | undefined;
  let closed = false;

  function grant(): Promise<bigint> {
    granting ??= (async () => {
      try {
        const granted = await client.grantLease(ttl);
        if (closed) {
          await client.revokeLease(granted).catch(() => {});
          throw new Error("the lease keeper is closed");
        }
        const replacing = grants > 0;
        id = granted;
        grants++;
        lastRenewedAt = clock.now();
        lastError = undefined;
        log.info(replacing ? "etcd lease lost; granted a new one" : "etcd lease granted", {
          lease: granted.toString(16),
          ttlSeconds: ttl,
        });
        schedule();
        if (replacing) { for (const l of listeners) l(granted); }
        return granted;
      } finally {
        granting = undefined;
      }
    })();
    return granting;
  }

  function schedule(): void {
    timer?.cancel();
    if (closed) return;
    timer = clock.setTimer(Math.max(300, (ttl * 1000) / 3), () => void renew());
  }

  async function renew(): Promise<void> {
    const held = id;
    if (closed) return;
    if (held === undefined) {
      // The lost lease's replacement could not be granted yet.
      await grant().catch((err) => {
        lastError = errorMessage(err);
        schedule();
      });
      return;
    }
    try {
      const left = await client.keepLeaseAlive(held);
      if (closed || id !== held) return;
      if (left > 0) {
        lastRenewedAt = clock.now();
        lastError = undefined;
        schedule();
        return;
      }
      log.warn("etcd no longer has this replica's lease (it lapsed); its keys are gone", {
        lease: held.toString(16),
      });
      id = undefined;
      await grant();
    } catch (err) {
      if (closed) return;
      lastError = errorMessage(err);
      log.warn("etcd lease not renewed; trying again", { lease: held.toString(16), err: lastError });
      schedule();
    }
  }

  return {
    lease: () => (id !== undefined ? Promise.resolve(id) : grant()),
    onNewLease(listener) {
      listeners.add(listener);
      return () => listeners.delete(listener);
    },
    status: () => ({
      ...(id === undefined ? {} : { lease: id.toString(16) }),
      ttlSeconds: ttl,
      grants,
      ...(lastRenewedAt === undefined ? {} : { lastRenewedAt: new Date(lastRenewedAt).toISOString() }),
      ...(lastError === undefined ? {} : { lastError }),
    }),
    async close(o = {}) {
      closed = true;
      timer?.cancel();
      const held = id;
      id = undefined;
      if (o.revoke && held !== undefined) await client.revokeLease(held).catch(() => {});
    },
  };
}
