/**
 * The store's errors, apart from the client that raises them so that callers can tell them apart
 * without loading the etcd client (and etcd's protobuf descriptors).
 *
 * @module
 */

/** etcd cannot be reached, or no member reachable has a leader. */
export class StoreUnavailableError extends Error {
  override readonly name = "StoreUnavailableError";
}

/** A watch asked for revisions the store has compacted away. */
export class EtcdCompactedError extends Error {
  override readonly name = "EtcdCompactedError";
  /** The oldest revision the store still has. */
  readonly compactRevision: number;
  constructor(compactRevision: number) {
    super(`etcd compacted its history up to revision ${compactRevision}`);
    this.compactRevision = compactRevision;
  }
}
