/**
 * The proxyless gRPC bootstrap the agent writes, loaded by a real @grpc/grpc-js-xds client
 * process that calls an echo backend through `meshd serve --modules pilot`.
 */
import { afterAll, beforeAll, expect, test } from "bun:test";
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { writeBootstraps } from "../../mod/agent/bootstrap.ts";
import { nodeId } from "../../mod/agent/node.ts";
import { type Backend, startBackend } from "../e2e/_grpc_backend.ts";
import { meshYaml, startClient, syncz, type XdsClientProcess } from "../e2e/_grpc.ts";
import { eventually, type MeshdProcess, startMeshd } from "../e2e/_meshd.ts";

let dir: string;
let meshd: MeshdProcess;
let backend: Backend;
let client: XdsClientProcess | undefined;

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), "meshd-agent-grpc-"));
  mkdirSync(join(dir, "config"));
  backend = await startBackend("v1");
  writeFileSync(
    join(dir, "config", "mesh.yaml"),
    meshYaml([{ name: "v1", port: backend.port, version: "v1" }]),
  );
  meshd = await startMeshd({
    args: ["--modules=pilot", `--config-dir=${join(dir, "config")}`, `--data-dir=${join(dir, "data")}`],
  });
  expect(
    await eventually(
      async () => (await fetch(`http://${meshd.adminAddr}/healthz/ready`)).status === 200,
      15_000,
    ),
  ).toBe(true);
}, 30_000);

afterAll(async () => {
  await client?.close();
  await meshd?.stop();
  await backend?.close();
  rmSync(dir, { recursive: true, force: true });
});

test("grpc-js-xds loads grpc-bootstrap.json and routes calls through pilot", async () => {
  const out = join(dir, "out");
  mkdirSync(out);
  const workload = {
    ip: "127.0.0.1",
    name: "caller",
    namespace: "test",
    serviceAccount: "caller",
    trustDomain: "cluster.local",
    labels: { app: "caller" },
  };
  const { grpc } = writeBootstraps(out, {
    workload,
    discoveryAddr: meshd.grpcAddr,
    controlPlaneAuth: "NONE",
    certDir: out,
    sdsSocket: join(out, "sds.sock"),
  });
  client = startClient("grpc-js", meshd.grpcAddr, {
    dir,
    env: { GRPC_XDS_BOOTSTRAP: grpc, GRPC_XDS_BOOTSTRAP_CONFIG: "" },
  });
  const summary = await client.calls({ n: 5 }, 20_000);
  expect(summary.ok).toBe(5);
  expect(summary.byBackend).toEqual({ v1: 5 });
  // The client pilot served is the node our bootstrap names.
  const id = nodeId(workload, "proxyless");
  expect(await eventually(async () => (await syncz(meshd.adminAddr)).some((p) => p.proxy === id), 5000)).toBe(
    true,
  );
}, 40_000);
