/**
 * Leader election over a Kubernetes Lease, against the test API server: of two replicas one
 * leads and the other follows; a holder that stops renewing is replaced only once its Lease has
 * gone unrenewed for its duration; a leader that resigns hands over at once; a leader that
 * cannot reach the API server steps down; replicas racing for the same Lease never both lead.
 */
import { afterEach, beforeEach, describe, expect, test } from "bun:test";
import {
  createKubeClient,
  createLeaseElection,
  type Election,
  type KubeClient,
  leasePath,
  type LeaseSpec,
  microTime,
} from "../../mod/kube/mod.ts";
import { systemClock } from "../../mod/shared/clock.ts";
import { quiet } from "../galley/_harness.ts";
import { eventually } from "../e2e/_meshd.ts";
import { type KubeServer, startKubeServer } from "../registry/_kube_server.ts";

const NS = "meshd";
const NAME = "meshd-test-duty";
const TIMING = { leaseDurationMs: 1_500, renewDeadlineMs: 1_000, retryPeriodMs: 100 };

describe("Lease election", () => {
  let server: KubeServer;
  let client: KubeClient;
  const running: Election[] = [];
  /** Samples taken every few ms: how many replicas counted themselves leader at once. */
  let most = 0;
  let sampler: ReturnType<typeof setInterval> | undefined;

  const elect = (id: string, timing: Partial<typeof TIMING> = {}) => {
    const e = createLeaseElection({
      client,
      namespace: NS,
      name: NAME,
      duty: "test",
      id,
      logger: quiet,
      clock: systemClock,
      ...TIMING,
      ...timing,
    });
    running.push(e);
    return e;
  };
  const lease = () => server.get(leasePath(NS, NAME)) as { spec?: LeaseSpec } | undefined;
  const leaders = () => running.filter((e) => e.leading()).map((e) => e.status().self);

  beforeEach(async () => {
    server = await startKubeServer({ bookmarkIntervalMs: 0 });
    client = createKubeClient({ server: server.url, token: server.token, origin: "test" }, {
      clock: systemClock,
    });
    most = 0;
    sampler = setInterval(() => (most = Math.max(most, leaders().length)), 5);
  });
  afterEach(async () => {
    clearInterval(sampler);
    await Promise.all(running.splice(0).map((e) => e.close()));
    await server.close();
  });

  test("one of two replicas leads; the Lease names it; the other follows it", async () => {
    const a = elect("replica-a");
    const b = elect("replica-b");
    expect(await eventually(() => leaders().length === 1)).toBe(true);
    const [leader] = leaders();
    expect(lease()?.spec?.holderIdentity).toBe(leader!);
    expect(lease()?.spec?.leaseDurationSeconds).toBe(2);
    const follower = leader === "replica-a" ? b : a;
    expect(await eventually(() => follower.status().leader === leader)).toBe(true);
    // Renewals move renewTime on while the leader stays the same.
    const first = lease()?.spec?.renewTime;
    expect(await eventually(() => lease()?.spec?.renewTime !== first)).toBe(true);
    expect(leaders()).toEqual([leader!]);
    expect(most).toBeLessThanOrEqual(1);
  });

  test("a holder that stopped renewing is replaced only after its lease duration", async () => {
    // A replica that died while leading: its record stays, fresh when the others first see it.
    server.put(`/apis/coordination.k8s.io/v1/namespaces/${NS}/leases`, {
      apiVersion: "coordination.k8s.io/v1",
      kind: "Lease",
      metadata: { name: NAME, namespace: NS },
      spec: {
        holderIdentity: "dead-replica",
        leaseDurationSeconds: 2,
        acquireTime: microTime(Date.now()),
        renewTime: microTime(Date.now()),
        leaseTransitions: 4,
      },
    });
    const started = Date.now();
    const a = elect("replica-a");
    const b = elect("replica-b");
    expect(
      await eventually(() => a.status().leader === "dead-replica" && b.status().leader === "dead-replica"),
    )
      .toBe(true);
    expect(await eventually(() => leaders().length === 1, 10_000)).toBe(true);
    // Not before the dead holder's 2 s had passed unrenewed, as this process saw it.
    expect(Date.now() - started).toBeGreaterThanOrEqual(2_000);
    expect(lease()?.spec?.holderIdentity).toBe(leaders()[0]!);
    expect(lease()?.spec?.leaseTransitions).toBe(5);
    expect(most).toBeLessThanOrEqual(1);
  });

  test("a leader that resigns hands over at once", async () => {
    // A 30 s lease: a handover within the wait below cannot be a lapse.
    const long = { leaseDurationMs: 30_000, renewDeadlineMs: 20_000 };
    const a = elect("replica-a", long);
    expect(await eventually(() => a.leading())).toBe(true);
    const b = elect("replica-b", long);
    expect(await eventually(() => b.status().leader === "replica-a")).toBe(true);
    await a.close();
    expect(lease()?.spec?.holderIdentity).toBe("");
    expect(await eventually(() => b.leading(), 10_000)).toBe(true);
    expect(lease()?.spec?.holderIdentity).toBe("replica-b");
    expect(lease()?.spec?.leaseTransitions).toBe(1);
  });

  test("a leader that cannot reach the API server steps down by its renew deadline", async () => {
    const a = elect("replica-a");
    expect(await eventually(() => a.leading())).toBe(true);
    await server.down();
    expect(await eventually(() => !a.leading(), 3_000)).toBe(true);
    expect(a.status().error).toBeDefined();
    await server.up();
    expect(await eventually(() => a.leading(), 5_000)).toBe(true);
  });

  test("replicas racing for the same Lease never lead together; the loser of a write gets 409", async () => {
    const all = ["a", "b", "c", "d"].map((x) => elect(`replica-${x}`));
    expect(await eventually(() => leaders().length === 1)).toBe(true);
    // Creates race: all four found no Lease and posted one; the API server took one.
    expect(server.requests.some((r) => r.method === "POST" && r.status === 409)).toBe(true);
    // The leader resigns; the other three race to take the freed Lease with the same resourceVersion.
    const leader = all.find((e) => e.leading())!;
    await leader.close();
    running.splice(running.indexOf(leader), 1);
    expect(await eventually(() => leaders().length === 1)).toBe(true);
    await Bun.sleep(300);
    expect(leaders().length).toBe(1);
    expect(most).toBeLessThanOrEqual(1);
  });
});
