import { describe, expect, test } from "bun:test";
import { anyUnpack } from "@bufbuild/protobuf/wkt";
import type { Listener } from "#gen/envoy/config/listener/v3/listener_pb.ts";
import { HttpConnectionManagerSchema } from "#gen/envoy/extensions/filters/network/http_connection_manager/v3/http_connection_manager_pb.ts";
import type { VirtualServiceSpec } from "../../../mod/api/kinds/networking.ts";
import type { Resource } from "../../../mod/api/resource.ts";
import type { ConfigSnapshot } from "../../../mod/galley/mod.ts";
import { createPushContext } from "../../../mod/pilot/model/push_context.ts";
import { proxyFromNode } from "../../../mod/pilot/model/proxy.ts";
import { grpcUnsupported } from "../../../mod/pilot/translate/grpc/unsupported.ts";
import { buildListeners, buildRoutes } from "../../../mod/pilot/translate/mod.ts";
import { claimMatcher, translateRouteMatch } from "../../../mod/pilot/translate/route_match.ts";
import {
  claimConditions,
  claimPath,
  headerConditions,
  planHttpRoutes,
} from "../../../mod/pilot/translate/route_plan.ts";
import { pushFrom } from "../_push.ts";

const ISSUER_A = "https://a.example.com";
const ISSUER_B = "https://b.example.com";

const GATEWAY = `
apiVersion: networking.istio.io/v1
kind: Gateway
metadata: { name: gw, namespace: edge }
spec:
  selector: { istio: edge }
  servers:
    - port: { number: 80, name: http, protocol: HTTP }
      hosts: ["api.example.com"]
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: { name: api, namespace: edge }
spec:
  hosts: [v1.edge.svc.cluster.local, v2.edge.svc.cluster.local]
  location: MESH_INTERNAL
  resolution: STATIC
  ports:
    - { number: 8080, name: http, protocol: HTTP }
  endpoints:
    - { address: 10.1.0.1 }
`;

const AUTHN = (issuers: string[]) => `
apiVersion: security.istio.io/v1
kind: RequestAuthentication
metadata: { name: jwt, namespace: edge }
spec:
  selector:
    matchLabels: { istio: edge }
  jwtRules:
${issuers.map((i) => `    - { issuer: "${i}", jwksUri: "${i}/jwks" }`).join("\n")}
`;

const ROUTES = `
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: { name: api, namespace: edge }
spec:
  hosts: [api.example.com]
  gateways: [gw]
  http:
    - name: admins
      match:
        - headers:
            "@request.auth.claims.groups": { exact: admin }
      route:
        - destination: { host: v2, port: { number: 8080 } }
    - name: not-guests
      match:
        - withoutHeaders:
            "@request.auth.claims[tier]": { exact: guest }
      route:
        - destination: { host: v2, port: { number: 8080 } }
    - name: rest
      route:
        - destination: { host: v1, port: { number: 8080 } }
`;

const router = proxyFromNode({
  id: "router~10.9.0.1~gw-1.edge~edge.svc.cluster.local",
  metadata: { NAMESPACE: "edge", LABELS: { istio: "edge" } },
});

function gatewayRoutes(push: ReturnType<typeof pushFrom>) {
  const rc = buildRoutes(push, router).find((r) => r.name === "http.80")!;
  return rc.virtualHosts.find((v) => v.name === "api.example.com:80")!.routes;
}

function httpFilterNames(listeners: Listener[]): string[] {
  const f = listeners[0]!.filterChains[0]!.filters[0]!;
  if (f.configType.case !== "typedConfig") throw new Error("typed config expected");
  return anyUnpack(f.configType.value, HttpConnectionManagerSchema)!.httpFilters.map((h) => h.name);
}

