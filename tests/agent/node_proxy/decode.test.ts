/** decodeNodeProxyView() over what pilot's node-proxy generator serves (round trips) and what it refuses. */
import { describe, expect, test } from "bun:test";
import { clone, create } from "@bufbuild/protobuf";
import { Cluster_LbPolicy } from "#gen/envoy/config/cluster/v3/cluster_pb.ts";
import { AnySchema } from "@bufbuild/protobuf/wkt";
import { ListenerSchema } from "#gen/envoy/config/listener/v3/listener_pb.ts";
import { RBAC_Action } from "#gen/envoy/config/rbac/v3/rbac_pb.ts";
import { decodeNodeProxyView, NodeProxyDecodeError } from "../../../mod/agent/node_proxy/decode.ts";
import { buildNodeProxy } from "../../../mod/pilot/translate/mod.ts";
import { readCase } from "../../pilot/translate/_golden.ts";

const mesh = readCase("node_proxy/mesh");
const resources = () => buildNodeProxy(mesh.push, mesh.proxy);
const routed = readCase("node_proxy/tcp_routes");
const routedResources = () => buildNodeProxy(routed.push, routed.proxy);

describe("decodeNodeProxyView() of the node-proxy generator's output", () => {
  const view = decodeNodeProxyView(resources());

  test("services carry host, namespace, declared or allocated addresses and ports", () => {
    expect(view.services.map((s) => [s.host, s.namespace, s.addresses, s.ports.map((p) => p.port)])).toEqual([
      ["admin.shop.svc.cluster.local", "shop", [expect.stringMatching(/^198\.19\./)], [8080]],
      ["api.example.com", "shop", [expect.stringMatching(/^198\.19\./)], [443]],
      ["reviews.shop.svc.cluster.local", "shop", [expect.stringMatching(/^198\.19\./)], [9080]],
      ["web.shop.svc.cluster.local", "shop", ["198.18.100.1"], [80, 9000]],
    ]);
    const web = view.services.find((s) => s.host === "web.shop.svc.cluster.local")!;
    expect(web.ports).toEqual([
      { port: 80, protocol: "HTTP", cluster: "outbound|80||web.shop.svc.cluster.local" },
      { port: 9000, protocol: "TCP", cluster: "outbound|9000||web.shop.svc.cluster.local" },
    ]);
  });

  test("a wildcard host with resolution NONE has no cluster, service or DNS name", () => {
    expect(view.services.some((s) => s.host.includes("wild"))).toBe(false);
    expect([...view.dns.keys()].some((h) => h.includes("wild"))).toBe(false);
  });

  test("endpoints carry locality, weight, transport and identity", () => {
    const web = view.clusters.get("outbound|80||web.shop.svc.cluster.local")!;
    expect(web.endpoints).toEqual([
      {
        address: "198.18.0.1",
        port: 80,
        weight: 1,
        locality: { region: "eu", zone: "west-1", subZone: "a" },
        priority: 0,
        transport: "hbone",
        identities: ["spiffe://cluster.local/ns/shop/sa/web"],
        healthy: true,
        workload: {
          name: "",
          namespace: "shop",
          app: "web",
          version: "latest",
          canonicalService: "web",
          canonicalRevision: "latest",
        },
      },
      {
        address: "198.18.0.2",
        port: 80,
        weight: 3,
        locality: { region: "eu", zone: "west-1", subZone: "b" },
        priority: 0,
        transport: "hbone",
        identities: ["spiffe://cluster.local/ns/shop/sa/web"],
        healthy: true,
        workload: {
          name: "",
          namespace: "shop",
          app: "web",
          version: "latest",
          canonicalService: "web",
          canonicalRevision: "latest",
        },
      },
    ]);
    const reviews = view.clusters.get("outbound|9080||reviews.shop.svc.cluster.local")!;
    expect(reviews.endpoints.map((e) => [e.address, e.transport])).toEqual([
      ["198.18.0.3", "mtls"],
      ["198.18.0.4", "plaintext"],
    ]);
    // PeerAuthentication DISABLE on 8080 of the destination: plaintext, not HBONE.
    expect(view.clusters.get("outbound|8080||admin.shop.svc.cluster.local")!.endpoints[0]!.transport).toBe(
      "plaintext",
    );
    // An external DNS host: its name as the address, plaintext.
    expect(view.clusters.get("outbound|443||api.example.com")!.endpoints.map((e) => [e.address, e.transport]))
      .toEqual([["api.example.com", "plaintext"]]);
  });

  test("subsets, load balancing and outlier detection follow the DestinationRule", () => {
    const v1 = view.clusters.get("outbound|9080|v1|reviews.shop.svc.cluster.local")!;
    expect(v1.endpoints.map((e) => e.address)).toEqual(["198.18.0.3"]);
    expect(v1.lbPolicy).toBe("RANDOM");
    expect(v1.outlier).toEqual({ consecutiveErrors: 3, baseEjectionMs: 15_000 });
    expect(v1.connectTimeoutMs).toBe(10_000);
    // Consistent hashing has no request to hash on an L4 proxy.
    expect(view.clusters.get("outbound|9080|v2|reviews.shop.svc.cluster.local")!.lbPolicy).toBe(
      "LEAST_REQUEST",
    );
    expect(view.clusters.get("outbound|80||web.shop.svc.cluster.local")!.outlier).toBeUndefined();
  });

  test("inbound ports carry PeerAuthentication per port, RBAC in order and the local target", () => {
    expect([...view.inbound.values()].map((p) => [p.port, p.mtls, p.target])).toEqual([
      [0, "STRICT", { address: "127.0.0.1", port: 0 }],
      [80, "STRICT", { address: "127.0.0.1", port: 80 }],
      [8080, "DISABLE", { address: "127.0.0.1", port: 8080 }],
      [9000, "PERMISSIVE", { address: "127.0.0.1", port: 9000 }],
    ]);
    const rbac = view.inbound.get(80)!.rbac;
    expect(rbac.map((r) => r.action)).toEqual([RBAC_Action.LOG, RBAC_Action.DENY, RBAC_Action.ALLOW]);
    expect(Object.keys(rbac[1]!.policies)).toEqual(["ns[shop]-policy[deny-bad-block]-rule[0]"]);
    // The methods-only rule cannot be evaluated on TCP: it is left out of ALLOW (matches nothing).
    expect(Object.keys(rbac[2]!.policies)).toEqual([
      "ns[shop]-policy[allow-shop]-rule[0]",
      "ns[shop]-policy[allow-shop]-rule[1]",
    ]);
  });

  test("the DNS table names every reachable host with its addresses", () => {
    expect([...view.dns.keys()]).toEqual([
      "admin.shop.svc.cluster.local",
      "api.example.com",
      "reviews.shop.svc.cluster.local",
      "web.shop.svc.cluster.local",
    ]);
    expect(view.dns.get("web.shop.svc.cluster.local")).toEqual(["198.18.100.1"]);
    const api = view.services.find((s) => s.host === "api.example.com")!;
    expect(view.dns.get("api.example.com")).toEqual(api.addresses);
  });

  test("the version is a content hash: equal inputs give equal versions, a change a new one", () => {
    expect(decodeNodeProxyView(resources()).version).toBe(view.version);
    const r = resources();
    r.clusters[0]!.connectTimeout = { $typeName: "google.protobuf.Duration", seconds: 3n, nanos: 0 };
    expect(decodeNodeProxyView(r).version).not.toBe(view.version);
  });
});

