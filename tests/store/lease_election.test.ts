/**
 * A replica's lease, its shared auto-registrations and leader election against a real etcd:
 * a lost lease is replaced and the replica's registrations are written again under the new one;
 * while etcd is down the last known ones stay and a change made meanwhile is written afterwards;
 * a dead replica's registrations lapse with its lease; a hostile entry is ignored and named;
 * when the leader dies another replica takes over, and a leader that resigns hands over at once.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import {
  createSharedRegistrations,
  type SharedRegistration,
  type SharedRegistrations,
} from "../../mod/pilot/shared_registrations.ts";
import { systemClock } from "../../mod/shared/clock.ts";
import { createElection, type Election, leaderKey } from "../../mod/store/election.ts";
import { createEtcdClient, type EtcdClient } from "../../mod/store/etcd_client.ts";
import { createLeaseKeeper, type LeaseKeeper } from "../../mod/store/lease_keeper.ts";
import type { Store } from "../../mod/store/links.ts";
import { quiet } from "../galley/_harness.ts";
import { eventually } from "../e2e/_meshd.ts";
import { type EtcdCluster, startEtcd } from "./_etcd.ts";

const PREFIX = "/lease-test";

/** A registration of workload `name` held by `replica`. */
function registration(replica: string, name: string): SharedRegistration {
  return {
    replica,
    group: "vm/web",
    workload: {
      key: `networking.istio.io/WorkloadEntry/vm/${name}`,
      namespace: "vm",
      spec: { address: "10.1.2.3", labels: { app: "web" } },
      healthy: true,
    },
  };
}

