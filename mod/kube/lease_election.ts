/**
 * Leader election over a Kubernetes Lease (`coordination.k8s.io/v1`), for duties that must run
 * on one replica at a time when meshd runs as several pods: the same `Election` contract as the
 * store's etcd election, so a duty's code does not care which one it is given.
 *
 * The recipe is the one Kubernetes controllers follow. The Lease's `spec.holderIdentity` names
 * the leader, who writes `spec.renewTime` every retry period; every write carries the
 * `metadata.resourceVersion` it read, so of two replicas writing at once the API server takes
 * one and answers the other 409 Conflict (a create racing a create: 409 AlreadyExists). A
 * replica takes the Lease over when it is free (no holder) or when its record has not changed
 * for `leaseDurationSeconds` as measured on this replica's own clock from when it last saw the
 * record change, so clocks that disagree between machines do not matter. A leader that cannot
 * renew within `renewDeadlineMs` of its last successful renewal stops counting itself leader;
 * as that deadline is shorter than the lease duration, it has stepped down before anyone else
 * may take over. Closing releases the Lease (holder cleared), so another replica takes it at once.
 *
 * @module
 */
import { hostname } from "node:os";
import { randomBytes } from "node:crypto";
import { type Clock, sleep } from "../shared/clock.ts";
import { errorMessage } from "../shared/errors.ts";
import type { Logger } from "../shared/logger.ts";
import type { Election, ElectionStatus } from "../store/mod.ts";
import { KubeApiError, type KubeClient } from "./client.ts";

export type { Election, ElectionStatus };

/** Options for createLeaseElection. */
export interface LeaseElectionOptions {
  readonly client: KubeClient;
  /** Namespace of the Lease. */
  readonly namespace: string;
  /** Name of the Lease, e.g. "meshd-galley-status". */
  readonly name: string;
  /** What the leader does, for status and logs. */
  readonly duty: string;
  /** This replica's identity, written as holderIdentity (default {@link replicaIdentity}). */
  readonly id?: string;
  readonly logger: Logger;
  readonly clock: Clock;
  /** How long a Lease not renewed stays with its holder (default 15 s). */
  readonly leaseDurationMs?: number;
  /** How long a leader keeps leading without a successful renewal (default 10 s). */
  readonly renewDeadlineMs?: number;
  /** Pause between attempts to take or renew the Lease (default 2 s). */
  readonly retryPeriodMs?: number;
  /** Called when the leader this replica sees changes (undefined: none known). */
  readonly onLeaderChange?: (leader: string | undefined) => void;
}

/** The spec of a coordination.k8s.io/v1 Lease. */
export interface LeaseSpec {
  holderIdentity?: string;
  leaseDurationSeconds?: number;
  acquireTime?: string;
  renewTime?: string;
  leaseTransitions?: number;
}

/** A Lease as the API server returns it. */
interface Lease {
  apiVersion?: string;
  kind?: string;
  metadata: { name: string; namespace?: string; resourceVersion?: string; [k: string]: unknown };
  spec?: LeaseSpec;
}

/**
 * "HOST-PID-RANDOM": the pod name (a pod's host name) with the process and a random part, so a
 * restarted container is a new holder, as the store's replica ids are.
 */
export function replicaIdentity(): string {
  return `${hostname()}-${process.pid}-${randomBytes(3).toString("hex")}`;
}

/** Kubernetes' MicroTime: RFC 3339 in UTC with six fractional digits. */
export function microTime(ms: number): string {
  return new Date(ms).toISOString().replace(/\.(\d{3})Z$/, ".$1000Z");
}

/** The REST path of a Lease (`name` undefined: the namespace's collection). */
export function leasePath(namespace: string, name?: string): string {
  const base = `/apis/coordination.k8s.io/v1/namespaces/${encodeURIComponent(namespace)}/leases`;
  return name === undefined ? base : `${base}/${encodeURIComponent(name)}`;
}

/**
 * The spec this replica writes to take or keep the Lease: renewal keeps the acquire time and the
 * transition count; a takeover sets both anew.
 */
export function claimedSpec(
  old: LeaseSpec | undefined,
  id: string,
  durationS: number,
  now: number,
): LeaseSpec {
  const renewing = old?.holderIdentity === id;
  return {
    holderIdentity: id,
    leaseDurationSeconds: durationS,
    acquireTime: renewing && old?.acquireTime ? old.acquireTime : microTime(now),
    renewTime: microTime(now),
    leaseTransitions: (old?.leaseTransitions ?? 0) + (renewing || old === undefined ? 0 : 1),
  };
}