describe("decodeNodeProxyView() of VirtualService tcp routes", () => {
  test("virtualOutbound chains become routes by destination and port with weighted clusters", () => {
    const view = decodeNodeProxyView(routedResources());
    expect(view.tcpRoutes).toEqual([
      {
        host: "cache.shop.svc.cluster.local",
        namespace: "shop",
        port: 6379,
        destinations: ["198.18.200.2/32"],
        clusters: [{ name: "outbound|6379||cache-next.shop.svc.cluster.local", weight: 1 }],
      },
      {
        host: "db.shop.svc.cluster.local",
        namespace: "shop",
        port: 5432,
        destinations: ["198.18.200.1/32"],
        clusters: [
          { name: "outbound|5432|v1|db.shop.svc.cluster.local", weight: 80 },
          { name: "outbound|5432|v2|db.shop.svc.cluster.local", weight: 20 },
        ],
      },
    ]);
    // Every cluster a route names is in the view, subsets included.
    for (const r of view.tcpRoutes!) for (const c of r.clusters) expect(view.clusters.has(c.name)).toBe(true);
  });

  test("endpoints carry their workload's version and canonical labels", () => {
    const view = decodeNodeProxyView(routedResources());
    const v2 = view.clusters.get("outbound|5432|v2|db.shop.svc.cluster.local")!;
    expect(v2.endpoints.map((e) => e.workload)).toEqual([
      {
        name: "",
        namespace: "shop",
        app: "db",
        version: "v2",
        canonicalService: "db",
        canonicalRevision: "v2",
      },
    ]);
  });

  test("without routes there are none", () => {
    expect(decodeNodeProxyView(resources()).tcpRoutes).toEqual([]);
  });

  test("a route chain matching on SNI or without destination ranges is refused", () => {
    const r = routedResources();
    const l = r.listeners.find((x) => x.name === "virtualOutbound")!;
    l.filterChains[0]!.filterChainMatch!.serverNames = ["x.example"];
    expect(() => decodeNodeProxyView(r)).toThrow(
      /^listener virtualOutbound filter_chains\[0\] .*filter_chain_match: only destination_port and prefix_ranges/,
    );
    const r2 = routedResources();
    r2.listeners.find((x) => x.name === "virtualOutbound")!.filterChains[1]!.filterChainMatch!.prefixRanges =
      [];
    expect(() => decodeNodeProxyView(r2)).toThrow(
      /filter_chains\[1\].*want destination_port and prefix_ranges/,
    );
  });
});

