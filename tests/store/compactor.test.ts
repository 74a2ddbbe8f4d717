/**
 * Compaction by the housekeeping leader against a real etcd: a round reads the revision and
 * compacts to the one read a round earlier, so a watch one round behind still resumes; a
 * replica that does not lead compacts nothing and forgets what it read; an interval drives the
 * rounds on its own; a compaction someone else already made is not an error.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { Registry } from "prom-client";
import { startCompactor } from "../../mod/store/compactor.ts";
import { createEtcdClient, type EtcdClient } from "../../mod/store/etcd_client.ts";
import { EtcdCompactedError } from "../../mod/store/errors.ts";
import { quiet } from "../galley/_harness.ts";
import { eventually } from "../e2e/_meshd.ts";
import { type EtcdCluster, startEtcd } from "./_etcd.ts";

/** Whether a watch of `prefix` from `revision` starts (false: etcd compacted that revision). */
async function watchable(client: EtcdClient, prefix: string, revision: number): Promise<boolean> {
  const stop = new AbortController();
  try {
    for await (const _ of client.watch(prefix, revision, stop.signal)) return true;
    return true;
  } catch (err) {
    if (err instanceof EtcdCompactedError) return false;
    throw err;
  } finally {
    stop.abort();
  }
}

describe("etcd compaction by the housekeeping leader", () => {
  let etcd: EtcdCluster;
  let client: EtcdClient;

  beforeAll(async () => {
    etcd = await startEtcd(1);
    client = createEtcdClient({ endpoints: etcd.endpoints.split(","), logger: quiet, timeoutMs: 2_000 });
  }, 60_000);

  afterAll(async () => {
    client?.close();
    await etcd?.stop();
  });

  test("compacts to the revision read one round earlier, only while leading", async () => {
    let leading = true;
    const metrics = new Registry();
    const c = startCompactor({
      client,
      election: { leading: () => leading },
      intervalMs: 0,
      logger: quiet,
      metrics,
    });
    await etcd.ctl(["put", "/c/k", "1"]);
    await etcd.ctl(["put", "/c/k", "2"]);
    const first = await etcd.revision();

    await c.tick(); // reads `first`, compacts nothing yet
    expect(c.status()).toEqual({ intervalMs: 0, pending: first });
    expect(await watchable(client, "/c/", first - 1)).toBe(true);

    await etcd.ctl(["put", "/c/k", "3"]);
    const second = await etcd.revision();
    await c.tick(); // compacts to `first`, reads `second`
    expect(c.status()).toMatchObject({ pending: second, compacted: first });
    expect(await watchable(client, "/c/", first - 1)).toBe(false);
    expect(await watchable(client, "/c/", first)).toBe(true);
    expect(await etcd.ctl(["get", "/c/k", "--print-value-only"])).toBe("3\n");
    expect(await metrics.getSingleMetricAsString("meshd_store_compactions_total")).toContain(
      'meshd_store_compactions_total{result="compacted"} 1',
    );

    // Not leading: nothing compacted, and what was read is forgotten.
    leading = false;
    await etcd.ctl(["put", "/c/k", "4"]);
    await c.tick();
    expect(c.status()).toEqual({ intervalMs: 0, compacted: first, compactedAt: c.status().compactedAt });
    expect(await watchable(client, "/c/", second)).toBe(true);

    // Leading again: the first round only reads.
    leading = true;
    await c.tick();
    expect(await watchable(client, "/c/", second)).toBe(true);
    c.stop();
  });

  test("a revision already compacted by someone else is counted, not an error", async () => {
    const metrics = new Registry();
    const c = startCompactor({
      client,
      election: { leading: () => true },
      intervalMs: 0,
      logger: quiet,
      metrics,
    });
    await etcd.ctl(["put", "/d/k", "1"]);
    await c.tick();
    await etcd.ctl(["put", "/d/k", "2"]);
    await etcd.ctl(["compact", String(await etcd.revision())]);
    await c.tick();
    expect(c.status().lastError).toBeUndefined();
    expect(await metrics.getSingleMetricAsString("meshd_store_compactions_total")).toContain(
      'meshd_store_compactions_total{result="already"} 1',
    );
    c.stop();
  });

  test("the interval drives the rounds, and stop ends them", async () => {
    const c = startCompactor({ client, election: { leading: () => true }, intervalMs: 100, logger: quiet });
    await etcd.ctl(["put", "/e/k", "1"]);
    const before = await etcd.revision();
    expect(
      await eventually(async () => {
        await etcd.ctl(["put", "/e/k", String(Math.random())]);
        return (c.status().compacted ?? 0) >= before;
      }, 20_000),
    ).toBe(true);
    c.stop();
    const stopped = c.status().compacted;
    await etcd.ctl(["put", "/e/k", "last"]);
    await Bun.sleep(400);
    expect(c.status().compacted).toBe(stopped);
  }, 40_000);
});
