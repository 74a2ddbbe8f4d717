/**
 * Split horizon EDS in a multi-network mesh: a proxy gets the endpoints of its own network as
 * they are and those of another network as that network's gateways, weighted by the endpoints
 * behind each; endpoints without mTLS in another network are left out.
 */
import { describe, expect, test } from "bun:test";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import type { ClusterLoadAssignment } from "#gen/envoy/config/endpoint/v3/endpoint_pb.ts";
import { proxyFromNode } from "../../../mod/pilot/model/proxy.ts";
import type { Endpoint } from "../../../mod/pilot/model/service.ts";
import { buildEndpoints, splitHorizon } from "../../../mod/pilot/translate/endpoint.ts";
import { GOLDEN_DIR } from "./_golden.ts";
import { pushFrom } from "../_push.ts";

/** The mesh of the multi_network_gateway golden case (its TestProxy is ignored here). */
const MESH = readFileSync(join(GOLDEN_DIR, "multi_network_gateway.input.yaml"), "utf8")
  .split(/^---[ \t]*$/m)
  .filter((doc) => !/^kind: TestProxy$/m.test(doc))
  .join("\n---\n");

const NET1_EXTRA = `
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: { name: ratings, namespace: bookinfo }
spec:
  hosts: [ratings.bookinfo.svc.cluster.local]
  location: MESH_INTERNAL
  resolution: STATIC
  ports:
    - { number: 9080, name: http, protocol: HTTP }
  endpoints:
    - { address: 10.1.0.20, network: net1, serviceAccount: ratings }
    - { address: 10.2.0.20, network: net2, serviceAccount: ratings }
    - { address: 10.2.0.21, network: net2 }
    - { address: 10.3.0.20, network: net3, serviceAccount: ratings }
`;

function proxy(network: string | undefined, ip = "10.1.0.5") {
  return proxyFromNode({
    id: `sidecar~${ip}~productpage.bookinfo~bookinfo.svc.cluster.local`,
    metadata: { NAMESPACE: "bookinfo", ...(network ? { NETWORK: network } : {}) },
  });
}

/** "ADDRESS:PORT wWEIGHT tlsMode" per host of the named cluster. */
function hosts(all: readonly ClusterLoadAssignment[], cluster: string): string[] {
  const cla = all.find((c) => c.clusterName === cluster);
  if (!cla) throw new Error(`no assignment ${cluster}`);
  return cla.endpoints.flatMap((g) =>
    g.lbEndpoints.map((lb) => {
      const a = lb.hostIdentifier.case === "endpoint" ? lb.hostIdentifier.value.address?.address : undefined;
      const sa = a?.case === "socketAddress" ? a.value : undefined;
      const port = sa?.portSpecifier.case === "portValue" ? sa.portSpecifier.value : 0;
      const tls = lb.metadata?.filterMetadata["envoy.transport_socket_match"]?.tlsMode;
      return `${sa?.address}:${port} w${lb.loadBalancingWeight} ${tls}`;
    })
  );
}

const REVIEWS = "outbound|9080||reviews.bookinfo.svc.cluster.local";
const REVIEWS_V2 = "outbound|9080|v2|reviews.bookinfo.svc.cluster.local";
const RATINGS = "outbound|9080||ratings.bookinfo.svc.cluster.local";

