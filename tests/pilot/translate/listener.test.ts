import { describe, expect, test } from "bun:test";
import { anyUnpack } from "@bufbuild/protobuf/wkt";
import type { Listener } from "#gen/envoy/config/listener/v3/listener_pb.ts";
import { HttpConnectionManagerSchema } from "#gen/envoy/extensions/filters/network/http_connection_manager/v3/http_connection_manager_pb.ts";
import { TcpProxySchema } from "#gen/envoy/extensions/filters/network/tcp_proxy/v3/tcp_proxy_pb.ts";
import type { Filter } from "#gen/envoy/config/listener/v3/listener_components_pb.ts";
import { proxyFromNode } from "../../../mod/pilot/model/proxy.ts";
import { buildListeners } from "../../../mod/pilot/translate/mod.ts";
import { pushFrom, sidecar } from "../_push.ts";

const SERVICES = `
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: { name: web, namespace: app }
spec:
  hosts: [web.app.svc.cluster.local]
  location: MESH_INTERNAL
  resolution: STATIC
  ports: [{ number: 80, name: http, protocol: HTTP }]
  endpoints: [{ address: 10.0.0.1, labels: { app: web } }]
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: { name: db, namespace: app }
spec:
  hosts: [db.app.svc.cluster.local]
  addresses: [10.96.0.5]
  location: MESH_INTERNAL
  resolution: STATIC
  ports: [{ number: 5432, name: tcp, protocol: TCP }]
  endpoints: [{ address: 10.0.0.2 }]
`;

const find = (ls: Listener[], name: string) => {
  const l = ls.find((x) => x.name === name);
  if (!l) throw new Error(`no listener ${name} in ${ls.map((x) => x.name).join(", ")}`);
  return l;
};
const hcm = (f: Filter) =>
  f.configType.case === "typedConfig"
    ? anyUnpack(f.configType.value, HttpConnectionManagerSchema)
    : undefined;
const tcp = (f: Filter) =>
  f.configType.case === "typedConfig" ? anyUnpack(f.configType.value, TcpProxySchema) : undefined;

