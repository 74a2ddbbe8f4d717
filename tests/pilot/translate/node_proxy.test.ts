/**
 * Node-proxy translation (GENERATOR "node-proxy"): golden files under
 * `tests/pilot/golden/node_proxy/` (refresh with `UPDATE_GOLDEN=1`), and the rules behind them:
 * transports per endpoint, workload metadata, PeerAuthentication per port, AuthorizationPolicy
 * stages, allocated VIPs in cluster metadata, the DNS table and VirtualService tcp routes.
 */
import { describe, expect, test } from "bun:test";
import { existsSync, readdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { anyUnpack } from "@bufbuild/protobuf/wkt";
import { RBAC_Action } from "#gen/envoy/config/rbac/v3/rbac_pb.ts";
import { RBACSchema as NetworkRbacSchema } from "#gen/envoy/extensions/filters/network/rbac/v3/rbac_pb.ts";
import { DnsFilterConfigSchema } from "#gen/envoy/extensions/filters/udp/dns_filter/v3/dns_filter_pb.ts";
import { TcpProxySchema } from "#gen/envoy/extensions/filters/network/tcp_proxy/v3/tcp_proxy_pb.ts";
import { checkEnvoySet } from "../../../mod/pilot/check/mod.ts";
import { proxyFromNode } from "../../../mod/pilot/model/proxy.ts";
import {
  buildClusters,
  buildEndpoints,
  buildListeners,
  buildRoutes,
  ISTIO_METADATA_KEY,
  nodeProxyUnsupported,
} from "../../../mod/pilot/translate/mod.ts";
import { pushFrom } from "../_push.ts";
import { firstDifference, GOLDEN_DIR, readCase, renderGolden } from "./_golden.ts";

const UPDATE = process.env.UPDATE_GOLDEN === "1";
const DIR = join(GOLDEN_DIR, "node_proxy");
const cases = readdirSync(DIR).filter((f) => f.endsWith(".input.yaml")).map((f) => f.slice(0, -11)).sort();

describe("node-proxy golden files", () => {
  for (const name of cases) {
    test(`node_proxy/${name} matches its golden file`, () => {
      const c = readCase(`node_proxy/${name}`);
      expect(c.proxy.generator).toBe("node-proxy");
      const got = JSON.parse(JSON.stringify(renderGolden(c.push, c.proxy)));
      const file = join(DIR, `${name}.golden.json`);
      if (UPDATE || !existsSync(file)) writeFileSync(file, `${JSON.stringify(got, null, 2)}\n`);
      const want = JSON.parse(readFileSync(file, "utf8"));
      const diff = firstDifference(want, got);
      if (diff) {
        throw new Error(
          `${name}: first difference at ${diff.path}: want ${JSON.stringify(diff.want)}, got ${
            JSON.stringify(diff.got)
          }`,
        );
      }
    });
    test(`node_proxy/${name}: Envoy's field rules and semantic checks find nothing`, () => {
      const c = readCase(`node_proxy/${name}`);
      const set = {
        clusters: buildClusters(c.push, c.proxy),
        endpoints: buildEndpoints(c.push, c.proxy),
        listeners: buildListeners(c.push, c.proxy),
        routes: buildRoutes(c.push, c.proxy),
      };
      expect(checkEnvoySet(set, { proxyKind: "sidecar" })).toEqual([]);
    });
  }
});

const mesh = readCase("node_proxy/mesh");

function endpointMeta(cluster: string) {
  const cla = buildEndpoints(mesh.push, mesh.proxy).find((e) => e.clusterName === cluster)!;
  return cla.endpoints.flatMap((g) => g.lbEndpoints).map((lb) => {
    const a = lb.hostIdentifier.case === "endpoint" ? lb.hostIdentifier.value.address?.address : undefined;
    return [a?.case === "socketAddress" ? a.value.address : "", lb.metadata?.filterMetadata];
  });
}

describe("buildClusters() and buildEndpoints() for a node proxy", () => {
  test("a proxy whose GENERATOR is node-proxy is one; sidecars keep the Envoy generator", () => {
    expect(mesh.proxy.generator).toBe("node-proxy");
    const sidecar = proxyFromNode({ id: mesh.proxy.id, metadata: { NAMESPACE: "shop" } });
    expect(sidecar.generator).toBe("envoy");
    expect(buildClusters(mesh.push, sidecar).some((c) => c.name === "BlackHoleCluster")).toBe(true);
    expect(buildClusters(mesh.push, mesh.proxy).some((c) => c.name === "BlackHoleCluster")).toBe(false);
    expect(buildRoutes(mesh.push, mesh.proxy)).toEqual([]);
  });

  test("endpoints behind a node proxy are HBONE, sidecars mTLS, others plaintext", () => {
    expect(endpointMeta("outbound|9000||web.shop.svc.cluster.local")[0]![1]).toEqual({
      "envoy.transport_socket_match": { tlsMode: "istio", tunnel: "http" },
      istio: {
        identities: ["spiffe://cluster.local/ns/shop/sa/web"],
        workload: ";shop;web;latest;",
        app: "web",
      },
    });
    expect(endpointMeta("outbound|9080||reviews.shop.svc.cluster.local").map(([a, m]) => [a, m])).toEqual([
      ["198.18.0.3", {
        "envoy.transport_socket_match": { tlsMode: "istio" },
        istio: {
          identities: ["spiffe://cluster.local/ns/shop/sa/reviews"],
          workload: ";shop;reviews;v1;",
          app: "reviews",
          version: "v1",
        },
      }],
      ["198.18.0.4", {
        "envoy.transport_socket_match": { tlsMode: "disabled" },
        istio: {
          identities: ["spiffe://cluster.local/ns/shop/sa/reviews"],
          workload: ";shop;reviews;v2;",
          app: "reviews",
          version: "v2",
        },
      }],
    ]);
  });

  test("endpoints carry Istio's workload metadata: WorkloadEntry name, canonical labels first", () => {
    const push = pushFrom(`apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: { name: db, namespace: data }
spec:
  hosts: [db.data.svc.cluster.local]
  location: MESH_INTERNAL
  resolution: STATIC
  ports: [{ number: 5432, name: tcp, protocol: TCP }]
  workloadSelector: { labels: { app: db } }
---
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: { name: db-vm-1, namespace: data }
spec:
  address: 198.18.7.1
  labels:
    app: db
    version: v3
    service.istio.io/canonical-name: database
    service.istio.io/canonical-revision: r3
---
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: { name: db-vm-2, namespace: data }
spec:
  address: 198.18.7.2
  labels: { app: db, service.istio.io/workload-name: db-group }`);
    const cla = buildEndpoints(push, mesh.proxy).find((e) =>
      e.clusterName === "outbound|5432||db.data.svc.cluster.local"
    )!;
    const meta = cla.endpoints.flatMap((g) => g.lbEndpoints).map((lb) =>
      lb.metadata?.filterMetadata["istio"]
    );
    expect(meta.map((m) => [m?.workload, m?.app, m?.version])).toEqual([
      ["db-vm-1;data;database;r3;", "db", "v3"],
      ["db-group;data;db;latest;", "db", undefined],
    ]);
  });

  test("a DestinationRule that disables TLS makes every endpoint plaintext", () => {
    const push = pushFrom(
      readFileSync(join(DIR, "mesh.input.yaml"), "utf8").split(/^kind: TestProxy/m)[0]!.replace(
        /---\s*$/,
        "",
      ),
      `apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: { name: web, namespace: shop }
spec:
  host: web.shop.svc.cluster.local
  trafficPolicy: { tls: { mode: DISABLE } }`,
    );
    const cla = buildEndpoints(push, mesh.proxy).find((e) => e.clusterName.startsWith("outbound|9000||web"))!;
    expect(
      cla.endpoints.flatMap((g) => g.lbEndpoints).map((lb) =>
        lb.metadata?.filterMetadata["envoy.transport_socket_match"]
      ),
    )
      .toEqual([{ tlsMode: "disabled" }, { tlsMode: "disabled" }]);
    const cluster = buildClusters(push, mesh.proxy).find((c) => c.name.startsWith("outbound|9000||web"))!;
    expect(cluster.transportSocketMatches).toEqual([]);
  });

  test("clusters carry the service's host, namespace and VIP (declared or allocated) in Istio metadata", () => {
    const clusters = buildClusters(mesh.push, mesh.proxy);
    const meta = (name: string) =>
      clusters.find((c) => c.name === name)!.metadata!.filterMetadata[ISTIO_METADATA_KEY];
    expect(meta("outbound|80||web.shop.svc.cluster.local")).toEqual({
      services: [{
        host: "web.shop.svc.cluster.local",
        name: "web",
        namespace: "shop",
        addresses: ["198.18.100.1"],
      }],
      port: 80,
      protocol: "HTTP",
      subset: "",
    });
    const api = meta("outbound|443||api.example.com") as { services: { addresses: string[] }[] };
    expect(api.services[0]!.addresses).toEqual([expect.stringMatching(/^198\.19\.\d+\.\d+$/)]);
    // A wildcard host with resolution NONE passes through: no cluster.
    expect(clusters.some((c) => c.name.includes("wild"))).toBe(false);
  });
});

describe("buildListeners() for a node proxy", () => {
  const listeners = buildListeners(mesh.push, mesh.proxy);
  const inbound = listeners.find((l) => l.name === "virtualInbound")!;
  const chains = (port: number | undefined) =>
    inbound.filterChains.filter((c) => c.filterChainMatch?.destinationPort === port);

  test("PeerAuthentication per port: STRICT one TLS chain, PERMISSIVE tls + raw_buffer, DISABLE plaintext", () => {
    const shape = (port: number | undefined) =>
      chains(port).map((c) => [c.filterChainMatch?.transportProtocol ?? "", c.transportSocket !== undefined]);
    expect(shape(80)).toEqual([["", true]]);
    expect(shape(9000)).toEqual([["tls", true], ["raw_buffer", false]]);
    expect(shape(8080)).toEqual([["", false]]);
    expect(shape(undefined)).toEqual([["", true]]);
  });

  test("AuthorizationPolicy: AUDIT as LOG, DENY by ipBlocks, ALLOW by principal, namespace and port", () => {
    const rbac = chains(80)[0]!.filters.filter((f) => f.name === "envoy.filters.network.rbac").map((f) =>
      anyUnpack(f.configType.value as never, NetworkRbacSchema)!.rules!
    );
    expect(rbac.map((r) => r.action)).toEqual([RBAC_Action.LOG, RBAC_Action.DENY, RBAC_Action.ALLOW]);
    const json = JSON.stringify(rbac, (_k, v) => (typeof v === "bigint" ? String(v) : v));
    expect(json).toContain("198.18.0.99");
    expect(json).toContain("spiffe://cluster.local/ns/shop/sa/reviews");
    expect(json).toContain(".*/ns/shop/.*");
    expect(json).toContain('{"case":"destinationPort","value":9000}');
    expect(chains(80)[0]!.filters.at(-1)!.name).toBe("envoy.filters.network.tcp_proxy");
  });

  test("a CUSTOM policy fails closed as DENY (a node proxy has no external authorizer)", () => {
    const push = pushFrom(
      readFileSync(join(DIR, "mesh.input.yaml"), "utf8").split(/^kind: TestProxy/m)[0]!.replace(
        /---\s*$/,
        "",
      ),
      `apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: { name: ext, namespace: shop }
spec:
  selector: { matchLabels: { app: web } }
  action: CUSTOM
  provider: { name: nowhere }
  rules: [{ to: [{ operation: { ports: ["80"] } }] }]`,
    );
    const inbound = buildListeners(push, mesh.proxy).find((l) => l.name === "virtualInbound")!;
    const first = anyUnpack(
      inbound.filterChains[0]!.filters[0]!.configType.value as never,
      NetworkRbacSchema,
    )!;
    expect(first.rules!.action).toBe(RBAC_Action.DENY);
    expect(Object.keys(first.rules!.policies)[0]).toContain("deny-due-to-bad-CUSTOM-action");
  });

  test("the DNS listener answers every reachable host with its addresses", () => {
    const dns = listeners.find((l) => l.name === "127.0.0.1_15053")!;
    const config = anyUnpack(dns.listenerFilters[0]!.configType.value as never, DnsFilterConfigSchema)!;
    const table = config.serverConfig!.configSource.case === "inlineDnsTable"
      ? config.serverConfig!.configSource.value
      : undefined;
    expect(table!.virtualDomains.map((d) => d.name)).toEqual([
      "admin.shop.svc.cluster.local",
      "api.example.com",
      "reviews.shop.svc.cluster.local",
      "web.shop.svc.cluster.local",
    ]);
  });
});

describe("nodeProxyUnsupported()", () => {
  test("lists what the node proxy approximates: consistent hashing, TLS origination, CUSTOM", () => {
    const push = pushFrom(
      readFileSync(join(DIR, "mesh.input.yaml"), "utf8").split(/^kind: TestProxy/m)[0]!.replace(
        /---\s*$/,
        "",
      ),
      `apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: { name: api, namespace: shop }
spec:
  host: api.example.com
  trafficPolicy: { tls: { mode: SIMPLE } }
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: { name: ext, namespace: shop }
spec:
  selector: { matchLabels: { app: web } }
  action: CUSTOM
  provider: { name: nowhere }
  rules: [{ to: [{ operation: { ports: ["80"] } }] }]`,
    );
    expect(nodeProxyUnsupported(push, mesh.proxy).map((g) => `${g.resource}: ${g.field}`)).toEqual([
      "cluster outbound|443||api.example.com: tls.mode",
      "cluster outbound|9080|v2|reviews.shop.svc.cluster.local: loadBalancer.consistentHash",
      'inbound listener: AuthorizationPolicy CUSTOM provider "nowhere"',
    ]);
    expect(nodeProxyUnsupported(mesh.push, mesh.proxy).map((g) => g.field)).toEqual([
      "loadBalancer.consistentHash",
    ]);
  });
});

describe("VirtualService tcp routes for a node proxy", () => {
  const routes = readCase("node_proxy/tcp_routes");

  function outboundChains(push = routes.push, proxy = routes.proxy) {
    const l = buildListeners(push, proxy).find((x) => x.name === "virtualOutbound");
    return (l?.filterChains ?? []).map((fc) => {
      const t = anyUnpack(fc.filters[0]!.configType.value as never, TcpProxySchema)!;
      const clusters = t.clusterSpecifier.case === "weightedClusters"
        ? t.clusterSpecifier.value.clusters.map((c) => `${c.name}=${c.weight}`)
        : [`${t.clusterSpecifier.value}=1`];
      const m = fc.filterChainMatch!;
      return {
        match: `${
          m.prefixRanges.map((r) => `${r.addressPrefix}/${r.prefixLen}`).join(",")
        }:${m.destinationPort}`,
        clusters,
        service: fc.metadata?.filterMetadata[ISTIO_METADATA_KEY],
      };
    });
  }

  test("weighted subsets and a route to another host become chains by VIP and port", () => {
    expect(outboundChains()).toEqual([
      {
        match: "198.18.200.2/32:6379",
        clusters: ["outbound|6379||cache-next.shop.svc.cluster.local=1"],
        service: { host: "cache.shop.svc.cluster.local", namespace: "shop" },
      },
      {
        match: "198.18.200.1/32:5432",
        clusters: [
          "outbound|5432|v1|db.shop.svc.cluster.local=80",
          "outbound|5432|v2|db.shop.svc.cluster.local=20",
        ],
        service: { host: "db.shop.svc.cluster.local", namespace: "shop" },
      },
    ]);
  });

  test("sourceLabels and sourceSubnet decide per machine: a matching rule comes first", () => {
    const other = readCase("node_proxy/tcp_routes");
    const proxy = proxyFromNode({
      id: "sidecar~10.9.0.5~other.shop~shop.svc.cluster.local",
      metadata: { NAMESPACE: "shop", GENERATOR: "node-proxy", LABELS: { app: "other" } },
    });
    const chains = outboundChains(other.push, proxy);
    expect(chains.find((c) => c.match.endsWith(":5432"))!.clusters).toEqual([
      "outbound|5432|v2|db.shop.svc.cluster.local=1",
    ]);
    // Not in 198.18.0.0/24: the cache's only rule does not apply, so it keeps its own cluster.
    expect(chains.some((c) => c.match.endsWith(":6379"))).toBe(false);
  });

  test("no tcp routes, no virtualOutbound listener", () => {
    expect(buildListeners(mesh.push, mesh.proxy).some((l) => l.name === "virtualOutbound")).toBe(false);
  });

  test("http rules on HTTP ports and tls rules on TLS ports are reported as not applied", () => {
    expect(
      nodeProxyUnsupported(routes.push, routes.proxy).filter((g) => g.resource.startsWith("outbound "))
        .map((g) => `${g.resource}: ${g.field}`),
    ).toEqual([
      "outbound cache.shop.svc.cluster.local:7000: VirtualService shop/cache http",
      "outbound cache.shop.svc.cluster.local:7443: VirtualService shop/cache tls",
    ]);
  });
});
