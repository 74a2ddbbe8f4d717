/**
 * End to end: `meshd serve --registry kubernetes://?kubeconfig=F` against the test Kubernetes API
 * server, with a real proxyless grpc-js-xds client calling a Service whose endpoints exist only
 * as EndpointSlices there. The client is routed to every ready endpoint; one turning not ready
 * leaves; the API server answering 500, or going away and coming back with its history compacted
 * (410 Gone), keeps the last good view (reported stale in /debug/registryz) and calls keep working.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import * as grpc from "@grpc/grpc-js";
import { mkdirSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { type CallsSummary, freePort, nodeId, startClient, type XdsClientProcess } from "../e2e/_grpc.ts";
import { loadEcho } from "../e2e/_grpc_backend.ts";
import { type MeshdProcess, startMeshd } from "../e2e/_meshd.ts";
import { type KubeObject, type KubeServer, startKubeServer, writeKubeconfig } from "./_kube_server.ts";

const HOST = "echo.kube.svc.cluster.local";
const SLICES = "/apis/discovery.k8s.io/v1/namespaces/kube/endpointslices";

/** An echo backend answering with its name, on `ip:port` (each pod has its own loopback address). */
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
let kube: KubeServer;
let backends: grpc.Server[] = [];
let meshd: MeshdProcess;
let client: XdsClientProcess;
let port: number;

const pod = (name: string, ip: string): KubeObject => ({
  metadata: { name, labels: { app: "echo", version: name } },
  spec: { serviceAccountName: "echo" },
  status: { phase: "Running", podIP: ip, conditions: [{ type: "Ready", status: "True" }] },
});

/** The Service's EndpointSlice, with pod b ready or not. */
const slice = (bReady: boolean): KubeObject => ({
  metadata: { name: "echo-1", labels: { "kubernetes.io/service-name": "echo" } },
  addressType: "IPv4",
  ports: [{ name: "grpc", protocol: "TCP", port }],
  endpoints: [
    { addresses: ["127.0.0.2"], conditions: { ready: true }, targetRef: { kind: "Pod", name: "a" } },
    { addresses: ["127.0.0.3"], conditions: { ready: bReady }, targetRef: { kind: "Pod", name: "b" } },
  ],
});

beforeAll(async () => {
  root = mkdtempSync(join(tmpdir(), "meshd-kube-e2e-"));
  mkdirSync(join(root, "config"));
  mkdirSync(join(root, "client"));
  port = await freePort();
  backends = [await echoOn("pod-a", "127.0.0.2", port), await echoOn("pod-b", "127.0.0.3", port)];
  kube = await startKubeServer({ bookmarkIntervalMs: 500 });
  kube.put("/api/v1/namespaces/kube/pods", pod("a", "127.0.0.2"));
  kube.put("/api/v1/namespaces/kube/pods", pod("b", "127.0.0.3"));
  kube.put("/api/v1/namespaces/kube/services", {
    metadata: { name: "echo" },
    spec: { type: "ClusterIP", clusterIP: "10.96.0.20", ports: [{ name: "grpc", port, targetPort: port }] },
  });
  kube.put(SLICES, slice(true));
  meshd = await startMeshd({
    args: [
      "--modules=pilot",
      `--config-dir=${join(root, "config")}`,
      "--push-debounce=10ms",
      `--registry=kubernetes://?kubeconfig=${writeKubeconfig(kube, { dir: root })}`,
    ],
  });
  client = startClient("grpc-js", meshd.grpcAddr, {
    dir: join(root, "client"),
    nodeId: nodeId("kube-client"),
  });
}, 60_000);

afterAll(async () => {
  await client?.close();
  await meshd?.stop();
  for (const b of backends) b.forceShutdown();
  await kube?.close();
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

async function registryz(): Promise<Record<string, unknown>> {
  const res = await fetch(`http://${meshd.adminAddr}/debug/registryz`);
  expect(res.status).toBe(200);
  return (await res.json() as Array<Record<string, unknown>>)[0]!;
}

async function statusUntil(pred: (s: Record<string, unknown>) => boolean): Promise<Record<string, unknown>> {
  const deadline = Date.now() + 10_000;
  let status = await registryz();
  while (!pred(status) && Date.now() < deadline) {
    await Bun.sleep(50);
    status = await registryz();
  }
  return status;
}

const both = (s: CallsSummary) => (s.byBackend["pod-a"] ?? 0) > 0 && (s.byBackend["pod-b"] ?? 0) > 0;

describe("meshd with --registry kubernetes:// and a grpc-js-xds client", () => {
  test("calls reach both ready endpoints of the Kubernetes Service", async () => {
    const s = await callsUntil(both, "both");
    expect(s.ok).toBe(20);
    expect(await registryz()).toMatchObject({
      kind: "kubernetes",
      address: kube.url,
      synced: true,
      stale: false,
      services: 1,
      endpoints: 2,
    });
  }, 30_000);

  test("an endpoint turning not ready leaves EDS: every call goes to the other", async () => {
    kube.put(SLICES, slice(false));
    const s = await callsUntil((s) => s.ok === 20 && s.byBackend["pod-a"] === 20, "only a");
    expect(s.byBackend["pod-b"]).toBeUndefined();
  }, 30_000);

  test(
    "the API server answering 500: the last good view stays, reported stale, calls keep working",
    async () => {
      kube.fail(Infinity, 500);
      kube.closeWatches();
      const status = await statusUntil((s) => s.stale === true);
      expect(status).toMatchObject({ synced: true, stale: true, endpoints: 1 });
      expect(String(status.lastError)).toContain("500");
      const s = await client.calls({ target: target(), n: 20, concurrency: 4 });
      expect(s.byBackend).toEqual({ "pod-a": 20 });
      kube.fail(0);
      expect(await statusUntil((s) => s.stale === false)).toMatchObject({ stale: false, endpoints: 1 });
    },
    30_000,
  );

  test(
    "the API server restarting with its history compacted: calls keep working, then the relist brings b back",
    async () => {
      await kube.down();
      expect(await statusUntil((s) => s.stale === true)).toMatchObject({ stale: true, endpoints: 1 });
      const s = await client.calls({ target: target(), n: 20, concurrency: 4 });
      expect(s.byBackend).toEqual({ "pod-a": 20 });
      kube.put(SLICES, slice(true));
      kube.compact();
      await kube.up();
      await callsUntil(both, "both again");
      expect(await statusUntil((s) => s.stale === false)).toMatchObject({ stale: false, endpoints: 2 });
    },
    30_000,
  );
});
