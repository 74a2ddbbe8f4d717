/**
 * /debug/leaderz shows the Lease election galley's Kubernetes config source campaigns in to
 * write status: listed on the daemon's election board while the source runs, with the duty, the
 * holder, whether this replica leads, the Lease's name and namespace and its last renewal; a
 * second replica sees the first as holder; a stopped source leaves the board. A store replica
 * (real etcd) given the same board shows its etcd duties and the Lease together.
 */
import { afterAll, beforeAll, describe, expect, setDefaultTimeout, test } from "bun:test";
import { createKubeConfig, type KubeConfig } from "../../mod/galley/kube_config.ts";
import { createConfigStore } from "../../mod/galley/store.ts";
import { leasePath, type LeaseSpec } from "../../mod/kube/mod.ts";
import { systemClock } from "../../mod/shared/clock.ts";
import { parseCommandLine } from "../../mod/cli/flags.ts";
import { createMetricsRegistry } from "../../mod/shared/metrics.ts";
import { createElectionBoard, type ElectionBoard, leaderzHandler } from "../../mod/store/election.ts";
import { openStore } from "../../mod/store/open_store.ts";
import { createReplica } from "../../mod/store/replica.ts";
import { STORE_SETTINGS } from "../../mod/store/settings.ts";
import { startEtcd } from "../store/_etcd.ts";
import { eventually } from "../e2e/_meshd.ts";
import { quiet } from "../galley/_harness.ts";
import { type KubeServer, startKubeServer } from "../registry/_kube_server.ts";

setDefaultTimeout(30_000);

interface Leaderz {
  self?: string;
  duties: Array<{
    duty: string;
    leader?: string;
    self: string;
    leading: boolean;
    via?: string;
    lease?: { namespace: string; name: string };
    lastRenew?: string;
  }>;
}

describe("/debug/leaderz with galley's status Lease", () => {
  let server: KubeServer;
  const sources: KubeConfig[] = [];

  const replica = async (board: ElectionBoard) => {
    const store = createConfigStore({ logger: quiet });
    const source = createKubeConfig({
      url: "kubernetes://?lease-namespace=meshd",
      store,
      logger: quiet,
      clock: systemClock,
      connection: { server: server.url, token: server.token, origin: "test" },
      lease: { durationMs: 1_500, renewDeadlineMs: 1_000, retryPeriodMs: 100 },
      status: { debounceMs: 20, resyncMs: 150 },
      elections: board,
    });
    sources.push(source);
    await source.start(store.sink(source.name));
    return source;
  };
  const leaderz = async (board: ElectionBoard, self?: string) =>
    await (await leaderzHandler(board, self).handle(new Request("http://127.0.0.1/debug/leaderz")))
      .json() as Leaderz;

  beforeAll(async () => {
    server = await startKubeServer({ bookmarkIntervalMs: 0 });
  });
  afterAll(async () => {
    await Promise.all(sources.map((s) => s.stop()));
    await server.close();
  });

  test("the holder of the status Lease, its name and last renewal, on each replica's board", async () => {
    const board = createElectionBoard();
    const first = await replica(board);
    expect(await eventually(() => first.election.leading())).toBe(true);
    const mine = await leaderz(board, "replica-1");
    expect(mine.self).toBe("replica-1");
    const self = first.election.status().self;
    expect(mine.duties).toHaveLength(1);
    expect(mine.duties[0]).toMatchObject({
      duty: "config-status",
      leader: self,
      self,
      leading: true,
      via: "kubernetes",
      lease: { namespace: "meshd", name: "meshd-galley-status" },
    });
    // The renewal shown is the one the Lease on the server carries, once the holder is between renewals.
    expect(
      await eventually(async () =>
        (await leaderz(board)).duties[0]!.lastRenew ===
          (server.get(leasePath("meshd", "meshd-galley-status"))?.spec as LeaseSpec).renewTime
      ),
    ).toBe(true);
    expect((await leaderz(board)).duties[0]!.lastRenew).toMatch(/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z$/);

    // Another replica, with its own board: it sees the first as the holder and does not lead.
    const otherBoard = createElectionBoard();
    const second = await replica(otherBoard);
    expect(await eventually(() => second.election.status().leader === self)).toBe(true);
    expect((await leaderz(otherBoard)).duties[0]).toMatchObject({
      duty: "config-status",
      leader: self,
      self: second.election.status().self,
      leading: false,
      lease: { namespace: "meshd", name: "meshd-galley-status" },
    });
    expect((await leaderz(otherBoard)).duties[0]!.lastRenew).toBeDefined();

    // A stopped source leaves its board; the other replica takes the Lease over.
    await first.stop();
    expect((await leaderz(board)).duties).toEqual([]);
    expect(await eventually(() => second.election.leading())).toBe(true);
    expect((await leaderz(otherBoard)).duties[0]).toMatchObject({
      leader: second.election.status().self,
      leading: true,
    });
  });

  test("a store replica given the same board lists its etcd duties and the Lease in its /debug/leaderz", async () => {
    const etcd = await startEtcd(1);
    const settings = parseCommandLine(STORE_SETTINGS, [`--store=etcd://${etcd.endpoints}/leaderz-test`], {
      command: "test",
      env: {},
    }).settings;
    const store = openStore(settings, { logger: quiet })!;
    const board = createElectionBoard();
    const replicaOf = createReplica(store, {
      ttlSeconds: 5,
      logger: quiet,
      clock: systemClock,
      metrics: createMetricsRegistry(),
      compactIntervalMs: 0,
      board,
    });
    try {
      const source = await replica(board);
      const shown = async () =>
        await (await replicaOf.leaderz.handle(new Request("http://127.0.0.1/debug/leaderz")))
          .json() as Leaderz;
      expect(
        await eventually(async () => {
          const z = await shown();
          return z.duties.length === 2 && z.duties.every((d) => d.leader !== undefined);
        }),
      ).toBe(true);
      const z = await shown();
      expect(z.self).toBe(replicaOf.id);
      expect(z.duties.map((d) => [d.duty, d.via])).toEqual([["housekeeping", "etcd"], [
        "config-status",
        "kubernetes",
      ]]);
      expect(z.duties[0]).toMatchObject({ leader: replicaOf.id, leading: true });
      // The first test's second replica may still hold the Lease: whoever does is named.
      expect(z.duties[1]!.leader).toBe(
        (server.get(leasePath("meshd", "meshd-galley-status"))?.spec as LeaseSpec | undefined)
          ?.holderIdentity,
      );
      expect(z.duties[1]).toMatchObject({
        self: source.election.status().self,
        lease: { namespace: "meshd", name: "meshd-galley-status" },
      });
      await source.stop();
      expect((await shown()).duties.map((d) => d.duty)).toEqual(["housekeeping"]);
    } finally {
      await replicaOf.close();
      store.close();
      await etcd.stop();
    }
  });
});
