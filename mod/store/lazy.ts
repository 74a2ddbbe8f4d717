/**
 * The store's code that speaks to etcd, for a dynamic `import()` when `--store` is given: loading
 * it loads etcd's protobuf descriptors, which a daemon without a store never needs. Everything
 * else of the store (settings, links, key layout, types, errors) is in mod.ts.
 *
 * @module
 */
export { createEtcdClient } from "./etcd_client.ts";
export { createEtcdSource } from "./etcd_source.ts";
export { openStore } from "./open_store.ts";
export { createReplica } from "./replica.ts";
