import { describe, expect, test } from "bun:test";
import { proxyFromNode } from "../../../mod/pilot/model/proxy.ts";
import { buildListeners, buildRoutes } from "../../../mod/pilot/translate/mod.ts";
import { virtualServiceFor } from "../../../mod/pilot/translate/route.ts";
import {
  alternateHostNames,
  catchAllVirtualHost,
  serviceDomains,
} from "../../../mod/pilot/translate/virtual_host.ts";
import { pushFrom, sidecar } from "../_push.ts";

const SERVICES = `
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: { name: reviews, namespace: bookinfo }
spec:
  hosts: [reviews.bookinfo.svc.cluster.local]
  addresses: [10.96.1.1]
  location: MESH_INTERNAL
  resolution: STATIC
  ports: [{ number: 9080, name: http, protocol: HTTP }]
  endpoints: [{ address: 10.0.0.1 }]
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: { name: ratings, namespace: other }
spec:
  hosts: [ratings.other.svc.cluster.local]
  location: MESH_INTERNAL
  resolution: STATIC
  ports: [{ number: 9080, name: http, protocol: HTTP }, { number: 5432, name: tcp, protocol: TCP }]
  endpoints: [{ address: 10.0.0.2 }]
`;

const proxy = sidecar("10.9.9.9", "bookinfo");

describe("virtual hosts", () => {
  test("alternateHostNames() gives short names within the proxy's namespace and domain", () => {
    expect(alternateHostNames("reviews.bookinfo.svc.cluster.local", "bookinfo.svc.cluster.local")).toEqual([
      "reviews",
      "reviews.bookinfo.svc.cluster",
      "reviews.bookinfo.svc",
      "reviews.bookinfo",
    ]);
    expect(alternateHostNames("ratings.other.svc.cluster.local", "bookinfo.svc.cluster.local")).toEqual([
      "ratings.other",
      "ratings.other.svc.cluster",
      "ratings.other.svc",
    ]);
    expect(alternateHostNames("api.example.com", "bookinfo.svc.cluster.local")).toEqual([]);
  });

  test("serviceDomains() adds the port to every name and includes single-address VIPs", () => {
    const push = pushFrom(SERVICES);
    const reviews = push.services.find((s) => s.hostname.startsWith("reviews"))!;
    const domains = serviceDomains(reviews, 9080, "bookinfo.svc.cluster.local");
    expect(domains.slice(0, 4)).toEqual([
      "reviews.bookinfo.svc.cluster.local",
      "reviews.bookinfo.svc.cluster.local:9080",
      "reviews",
      "reviews:9080",
    ]);
    expect(domains.slice(-2)).toEqual(["10.96.1.1", "10.96.1.1:9080"]);
  });

  test("catchAllVirtualHost() passes through with ALLOW_ANY and answers 502 with REGISTRY_ONLY", () => {
    const allow = catchAllVirtualHost({ mode: "ALLOW_ANY" });
    expect([allow.name, allow.domains]).toEqual(["allow_any", ["*"]]);
    expect(allow.routes[0]?.action.case === "route" && allow.routes[0].action.value.clusterSpecifier.value)
      .toBe("PassthroughCluster");
    const block = catchAllVirtualHost({ mode: "REGISTRY_ONLY" });
    expect(block.name).toBe("block_all");
    expect(block.routes[0]?.action.case === "directResponse" && block.routes[0].action.value.status).toBe(
      502,
    );
  });
});

describe("buildRoutes()", () => {
  test("buildRoutes() emits one route configuration per outbound HTTP port, named by the port", () => {
    const routes = buildRoutes(pushFrom(SERVICES), proxy);
    expect(routes.map((r) => r.name)).toEqual(["9080"]);
    expect(routes[0]!.virtualHosts.map((v) => v.name)).toEqual([
      "ratings.other.svc.cluster.local:9080",
      "reviews.bookinfo.svc.cluster.local:9080",
      "allow_any",
    ]);
    expect(routes[0]!.validateClusters).toBe(false);
  });

  test("buildRoutes() covers every RDS name the listeners reference", () => {
    const push = pushFrom(SERVICES);
    const rds = buildListeners(push, proxy).flatMap((l) => l.filterChains).flatMap((fc) => fc.filters).map((
      f,
    ) => f.name);
    expect(rds).toContain("envoy.filters.network.http_connection_manager");
    expect(buildRoutes(push, proxy).map((r) => r.name)).toEqual(["9080"]);
  });

  test("buildRoutes() routes a host by the exact VirtualService first, else the most specific wildcard", () => {
    const push = pushFrom(
      SERVICES,
      `
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: { name: broad, namespace: bookinfo }
spec:
  hosts: ["*.svc.cluster.local"]
  http: [{ name: broad, route: [{ destination: { host: reviews } }] }]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: { name: narrow, namespace: bookinfo }
spec:
  hosts: ["*.other.svc.cluster.local"]
  http: [{ name: narrow, route: [{ destination: { host: ratings.other.svc.cluster.local } }] }]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: { name: exact, namespace: bookinfo }
spec:
  hosts: [reviews]
  http: [{ name: exact, route: [{ destination: { host: reviews } }] }]
`,
    );
    const vss = push.virtualServices(proxy, "mesh");
    expect(virtualServiceFor("reviews.bookinfo.svc.cluster.local", vss)?.metadata.name).toBe("exact");
    expect(virtualServiceFor("ratings.other.svc.cluster.local", vss)?.metadata.name).toBe("narrow");
    expect(virtualServiceFor("x.y.svc.cluster.local", vss)?.metadata.name).toBe("broad");
    expect(virtualServiceFor("api.example.com", vss)).toBeUndefined();
    const names = buildRoutes(push, proxy)[0]!.virtualHosts.map((v) => `${v.name}=${v.routes[0]?.name}`);
    expect(names).toEqual([
      "ratings.other.svc.cluster.local:9080=narrow",
      "reviews.bookinfo.svc.cluster.local:9080=exact",
      "allow_any=allow_any",
    ]);
  });

  test("buildRoutes() falls back to the default route when no rule of the VirtualService applies", () => {
    const push = pushFrom(
      SERVICES,
      `
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: { name: reviews, namespace: bookinfo }
spec:
  hosts: [reviews]
  http: [{ match: [{ sourceLabels: { app: nobody } }], route: [{ destination: { host: reviews } }] }]
`,
    );
    const vh = buildRoutes(push, proxy)[0]!.virtualHosts.find((v) => v.name.startsWith("reviews"))!;
    expect(vh.routes.map((r) => r.name)).toEqual(["default"]);
  });

  test("buildRoutes() for a router emits http.PORT and answers 404 where nothing is bound", () => {
    const push = pushFrom(
      SERVICES,
      `
apiVersion: networking.istio.io/v1
kind: Gateway
metadata: { name: gw, namespace: bookinfo }
spec:
  selector: { istio: ingress }
  servers:
    - port: { number: 8080, name: http, protocol: HTTP }
      hosts: ["*"]
`,
    );
    const router = proxyFromNode({
      id: "router~10.1.1.1~gw-1.bookinfo~bookinfo.svc.cluster.local",
      metadata: { LABELS: { istio: "ingress" } },
    });
    const routes = buildRoutes(push, router);
    expect(routes.map((r) => r.name)).toEqual(["http.8080"]);
    expect(routes[0]!.virtualHosts.map((v) => v.name)).toEqual(["blackhole:8080"]);
    expect(
      routes[0]!.virtualHosts[0]!.routes[0]!.action.case === "directResponse" &&
        routes[0]!.virtualHosts[0]!.routes[0]!.action.value.status,
    ).toBe(404);
  });
});
