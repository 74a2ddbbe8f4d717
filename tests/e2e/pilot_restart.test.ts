/**
 * A meshd restart under traffic: a grpc-js xDS client keeps calling while meshd is stopped and
 * started again on the same gRPC port; no call fails (the data plane does not go through
 * meshd, and the client keeps its config while the control plane is away), the client
 * reconnects and takes new config from the new process.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { type CallsSummary, ECHO_HOST, freePort, waitForSync } from "./_grpc.ts";
import { type Mesh, startMesh } from "./_grpc_mesh.ts";
import { startMeshd } from "./_meshd.ts";

const dest = (subset: string) => `- route:\n  - destination: {host: ${ECHO_HOST}, subset: ${subset}}`;

describe("meshd restart during traffic", () => {
  let mesh: Mesh;
  let port: number;
  beforeAll(async () => {
    port = await freePort();
    mesh = await startMesh("grpc-js", {
      meshdArgs: [`--grpc-addr=127.0.0.1:${port}`],
      routing: { http: dest("v1") },
    });
  }, 30_000);
  afterAll(async () => {
    await mesh?.close();
  });

  test(
    "no call fails across a restart on the same port, and the client takes config from the new process",
    async () => {
      expect(mesh.meshd.grpcAddr).toBe(`127.0.0.1:${port}`);
      const batches: { at: number; s: CallsSummary }[] = [];
      let stop = false;
      const traffic = (async () => {
        // Bounded: at most 300 batches of 10 calls (the test stops it much earlier).
        for (let i = 0; i < 300 && !stop; i++) {
          batches.push({ at: Date.now(), s: await mesh.calls({ n: 10, concurrency: 2 }) });
          await Bun.sleep(20);
        }
      })();
      await Bun.sleep(300);
      const stoppedAt = Date.now();
      expect(await mesh.meshd.stop()).toBe(0);
      await Bun.sleep(300);
      mesh.meshd = await startMeshd({
        args: [
          "--modules=pilot",
          `--config-dir=${mesh.dir}`,
          "--config-debounce=20ms",
          "--push-debounce=10ms",
          `--grpc-addr=127.0.0.1:${port}`,
        ],
      });
      expect(mesh.meshd.grpcAddr).toBe(`127.0.0.1:${port}`);
      await waitForSync(mesh.meshd.adminAddr, mesh.node, 15_000);
      const reconnectedAt = Date.now();
      console.error(`grpc-js reconnected ${reconnectedAt - stoppedAt} ms after meshd was stopped`);
      await Bun.sleep(500);
      stop = true;
      await traffic;

      const after = batches.filter((b) => b.at >= reconnectedAt);
      expect(after.length).toBeGreaterThan(0);
      for (const b of after) expect(b.s.errors).toEqual({});
      const all = batches.reduce((n, b) => n + b.s.total, 0);
      const failed = batches.reduce((n, b) => n + (b.s.total - b.s.ok), 0);
      console.error(`restart: ${all} calls, ${failed} failed`);
      expect(failed).toBe(0);
      expect(batches.every((b) => Object.keys(b.s.byBackend).join() === "echo-v1")).toBe(true);

      // The new stream is live: a config change reaches the client.
      await mesh.route({ http: dest("v2") });
      expect((await mesh.calls({ n: 20, concurrency: 5 })).byBackend).toEqual({ "echo-v2": 20 });
    },
    40_000,
  );
});
