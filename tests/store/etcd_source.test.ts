/**
 * The etcd config source against a real three-member etcd: rejection of bad keys alone, naming
 * the key; a relist after compaction; keeping the last config while its member is gone and
 * catching up (puts and deletes) when it is back.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { type ConfigStore, createConfigStore } from "../../mod/galley/store.ts";
import { configKey } from "../../mod/store/config_keys.ts";
import { createEtcdClient, type EtcdClient } from "../../mod/store/etcd_client.ts";
import { createEtcdSource, type EtcdSource } from "../../mod/store/etcd_source.ts";
import { quiet } from "../galley/_harness.ts";
import { eventually } from "../e2e/_meshd.ts";
import { type EtcdCluster, startEtcd } from "./_etcd.ts";

const vsDoc = (name: string, timeout = "5s") =>
  JSON.stringify(
    {
      apiVersion: "networking.istio.io/v1",
      kind: "VirtualService",
      metadata: { name, namespace: "bookinfo" },
      spec: {
        hosts: [`${name}.example.com`],
        http: [{ timeout, route: [{ destination: { host: `${name}.example.com` } }] }],
      },
    },
    null,
    2,
  );

const key = (prefix: string, name: string) =>
  configKey(prefix, { group: "networking.istio.io", kind: "VirtualService", namespace: "bookinfo", name });

describe("etcd config source", () => {
  let etcd: EtcdCluster;
  const clients: EtcdClient[] = [];
  const sources: EtcdSource[] = [];

  /** A store fed by a new source over `client` under `prefix`. */
  async function watch(
    prefix: string,
    client: EtcdClient,
  ): Promise<{ store: ConfigStore; source: EtcdSource }> {
    clients.push(client);
    const store = createConfigStore({ logger: quiet });
    const source = createEtcdSource({ client, prefix, logger: quiet, minBackoffMs: 50, maxBackoffMs: 200 });
    sources.push(source);
    await source.start(store.sink(source.name));
    expect(await eventually(() => source.synced())).toBe(true);
    return { store, source };
  }
  const names = (store: ConfigStore) =>
    [...store.snapshot().resources.values()].map((r) => r.metadata.name).sort();

  beforeAll(async () => {
    etcd = await startEtcd(3);
  });
  afterAll(async () => {
    for (const s of sources) await s.stop();
    for (const c of clients) c.close();
    await etcd?.stop();
  });

  test("a key written around meshd that is invalid is rejected alone, naming its key", async () => {
    const p = "/bad";
    await etcd.ctl(["put", key(p, "good")], vsDoc("good"));
    await etcd.ctl(["put", key(p, "slow")], vsDoc("slow", "fast"));
    await etcd.ctl(["put", key(p, "yaml")], "kind: VirtualService\n");
    await etcd.ctl(["put", key(p, "other")], vsDoc("someone-else"));
    await etcd.ctl(["put", `${p}/config/stray`], vsDoc("stray"));
    const { store } = await watch(
      p,
      createEtcdClient({ endpoints: etcd.endpoints.split(","), logger: quiet }),
    );
    expect(names(store)).toEqual(["good"]);
    const status = store.status();
    const rejected = status.resources.filter((r) => r.state === "rejected");
    expect(rejected.map((r) => [r.origin, r.errors[0]])).toEqual([[
      key(p, "slow"),
      expect.stringMatching(
        new RegExp(
          `^${key(p, "slow")}:\\d+:\\d+: VirtualService bookinfo/slow: spec\\.http\\[0\\]\\.timeout: `,
        ),
      ),
    ]]);
    const origins = Object.fromEntries(
      status.origins.filter((o) => o.state === "rejected").map((o) => [o.origin, o.errors[0]]),
    );
    expect(origins).toEqual({
      [key(p, "yaml")]: expect.stringContaining("the value is not a JSON document"),
      [key(p, "other")]: expect.stringContaining(
        "the key names VirtualService bookinfo/other (networking.istio.io) but its value is VirtualService bookinfo/someone-else",
      ),
      [`${p}/config/stray`]: expect.stringContaining(
        "not a config key; want /bad/config/GROUP/KIND/NAMESPACE/NAME",
      ),
    });
  });

  test("an invalid new value keeps the last good version in force", async () => {
    const p = "/lastgood";
    await etcd.ctl(["put", key(p, "r")], vsDoc("r", "5s"));
    const { store } = await watch(
      p,
      createEtcdClient({ endpoints: etcd.endpoints.split(","), logger: quiet }),
    );
    await etcd.ctl(["put", key(p, "r")], vsDoc("r", "forever"));
    expect(await eventually(() => store.status().resources.some((r) => r.state === "rejected"))).toBe(true);
    const r = store.status().resources[0]!;
    expect(r.servingPrevious).toBe(true);
    expect(
      store.snapshot().get<{ http: { timeout: string }[] }>(
        "networking.istio.io",
        "VirtualService",
        "bookinfo",
        "r",
      )
        ?.spec.http[0]?.timeout,
    ).toBe("5s");
  });

  test("a compaction of the revisions the watch needs forces a relist that loses nothing", async () => {
    const p = "/compact";
    await etcd.ctl(["put", key(p, "before")], vsDoc("before"));
    const real = createEtcdClient({ endpoints: etcd.endpoints.split(","), logger: quiet });
    let compacted = false;
    // The real client, with a compaction made between the first listing and the watch that follows
    // it: two keys change after the listing's revision, then etcd drops those revisions.
    const client: EtcdClient = {
      ...real,
      async list(prefix, o) {
        const listed = await real.list(prefix, o);
        if (!compacted) {
          compacted = true;
          await etcd.ctl(["put", key(p, "during")], vsDoc("during"));
          await etcd.ctl(["del", key(p, "before")]);
          await etcd.ctl(["compact", String(await etcd.revision())]);
        }
        return listed;
      },
    };
    const { store, source } = await watch(p, client);
    expect(await eventually(() => names(store).join() === "during")).toBe(true);
    expect(source.status()).toMatchObject({ compactions: 1, relists: 1, state: "watching" });
    await etcd.ctl(["put", key(p, "after")], vsDoc("after"));
    expect(await eventually(() => names(store).join() === "after,during")).toBe(true);
  });

  test("keeps the last config while its member is gone, then catches up on puts and deletes", async () => {
    const p = "/outage";
    await etcd.ctl(["put", key(p, "stays")], vsDoc("stays"));
    await etcd.ctl(["put", key(p, "goes")], vsDoc("goes"));
    const only = etcd.members[0]!;
    const { store, source } = await watch(
      p,
      createEtcdClient({ endpoints: [only.addr], logger: quiet, timeoutMs: 1000 }),
    );
    const version = store.snapshot().version;
    await etcd.kill(0);
    expect(await eventually(() => source.status().state === "retrying")).toBe(true);
    // The other two members keep a quorum: config changes while this source cannot see them.
    await etcd.ctl(["del", key(p, "goes")]);
    await etcd.ctl(["put", key(p, "new")], vsDoc("new"));
    expect(store.snapshot().version).toBe(version);
    expect(names(store)).toEqual(["goes", "stays"]);
    // The watch's own end is reported first; the reconnect that fails follows.
    await eventually(() => /cannot connect/.test(source.status().lastError ?? ""));
    expect(source.status().lastError).toMatch(/cannot connect/);
    await etcd.restart(0);
    expect(await eventually(() => names(store).join() === "new,stays", 20_000)).toBe(true);
    expect(source.status().relists).toBeGreaterThanOrEqual(1);
  }, 60_000);
});
