import { describe, expect, test } from "bun:test";
import { anyUnpack } from "@bufbuild/protobuf/wkt";
import { create } from "@bufbuild/protobuf";
import {
  type Cluster,
  Cluster_DiscoveryType,
  Cluster_LbPolicy,
  ClusterSchema,
} from "#gen/envoy/config/cluster/v3/cluster_pb.ts";
import { ProxyProtocolConfig_Version } from "#gen/envoy/config/core/v3/proxy_protocol_pb.ts";
import { ProxyProtocolUpstreamTransportSchema } from "#gen/envoy/extensions/transport_sockets/proxy_protocol/v3/upstream_proxy_protocol_pb.ts";
import {
  applyProxyProtocol,
  PROXY_PROTOCOL_TRANSPORT_SOCKET,
  RAW_BUFFER_TRANSPORT_SOCKET,
} from "../../../mod/pilot/translate/cluster.ts";
import { HttpProtocolOptionsSchema } from "#gen/envoy/extensions/upstreams/http/v3/http_protocol_options_pb.ts";
import { UpstreamTlsContextSchema } from "#gen/envoy/extensions/transport_sockets/tls/v3/tls_pb.ts";
import { buildClusters } from "../../../mod/pilot/translate/mod.ts";
import { HTTP_PROTOCOL_OPTIONS_KEY } from "../../../mod/pilot/translate/cluster_traffic_policy.ts";
import { parseOutboundClusterName } from "../../../mod/pilot/translate/cluster_name.ts";
import { pushFrom, sidecar } from "../_push.ts";
import { tcpProxySettings } from "../../../mod/pilot/translate/cluster_plan.ts";
import { tcpProxy } from "../../../mod/pilot/translate/tcp_proxy.ts";

const se = (name: string, extra: string) => `
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: { name: ${name}, namespace: app }
spec:
${extra}`;

const STATIC_TWO_PORTS = se(
  "web",
  `  hosts: [web.app.svc.cluster.local]
  location: MESH_INTERNAL
  resolution: STATIC
  ports:
    - { number: 80, name: http, protocol: HTTP }
    - { number: 9090, name: grpc, protocol: GRPC }
  endpoints:
    - { address: 10.0.0.1, labels: { version: v1 } }
    - { address: 10.0.0.2, labels: { version: v2 } }
`,
);

const client = sidecar("10.9.9.9", "app", { app: "client" });

function byName(clusters: Cluster[], name: string): Cluster {
  const c = clusters.find((x) => x.name === name);
  if (!c) throw new Error(`no cluster ${name} in ${clusters.map((x) => x.name).join(", ")}`);
  return c;
}

const typeOf = (c: Cluster) =>
  c.clusterDiscoveryType.case === "type" ? c.clusterDiscoveryType.value : undefined;

