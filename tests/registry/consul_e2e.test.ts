/**
 * meshd with `--registry consul://...` serving a real grpc-js-xds client: calls reach the gRPC
 * backends registered in the test Consul, an instance failing its check leaves EDS, and a Consul
 * that answers 500 leaves the mesh routing on its last good view (shown in /debug/registryz).
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import * as grpc from "@grpc/grpc-js";
import { mkdirSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { type CallsSummary, nodeId, startClient, type XdsClientProcess } from "../e2e/_grpc.ts";
import { loadEcho } from "../e2e/_grpc_backend.ts";
import { eventually, type MeshdProcess, startMeshd } from "../e2e/_meshd.ts";
import { type ConsulTestServer, startConsulServer } from "./_consul_server.ts";

/** An echo backend answering with its name, on `host` and a port (0: the OS picks). */
async function echoBackend(
  name: string,
  host: string,
  port: number,
): Promise<{ port: number; close(): void }> {
  const echo = loadEcho() as unknown as { meshd: { test: { Echo: grpc.ServiceClientConstructor } } };
  const server = new grpc.Server();
  server.addService(echo.meshd.test.Echo.service, {
    Call(call: grpc.ServerUnaryCall<{ message: string }, unknown>, cb: grpc.sendUnaryData<unknown>) {
      cb(null, { backend: name, message: call.request.message });
    },
  });
  const bound = await new Promise<number>((res, rej) =>
    server.bindAsync(
      `${host}:${port}`,
      grpc.ServerCredentials.createInsecure(),
      (e, p) => (e ? rej(e) : res(p)),
    )
  );
  return { port: bound, close: () => server.forceShutdown() };
}

const check = (node: string) => `service:echo-${node}`;

describe("meshd --registry consul:// with a grpc-js-xds client", () => {
  let consul: ConsulTestServer;
  let meshd: MeshdProcess;
  let client: XdsClientProcess;
  let root: string;
  let port: number;
  const backends: Array<{ close(): void }> = [];

  beforeAll(async () => {
    root = mkdtempSync(join(tmpdir(), "meshd-consul-e2e-"));
    mkdirSync(join(root, "config"));
    const a = await echoBackend("echo-a", "127.0.0.2", 0);
    port = a.port;
    const b = await echoBackend("echo-b", "127.0.0.3", port);
    backends.push(a, b);
    consul = await startConsulServer();
    for (const [node, address] of [["a", "127.0.0.2"], ["b", "127.0.0.3"]] as const) {
      consul.register({
        Node: `node-${node}`,
        Address: address,
        Service: {
          ID: `echo-${node}`,
          Service: "echo",
          Port: port,
          Meta: { protocol: "grpc" },
          Tags: [`node=${node}`],
        },
        Checks: [{ CheckID: check(node), Status: "passing", ServiceID: `echo-${node}` }],
      });
    }
    meshd = await startMeshd({
      args: [
        "--modules=pilot",
        `--config-dir=${join(root, "config")}`,
        "--push-debounce=10ms",
        `--registry=${consul.url}?timeout=1s`,
      ],
    });
    client = startClient("grpc-js", meshd.grpcAddr, { dir: root, nodeId: nodeId("consul-client") });
  }, 60_000);

  afterAll(async () => {
    await client?.close();
    await meshd?.stop();
    await consul?.close();
    for (const b of backends) b.close();
    if (root) rmSync(root, { recursive: true, force: true });
  });

  const calls = (): Promise<CallsSummary> =>
    client.calls({ target: `xds:///echo.service.consul:${port}`, n: 30, concurrency: 3, deadlineMs: 5_000 });
  const reaches = async (want: string[]) => {
    let last: CallsSummary | undefined;
    const ok = await eventually(
      async () => {
        last = await calls();
        return last.ok === last.total && Object.keys(last.byBackend).sort().join() === want.join();
      },
      20_000,
      200,
    );
    if (!ok) throw new Error(`want calls to reach ${want.join()}, got ${JSON.stringify(last)}`);
  };
  const registryz = async () =>
    (await (await fetch(`http://${meshd.adminAddr}/debug/registryz`)).json()) as Array<
      Record<string, unknown>
    >;

  test(
    "calls reach every passing instance, a failing one leaves, and a failing Consul keeps the last good view",
    async () => {
      await reaches(["echo-a", "echo-b"]);
      expect((await registryz())[0]).toMatchObject({
        kind: "consul",
        synced: true,
        stale: false,
        endpoints: 2,
      });

      consul.setCheck("node-a", check("a"), "critical");
      await reaches(["echo-b"]);

      consul.fail(500, "No cluster leader");
      expect(await eventually(async () => (await registryz())[0]?.stale === true, 10_000)).toBe(true);
      expect(String((await registryz())[0]?.lastError)).toContain("500 No cluster leader");
      const during = await calls();
      expect(during.ok).toBe(during.total);
      expect(Object.keys(during.byBackend)).toEqual(["echo-b"]);

      consul.fail(undefined);
      consul.setCheck("node-a", check("a"), "passing");
      await reaches(["echo-a", "echo-b"]);
      expect(await eventually(async () => (await registryz())[0]?.stale === false, 10_000)).toBe(true);
    },
    90_000,
  );
});