/** Starts campaigning at once; see the module comment for the rules. */
export function createLeaseElection(opts: LeaseElectionOptions): Election {
  const { client, clock } = opts;
  const id = opts.id ?? replicaIdentity();
  const log = opts.logger.child({ lease: `${opts.namespace}/${opts.name}`, duty: opts.duty });
  const durationMs = opts.leaseDurationMs ?? 15_000;
  const durationS = Math.max(1, Math.ceil(durationMs / 1000));
  const renewDeadlineMs = opts.renewDeadlineMs ?? 10_000;
  const retryMs = opts.retryPeriodMs ?? 2_000;
  if (!(renewDeadlineMs < durationMs)) {
    throw new Error(
      `lease election ${opts.namespace}/${opts.name}: renewDeadlineMs (${renewDeadlineMs}) must be shorter than leaseDurationMs (${durationMs})`,
    );
  }
  const path = leasePath(opts.namespace, opts.name);
  const stop = new AbortController();
  let leader: string | undefined;
  let since: number | undefined;
  let error: string | undefined;
  /** The record last read and when this replica saw it change (its own clock). */
  let observed: { key: string; at: number } | undefined;
  /** When this replica last renewed successfully. */
  let renewedAt = -Infinity;
  /** spec.renewTime of the record last read or written. */
  let lastRenew: string | undefined;

  function see(next: string | undefined): void {
    if (next === leader) return;
    const was = leader;
    leader = next;
    since = clock.now();
    if (next === id) log.info("leading duty");
    else if (was === id) log.info("no longer leading duty", { leader: next });
    opts.onLeaderChange?.(next);
  }

  /** How long a record stays valid: its own leaseDurationSeconds, as the holder wrote it. */
  const validFor = (spec: LeaseSpec | undefined) => (spec?.leaseDurationSeconds ?? durationS) * 1000;

  async function create(now: number): Promise<boolean> {
    const body: Lease = {
      apiVersion: "coordination.k8s.io/v1",
      kind: "Lease",
      metadata: { name: opts.name, namespace: opts.namespace },
      spec: claimedSpec(undefined, id, durationS, now),
    };
    try {
      const made = await client.request<Lease>("POST", leasePath(opts.namespace), {
        body,
        signal: stop.signal,
      });
      observed = { key: recordKey(made), at: now };
      lastRenew = made.spec?.renewTime;
      return true;
    } catch (e) {
      if (e instanceof KubeApiError && e.code === 409) return false; // another replica created it first
      throw e;
    }
  }

  /** One attempt to take or renew the Lease; true when this replica holds it afterwards. */
  async function attempt(): Promise<boolean> {
    const now = clock.now();
    let lease: Lease;
    try {
      lease = await client.request<Lease>("GET", path, { signal: stop.signal });
    } catch (e) {
      if (e instanceof KubeApiError && e.code === 404) return await create(now);
      throw e;
    }
    const key = recordKey(lease);
    if (observed?.key !== key) observed = { key, at: now };
    lastRenew = lease.spec?.renewTime;
    const holder = lease.spec?.holderIdentity || undefined;
    if (holder !== undefined && holder !== id && now < observed.at + validFor(lease.spec)) {
      see(holder);
      return false;
    }
    // The body carries the resourceVersion read: a write in between makes this one a 409.
    const next: Lease = { ...lease, spec: { ...lease.spec, ...claimedSpec(lease.spec, id, durationS, now) } };
    try {
      const written = await client.request<Lease>("PUT", path, { body: next, signal: stop.signal });
      observed = { key: recordKey(written), at: now };
      lastRenew = written.spec?.renewTime;
      return true;
    } catch (e) {
      if (e instanceof KubeApiError && e.code === 409) {
        log.debug("lease changed under this replica's write; reading it again", { err: errorMessage(e) });
        return false;
      }
      throw e;
    }
  }

  const running = (async () => {
    while (!stop.signal.aborted) {
      // A renewal counts from before it was sent: others time the record from when they see it.
      const startedAt = clock.now();
      try {
        if (await attempt()) {
          renewedAt = startedAt;
          see(id);
        } else if (leader === id) {
          see(undefined); // lost a race for a record that changed: someone else wrote it
        }
        error = undefined;
      } catch (e) {
        if (stop.signal.aborted) break;
        error = errorMessage(e);
        if (leader === id && clock.now() - renewedAt <= renewDeadlineMs) {
          log.warn("lease renewal failed; still leading until the renew deadline", { err: error });
        } else {
          if (leader === id) {
            log.warn("lease not renewed within the renew deadline; stepping down", { err: error });
          } else {log.warn("lease election: the API server failed; leader unknown until it answers", {
              err: error,
            });}
          see(undefined);
        }
      }
      await sleep(clock, retryMs, stop.signal);
    }
  })();

  /** Releases a held Lease: holder cleared, so the next replica to look takes it at once. */
  async function release(): Promise<void> {
    try {
      const lease = await client.request<Lease>("GET", path);
      if (lease.spec?.holderIdentity !== id) return;
      const now = clock.now();
      await client.request("PUT", path, {
        body: {
          ...lease,
          spec: {
            ...lease.spec,
            holderIdentity: "",
            leaseDurationSeconds: 1,
            renewTime: microTime(now),
            acquireTime: microTime(now),
          },
        },
      });
      log.info("released the lease");
    } catch (e) {
      log.warn("could not release the lease; another replica takes it once it expires", {
        err: errorMessage(e),
      });
    }
  }

  return {
    duty: opts.duty,
    leading: () => leader === id && clock.now() - renewedAt <= renewDeadlineMs,
    status: () => ({
      duty: opts.duty,
      ...(leader === undefined ? {} : { leader }),
      ...(since === undefined ? {} : { since: new Date(since).toISOString() }),
      self: id,
      leading: leader === id && clock.now() - renewedAt <= renewDeadlineMs,
      ...(error === undefined ? {} : { error }),
      via: "kubernetes",
      lease: { namespace: opts.namespace, name: opts.name },
      ...(lastRenew === undefined ? {} : { lastRenew }),
    }),
    async close() {
      const wasLeading = leader === id;
      stop.abort();
      await running;
      if (wasLeading) await release();
      see(undefined);
    },
  };
}

/** What identifies a version of a Lease's record: a new write gives a new resourceVersion. */
function recordKey(lease: Lease): string {
  return `${lease.metadata.resourceVersion ?? ""}|${lease.spec?.holderIdentity ?? ""}|${
    lease.spec?.renewTime ?? ""
  }`;
}
