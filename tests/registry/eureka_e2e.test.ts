/**
 * End to end: `meshd serve --registry eureka://...` against the test Eureka server, with a real
 * proxyless grpc-js-xds client calling a service whose instances are registered in Eureka only.
 * The client is routed to every UP instance; one going DOWN leaves; Eureka answering 500 keeps the
 * last good view (reported stale in /debug/registryz) and calls keep working.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import * as grpc from "@grpc/grpc-js";
import { mkdirSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { type CallsSummary, freePort, nodeId, startClient, type XdsClientProcess } from "../e2e/_grpc.ts";
import { loadEcho } from "../e2e/_grpc_backend.ts";
import { type MeshdProcess, startMeshd } from "../e2e/_meshd.ts";
import { type EurekaTestServer, startEurekaServer } from "./_eureka_server.ts";

const HOST = "echo.eureka.local";

/** An echo backend answering with its name, on `ip:port` (each instance has its own loopback address). */
async function echoOn(name: string, ip: string, port: number): Promise<grpc.Server> {
  const echo = loadEcho() as unknown as { meshd: { test: { Echo: grpc.ServiceClientConstructor } } };
  const server = new grpc.Server();
  server.addService(echo.meshd.test.Echo.service, {
    Call(call: grpc.ServerUnaryCall<{ message: string }, unknown>, cb: grpc.sendUnaryData<unknown>) {
      cb(null, { backend: name, message: call.request.message });
    },
  });
  await new Promise<number>((res, rej) =>
    server.bindAsync(`${ip}:${port}`, grpc.ServerCredentials.createInsecure(), (e, p) => e ? rej(e) : res(p))
  );
  return server;
}

let root: string;
let eureka: EurekaTestServer;
let backends: grpc.Server[] = [];
let meshd: MeshdProcess;
let client: XdsClientProcess;
let port: number;

beforeAll(async () => {
  root = mkdtempSync(join(tmpdir(), "meshd-eureka-e2e-"));
  mkdirSync(join(root, "config"));
  mkdirSync(join(root, "client"));
  port = await freePort();
  backends = [await echoOn("eureka-a", "127.0.0.2", port), await echoOn("eureka-b", "127.0.0.3", port)];
  eureka = await startEurekaServer();
  for (const [n, ip] of [["a", "127.0.0.2"], ["b", "127.0.0.3"]] as const) {
    await eureka.register({
      app: "echo",
      instanceId: `echo-${n}`,
      hostName: HOST,
      ipAddr: ip,
      port,
      metadata: { "istio.protocol": "grpc", version: n },
    });
  }
  meshd = await startMeshd({
    args: [
      "--modules=pilot",
      `--config-dir=${join(root, "config")}`,
      "--push-debounce=10ms",
      `--registry=${eureka.registryUrl("interval=100ms")}`,
    ],
  });
  client = startClient("grpc-js", meshd.grpcAddr, {
    dir: join(root, "client"),
    nodeId: nodeId("eureka-client"),
  });
}, 60_000);

afterAll(async () => {
  await client?.close();
  await meshd?.stop();
  for (const b of backends) b.forceShutdown();
  await eureka?.stop();
  rmSync(root, { recursive: true, force: true });
});

const target = () => `xds:///${HOST}:${port}`;

/** Makes batches of calls until `pred` holds for one; fails after 20 s with the last batch. */
async function callsUntil(pred: (s: CallsSummary) => boolean, what: string): Promise<CallsSummary> {
  const deadline = Date.now() + 20_000;
  let last: CallsSummary | undefined;
  while (Date.now() < deadline) {
    last = await client.calls({ target: target(), n: 20, concurrency: 4, deadlineMs: 5000 });
    if (pred(last)) return last;
    await Bun.sleep(100);
  }
  throw new Error(`${what}: last batch ${JSON.stringify(last)}; client stderr:\n${client.stderr()}`);
}

async function registryz(): Promise<Array<Record<string, unknown>>> {
  const res = await fetch(`http://${meshd.adminAddr}/debug/registryz`);
  expect(res.status).toBe(200);
  return await res.json() as Array<Record<string, unknown>>;
}

describe("meshd with --registry eureka:// and a grpc-js-xds client", () => {
  test("calls reach both UP instances registered in Eureka", async () => {
    const s = await callsUntil(
      (s) => (s.byBackend["eureka-a"] ?? 0) > 0 && (s.byBackend["eureka-b"] ?? 0) > 0,
      "both",
    );
    expect(s.ok).toBe(20);
    const [status] = await registryz();
    expect(status).toMatchObject({ kind: "eureka", synced: true, stale: false, services: 1, endpoints: 2 });
  }, 30_000);

  test("an instance marked DOWN in Eureka leaves EDS: every call goes to the other", async () => {
    await eureka.setStatus("echo", "echo-a", "DOWN");
    const s = await callsUntil((s) => s.ok === 20 && s.byBackend["eureka-b"] === 20, "only b");
    expect(s.byBackend["eureka-a"]).toBeUndefined();
  }, 30_000);

  test("Eureka answering 500: the last good view stays, reported stale, and calls keep working", async () => {
    eureka.fail(500);
    const deadline = Date.now() + 10_000;
    let status = (await registryz())[0]!;
    while (status.stale !== true && Date.now() < deadline) {
      await Bun.sleep(50);
      status = (await registryz())[0]!;
    }
    expect(status).toMatchObject({ synced: true, stale: true, endpoints: 1 });
    expect(String(status.lastError)).toContain("HTTP 500");
    const s = await client.calls({ target: target(), n: 20, concurrency: 4 });
    expect(s.byBackend).toEqual({ "eureka-b": 20 });
    eureka.fail(null);
    await eureka.setStatus("echo", "echo-a", "UP");
    await callsUntil(
      (s) => (s.byBackend["eureka-a"] ?? 0) > 0 && (s.byBackend["eureka-b"] ?? 0) > 0,
      "both again",
    );
  }, 30_000);
});
