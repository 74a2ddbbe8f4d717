/**
 * A whole mesh for end-to-end tests of pilot with one real proxyless gRPC client: two echo
 * backends (version v1 and v2) behind `echo.test.svc.cluster.local:9000`, meshd serving pilot
 * over a temporary --config-dir, and a client process of either kind.
 */
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { type Backend, startBackend } from "./_grpc_backend.ts";
import {
  ackedVersions,
  type CallsSummary,
  type ClientKind,
  destinationRuleYaml,
  meshYaml,
  nodeId,
  startClient,
  syncz,
  virtualServiceYaml,
  waitForPush,
  waitForSync,
  type XdsClientProcess,
} from "./_grpc.ts";
import { type MeshdProcess, startMeshd } from "./_meshd.ts";

/** Routing config: a DestinationRule traffic policy (subsets v1 and v2 are always there) and VirtualService http routes. */
export interface Routing {
  /** YAML of the DestinationRule's trafficPolicy, or "" for none. */
  readonly trafficPolicy?: string;
  /** YAML list of the VirtualService's http routes; undefined: no VirtualService. */
  readonly http?: string;
}

/** A running mesh. */
export interface Mesh {
  /** meshd's --config-dir. */
  readonly dir: string;
  meshd: MeshdProcess;
  readonly v1: Backend;
  readonly v2: Backend;
  readonly client: XdsClientProcess;
  /** The client's node id. */
  readonly node: string;
  /** Replaces the routing config and waits until the client ACKed the push it caused. */
  route(r: Routing): Promise<void>;
  /** Makes calls to the echo service. */
  calls(cmd: Parameters<XdsClientProcess["calls"]>[0]): Promise<CallsSummary>;
  /** Clears the backends' failures, delays and counters. */
  resetBackends(): void;
  close(): Promise<void>;
}

function routingYaml(r: Routing): string {
  const docs = [destinationRuleYaml(r.trafficPolicy ?? "")];
  if (r.http !== undefined) docs.push(virtualServiceYaml(r.http));
  return docs.join("---\n");
}

/** Options of startMesh. */
export interface MeshOptions {
  /** More meshd flags. */
  readonly meshdArgs?: string[];
  /** Routing to start with. */
  readonly routing?: Routing;
  /** Command to run meshd with (see startMeshd); default `bun main.ts`. */
  readonly meshdCommand?: string[];
}

/** Starts backends, meshd and a client of `kind`, and waits until the client is in sync. */
export async function startMesh(kind: ClientKind, opts: MeshOptions = {}): Promise<Mesh> {
  const root = mkdtempSync(join(tmpdir(), `meshd-e2e-${kind}-`));
  const dir = join(root, "config");
  const clientDir = join(root, "client");
  mkdirSync(dir);
  mkdirSync(clientDir);
  const v1 = await startBackend("echo-v1");
  const v2 = await startBackend("echo-v2");
  writeFileSync(
    join(dir, "mesh.yaml"),
    meshYaml([{ name: "echo-v1", port: v1.port, version: "v1" }, {
      name: "echo-v2",
      port: v2.port,
      version: "v2",
    }]),
  );
  writeFileSync(join(dir, "routing.yaml"), routingYaml(opts.routing ?? {}));
  const meshd = await startMeshd({
    command: opts.meshdCommand,
    args: [
      "--modules=pilot",
      `--config-dir=${dir}`,
      "--config-debounce=20ms",
      "--push-debounce=10ms",
      ...(opts.meshdArgs ?? []),
    ],
  });
  const node = nodeId(`client-${kind}`);
  const client = startClient(kind, meshd.grpcAddr, { dir: clientDir, nodeId: node });
  const mesh: Mesh = {
    dir,
    meshd,
    v1,
    v2,
    client,
    node,
    async route(r) {
      const before = ackedVersions((await syncz(mesh.meshd.adminAddr)).find((p) => p.proxy === node));
      writeFileSync(join(dir, "routing.yaml"), routingYaml(r));
      await waitForPush(mesh.meshd.adminAddr, node, before);
    },
    calls: (cmd) => client.calls(cmd),
    resetBackends() {
      for (const b of [v1, v2]) {
        b.fail(undefined);
        b.delay(0);
        b.reset();
      }
    },
    async close() {
      await client.close();
      await mesh.meshd.stop();
      await v1.close();
      await v2.close();
      rmSync(root, { recursive: true, force: true });
    },
  };
  try {
    // The client connects to meshd when its channel is first used.
    const first = await client.calls({ n: 1, deadlineMs: 10_000 });
    if (first.ok !== 1) {
      throw new Error(`first call failed: ${JSON.stringify(first)}; client stderr:\n${client.stderr()}`);
    }
    await waitForSync(meshd.adminAddr, node);
  } catch (err) {
    await mesh.close();
    throw err;
  }
  mesh.resetBackends();
  return mesh;
}
