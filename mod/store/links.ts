/**
 * The store as the daemon offers it to modules (`--store`), and what a store is.
 *
 * @module
 */
import { linkKey } from "../runtime/links.ts";
import type { EtcdClient } from "./etcd_client.ts";

/** An open store: an etcd cluster and the prefix under which meshd keeps its keys. */
export interface Store {
  /** The `--store` value. */
  readonly url: string;
  /** Where meshd's keys live ("/meshd"); never ends with "/". */
  readonly prefix: string;
  readonly client: EtcdClient;
  /**
   * Adds a part to /debug/storez under `name` (e.g. galley's config watch). `status` is called
   * on each request and must be cheap.
   */
  addStatus(name: string, status: () => unknown): void;
  /** Everything /debug/storez shows. */
  status(): Record<string, unknown>;
  /** Closes the client; later calls reject. */
  close(): void;
}

/** The daemon's store, offered when `--store` is set; modules that keep shared state use it. */
export const STORE = linkKey<Store>("store");
