/**
 * The store: meshd's state in etcd (`--store etcd://...`), shared by replicas.
 *
 * Re-exported here are the settings, the link and the types, which cost nothing to load. The
 * parts that load etcd's protobuf descriptors (open_store.ts, etcd_client.ts, etcd_source.ts) are
 * imported by the code that runs them, when `--store` is set.
 *
 * @module
 */
export { STORE_COMPACT_INTERVAL_SETTING, STORE_SETTINGS, storeRequested } from "./settings.ts";
export { STORE, type Store } from "./links.ts";
export { DEFAULT_PREFIX, parseStoreAddress, type StoreAddress } from "./etcd_url.ts";
export {
  configKey,
  type ConfigKeyParts,
  configPrefix,
  encodeResource,
  kindPrefix,
  parseConfigKey,
  resourceConfigKey,
  resourceDocument,
} from "./config_keys.ts";
export { storeDebugHandler } from "./storez.ts";
export type { EtcdClient, KeyValue, TxnCompare, TxnOp, TxnResult } from "./etcd_client.ts";
export { createIfAbsent, type CreateResult } from "./create_if_absent.ts";
export type { EtcdSource, EtcdSourceStatus } from "./etcd_source.ts";
export type { OpenStoreOptions } from "./open_store.ts";
export type { LeaseKeeper } from "./lease_keeper.ts";
export type { Replica } from "./replica.ts";
export type { Election, ElectionStatus } from "./election.ts";
export { createElectionBoard, type ElectionBoard, ELECTIONS, leaderzHandler } from "./election.ts";
export { EtcdCompactedError, StoreUnavailableError } from "./errors.ts";