describe("decodeNodeProxyView() refuses what it cannot understand, naming resource and field", () => {
  const refused = (mutate: (r: ReturnType<typeof resources>) => void): string => {
    const r = resources();
    mutate(r);
    try {
      decodeNodeProxyView(r);
    } catch (err) {
      expect(err).toBeInstanceOf(NodeProxyDecodeError);
      return (err as Error).message;
    }
    throw new Error("not refused");
  };

  test("an outbound cluster without Istio metadata", () => {
    expect(refused((r) => {
      r.clusters.find((c) => c.name.startsWith("outbound|80|"))!.metadata = undefined;
    })).toBe(
      "cluster outbound|80||web.shop.svc.cluster.local: metadata.filter_metadata.istio: missing (want services, port, protocol and subset)",
    );
  });

  test("an EDS cluster without its assignment", () => {
    expect(refused((r) => {
      r.endpoints.splice(r.endpoints.findIndex((e) => e.clusterName.startsWith("outbound|80|")), 1);
    })).toContain("cluster outbound|80||web.shop.svc.cluster.local.eds_cluster_config.service_name");
  });

  test("a load-balancing policy the node proxy cannot run", () => {
    expect(refused((r) => {
      r.clusters.find((c) => c.name.startsWith("outbound|80|"))!.lbPolicy = Cluster_LbPolicy.RING_HASH;
    })).toBe(
      "cluster outbound|80||web.shop.svc.cluster.local.lb_policy: RING_HASH is not supported by the node proxy",
    );
  });

  test("an unknown tunnel", () => {
    expect(refused((r) => {
      const cla = r.endpoints.find((e) => e.clusterName.startsWith("outbound|80|"))!;
      cla.endpoints[0]!.lbEndpoints[0]!.metadata!.filterMetadata["envoy.transport_socket_match"] = {
        tunnel: "h3",
      };
    })).toContain('.tunnel: unknown tunnel "h3"');
  });

  test("an HTTP connection manager on the inbound listener", () => {
    const message = refused((r) => {
      const l = r.listeners.find((x) => x.name === "virtualInbound")!;
      const chain = l.filterChains[0]!;
      chain.filters[0]!.configType = {
        case: "typedConfig",
        value: create(AnySchema, {
          typeUrl:
            "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager",
        }),
      };
    });
    expect(message).toMatch(
      /^listener virtualInbound filter_chains\[0\] \(inbound\|80\|\|-mtls\)\.filters\[0\]/,
    );
    expect(message).toContain("is not supported by the node proxy");
  });

  test("a second TCP listener", () => {
    expect(refused((r) => {
      const copy = clone(ListenerSchema, r.listeners.find((x) => x.name === "virtualInbound")!);
      copy.name = "other";
      r.listeners.push(copy);
    })).toBe("listener other: a node proxy takes one inbound TCP listener");
  });
});
