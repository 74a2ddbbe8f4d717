/**
 * bench/node_proxy.ts, small: every scenario runs once across the network-namespace machines so
 * the benchmark cannot rot. Only that each measure was taken is checked, never how fast.
 */
import { expect, test } from "bun:test";
import { formatNodeProxyResults, runNodeProxyBench } from "../../bench/node_proxy.ts";
import { netnsUnavailable } from "../netns/_harness.ts";

const unavailable = netnsUnavailable();
if (unavailable !== undefined) console.warn(`skipping the node proxy benchmark test: ${unavailable}`);

test.skipIf(unavailable !== undefined)(
  "bench/node_proxy.ts runs its scenarios (small): bulk both ways, latency, CPU, idle memory, concurrent connections, reference relays",
  async () => {
    const r = await runNodeProxyBench({
      mb: 4,
      rounds: 1,
      latencyConnections: 20,
      connections: 50,
      idleMs: 500,
    });
    expect(r.bulk.directMBps).toBeGreaterThan(0);
    expect(r.bulk.meshMBps).toBeGreaterThan(0);
    expect(r.bulk.ratio).toBeGreaterThan(0);
    expect(r.latency.direct).toMatchObject({ n: 20, failed: 0 });
    expect(r.latency.mesh).toMatchObject({ n: 20, failed: 0 });
    expect(r.latency.mesh.p99).toBeGreaterThanOrEqual(r.latency.mesh.p50);
    // Measured from /proc (a few MiB may cost less than one clock tick).
    expect(r.cpuSecPerGB.total).toBeGreaterThanOrEqual(0);
    expect(r.idle.connections).toBe(50);
    expect(Number.isFinite(r.idle.bytesPerConn)).toBe(true);
    expect(r.concurrent).toEqual({ connections: 50, ok: 50, failed: 0 });
    expect(r.reference.plainMBps).toBeGreaterThan(0);
    expect(r.reference.tlsMBps).toBeGreaterThan(0);
    expect(r.reference.plainLatency).toMatchObject({ n: 20, failed: 0 });
    const table = formatNodeProxyResults(r);
    expect(table).toContain("two bare relays with TLS between them");
    expect(table).toContain("| bulk stream (4 MiB), through two node proxies |");
    expect(table).toContain("50 concurrent connections");
  },
  240_000,
);