describe("buildClusters()", () => {
  test("buildClusters() emits one EDS cluster per service port", () => {
    const clusters = buildClusters(pushFrom(STATIC_TWO_PORTS), client);
    const outbound = clusters.filter((c) => c.name.startsWith("outbound|"));
    expect(outbound.map((c) => c.name)).toEqual([
      "outbound|80||web.app.svc.cluster.local",
      "outbound|9090||web.app.svc.cluster.local",
    ]);
    for (const c of outbound) {
      expect(typeOf(c)).toBe(Cluster_DiscoveryType.EDS);
      expect(c.edsClusterConfig?.serviceName).toBe(c.name);
      expect(c.edsClusterConfig?.edsConfig?.configSourceSpecifier.case).toBe("ads");
    }
  });

  test("buildClusters() adds BlackHoleCluster, PassthroughCluster and is sorted by name", () => {
    const names = buildClusters(pushFrom(STATIC_TWO_PORTS), client).map((c) => c.name);
    expect(names).toContain("BlackHoleCluster");
    expect(names).toContain("PassthroughCluster");
    expect(names).toEqual([...names].sort());
    const push = pushFrom(STATIC_TWO_PORTS);
    const pass = byName(buildClusters(push, client), "PassthroughCluster");
    expect(typeOf(pass)).toBe(Cluster_DiscoveryType.ORIGINAL_DST);
    expect(pass.lbPolicy).toBe(Cluster_LbPolicy.CLUSTER_PROVIDED);
    const hole = byName(buildClusters(push, client), "BlackHoleCluster");
    expect(typeOf(hole)).toBe(Cluster_DiscoveryType.STATIC);
    expect(hole.loadAssignment?.endpoints).toEqual([]);
  });

  test("buildClusters() emits a cluster per DestinationRule subset and port", () => {
    const push = pushFrom(
      STATIC_TWO_PORTS,
      `
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: { name: web, namespace: app }
spec:
  host: web
  subsets:
    - { name: v1, labels: { version: v1 } }
    - { name: v2, labels: { version: v2 } }
`,
    );
    const names = buildClusters(push, client).map((c) => c.name).filter((n) => n.startsWith("outbound"));
    expect(names).toEqual([
      "outbound|80|v1|web.app.svc.cluster.local",
      "outbound|80|v2|web.app.svc.cluster.local",
      "outbound|80||web.app.svc.cluster.local",
      "outbound|9090|v1|web.app.svc.cluster.local",
      "outbound|9090|v2|web.app.svc.cluster.local",
      "outbound|9090||web.app.svc.cluster.local",
    ]);
    expect(parseOutboundClusterName(names[1]!)).toEqual({
      port: 80,
      subset: "v2",
      host: "web.app.svc.cluster.local",
    });
  });

  test("buildClusters() takes connect_timeout from the mesh config", () => {
    const push = pushFrom(
      STATIC_TWO_PORTS,
      `
apiVersion: config.meshd.io/v1alpha1
kind: MeshConfig
metadata: { name: mesh, namespace: istio-system }
spec: { connectTimeout: 1.5s }
`,
    );
    const c = byName(buildClusters(push, client), "outbound|80||web.app.svc.cluster.local");
    expect(c.connectTimeout).toMatchObject({ seconds: 1n, nanos: 500_000_000 });
  });

  test("buildClusters() gives gRPC ports HTTP/2 upstream protocol options and HTTP ports none", () => {
    const clusters = buildClusters(pushFrom(STATIC_TWO_PORTS), client);
    const grpc = byName(clusters, "outbound|9090||web.app.svc.cluster.local");
    const opts = anyUnpack(
      grpc.typedExtensionProtocolOptions[HTTP_PROTOCOL_OPTIONS_KEY]!,
      HttpProtocolOptionsSchema,
    )!;
    expect(opts.upstreamProtocolOptions.case).toBe("explicitHttpConfig");
    if (opts.upstreamProtocolOptions.case === "explicitHttpConfig") {
      expect(opts.upstreamProtocolOptions.value.protocolConfig.case).toBe("http2ProtocolOptions");
    }
    const http = byName(clusters, "outbound|80||web.app.svc.cluster.local");
    expect(Object.keys(http.typedExtensionProtocolOptions)).toEqual([]);
  });

  test("buildClusters() uses STRICT_DNS and LOGICAL_DNS with inline endpoints for DNS services", () => {
    const push = pushFrom(
      se(
        "ext",
        `  hosts: [api.example.com]
  resolution: DNS
  ports: [{ number: 443, name: tls, protocol: TLS }]
`,
      ),
      se(
        "rr",
        `  hosts: [rr.example.com]
  resolution: DNS_ROUND_ROBIN
  ports: [{ number: 80, name: http, protocol: HTTP }]
`,
      ),
    );
    const clusters = buildClusters(push, client);
    const dns = byName(clusters, "outbound|443||api.example.com");
    expect(typeOf(dns)).toBe(Cluster_DiscoveryType.STRICT_DNS);
    expect(dns.edsClusterConfig).toBeUndefined();
    const ep = dns.loadAssignment?.endpoints[0]?.lbEndpoints[0]?.hostIdentifier;
    expect(
      ep?.case === "endpoint" && ep.value.address?.address.case === "socketAddress" &&
        ep.value.address.address.value,
    )
      .toMatchObject({ address: "api.example.com", portSpecifier: { case: "portValue", value: 443 } });
    expect(typeOf(byName(clusters, "outbound|80||rr.example.com"))).toBe(Cluster_DiscoveryType.LOGICAL_DNS);
  });

  test("buildClusters() uses ORIGINAL_DST for resolution NONE without endpoints", () => {
    const push = pushFrom(se(
      "wild",
      `  hosts: ["*.example.org"]
  resolution: NONE
  ports: [{ number: 443, name: tls, protocol: TLS }]
`,
    ));
    const c = byName(buildClusters(push, client), "outbound|443||*.example.org");
    expect(typeOf(c)).toBe(Cluster_DiscoveryType.ORIGINAL_DST);
    expect(c.lbPolicy).toBe(Cluster_LbPolicy.CLUSTER_PROVIDED);
  });

  test("buildClusters() emits inbound|PORT|| per served port, STATIC to 127.0.0.1, for sidecars only", () => {
    const push = pushFrom(STATIC_TWO_PORTS);
    const own = sidecar("10.0.0.1", "app", { version: "v1" });
    const inbound = buildClusters(push, own).filter((c) => c.name.startsWith("inbound|"));
    expect(inbound.map((c) => c.name)).toEqual(["inbound|80||", "inbound|9090||"]);
    expect(typeOf(inbound[0]!)).toBe(Cluster_DiscoveryType.STATIC);
    const host = inbound[0]!.loadAssignment?.endpoints[0]?.lbEndpoints[0]?.hostIdentifier;
    expect(host?.case === "endpoint" && host.value.address?.address.value).toMatchObject({
      address: "127.0.0.1",
      portSpecifier: { value: 80 },
    });
    const router = { ...own, type: "router" as const };
    expect(buildClusters(push, router).some((c) => c.name.startsWith("inbound|"))).toBe(false);
  });

  test("buildClusters() attaches ISTIO_MUTUAL TLS with the workloads' SPIFFE identities", () => {
    const push = pushFrom(
      se(
        "db",
        `  hosts: [db.app.svc.cluster.local]
  location: MESH_INTERNAL
  resolution: STATIC
  ports: [{ number: 5432, name: tcp, protocol: TCP }]
  endpoints:
    - { address: 10.0.1.1, serviceAccount: db }
`,
      ),
      `
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: { name: db, namespace: app }
spec:
  host: db
  trafficPolicy: { tls: { mode: ISTIO_MUTUAL } }
`,
    );
    const c = byName(buildClusters(push, client), "outbound|5432||db.app.svc.cluster.local");
    expect(c.transportSocket?.name).toBe("envoy.transport_sockets.tls");
    const tls = c.transportSocket?.configType.case === "typedConfig"
      ? anyUnpack(c.transportSocket.configType.value, UpstreamTlsContextSchema)
      : undefined;
    expect(tls?.sni).toBe("outbound_.5432_._.db.app.svc.cluster.local");
    const vc = tls?.commonTlsContext?.validationContextType;
    expect(
      vc?.case === "combinedValidationContext" &&
        vc.value.defaultValidationContext?.matchSubjectAltNames.map((m) => m.matchPattern.value),
    )
      .toEqual(["spiffe://cluster.local/ns/app/sa/db"]);
  });
});

