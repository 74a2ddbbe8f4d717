/**
 * Refused auto-registrations, kept after their streams end so that `/debug/registrationz` and
 * `meshd proxy-status` can still say why a machine is missing: one entry per node id, its last
 * refusal, bounded in count (the least recently refused go first) and in time (an entry leaves
 * `keepMs` after its last refused connection closed).
 *
 * @module
 */

/** How pilot refused: the gRPC status the agent's stream ends with. */
export type RefusalCode = "PERMISSION_DENIED" | "FAILED_PRECONDITION";

/** Why pilot refuses a workload's auto-registration. */
export interface Refusal {
  readonly code: RefusalCode;
  /** Names the group, the identity and what was expected. */
  readonly reason: string;
}

/** One refused registration attempt. */
export interface RefusedRegistration extends Refusal {
  readonly node: string;
  /** "NAMESPACE/NAME" of the group. */
  readonly group: string;
  /** The name its WorkloadEntry would have had. */
  readonly workload: string;
  readonly address: string;
  /** The SPIFFE ID the connection proved, if any. */
  readonly identity?: string;
}

/** A kept refusal, with when it happened and how many of its connections are still open. */
export interface KeptRefusal extends RefusedRegistration {
  /** Clock milliseconds of the last refusal. */
  readonly at: number;
  readonly openConnections: number;
}

/** The log of refusals. */
export interface RefusalLog {
  /** Records a refusal of `node`, replacing its previous one; `connectionId` while it stays open. */
  record(entry: RefusedRegistration, connectionId?: string): void;
  /** A refused connection closed. */
  closed(connectionId: string): void;
  /** `node` registered: its refusal is over. */
  forget(node: string): void;
  /** The kept refusals, sorted by node id. */
  list(): KeptRefusal[];
}

/** Options for createRefusalLog. */
export interface RefusalLogOptions {
  readonly now: () => number;
  /** Most entries kept (default 256). */
  readonly max?: number;
  /** How long an entry stays after its last connection closed (default one hour). */
  readonly keepMs?: number;
}

interface Entry {
  value: RefusedRegistration;
  /** The last refusal. */
  at: number;
  /** The last refusal, or the close of the last open connection after it. */
  seen: number;
  readonly open: Set<string>;
}

/** Creates an empty refusal log. */
export function createRefusalLog(o: RefusalLogOptions): RefusalLog {
  const max = o.max ?? 256;
  const keepMs = o.keepMs ?? 3_600_000;
  /** By node id, least recently refused first. */
  const entries = new Map<string, Entry>();
  const nodeOf = new Map<string, string>();

  function prune(): void {
    const now = o.now();
    for (const [node, e] of entries) {
      if (e.open.size === 0 && now - e.seen > keepMs) drop(node);
    }
    for (const node of entries.keys()) {
      if (entries.size <= max) break;
      drop(node);
    }
  }

  function drop(node: string): void {
    const e = entries.get(node);
    if (!e) return;
    entries.delete(node);
    for (const c of e.open) nodeOf.delete(c);
  }

  return {
    record(value, connectionId) {
      const e = entries.get(value.node) ?? { value, at: 0, seen: 0, open: new Set<string>() };
      entries.delete(value.node);
      e.value = value;
      e.at = e.seen = o.now();
      if (connectionId !== undefined) {
        e.open.add(connectionId);
        nodeOf.set(connectionId, value.node);
      }
      entries.set(value.node, e);
      prune();
    },
    closed(connectionId) {
      const node = nodeOf.get(connectionId);
      if (node === undefined) return;
      nodeOf.delete(connectionId);
      const e = entries.get(node);
      if (!e) return;
      e.open.delete(connectionId);
      if (e.open.size === 0) e.seen = o.now();
    },
    forget: drop,
    list() {
      prune();
      return [...entries.values()]
        .map((e) => ({ ...e.value, at: e.at, openConnections: e.open.size }))
        .sort((a, b) => (a.node < b.node ? -1 : a.node > b.node ? 1 : 0));
    },
  };
}