describe("split horizon EDS", () => {
  const push = pushFrom(MESH, NET1_EXTRA);

  test("a sidecar in net1 reaches net2's endpoints through net2's gateway, weighted by their number", () => {
    const eds = buildEndpoints(push, proxy("net1"));
    expect(hosts(eds, REVIEWS)).toEqual(["198.18.2.100:15443 w3 istio"]);
    expect(hosts(eds, REVIEWS_V2)).toEqual(["198.18.2.100:15443 w2 istio"]);
    expect(eds.find((c) => c.clusterName === REVIEWS)!.endpoints[0]!.loadBalancingWeight).toBe(3);
  });

  test("own network direct, another network's mTLS endpoints by its gateway, no gateway: direct", () => {
    const eds = buildEndpoints(push, proxy("net1"));
    expect(hosts(eds, RATINGS)).toEqual([
      "10.1.0.20:9080 w1 istio",
      // 10.2.0.21 has no identity (tlsMode disabled): the gateway could not route it by SNI.
      "10.3.0.20:9080 w1 istio",
      "198.18.2.100:15443 w1 istio",
    ]);
  });

  test("a sidecar in net2 gets net2's endpoints as they are and net1's through net1's gateway", () => {
    const eds = buildEndpoints(push, proxy("net2", "10.2.0.50"));
    expect(hosts(eds, REVIEWS)).toEqual([
      "10.2.0.7:9080 w1 istio",
      "10.2.0.8:9080 w1 istio",
      "10.2.0.9:9080 w1 istio",
    ]);
    expect(hosts(eds, RATINGS)).toEqual([
      "10.2.0.20:9080 w1 istio",
      "10.2.0.21:9080 w1 disabled",
      "10.3.0.20:9080 w1 istio",
      "198.18.1.100:15443 w1 istio",
    ]);
  });

  test("a proxy whose network is unknown reaches every endpoint directly", () => {
    const eds = buildEndpoints(push, proxy(undefined));
    expect(hosts(eds, REVIEWS)).toHaveLength(3);
    expect(hosts(eds, RATINGS)).toHaveLength(4);
  });

  test("the proxy's network may come from its own WorkloadEntry", () => {
    const withEntry = pushFrom(
      MESH,
      NET1_EXTRA,
      `
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: { name: productpage, namespace: bookinfo }
spec: { address: 10.1.0.5, network: net1, labels: { app: productpage } }
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: { name: productpage, namespace: bookinfo }
spec:
  hosts: [productpage.bookinfo.svc.cluster.local]
  location: MESH_INTERNAL
  resolution: STATIC
  ports: [{ number: 9080, name: http, protocol: HTTP }]
  workloadSelector: { labels: { app: productpage } }
`,
    );
    expect(hosts(buildEndpoints(withEntry, proxy(undefined)), REVIEWS)).toEqual([
      "198.18.2.100:15443 w3 istio",
    ]);
  });
});

describe("splitHorizon", () => {
  const base: Endpoint = {
    hostname: "a.ns.svc.cluster.local",
    namespace: "ns",
    servicePort: { name: "http", number: 80, protocol: "HTTP" },
    address: "10.2.0.1",
    port: 80,
    labels: {},
    network: "net2",
    weight: 1,
    healthy: true,
    tlsMode: "istio",
    source: "test",
  };
  const gateways = [
    { network: "net2", address: "198.18.2.1", port: 15443 },
    { network: "net2", address: "198.18.2.2", port: 15443 },
    { network: "net3", address: "198.18.3.1", port: 15443 },
  ];

  test("weights are scaled so that they divide evenly among a network's gateways", () => {
    const out = splitHorizon(
      [
        { ...base, address: "10.1.0.1", network: "net1", weight: 2 },
        { ...base, weight: 3 },
        { ...base, address: "10.3.0.1", network: "net3" },
      ],
      { network: "net1", gateways },
    );
    expect(out.map((e) => `${e.address}:${e.port} w${e.weight} ${e.network}`)).toEqual([
      "10.1.0.1:80 w4 net1",
      "198.18.2.1:15443 w3 net2",
      "198.18.2.2:15443 w3 net2",
      "198.18.3.1:15443 w2 net3",
    ]);
  });

  test("gateway hosts keep the locality of the endpoints behind them", () => {
    const out = splitHorizon(
      [{ ...base, locality: "r1/z1" }, { ...base, address: "10.2.0.2", locality: "r1/z2" }],
      { network: "net1", gateways: [gateways[0]!] },
    );
    expect(out.map((e) => `${e.locality} ${e.address} w${e.weight}`)).toEqual([
      "r1/z1 198.18.2.1 w1",
      "r1/z2 198.18.2.1 w1",
    ]);
  });

  test("without gateways nothing changes", () => {
    const list = [base, { ...base, network: "net9" }];
    expect(splitHorizon(list, { network: "net1", gateways: [] })).toEqual(list);
  });

  test("a workload with only a network is reached through its gateway, never directly", () => {
    const noAddress = { ...base, address: "" };
    expect(splitHorizon([noAddress], { network: "net1", gateways }).map((e) => e.address)).toEqual([
      "198.18.2.1",
      "198.18.2.2",
    ]);
    expect(splitHorizon([noAddress], { network: "net2", gateways })).toEqual([]);
    expect(splitHorizon([noAddress], { gateways: [] })).toEqual([]);
  });
});
