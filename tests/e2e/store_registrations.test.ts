/**
 * Auto-registrations shared through etcd, end to end: a real etcd, two `meshd serve --store`
 * replicas, and the agent's registration stream (mod/agent/registration.ts) connected to one of
 * them. The other replica serves the workload too; when the first is killed with SIGKILL and the
 * agent registers again at the survivor, the survivor holds it, and it stays after the dead
 * replica's lease has lapsed, without ever leaving the survivor's registry; when its stream there
 * closes the key goes after the grace. /debug/leaderz shows one leader both replicas agree on,
 * and the survivor takes over when the leader dies; etcd latency, watch lag and leader changes
 * are metrics.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { xdsNode } from "../../mod/agent/node.ts";
import { type Registration, startRegistration } from "../../mod/agent/registration.ts";
import { systemClock } from "../../mod/shared/clock.ts";
import { createLogger } from "../../mod/shared/logger.ts";
import { type EtcdCluster, startEtcd } from "../store/_etcd.ts";
import { eventually, type MeshdProcess, startMeshd } from "./_meshd.ts";

const quiet = createLogger({ write: () => {} });

const GROUP = {
  apiVersion: "networking.istio.io/v1",
  kind: "WorkloadGroup",
  metadata: { name: "ratings", namespace: "vms" },
  spec: { metadata: { labels: { app: "ratings" } }, template: { ports: { http: 9080 } } },
};

interface Reg {
  workload: string;
  replica?: string;
  connections: number;
  state: string;
}
interface Leaderz {
  self: string;
  duties: Array<{ duty: string; leader?: string; leading: boolean }>;
}

describe("auto-registrations shared by replicas through etcd", () => {
  let etcd: EtcdCluster;
  let a: MeshdProcess;
  let b: MeshdProcess;
  const regs: Registration[] = [];

  const registrationz = async (m: MeshdProcess) =>
    (await (await fetch(`http://${m.adminAddr}/debug/registrationz`)).json()) as Reg[];
  const leaderz = async (m: MeshdProcess) =>
    (await (await fetch(`http://${m.adminAddr}/debug/leaderz`)).json()) as Leaderz;
  const ratings = async (m: MeshdProcess) =>
    (await registrationz(m)).find((r) => r.workload === "ratings-10.0.0.7");
  /** The agent's registration stream to one replica. */
  function register(m: MeshdProcess): Registration {
    const r = startRegistration({
      discoveryAddr: m.grpcAddr,
      tls: () => undefined,
      node: xdsNode({
        ip: "10.0.0.7",
        name: "vm-7",
        namespace: "vms",
        serviceAccount: "default",
        trustDomain: "cluster.local",
        labels: {},
        workloadGroup: "ratings",
      }),
      clock: systemClock,
      logger: quiet,
      onProbe: () => {},
      backoff: { initialMs: 100, maxMs: 500 },
    });
    regs.push(r);
    return r;
  }

  beforeAll(async () => {
    etcd = await startEtcd(1);
    await etcd.ctl([
      "put",
      "/e2e/config/networking.istio.io/WorkloadGroup/vms/ratings",
      JSON.stringify(GROUP),
    ]);
    const args = [
      "--modules=pilot",
      `--store=etcd://${etcd.endpoints}/e2e`,
      "--etcd-timeout=2s",
      "--auto-register-require-identity=false",
      "--auto-register-grace=6s",
    ];
    [a, b] = await Promise.all([startMeshd({ args }), startMeshd({ args })]);
  }, 60_000);
  afterAll(async () => {
    for (const r of regs) await r.stop();
    await Promise.all([a?.stop(), b?.stop()]);
    await etcd?.stop();
  });

  test(
    "a workload registered at one replica is served by the other, naming the replica that holds it",
    async () => {
      const idA = (await leaderz(a)).self;
      const idB = (await leaderz(b)).self;
      expect(idA).not.toBe(idB);
      const r = register(a);
      expect(await eventually(() => r.connected(), 20_000)).toBe(true);
      expect(await eventually(async () => (await ratings(b))?.replica === idA, 20_000)).toBe(true);
      expect(await ratings(a)).toMatchObject({ replica: idA, connections: 1, state: "REGISTERED" });
      expect(await ratings(b)).toMatchObject({ replica: idA, connections: 0, state: "REGISTERED" });
      const stored = JSON.parse(
        await etcd.ctl(["get", "--print-value-only", "/e2e/registrations/vms/ratings/ratings-10.0.0.7"]),
      ) as { replica: string; workload: { spec: { address: string } } };
      expect(stored.replica).toBe(idA);
      expect(stored.workload.spec.address).toBe("10.0.0.7");
    },
    60_000,
  );

  test("etcd latency, watch lag and leader changes are metrics", async () => {
    const metrics = await (await fetch(`http://${a.adminAddr}/metrics`)).text();
    const count = (name: string) =>
      metrics.split("\n").filter((l) => l.startsWith(name)).reduce(
        (n, l) => n + Number(l.split(" ").pop()),
        0,
      );
    expect(count('meshd_store_request_duration_seconds_count{op="transaction"}')).toBeGreaterThan(0);
    expect(count('meshd_store_request_duration_seconds_count{op="lease grant"}')).toBeGreaterThan(0);
    // The registration written in the test before came back on the replica's own watch.
    expect(count("meshd_store_watch_lag_seconds_count")).toBeGreaterThan(0);
    expect(count('meshd_store_leader_changes_total{duty="housekeeping"}')).toBeGreaterThan(0);
  }, 60_000);

  test("one leader per duty, agreed on by both replicas", async () => {
    expect(
      await eventually(async () => {
        const [la, lb] = [await leaderz(a), await leaderz(b)];
        const [da, db] = [la.duties[0], lb.duties[0]];
        return da?.leader !== undefined && da.leader === db?.leader && da.leading !== db.leading;
      }, 20_000),
    ).toBe(true);
  }, 60_000);

  test(
    "kill -9 of the replica holding the agent: it registers at the survivor, which keeps it after the dead lease lapsed",
    async () => {
      const idA = (await leaderz(a)).self;
      const idB = (await leaderz(b)).self;
      const leaseA =
        ((await (await fetch(`http://${a.adminAddr}/debug/storez`)).json()) as { lease: { lease: string } })
          .lease.lease;
      // From here on, how long the survivor goes without the workload at any one time.
      let polling = true;
      let missingSince: number | undefined;
      let longestGapMs = 0;
      const poller = (async () => {
        while (polling) {
          const present = (await ratings(b)) !== undefined;
          const now = Date.now();
          if (present && missingSince !== undefined) {
            longestGapMs = Math.max(longestGapMs, now - missingSince);
            missingSince = undefined;
          } else if (!present && missingSince === undefined) missingSince = now;
          await Bun.sleep(100);
        }
      })();
      a.proc.kill("SIGKILL");
      await a.proc.exited;
      await regs[0]!.stop();
      // The agent moves to the survivor, as an agent with several --discovery-addr would.
      const r = register(b);
      expect(await eventually(() => r.connected(), 20_000)).toBe(true);
      expect(await eventually(async () => (await ratings(b))?.replica === idB, 20_000)).toBe(true);
      // The dead replica's lease lapses after its TTL (the grace); the workload is still there,
      // now under the survivor's lease.
      expect(
        await eventually(async () => !(await etcd.ctl(["lease", "list"])).includes(leaseA), 30_000),
      ).toBe(true);
      expect(await ratings(b)).toMatchObject({ replica: idB, connections: 1, state: "REGISTERED" });
      const stored = await etcd.ctl([
        "get",
        "--print-value-only",
        "/e2e/registrations/vms/ratings/ratings-10.0.0.7",
      ]);
      expect(JSON.parse(stored).replica).toBe(idB);
      polling = false;
      await poller;
      expect(missingSince).toBeUndefined();
      // Never out of the survivor's registry for longer than the grace (6 s).
      expect(longestGapMs).toBeLessThan(6_000);
      console.log(`longest absence of the workload at the survivor: ${longestGapMs} ms`);
      // The survivor leads every duty now.
      expect(await eventually(async () => (await leaderz(b)).duties.every((d) => d.leading), 30_000)).toBe(
        true,
      );
      expect(idA).not.toBe(idB);
    },
    90_000,
  );

  test("the survivor deletes the key after the grace once the agent's stream there closes", async () => {
    await regs[regs.length - 1]!.stop();
    expect(await eventually(async () => (await ratings(b)) === undefined, 30_000)).toBe(true);
    expect(await etcd.ctl(["get", "--prefix", "/e2e/registrations/"])).toBe("");
  }, 60_000);
});
