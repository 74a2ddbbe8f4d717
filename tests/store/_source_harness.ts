/**
 * The etcd config source against a real one-member etcd, for the ConfigSource contract suite:
 * each unit of config is written around meshd with etcdctl, one key per resource, as
 * `meshd config apply` lays them out.
 */
import { parseConfig } from "../../mod/galley/parse.ts";
import { createEtcdClient, type EtcdClient } from "../../mod/store/etcd_client.ts";
import { createEtcdSource } from "../../mod/store/etcd_source.ts";
import { encodeResource, resourceConfigKey } from "../../mod/store/config_keys.ts";
import type { SourceHarness } from "../galley/_harness.ts";
import { quiet } from "../galley/_harness.ts";
import { startEtcd } from "./_etcd.ts";

/** Starts etcd and returns a harness over it; `close()` stops etcd and the sources' clients. */
export async function etcdHarness(): Promise<SourceHarness> {
  const etcd = await startEtcd(1);
  const prefix = "/contract";
  const keysOf = new Map<string, string[]>();
  const clients: EtcdClient[] = [];
  return {
    name: "etcd",
    source() {
      const client = createEtcdClient({ endpoints: [etcd.members[0]!.addr], logger: quiet });
      clients.push(client);
      return createEtcdSource({ client, prefix, logger: quiet, minBackoffMs: 20, maxBackoffMs: 200 });
    },
    async put(name, yaml) {
      const keys: string[] = [];
      for (const r of parseConfig(yaml, name).resources) {
        const key = resourceConfigKey(prefix, r);
        await etcd.ctl(["put", key], new TextDecoder().decode(encodeResource(r)));
        keys.push(key);
      }
      keysOf.set(name, keys);
    },
    async remove(name) {
      for (const key of keysOf.get(name) ?? []) await etcd.ctl(["del", key]);
      keysOf.delete(name);
    },
    async close() {
      for (const c of clients) c.close();
      await etcd.stop();
    },
  };
}
