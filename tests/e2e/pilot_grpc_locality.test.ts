/**
 * Locality failover end to end with @grpc/grpc-js-xds: a real proxyless gRPC client in
 * region-a/zone-1 calls the echo service, whose backends sit in its own zone, in another zone
 * of its region and in region-b. A DestinationRule's `localityLbSetting` orders them into EDS
 * priorities; the client sends every call to the highest priority with a ready backend and
 * moves to the next when those backends go away.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { type Backend, startBackend } from "./_grpc_backend.ts";
import {
  ackedVersions,
  type CallsSummary,
  ECHO_HOST,
  ECHO_PORT,
  startClient,
  syncz,
  waitForPush,
  waitForSync,
  type XdsClientProcess,
} from "./_grpc.ts";
import { type MeshdProcess, startMeshd } from "./_meshd.ts";

/** The client's node id: its address, 127.0.0.2, is its WorkloadEntry's, which gives its locality. */
const NODE = "sidecar~127.0.0.2~client.test~test.svc.cluster.local";

interface Placed {
  readonly backend: Backend;
  readonly locality: string;
  readonly tier: string;
}

function workloadEntry(name: string, address: string, labels: Record<string, string>, extra: string): string {
  return `apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: { name: ${name}, namespace: test }
spec:
  address: ${address}
  labels: ${JSON.stringify(labels)}
${extra}`;
}

function meshConfig(placed: readonly Placed[]): string {
  const docs = [
    `apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: { name: echo, namespace: test }
spec:
  hosts: [${ECHO_HOST}]
  location: MESH_INTERNAL
  resolution: STATIC
  ports:
  - { number: ${ECHO_PORT}, name: grpc, protocol: GRPC }
  workloadSelector:
    labels: { app: echo }
`,
    `apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: { name: client, namespace: test }
spec:
  hosts: [client.test.svc.cluster.local]
  location: MESH_INTERNAL
  resolution: STATIC
  ports:
  - { number: 8080, name: grpc, protocol: GRPC }
  workloadSelector:
    labels: { app: client }
`,
    workloadEntry("client", "127.0.0.2", { app: "client", tier: "gold" }, "  locality: region-a/zone-1\n"),
    ...placed.map((p) =>
      workloadEntry(
        p.backend.name,
        "127.0.0.1",
        { app: "echo", backend: p.backend.name, tier: p.tier },
        `  locality: ${p.locality}\n  ports: { grpc: ${p.backend.port} }\n`,
      )
    ),
  ];
  return docs.join("---\n");
}

function destinationRule(localityLbSetting: string): string {
  return `apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: { name: echo, namespace: test }
spec:
  host: ${ECHO_HOST}
  trafficPolicy:
    outlierDetection: { consecutive5xxErrors: 5, interval: 1s, baseEjectionTime: 30s }
    loadBalancer:
      simple: ROUND_ROBIN
      localityLbSetting:
${localityLbSetting.trim().split("\n").map((l) => `        ${l}`).join("\n")}
`;
}

/** Makes batches of calls until one is answered by `backend` alone, or `tries` batches are spent. */
async function until(client: XdsClientProcess, backend: string, tries = 40): Promise<CallsSummary> {
  let last: CallsSummary | undefined;
  for (let i = 0; i < tries; i++) {
    last = await client.calls({ n: 10, concurrency: 5, deadlineMs: 2000 });
    if (last.ok === 10 && last.byBackend[backend] === 10) return last;
    await Bun.sleep(250);
  }
  return last!;
}

describe("locality failover with a grpc-js xDS client", () => {
  let root: string;
  let dir: string;
  let meshd: MeshdProcess;
  let client: XdsClientProcess;
  const backends: Backend[] = [];

  async function route(rule: string): Promise<void> {
    const before = ackedVersions((await syncz(meshd.adminAddr)).find((p) => p.proxy === NODE));
    writeFileSync(join(dir, "rule.yaml"), rule);
    await waitForPush(meshd.adminAddr, NODE, before);
  }

  beforeAll(async () => {
    root = mkdtempSync(join(tmpdir(), "meshd-e2e-locality-"));
    dir = join(root, "config");
    mkdirSync(dir);
    mkdirSync(join(root, "client"));
    for (const name of ["echo-near", "echo-zone", "echo-far"]) backends.push(await startBackend(name));
    const [near, zone, far] = backends as [Backend, Backend, Backend];
    writeFileSync(
      join(dir, "mesh.yaml"),
      meshConfig([
        { backend: near, locality: "region-a/zone-1", tier: "silver" },
        { backend: zone, locality: "region-a/zone-2", tier: "gold" },
        { backend: far, locality: "region-b/zone-9", tier: "gold" },
      ]),
    );
    writeFileSync(join(dir, "rule.yaml"), destinationRule("failover:\n- { from: region-a, to: region-b }"));
    meshd = await startMeshd({
      args: ["--modules=pilot", `--config-dir=${dir}`, "--config-debounce=20ms", "--push-debounce=10ms"],
    });
    client = startClient("grpc-js", meshd.grpcAddr, { dir: join(root, "client"), nodeId: NODE });
    const first = await client.calls({ n: 1, deadlineMs: 10_000 });
    if (first.ok !== 1) throw new Error(`first call failed: ${JSON.stringify(first)}\n${client.stderr()}`);
    await waitForSync(meshd.adminAddr, NODE);
  }, 30_000);

  afterAll(async () => {
    await client?.close();
    await meshd?.stop();
    for (const b of backends) await b.close();
    rmSync(root, { recursive: true, force: true });
  });

  test("failoverPriority sends every call to the backends sharing the client's region label", async () => {
    await route(destinationRule("failoverPriority: [topology.kubernetes.io/region]"));
    // Same region as the client: echo-near and echo-zone (priority 0, split between them);
    // echo-far only gets calls when both are gone. Locality order alone would favour echo-near.
    const s = await client.calls({ n: 40, concurrency: 5 });
    expect(s.errors).toEqual({});
    expect((s.byBackend["echo-near"] ?? 0) + (s.byBackend["echo-zone"] ?? 0)).toBe(40);
    expect(s.byBackend["echo-near"]).toBeGreaterThan(0);
    expect(s.byBackend["echo-zone"]).toBeGreaterThan(0);
  }, 20_000);

  test(
    "calls stay in the client's zone while it has a backend, then move to its region, then to the failover region",
    async () => {
      await route(destinationRule("failover:\n- { from: region-a, to: region-b }"));
      const [near, zone] = backends as [Backend, Backend, Backend];
      const local = await client.calls({ n: 40, concurrency: 5 });
      expect(local.errors).toEqual({});
      expect(local.byBackend).toEqual({ "echo-near": 40 });

      await near.close();
      const region = await until(client, "echo-zone");
      expect(region.byBackend).toEqual({ "echo-zone": 10 });
      const steady = await client.calls({ n: 40, concurrency: 5 });
      expect(steady.byBackend).toEqual({ "echo-zone": 40 });

      await zone.close();
      const remote = await until(client, "echo-far");
      expect(remote.byBackend).toEqual({ "echo-far": 10 });
    },
    30_000,
  );
});
