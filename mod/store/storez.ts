/**
 * `/debug/storez`: the store's state, for operators and tests.
 *
 * @module
 */
import type { DebugHandler } from "../runtime/module.ts";
import type { Store } from "./links.ts";

/**
 * The handler of /debug/storez: the address and prefix, whether etcd answered the last request
 * (and if not, each endpoint's error), and what each watcher delivered (revision, relists,
 * compactions). Without `--store` it says the store is local.
 */
export function storeDebugHandler(store: Store | undefined): DebugHandler {
  return {
    path: "storez",
    description: "the store (--store): etcd endpoints and their health, revisions and relists of watchers",
    handle: () =>
      Response.json(store === undefined ? { store: "none", message: "--store is not set" } : store.status()),
  };
}