describe("buildListeners() for sidecars", () => {
  const push = pushFrom(SERVICES);
  const listeners = buildListeners(push, sidecar("10.9.9.9", "app"));

  test("buildListeners() emits virtualOutbound on 15001 handing off by original destination", () => {
    const vo = find(listeners, "virtualOutbound");
    expect(vo.useOriginalDst).toBe(true);
    expect(vo.address?.address.value).toMatchObject({ address: "0.0.0.0", portSpecifier: { value: 15001 } });
    const last = vo.filterChains.at(-1)!;
    expect(last.name).toBe("PassthroughFilterChain");
    expect(tcp(last.filters[0]!)?.clusterSpecifier).toEqual({ case: "cluster", value: "PassthroughCluster" });
  });

  test("buildListeners() emits an unbound 0.0.0.0_PORT HTTP listener on RDS named by the port", () => {
    const l = find(listeners, "0.0.0.0_80");
    expect(l.bindToPort).toBe(false);
    const m = hcm(l.filterChains[0]!.filters[0]!)!;
    expect(m.routeSpecifier.case === "rds" && m.routeSpecifier.value.routeConfigName).toBe("80");
    expect(m.statPrefix).toBe("outbound_0.0.0.0_80");
    expect(m.useRemoteAddress).toBe(false);
    expect(m.normalizePath).toBe(true);
    expect(m.tracing).toBeUndefined();
    expect(m.httpFilters.map((f) => f.name)).toEqual([
      "envoy.filters.http.fault",
      "envoy.filters.http.cors",
      "envoy.filters.http.router",
    ]);
  });

  test("buildListeners() emits VIP_PORT with a TCP proxy for TCP services with addresses", () => {
    const l = find(listeners, "10.96.0.5_5432");
    expect(l.bindToPort).toBe(false);
    expect(tcp(l.filterChains[0]!.filters[0]!)?.clusterSpecifier).toEqual({
      case: "cluster",
      value: "outbound|5432||db.app.svc.cluster.local",
    });
    expect(listeners.some((x) => x.name === "0.0.0.0_5432")).toBe(false);
  });

  test("buildListeners() emits virtualInbound with a chain per served port and a passthrough chain", () => {
    const own = buildListeners(push, sidecar("10.0.0.1", "app", { app: "web" }));
    const vi = find(own, "virtualInbound");
    expect(vi.address?.address.value).toMatchObject({ portSpecifier: { value: 15006 } });
    // The default mTLS mode is PERMISSIVE: an mTLS and a plaintext chain per port, told apart by the TLS inspector.
    expect(vi.listenerFilters.map((f) => f.name)).toEqual([
      "envoy.filters.listener.original_dst",
      "envoy.filters.listener.tls_inspector",
    ]);
    expect(vi.filterChains.map((c) => [c.name, c.filterChainMatch?.destinationPort])).toEqual([
      ["virtualInbound-blackhole", 15006],
      ["inbound|80||-mtls", 80],
      ["inbound|80||", 80],
      ["InboundPassthroughFilterChain-mtls", undefined],
      ["InboundPassthroughFilterChain", undefined],
    ]);
    const m = hcm(vi.filterChains[2]!.filters[0]!)!;
    expect(m.routeSpecifier.case).toBe("routeConfig");
    const rc = m.routeSpecifier.case === "routeConfig" ? m.routeSpecifier.value : undefined;
    expect(rc?.virtualHosts[0]?.routes[0]?.action.value).toMatchObject({
      clusterSpecifier: { value: "inbound|80||" },
    });
  });

  test("buildListeners() gives a CIDR range to the first service claiming it, once", () => {
    const range = (name: string) => `
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: { name: ${name}, namespace: app }
spec:
  hosts: [${name}.example.com]
  addresses: [10.70.0.0/16]
  location: MESH_EXTERNAL
  resolution: NONE
  ports: [{ number: 5432, name: tcp, protocol: TCP }]
`;
    const ls = buildListeners(pushFrom(range("alpha"), range("beta")), sidecar("10.9.9.9", "app"));
    const chains = find(ls, "0.0.0.0_5432").filterChains;
    expect(chains.map((c) => c.name)).toEqual(["outbound|5432||alpha.example.com", "PassthroughFilterChain"]);
    expect(chains[0]!.filterChainMatch?.prefixRanges.map((r) => `${r.addressPrefix}/${r.prefixLen}`)).toEqual(
      ["10.70.0.0/16"],
    );
  });

  test("buildListeners() sends unknown traffic to BlackHoleCluster under REGISTRY_ONLY", () => {
    const locked = pushFrom(
      SERVICES,
      `
apiVersion: config.meshd.io/v1alpha1
kind: MeshConfig
metadata: { name: mesh, namespace: istio-system }
spec: { outboundTrafficPolicy: { mode: REGISTRY_ONLY } }
`,
    );
    const vo = find(buildListeners(locked, sidecar("10.9.9.9", "app")), "virtualOutbound");
    expect(vo.filterChains.at(-1)!.name).toBe("BlackHoleFilterChain");
  });
});

describe("buildListeners() for routers", () => {
  test("buildListeners() emits one bound listener per gateway port and no virtual listeners", () => {
    const push = pushFrom(
      SERVICES,
      `
apiVersion: networking.istio.io/v1
kind: Gateway
metadata: { name: gw, namespace: app }
spec:
  selector: { istio: ingress }
  servers:
    - port: { number: 8080, name: http, protocol: HTTP }
      hosts: ["*"]
    - port: { number: 8443, name: https, protocol: HTTPS }
      hosts: ["app/web.example.com"]
      tls: { mode: SIMPLE, credentialName: web-cert }
`,
    );
    const router = proxyFromNode({
      id: "router~10.1.1.1~gw-1.app~app.svc.cluster.local",
      metadata: { LABELS: { istio: "ingress" } },
    });
    const ls = buildListeners(push, router);
    expect(ls.map((l) => l.name)).toEqual(["0.0.0.0_8080", "0.0.0.0_8443"]);
    const http = hcm(ls[0]!.filterChains[0]!.filters[0]!)!;
    expect(http.routeSpecifier.case === "rds" && http.routeSpecifier.value.routeConfigName).toBe("http.8080");
    expect(http.useRemoteAddress).toBe(true);
    expect(ls[0]!.bindToPort).toBeUndefined();
    const tls = ls[1]!.filterChains[0]!;
    expect(tls.filterChainMatch?.serverNames).toEqual(["web.example.com"]);
    expect(tls.transportSocket?.name).toBe("envoy.transport_sockets.tls");
    const https = hcm(tls.filters[0]!)!;
    expect(https.routeSpecifier.case === "rds" && https.routeSpecifier.value.routeConfigName).toBe(
      "https.8443.https.gw.app",
    );
    expect(ls[1]!.listenerFilters.map((f) => f.name)).toEqual(["envoy.filters.listener.tls_inspector"]);
  });
});
