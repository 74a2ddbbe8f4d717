/**
 * Pilot serves proxies only once every `--registry` has been read (or `--registry-sync-timeout`
 * passed): a pilot started while Consul fails is not ready and sends a grpc-js-xds client
 * nothing, rather than a mesh without Consul's services; once Consul answers, the client is
 * served and its calls reach the instances. With a short timeout, pilot serves without the
 * registry, says so in its log, and /debug/registryz shows the registry not synced.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import * as grpc from "@grpc/grpc-js";
import { mkdirSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { nodeId, startClient, type XdsClientProcess } from "../e2e/_grpc.ts";
import { loadEcho } from "../e2e/_grpc_backend.ts";
import { eventually, type MeshdProcess, startMeshd } from "../e2e/_meshd.ts";
import { type ConsulTestServer, startConsulServer } from "./_consul_server.ts";

async function echoBackend(name: string, host: string): Promise<{ port: number; close(): void }> {
  const echo = loadEcho() as unknown as { meshd: { test: { Echo: grpc.ServiceClientConstructor } } };
  const server = new grpc.Server();
  server.addService(echo.meshd.test.Echo.service, {
    Call(call: grpc.ServerUnaryCall<{ message: string }, unknown>, cb: grpc.sendUnaryData<unknown>) {
      cb(null, { backend: name, message: call.request.message });
    },
  });
  const port = await new Promise<number>((res, rej) =>
    server.bindAsync(`${host}:0`, grpc.ServerCredentials.createInsecure(), (e, p) => (e ? rej(e) : res(p)))
  );
  return { port, close: () => server.forceShutdown() };
}

const readyStatus = async (m: MeshdProcess) => (await fetch(`http://${m.adminAddr}/healthz/ready`)).status;

describe("pilot waits for --registry before serving proxies", () => {
  let consul: ConsulTestServer;
  let root: string;
  let backend: { port: number; close(): void };
  const stops: Array<() => Promise<unknown> | void> = [];

  beforeAll(async () => {
    root = mkdtempSync(join(tmpdir(), "meshd-registry-gate-"));
    mkdirSync(join(root, "config"));
    backend = await echoBackend("echo-a", "127.0.0.2");
    consul = await startConsulServer();
    consul.register({
      Node: "a",
      Address: "127.0.0.2",
      Service: { ID: "echo-a", Service: "echo", Port: backend.port, Meta: { protocol: "grpc" } },
      Checks: [{ CheckID: "service:echo-a", Status: "passing", ServiceID: "echo-a" }],
    });
  }, 30_000);

  afterAll(async () => {
    for (const stop of stops.reverse()) await stop();
    await consul?.close();
    backend?.close();
    if (root) rmSync(root, { recursive: true, force: true });
  });

  /** meshd's pilot reading the test Consul, waiting at most `syncTimeout` for it at start. */
  const startPilot = async (syncTimeout: string): Promise<MeshdProcess> => {
    const meshd = await startMeshd({
      args: [
        "--modules=pilot",
        `--config-dir=${join(root, "config")}`,
        "--push-debounce=10ms",
        `--registry-sync-timeout=${syncTimeout}`,
        `--registry=${consul.url}?timeout=1s`,
      ],
    });
    stops.push(() => meshd.stop());
    return meshd;
  };

  test("not ready and nothing served while Consul fails; served once it answers", async () => {
    consul.fail(500, "No cluster leader");
    const meshd = await startPilot("120s");
    const client: XdsClientProcess = startClient("grpc-js", meshd.grpcAddr, {
      dir: root,
      nodeId: nodeId("gate-client"),
    });
    stops.push(() => client.close());
    const target = `xds:///echo.service.consul:${backend.port}`;

    // The registry has been tried and failed: still not ready, and the client got nothing.
    expect(
      await eventually(async () => {
        const r = (await (await fetch(`http://${meshd.adminAddr}/debug/registryz`)).json()) as Array<
          { lastError?: string }
        >;
        return String(r[0]?.lastError ?? "").includes("No cluster leader");
      }, 15_000),
    ).toBe(true);
    expect(await readyStatus(meshd)).toBe(503);
    const during = await client.calls({ target, n: 2, concurrency: 1, deadlineMs: 1_000 });
    expect(during.ok).toBe(0);
    const syncz = (await (await fetch(`http://${meshd.adminAddr}/debug/syncz`)).json()) as unknown;
    expect(JSON.stringify(syncz)).not.toContain("SYNCED");

    consul.fail(undefined);
    expect(await eventually(async () => (await readyStatus(meshd)) === 200, 20_000)).toBe(true);
    expect(
      await eventually(
        async () => {
          const r = await client.calls({ target, n: 5, concurrency: 1, deadlineMs: 3_000 });
          return r.ok === r.total && Object.keys(r.byBackend).join() === "echo-a";
        },
        20_000,
        200,
      ),
    ).toBe(true);
  }, 90_000);

  test("after --registry-sync-timeout pilot serves without the registry and says so", async () => {
    consul.fail(500, "No cluster leader");
    const meshd = await startPilot("2s");
    expect(await eventually(async () => (await readyStatus(meshd)) === 200, 20_000)).toBe(true);
    expect(meshd.logs.some((l) => String(l.msg).includes("--registry-sync-timeout"))).toBe(true);
    const r = (await (await fetch(`http://${meshd.adminAddr}/debug/registryz`)).json()) as Array<
      { synced: boolean }
    >;
    expect(r[0]?.synced).toBe(false);
    consul.fail(undefined);
  }, 60_000);
});