describe("routing on JWT claims", () => {
  test("claimPath() reads Istio's dot and bracket forms and nothing else", () => {
    expect(claimPath("@request.auth.claims.groups")).toEqual(["groups"]);
    expect(claimPath("@request.auth.claims.a.b")).toEqual(["a", "b"]);
    expect(claimPath("@request.auth.claims[realm][role]")).toEqual(["realm", "role"]);
    expect(claimPath("@Request.Auth.Claims[x.y]")).toEqual(["x.y"]);
    expect(claimPath("@request.auth.claims")).toBeUndefined();
    expect(claimPath("@request.auth.claims[]")).toBeUndefined();
    expect(claimPath("x-groups")).toBeUndefined();
  });

  test("claim names are claim conditions, not header conditions", () => {
    const m = {
      headers: { "@request.auth.claims.groups": { exact: "admin" }, "x-debug": { exact: "1" } },
      withoutHeaders: { "@request.auth.claims.tier": { exact: "guest" } },
    };
    expect(headerConditions(m).map((c) => c.name)).toEqual(["x-debug"]);
    expect(claimConditions(m)).toEqual([
      { path: ["groups"], match: { exact: "admin" }, invert: false },
      { path: ["tier"], match: { exact: "guest" }, invert: true },
    ]);
  });

  test("claimMatcher() reads the issuer's payload and takes a string or a list element", () => {
    const m = claimMatcher({ issuer: ISSUER_A, path: ["groups"], match: { exact: "admin" }, invert: false });
    expect(m.filter).toBe("envoy.filters.http.jwt_authn");
    expect(m.path.map((p) => p.segment.value)).toEqual([ISSUER_A, "groups"]);
    const v = m.value!.matchPattern;
    expect(v.case).toBe("orMatch");
    if (v.case !== "orMatch") return;
    expect(v.value.valueMatchers.map((x) => x.matchPattern.case)).toEqual(["stringMatch", "listMatch"]);
    const present = claimMatcher({ issuer: ISSUER_A, path: ["sub"], invert: true });
    expect(present.value!.matchPattern.case).toBe("presentMatch");
    expect(present.invert).toBe(true);
    expect(
      translateRouteMatch(undefined, [{ issuer: ISSUER_A, path: ["sub"], invert: false }]).dynamicMetadata,
    )
      .toHaveLength(1);
  });

  test("a gateway's routes on claims become one route per issuer, exclusions apply to every issuer", () => {
    const routes = gatewayRoutes(pushFrom(GATEWAY, AUTHN([ISSUER_A, ISSUER_B]), ROUTES));
    expect(routes.map((r) => r.name)).toEqual(["admins", "admins", "not-guests", "rest"]);
    const keys = (i: number) => routes[i]!.match!.dynamicMetadata.map((d) => d.path[0]!.segment.value);
    expect(keys(0)).toEqual([ISSUER_A]);
    expect(keys(1)).toEqual([ISSUER_B]);
    expect(keys(2)).toEqual([ISSUER_A, ISSUER_B]);
    expect(routes[2]!.match!.dynamicMetadata.every((d) => d.invert)).toBe(true);
    expect(routes[3]!.match!.dynamicMetadata).toEqual([]);
  });

  test("without a RequestAuthentication a route needing a claim is left out, one excluding claims matches all", () => {
    const routes = gatewayRoutes(pushFrom(GATEWAY, ROUTES));
    expect(routes.map((r) => r.name)).toEqual(["not-guests", "rest"]);
    expect(routes[0]!.match!.dynamicMetadata).toEqual([]);
  });

  test("the gateway runs the JWT filter before RBAC when a RequestAuthentication selects it", () => {
    expect(httpFilterNames(buildListeners(pushFrom(GATEWAY, AUTHN([ISSUER_A]), ROUTES), router))[0])
      .toBe("envoy.filters.http.jwt_authn");
    expect(httpFilterNames(buildListeners(pushFrom(GATEWAY, ROUTES), router)))
      .not.toContain("envoy.filters.http.jwt_authn");
  });

  test("proxies other than gateways have no verified claims: a route needing one is left out", () => {
    const push = pushFrom(GATEWAY, AUTHN([ISSUER_A]), ROUTES);
    const vs = push.virtualServices(router, "edge/gw")[0]!;
    const client = proxyFromNode({
      id: "sidecar~10.9.0.2~c.edge~edge.svc.cluster.local",
      metadata: { NAMESPACE: "edge", LABELS: { istio: "edge" } },
    });
    const rules = vs.spec.http!;
    const at = (proxy: typeof router, i: number) =>
      planHttpRoutes(rules[i]!, rules[i]!.match?.[0], vs, { push, proxy, port: 80, gateways: ["edge/gw"] });
    expect(at(router, 0).map((p) => p.claims?.[0]?.issuer)).toEqual([ISSUER_A]);
    expect(at(client, 0)).toEqual([]);
    expect(at(client, 1).map((p) => p.claims)).toEqual([undefined]);
  });

  test("gRPC clients, which verify no JWT, are told which routes on claims they do not get", () => {
    // Validation keeps claims to gateway-bound VirtualServices; this config skips it.
    const valid = pushFrom(GATEWAY, ROUTES).config;
    const meshBound = (r: Resource) =>
      r.kind === "VirtualService"
        ? {
          ...r,
          spec: { ...(r.spec as VirtualServiceSpec), hosts: ["v1.edge.svc.cluster.local"], gateways: [] },
        }
        : r;
    const config: ConfigSnapshot = {
      ...valid,
      list: <S>(group: string, kind: string) => valid.list(group, kind).map(meshBound) as Resource<S>[],
    };
    const push = createPushContext({ config });
    const client = proxyFromNode({
      id: "proxyless~10.9.0.2~c.edge~edge.svc.cluster.local",
      metadata: { NAMESPACE: "edge", GENERATOR: "grpc" },
    });
    const gaps = grpcUnsupported(push, client).filter((g) => g.reason.includes("@request.auth.claims"));
    expect(gaps.map((g) => [`${g.resource} ${g.field}`, g.reason.startsWith("route left out")])).toEqual([
      ["route v1.edge.svc.cluster.local:8080 edge/api http[0].match[0]", true],
      ["route v1.edge.svc.cluster.local:8080 edge/api http[1].match[0]", false],
    ]);
  });
});
