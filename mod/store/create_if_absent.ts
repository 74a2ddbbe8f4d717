/**
 * Create-if-absent on etcd: the transaction replicas use to agree on one value for a key (a
 * CA, a signing key, a duty's leader, a redeemed token). Whoever creates the key wins; the
 * others read the winner's value from the same transaction.
 *
 * @module
 */
import type { EtcdClient, KeyValue } from "./etcd_client.ts";

/** What createIfAbsent found. */
export interface CreateResult {
  /** True when this call created the key. */
  readonly created: boolean;
  /**
   * The key as it is now: the value written when `created`, else the winner's; undefined when
   * the key was deleted between the failed comparison and the read.
   */
  readonly kv: KeyValue | undefined;
}

/** Writes `value` at `key` only when the key is absent (attached to `lease` when given). */
export async function createIfAbsent(
  client: EtcdClient,
  key: string,
  value: Uint8Array,
  lease?: bigint,
): Promise<CreateResult> {
  const put = lease === undefined ? { put: key, value } : { put: key, value, lease };
  const res = await client.txn([{ key, modRevision: 0 }], [put]);
  if (!res.succeeded) return { created: false, kv: res.current[0] };
  return {
    created: true,
    kv: { key, value, createRevision: res.revision, modRevision: res.revision, version: 1 },
  };
}
