import { expect, test } from "bun:test";
import { formatResults, runXdsBench } from "../../bench/xds.ts";

test(
  "bench/xds.ts runs its scenario (20 sidecars): all get full config and ACK the changes",
  async () => {
    const [r] = await runXdsBench({
      clients: [20],
      services: 10,
      rawRuntimes: ["bun"],
      reps: 1,
      changeReps: 1,
      settleSec: 1,
    });
    expect(r!.meshdConnected).toBe(20);
    expect(r!.fullConfigMs).toBeGreaterThan(0);
    // Every sidecar ACKed the new RDS version after the route weight change, and the new CDS
    // version after the DestinationRule change (runXdsBench waits for all, or throws).
    expect(r!.route.responses.RDS).toBeGreaterThanOrEqual(20);
    expect(r!.route.fromWriteMs).toBeGreaterThan(0);
    expect(r!.route.frames.length).toBeGreaterThan(0);
    expect(r!.cluster.responses.CDS).toBeGreaterThanOrEqual(20);
    expect(r!.raw[0]!.pushes.RDS!.ms).toBeGreaterThan(0);
    expect(formatResults([r!])).toContain("| 20 |");
  },
  120_000,
);