describe("replica lease, shared registrations and election", () => {
  let etcd: EtcdCluster;
  const clients: EtcdClient[] = [];
  const keepers: LeaseKeeper[] = [];
  const shares: SharedRegistrations[] = [];
  const elections: Election[] = [];

  /** A "replica": its own client, lease keeper (TTL `ttl` s) and store view. */
  function replica(ttl: number) {
    const client = createEtcdClient({
      endpoints: etcd.members.map((m) => m.addr),
      logger: quiet,
      timeoutMs: 2_000,
    });
    clients.push(client);
    const keeper = createLeaseKeeper(client, { ttlSeconds: ttl, logger: quiet });
    keepers.push(keeper);
    const store: Store = {
      url: "etcd://test",
      prefix: PREFIX,
      client,
      addStatus: () => {},
      status: () => ({}),
      close: () => client.close(),
    };
    return { client, keeper, store };
  }

  /** Shared registrations of replica `r` under the name `name`, closed after all tests. */
  function share(r: ReturnType<typeof replica>, name: string, opts: { retryMs?: number } = {}) {
    const shared = createSharedRegistrations({
      store: r.store,
      keeper: r.keeper,
      replica: name,
      logger: quiet,
      clock: systemClock,
      ...opts,
    });
    shares.push(shared);
    return shared;
  }

  beforeAll(async () => {
    etcd = await startEtcd(1);
  });
  afterAll(async () => {
    for (const e of elections) await e.close();
    for (const s of shares) s.close();
    for (const k of keepers) await k.close();
    for (const c of clients) c.close();
    await etcd?.stop();
  });

  const keyOf = (path: string) => `${PREFIX}/registrations/${path}`;
  /** The lease (hex) etcd has the key under, or "" when the key is absent. */
  async function leaseOf(key: string): Promise<string> {
    // Read as text: a lease id is an int64 that a JSON number cannot hold exactly.
    const lease = /"lease":(\d+)/.exec(await etcd.ctl(["get", "-w", "json", key]))?.[1];
    return lease === undefined ? "" : BigInt(lease).toString(16);
  }

  test(
    "a lost lease is replaced and the replica's registrations are written again under the new one",
    async () => {
      const a = replica(30);
      const shared = share(a, "a", { retryMs: 100 });
      shared.publish(new Map([["vm/web/web-10.1.2.3", registration("a", "web-10.1.2.3")]]), new Set());
      const key = keyOf("vm/web/web-10.1.2.3");
      expect(await eventually(async () => (await leaseOf(key)) !== "")).toBe(true);
      const first = await leaseOf(key);
      expect(first).toBe(a.keeper.status().lease!);

      // The lease goes as if it had lapsed during an outage: the key goes with it.
      await etcd.ctl(["lease", "revoke", first]);
      expect(await leaseOf(key)).toBe("");
      // The next renewal (a third of the TTL) finds it gone; a new lease, and the key is back.
      expect(
        await eventually(async () => {
          const now = await leaseOf(key);
          return now !== "" && now !== first;
        }, 30_000),
      ).toBe(true);
      expect(a.keeper.status().grants).toBe(2);
      expect(await leaseOf(key)).toBe(a.keeper.status().lease!);
    },
    60_000,
  );

  test("a replica sees another's registrations, which lapse with its lease when it dies", async () => {
    const a = replica(2);
    const b = replica(30);
    const sa = share(a, "ra");
    const sb = share(b, "rb");
    const path = "vm/web/web-10.9.9.9";
    sa.publish(new Map([[path, registration("ra", "web-10.9.9.9")]]), new Set());
    expect(await eventually(() => sb.others().get(path)?.replica === "ra")).toBe(true);
    expect(sa.others().has(path)).toBe(false); // its own are not "others"

    // "ra" dies: nothing renews its lease any more, and its client is gone.
    await a.keeper.close();
    sa.close();
    a.client.close();
    expect(await eventually(() => !sb.others().has(path), 20_000)).toBe(true);
  }, 60_000);

  test(
    "while etcd is down the last known registrations stay; a change made meanwhile is written when it is back",
    async () => {
      const a = replica(30);
      const b = replica(30);
      const sa = share(a, "da", { retryMs: 200 });
      const sb = share(b, "db", { retryMs: 200 });
      const first = "vm/web/web-10.5.5.1";
      const second = "vm/web/web-10.5.5.2";
      sa.publish(new Map([[first, registration("da", "web-10.5.5.1")]]), new Set());
      expect(await eventually(() => sb.others().has(first))).toBe(true);

      await etcd.kill(0);
      sa.publish(
        new Map([[first, registration("da", "web-10.5.5.1")], [second, registration("da", "web-10.5.5.2")]]),
        new Set(),
      );
      expect(await eventually(() => sb.status().lastError !== undefined, 20_000)).toBe(true);
      expect(sb.others().has(first)).toBe(true); // the last known entries stay served

      await etcd.restart(0);
      await etcd.healthy();
      expect(await eventually(() => sb.others().has(second), 30_000)).toBe(true);
      expect(sb.others().has(first)).toBe(true);
      expect(await leaseOf(keyOf(second))).toBe(a.keeper.status().lease!);
    },
    90_000,
  );

  test("an entry that is not a registration is ignored and named in the status", async () => {
    const b = replica(30);
    const sb = share(b, "rc");
    await etcd.ctl(["put", keyOf("vm/web/hostile"), '{"replica":"x","group":"vm/web","workload":{"key":1}}']);
    await etcd.ctl(["put", keyOf("vm/web/fine"), JSON.stringify(registration("x", "fine"))]);
    expect(await eventually(() => sb.others().has("vm/web/fine"))).toBe(true);
    expect(sb.others().has("vm/web/hostile")).toBe(false);
    const ignored = sb.status().ignored as Record<string, string>;
    expect(ignored[keyOf("vm/web/hostile")]).toContain("workload.key");
  }, 60_000);

  test(
    "createElection() hands the duty to another replica when the leader dies, and at once when it resigns",
    async () => {
      const reps = [replica(2), replica(2), replica(2)];
      const es = reps.map((r, i) =>
        createElection(r.client, {
          duty: "prune",
          id: `r${i}`,
          prefix: PREFIX,
          keeper: r.keeper,
          logger: quiet,
          retryMs: 100,
        })
      );
      elections.push(...es);
      const leaders = () => es.filter((e) => e.leading());
      expect(
        await eventually(() => leaders().length === 1 && es.every((e) => e.status().leader !== undefined)),
      ).toBe(
        true,
      );
      const first = leaders()[0]!;
      const firstIndex = es.indexOf(first);
      for (const e of es) expect(e.status().leader).toBe(`r${firstIndex}`);
      expect((await etcd.ctl(["get", "--print-value-only", leaderKey(PREFIX, "prune")])).trim()).toBe(
        `r${firstIndex}`,
      );

      // The leader dies: its lease is no longer renewed and lapses; another replica takes over.
      await reps[firstIndex]!.keeper.close();
      reps[firstIndex]!.client.close();
      const others = es.filter((e) => e !== first);
      expect(await eventually(() => others.filter((e) => e.leading()).length === 1, 20_000)).toBe(true);
      const second = others.find((e) => e.leading())!;
      const secondId = second.status().self;
      expect(await eventually(() => others.every((e) => e.status().leader === secondId))).toBe(true);

      // The new leader resigns: the last one takes over without waiting for a lease to lapse.
      const last = others.find((e) => e !== second)!;
      await second.close();
      expect(await eventually(() => last.leading(), 20_000)).toBe(true);
    },
    90_000,
  );
});
