/**
 * startNodeProxyXds() against a real meshd pilot on loopback, and the session's ACK/NACK rules
 * on responses built by pilot's node-proxy generator.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { clone, create } from "@bufbuild/protobuf";
import { type Any, anyPack } from "@bufbuild/protobuf/wkt";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { NodeSchema } from "#gen/envoy/config/core/v3/base_pb.ts";
import { ClusterSchema } from "#gen/envoy/config/cluster/v3/cluster_pb.ts";
import { ClusterLoadAssignmentSchema } from "#gen/envoy/config/endpoint/v3/endpoint_pb.ts";
import { ListenerSchema } from "#gen/envoy/config/listener/v3/listener_pb.ts";
import {
  type DiscoveryRequest,
  DiscoveryResponseSchema,
} from "#gen/envoy/service/discovery/v3/discovery_pb.ts";
import {
  createNodeProxySession,
  NODE_PROXY_TYPES,
  startNodeProxyXds,
} from "../../../mod/agent/node_proxy/xds_client.ts";
import { EMPTY_VIEW, type NodeProxyView } from "../../../mod/agent/node_proxy/view.ts";
import { buildNodeProxy } from "../../../mod/pilot/translate/mod.ts";
import { createManualClock } from "../../../mod/shared/clock.ts";
import { createLogger } from "../../../mod/shared/logger.ts";
import { eventually, type MeshdProcess, startMeshd } from "../../e2e/_meshd.ts";
import { syncz } from "../../e2e/_grpc.ts";
import { readCase } from "../../pilot/translate/_golden.ts";

const quiet = createLogger({ write: () => {} });
const NODE_ID = "sidecar~198.18.0.1~web.shop~shop.svc.cluster.local";
const node = () =>
  create(NodeSchema, {
    id: NODE_ID,
    metadata: {
      NAMESPACE: "shop",
      SERVICE_ACCOUNT: "web",
      LABELS: { app: "web", "networking.istio.io/tunnel": "http" },
    },
  });

const MESH = `
apiVersion: config.meshd.io/v1alpha1
kind: MeshConfig
metadata: { name: mesh, namespace: istio-system }
spec: { autoAllocateVipRange: 198.19.0.0/16 }
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: { name: web, namespace: shop }
spec:
  hosts: [web.shop.svc.cluster.local]
  location: MESH_INTERNAL
  resolution: STATIC
  ports: [{ number: 9000, name: tcp, protocol: TCP }]
  endpoints:
    - { address: 198.18.0.1, labels: { app: web, networking.istio.io/tunnel: http }, serviceAccount: web }
`;
const peerAuth = (mode: string) => `
apiVersion: security.istio.io/v1
kind: PeerAuthentication
metadata: { name: web, namespace: shop }
spec:
  selector: { matchLabels: { app: web } }
  mtls: { mode: ${mode} }
`;
const REVIEWS = `
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: { name: reviews, namespace: shop }
spec:
  hosts: [reviews.shop.svc.cluster.local]
  location: MESH_INTERNAL
  resolution: STATIC
  ports: [{ number: 9080, name: http, protocol: HTTP }]
  endpoints: [{ address: 198.18.0.3, serviceAccount: reviews }]
`;

describe("startNodeProxyXds() against meshd pilot", () => {
  const dir = mkdtempSync(join(tmpdir(), "meshd-node-proxy-"));
  let meshd: MeshdProcess;
  const views: NodeProxyView[] = [];
  let xds: ReturnType<typeof startNodeProxyXds>;
  const last = () => views.at(-1);

  beforeAll(async () => {
    writeFileSync(join(dir, "mesh.yaml"), MESH);
    writeFileSync(join(dir, "peer.yaml"), peerAuth("STRICT"));
    meshd = await startMeshd({
      args: [
        "--modules=pilot",
        `--config-dir=${dir}`,
        "--push-debounce=10ms",
        "--config-debounce=10ms",
        "--xds-self-check=true",
      ],
    });
    xds = startNodeProxyXds({
      discoveryAddr: meshd.grpcAddr,
      node: node(),
      logger: quiet,
      backoff: { initialMs: 50, maxMs: 200 },
      onView: (v) => views.push(v),
    });
  });
  afterAll(async () => {
    await xds?.stop();
    await meshd?.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  test("a view arrives, and pilot shows the node proxy SYNCED", async () => {
    expect(await eventually(() => (last()?.services.length ?? 0) > 0)).toBe(true);
    const v = last()!;
    expect(xds.view).toBe(v);
    expect(v.services.map((s) => s.host)).toEqual(["web.shop.svc.cluster.local"]);
    expect(v.services[0]!.addresses[0]).toMatch(/^198\.19\./);
    expect(v.clusters.get("outbound|9000||web.shop.svc.cluster.local")!.endpoints[0]!.transport).toBe(
      "hbone",
    );
    expect(v.inbound.get(9000)?.mtls).toBe("STRICT");
    expect(v.dns.get("web.shop.svc.cluster.local")).toEqual(v.services[0]!.addresses);
    expect(
      await eventually(async () => {
        const p = (await syncz(meshd.adminAddr)).find((x) => x.proxy === NODE_ID);
        return ["CDS", "EDS", "LDS"].every((t) => p?.types[t as "CDS"]?.state === "SYNCED");
      }),
    ).toBe(true);
  });

  test("/debug/config_dump shows the node proxy's resources, DNS table included", async () => {
    const res = await fetch(
      `http://${meshd.adminAddr}/debug/config_dump?proxyID=${encodeURIComponent(NODE_ID)}`,
    );
    expect(res.status).toBe(200);
    const text = await res.text();
    expect(text).toContain("127.0.0.1_15053");
    expect(text).toContain("envoy.extensions.filters.udp.dns_filter.v3.DnsFilterConfig");
    expect(text).toContain("outbound|9000||web.shop.svc.cluster.local");
  });

  test("with replicas listed, a replica that cannot be reached is passed over for the next at once", async () => {
    const got: NodeProxyView[] = [];
    const second = startNodeProxyXds({
      // Nothing listens on port 1; the backoff is long, so only moving on at once gets the view.
      discoveryAddr: `127.0.0.1:1, ${meshd.grpcAddr}`,
      node: node(),
      logger: quiet,
      backoff: { initialMs: 60_000, maxMs: 60_000 },
      onView: (v) => got.push(v),
    });
    try {
      expect(await eventually(() => (got.at(-1)?.services.length ?? 0) > 0)).toBe(true);
    } finally {
      await second.stop();
    }
  });

  test("a config change produces a new view", async () => {
    const before = views.length;
    writeFileSync(join(dir, "reviews.yaml"), REVIEWS);
    expect(await eventually(() => last()!.services.some((s) => s.host === "reviews.shop.svc.cluster.local")))
      .toBe(true);
    expect(views.length).toBeGreaterThan(before);
    expect(
      last()!.clusters.get("outbound|9080||reviews.shop.svc.cluster.local")!.endpoints.map((e) => e.address),
    )
      .toEqual(["198.18.0.3"]);
  });

  test("the view reflects a PeerAuthentication change", async () => {
    writeFileSync(join(dir, "peer.yaml"), peerAuth("DISABLE"));
    expect(await eventually(() => last()!.inbound.get(9000)?.mtls === "DISABLE")).toBe(true);
    // The destination disables mTLS on its port: the node proxy sends plaintext, not HBONE.
    expect(last()!.clusters.get("outbound|9000||web.shop.svc.cluster.local")!.endpoints[0]!.transport)
      .toBe("plaintext");
  });
});

describe("startNodeProxyXds() reconnects", () => {
  test("after a backoff on the injected clock, keeping the last good view while pilot is away", async () => {
    const dir = mkdtempSync(join(tmpdir(), "meshd-node-proxy-"));
    writeFileSync(join(dir, "mesh.yaml"), MESH);
    const port = await new Promise<number>((resolve) => {
      const s = createServer().listen(0, "127.0.0.1", () => {
        const p = (s.address() as { port: number }).port;
        s.close(() => resolve(p));
      });
    });
    const clock = createManualClock();
    const views: NodeProxyView[] = [];
    const xds = startNodeProxyXds({
      discoveryAddr: `127.0.0.1:${port}`,
      node: node(),
      logger: quiet,
      clock,
      backoff: { initialMs: 1000, maxMs: 1000 },
      random: () => 0,
      onView: (v) => views.push(v),
    });
    const args = [
      `--config-dir=${dir}`,
      "--modules=pilot",
      "--push-debounce=10ms",
      `--grpc-addr=127.0.0.1:${port}`,
    ];
    let meshd: MeshdProcess | undefined;
    try {
      // Nothing listens yet: the first attempt fails and waits on the clock.
      expect(await eventually(() => clock.pending() === 1)).toBe(true);
      meshd = await startMeshd({ args });
      expect(views).toEqual([]);
      clock.advance(1000);
      expect(await eventually(() => views.length === 1)).toBe(true);
      const first = xds.view;
      await meshd.stop();
      meshd = undefined;
      expect(await eventually(() => clock.pending() === 1)).toBe(true);
      expect(xds.view).toBe(first);
      meshd = await startMeshd({ args });
      clock.advance(1000);
      // The same config again: the view is kept, not announced twice.
      expect(
        await eventually(async () =>
          (await syncz(meshd!.adminAddr)).some((p) => p.proxy === NODE_ID && p.types.LDS?.state === "SYNCED")
        ),
      ).toBe(true);
      expect(views.length).toBe(1);
    } finally {
      await xds.stop();
      await meshd?.stop();
      rmSync(dir, { recursive: true, force: true });
    }
  }, 30_000);
});

describe("createNodeProxySession()", () => {
  const mesh = readCase("node_proxy/mesh");
  const response = (typeUrl: string, version: string, resources: Any[]) =>
    create(DiscoveryResponseSchema, { typeUrl, versionInfo: version, nonce: `n-${version}`, resources });
  const setup = () => {
    const sent: DiscoveryRequest[] = [];
    let view = EMPTY_VIEW;
    const session = createNodeProxySession({
      node: node(),
      send: (r) => sent.push(r),
      current: () => view,
      accept: (v) => (view = v),
      logger: quiet,
    });
    return { sent, session, view: () => view };
  };
  const r = buildNodeProxy(mesh.push, mesh.proxy);
  const cds = (v: string, clusters = r.clusters) =>
    response(NODE_PROXY_TYPES.cluster, v, clusters.map((c) => anyPack(ClusterSchema, c)));
  const eds = (v: string) =>
    response(NODE_PROXY_TYPES.endpoint, v, r.endpoints.map((e) => anyPack(ClusterLoadAssignmentSchema, e)));
  const lds = (v: string) =>
    response(NODE_PROXY_TYPES.listener, v, r.listeners.map((l) => anyPack(ListenerSchema, l)));

  test("opens with wildcard CDS and LDS, the node on the first request only", () => {
    const { sent, session } = setup();
    session.start();
    expect(sent.map((s) => [s.typeUrl, s.resourceNames, s.node?.metadata?.GENERATOR !== undefined])).toEqual([
      [NODE_PROXY_TYPES.cluster, [], false],
      [NODE_PROXY_TYPES.listener, [], false],
    ]);
    expect(sent[0]!.node?.id).toBe(NODE_ID);
    expect(sent[1]!.node).toBeUndefined();
  });

  test("subscribes EDS to the clusters CDS names and ACKs only once the set is complete", () => {
    const { sent, session, view } = setup();
    session.start();
    sent.length = 0;
    session.handle(cds("c1"));
    expect(sent.map((s) => [s.typeUrl, s.resourceNames])).toEqual([
      [NODE_PROXY_TYPES.endpoint, r.endpoints.map((e) => e.clusterName).sort()],
    ]);
    session.handle(lds("l1"));
    expect(view()).toBe(EMPTY_VIEW);
    sent.length = 0;
    session.handle(eds("e1"));
    expect(sent.map((s) => [s.typeUrl, s.versionInfo, s.responseNonce, s.errorDetail])).toEqual([
      [NODE_PROXY_TYPES.cluster, "c1", "n-c1", undefined],
      [NODE_PROXY_TYPES.endpoint, "e1", "n-e1", undefined],
      [NODE_PROXY_TYPES.listener, "l1", "n-l1", undefined],
    ]);
    expect(view().services.length).toBe(4);
  });

  test("an EDS response with only the changed assignments keeps the others", () => {
    const { sent, session, view } = setup();
    session.start();
    session.handle(cds("c1"));
    session.handle(lds("l1"));
    session.handle(eds("e1"));
    const web = r.endpoints.find((e) => e.clusterName.startsWith("outbound|80||web"))!;
    const changed = { ...web, endpoints: web.endpoints.slice(0, 1) };
    sent.length = 0;
    session.handle(
      response(NODE_PROXY_TYPES.endpoint, "e2", [anyPack(ClusterLoadAssignmentSchema, changed)]),
    );
    expect(sent.map((s) => [s.typeUrl, s.versionInfo, s.errorDetail])).toEqual([
      [NODE_PROXY_TYPES.endpoint, "e2", undefined],
    ]);
    expect(view().clusters.get(web.clusterName)!.endpoints.length).toBe(1);
    expect(view().clusters.get("outbound|9080||reviews.shop.svc.cluster.local")!.endpoints.length).toBe(2);
  });

  test("an EDS subscription change carries the nonce of the last EDS response, even a NACKed one", () => {
    const { sent, session } = setup();
    session.start();
    session.handle(cds("c1"));
    session.handle(lds("l1"));
    const bad = r.endpoints.map((e) => clone(ClusterLoadAssignmentSchema, e));
    bad[0]!.endpoints[0]!.lbEndpoints[0]!.loadBalancingWeight = 0;
    session.handle(
      response(NODE_PROXY_TYPES.endpoint, "e1", bad.map((e) => anyPack(ClusterLoadAssignmentSchema, e))),
    );
    expect(sent.at(-1)!.errorDetail?.message).toContain("load_balancing_weight: want at least 1");
    sent.length = 0;
    session.handle(cds("c2", r.clusters.filter((c) => !c.name.startsWith("outbound|80||web"))));
    const sub = sent.find((s) => s.typeUrl === NODE_PROXY_TYPES.endpoint)!;
    expect(sub.responseNonce).toBe("n-e1");
    expect(sub.resourceNames).not.toContain("outbound|80||web.shop.svc.cluster.local");
  });

  test("NACKs a set the decoder refuses with its message and keeps the last good view", () => {
    const { sent, session, view } = setup();
    session.start();
    session.handle(cds("c1"));
    session.handle(lds("l1"));
    session.handle(eds("e1"));
    const good = view();
    sent.length = 0;
    const bad = r.clusters.map((c) => c.name.startsWith("outbound|80|") ? { ...c, metadata: undefined } : c);
    session.handle(cds("c2", bad));
    expect(sent.map((s) => [s.typeUrl, s.versionInfo, s.responseNonce, s.errorDetail?.message])).toEqual([
      [
        NODE_PROXY_TYPES.cluster,
        "c1",
        "n-c2",
        "cluster outbound|80||web.shop.svc.cluster.local: metadata.filter_metadata.istio: missing (want services, port, protocol and subset)",
      ],
    ]);
    expect(view()).toBe(good);
    // A good version after it is accepted again.
    sent.length = 0;
    session.handle(cds("c3"));
    expect(sent.map((s) => [s.typeUrl, s.versionInfo, s.errorDetail])).toEqual([
      [NODE_PROXY_TYPES.cluster, "c3", undefined],
    ]);
  });
});