describe("DestinationRule tunnel, retry budget and TCP settings", () => {
  const rule = `
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: { name: web, namespace: app }
spec:
  host: web.app.svc.cluster.local
  trafficPolicy:
    retryBudget: { percent: 30 }
    tunnel: { targetHost: proxy.example.com, targetPort: 8443 }
    connectionPool:
      tcp: { idleTimeout: 90s, maxConnectionDuration: 1h }
  subsets:
    - name: v1
      labels: { version: v1 }
    - name: v2
      labels: { version: v2 }
      trafficPolicy:
        retryBudget: { percent: 5 }
        tunnel: { protocol: POST, targetHost: other.example.com, targetPort: 443 }
`;

  test("buildClusters() puts the retry budget on the circuit breakers; a subset's replaces the rule's", () => {
    const clusters = buildClusters(pushFrom(STATIC_TWO_PORTS, rule), client);
    const budget = (name: string) => byName(clusters, name).circuitBreakers?.thresholds[0]?.retryBudget;
    expect(budget("outbound|80||web.app.svc.cluster.local")?.budgetPercent?.value).toBe(30);
    expect(budget("outbound|80|v1|web.app.svc.cluster.local")?.budgetPercent?.value).toBe(30);
    expect(budget("outbound|80|v2|web.app.svc.cluster.local")?.budgetPercent?.value).toBe(5);
  });

  test("tcpProxySettings() gives a TCP proxy the cluster's tunnel, idle timeout and connection lifetime", () => {
    const push = pushFrom(STATIC_TWO_PORTS, rule);
    const top = tcpProxySettings(push, client, "outbound|80||web.app.svc.cluster.local");
    expect(top.tunnelingConfig).toMatchObject({ hostname: "proxy.example.com:8443", usePost: false });
    expect(top.idleTimeout).toMatchObject({ seconds: 90n });
    expect(top.maxDownstreamConnectionDuration).toMatchObject({ seconds: 3600n });
    const v2 = tcpProxySettings(push, client, "outbound|80|v2|web.app.svc.cluster.local");
    expect(v2.tunnelingConfig).toMatchObject({ hostname: "other.example.com:443", usePost: true });
    expect(tcpProxySettings(push, client, "PassthroughCluster")).toEqual({});
    expect(tcpProxySettings(pushFrom(STATIC_TWO_PORTS), client, "outbound|80||web.app.svc.cluster.local"))
      .toEqual({});
    const proxy = tcpProxy("outbound|80||web.app.svc.cluster.local", push.mesh, top);
    expect(proxy.tunnelingConfig?.hostname).toBe("proxy.example.com:8443");
  });
});

