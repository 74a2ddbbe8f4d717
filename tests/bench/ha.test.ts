import { expect, test } from "bun:test";
import { formatHaResults, runHaBench } from "../../bench/ha.ts";

test(
  "bench/ha.ts runs its scenario (3 replicas, 30 sidecars, Node client): every sidecar ACKs the change and is re-served after a kill",
  async () => {
    const r = await runHaBench({
      proxies: 30,
      replicas: 3,
      services: 10,
      changes: 1,
      settleSec: 1,
      clientRuntime: "node",
    });
    // Spread evenly at the start.
    expect(r.replicas.map((x) => x.connected)).toEqual([10, 10, 10]);
    // runHaBench waits until every sidecar has ACKed the new RDS version, or throws.
    expect(r.changes).toHaveLength(1);
    expect(r.changes[0]!.fromCommitMs).toBeGreaterThan(0);
    // The change was written to etcd (the apply's transaction).
    expect(r.changes[0]!.etcd.rpcs.Txn).toBeGreaterThanOrEqual(1);
    // The killed replica's 10 sidecars moved and were fully served by the two others.
    expect(r.failover.moved).toBe(10);
    expect(Object.values(r.failover.byAddr).reduce((a, b) => a + b, 0)).toBe(30);
    expect(r.failover.byAddr[r.replicas[0]!.grpcAddr]).toBeUndefined();
    expect(r.replicas.slice(1).map((x) => x.connectedAfterFailover).reduce((a, b) => a + b, 0)).toBe(30);
    expect(formatHaResults(r)).toContain("| replica killed → its 10 proxies fully re-served elsewhere |");
  },
  240_000,
);

test(
  "bench/ha.ts with its default C client (2 replicas, 50 sidecars): the change converges, the kill fails over, the events carry times",
  async () => {
    const r = await runHaBench({ proxies: 50, replicas: 2, services: 10, changes: 1, settleSec: 1 });
    expect(r.replicas.map((x) => x.connected)).toEqual([25, 25]);
    // Full config and the change's first receipt and last ACK come from the client's events.
    expect(r.fullConfigMs).toBeGreaterThan(0);
    expect(r.changes[0]!.fromCommitMs).toBeGreaterThanOrEqual(r.changes[0]!.firstMs);
    // Every sidecar of the killed replica moved to the other one and was fully served there.
    expect(r.failover.moved).toBe(25);
    expect(r.failover.byAddr).toEqual({ [r.replicas[1]!.grpcAddr]: 50 });
    expect(r.failover.firstBreakMs).toBeGreaterThanOrEqual(0);
    expect(r.failover.fullMs).toBeGreaterThanOrEqual(r.failover.firstBreakMs);
    expect(r.replicas[1]!.connectedAfterFailover).toBe(50);
    // The load generator's CPU is measured like any other process's.
    expect(r.failover.cpu.clientSec).toBeGreaterThanOrEqual(0);
  },
  240_000,
);