describe("DestinationRule proxyProtocol", () => {
  const rule = (policy: string) => `
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: { name: web, namespace: app }
spec:
  host: web.app.svc.cluster.local
  trafficPolicy:
${policy}
  subsets:
    - name: v2
      labels: { version: v2 }
      trafficPolicy:
        proxyProtocol: { version: V1 }
`;

  function wrapper(c: Cluster) {
    const ts = c.transportSocket!;
    expect(ts.name).toBe(PROXY_PROTOCOL_TRANSPORT_SOCKET);
    return ts.configType.case === "typedConfig"
      ? anyUnpack(ts.configType.value, ProxyProtocolUpstreamTransportSchema)!
      : undefined;
  }

  test("wraps the plaintext socket when the cluster has no TLS; a subset's version replaces the rule's", () => {
    const clusters = buildClusters(
      pushFrom(STATIC_TWO_PORTS, rule("    proxyProtocol: { version: V2 }")),
      client,
    );
    const top = wrapper(byName(clusters, "outbound|80||web.app.svc.cluster.local"))!;
    expect(top.config?.version).toBe(ProxyProtocolConfig_Version.V2);
    expect(top.transportSocket?.name).toBe(RAW_BUFFER_TRANSPORT_SOCKET);
    const v2 = wrapper(byName(clusters, "outbound|80|v2|web.app.svc.cluster.local"))!;
    expect(v2.config?.version).toBe(ProxyProtocolConfig_Version.V1);
    // Without the field the cluster stays plaintext, with no socket at all.
    const plain = buildClusters(pushFrom(STATIC_TWO_PORTS), client);
    expect(byName(plain, "outbound|80||web.app.svc.cluster.local").transportSocket).toBeUndefined();
  });

  test("wraps the TLS socket, which keeps its context, so the header goes before the handshake", () => {
    const clusters = buildClusters(
      pushFrom(STATIC_TWO_PORTS, rule("    tls: { mode: ISTIO_MUTUAL }\n    proxyProtocol: { version: V2 }")),
      client,
    );
    const inner = wrapper(byName(clusters, "outbound|9090||web.app.svc.cluster.local"))!.transportSocket!;
    expect(inner.name).toBe("envoy.transport_sockets.tls");
    const tls = inner.configType.case === "typedConfig"
      ? anyUnpack(inner.configType.value, UpstreamTlsContextSchema)
      : undefined;
    expect(tls?.sni).toBe("outbound_.9090_._.web.app.svc.cluster.local");
  });

  test("applyProxyProtocol() wraps each transport socket match too, and leaves a cluster alone without settings", () => {
    const c = create(ClusterSchema, {
      name: "x",
      transportSocketMatches: [{ name: "tls", transportSocket: { name: "envoy.transport_sockets.tls" } }],
    });
    applyProxyProtocol(c, undefined);
    expect(c.transportSocketMatches[0]!.transportSocket?.name).toBe("envoy.transport_sockets.tls");
    applyProxyProtocol(c, { version: "V1" });
    expect(c.transportSocketMatches[0]!.transportSocket?.name).toBe(PROXY_PROTOCOL_TRANSPORT_SOCKET);
    // The matches carry the sockets; no cluster-wide one is added next to them.
    expect(c.transportSocket).toBeUndefined();
  });
});
