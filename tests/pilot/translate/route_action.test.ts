import { describe, expect, test } from "bun:test";
import { anyUnpack } from "@bufbuild/protobuf/wkt";
import {
  RedirectAction_RedirectResponseCode,
  type Route,
} from "#gen/envoy/config/route/v3/route_components_pb.ts";
import { HTTPFaultSchema } from "#gen/envoy/extensions/filters/http/fault/v3/fault_pb.ts";
import { CorsPolicySchema } from "#gen/envoy/extensions/filters/http/cors/v3/cors_pb.ts";
import type { HTTPRoute, VirtualServiceSpec } from "../../../mod/api/kinds/networking.ts";
import type { Resource } from "../../../mod/api/resource.ts";
import {
  defaultRoute,
  destinationCluster,
  hashPolicy,
  type RouteContext,
  translateHttpRoute,
} from "../../../mod/pilot/translate/route_action.ts";
import { pushFrom, sidecar } from "../_push.ts";

const push = pushFrom(`
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: { name: api, namespace: web }
spec:
  hosts: [api.web.svc.cluster.local]
  location: MESH_INTERNAL
  resolution: STATIC
  ports: [{ number: 8000, name: http, protocol: HTTP }]
  endpoints: [{ address: 10.0.0.1 }]
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: { name: multi, namespace: web }
spec:
  hosts: [multi.web.svc.cluster.local]
  location: MESH_INTERNAL
  resolution: STATIC
  ports: [{ number: 80, name: http, protocol: HTTP }, { number: 81, name: http2, protocol: HTTP }]
  endpoints: [{ address: 10.0.0.2 }]
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: { name: api, namespace: web }
spec:
  host: api
  trafficPolicy:
    loadBalancer: { consistentHash: { httpHeaderName: x-user } }
`);
const proxy = sidecar("10.9.9.9", "web");
const ctx: RouteContext = { push, proxy, port: 8000, gateways: ["mesh"] };
const vs = (http: HTTPRoute[]): Resource<VirtualServiceSpec> => ({
  group: "networking.istio.io",
  version: "v1",
  kind: "VirtualService",
  metadata: { name: "vs", namespace: "web" },
  spec: { hosts: ["api"], http },
  source: { file: "t", line: 1, col: 1 },
  positionOf: () => ({ file: "t", line: 1, col: 1 }),
});
const translate = (http: HTTPRoute, c: RouteContext = ctx): Route =>
  translateHttpRoute(http, http.match?.[0], vs([http]), c)!;
const action = (r: Route) => {
  if (r.action.case !== "route") throw new Error(`route action expected, got ${r.action.case}`);
  return r.action.value;
};

describe("destinationCluster()", () => {
  test("destinationCluster() picks the destination port, the only port, or the listener port", () => {
    expect(destinationCluster({ host: "api", subset: "v1" }, "web", ctx)).toBe(
      "outbound|8000|v1|api.web.svc.cluster.local",
    );
    expect(destinationCluster({ host: "multi", port: { number: 81 } }, "web", ctx)).toBe(
      "outbound|81||multi.web.svc.cluster.local",
    );
    expect(destinationCluster({ host: "multi" }, "web", { ...ctx, port: 80 })).toBe(
      "outbound|80||multi.web.svc.cluster.local",
    );
    expect(destinationCluster({ host: "unknown.example.com" }, "web", ctx)).toBe(
      "outbound|8000||unknown.example.com",
    );
  });
});

describe("translateHttpRoute()", () => {
  test("translateHttpRoute() names routes by rule and match", () => {
    const r = translateHttpRoute(
      {
        name: "rule",
        match: [{ name: "m", uri: { prefix: "/x" } }],
        route: [{ destination: { host: "api" } }],
      },
      { name: "m", uri: { prefix: "/x" } },
      vs([]),
      ctx,
    )!;
    expect(r.name).toBe("rule.m");
  });

  test("translateHttpRoute() sends one destination to a cluster, several to weighted clusters", () => {
    expect(action(translate({ route: [{ destination: { host: "api" } }] })).clusterSpecifier).toEqual({
      case: "cluster",
      value: "outbound|8000||api.web.svc.cluster.local",
    });
    const weighted = action(translate({
      route: [
        { destination: { host: "api", subset: "a" }, weight: 70 },
        { destination: { host: "api", subset: "b" }, weight: 30 },
        { destination: { host: "api", subset: "c" }, weight: 0 },
      ],
    })).clusterSpecifier;
    expect(weighted.case === "weightedClusters" && weighted.value.clusters.map((c) => [c.name, c.weight]))
      .toEqual([
        ["outbound|8000|a|api.web.svc.cluster.local", 70],
        ["outbound|8000|b|api.web.svc.cluster.local", 30],
      ]);
  });

  test("translateHttpRoute() disables the timeout by default and sets the VirtualService's", () => {
    expect(action(translate({ route: [{ destination: { host: "api" } }] })).timeout).toMatchObject({
      seconds: 0n,
      nanos: 0,
    });
    const a = action(translate({ timeout: "2.5s", route: [{ destination: { host: "api" } }] }));
    expect(a.timeout).toMatchObject({ seconds: 2n, nanos: 500_000_000 });
    expect(a.maxStreamDuration?.grpcTimeoutHeaderMax).toMatchObject({ seconds: 2n });
  });

  test("translateHttpRoute() adds the DestinationRule's hash policy and keeps retries on the same host", () => {
    const a = action(translate({ route: [{ destination: { host: "api" } }] }));
    expect(a.hashPolicy[0]?.policySpecifier).toMatchObject({
      case: "header",
      value: { headerName: "x-user" },
    });
    expect(a.retryPolicy?.retryHostPredicate).toEqual([]);
  });

  test("translateHttpRoute() rewrites prefix and authority, or by regex", () => {
    const a = action(
      translate({
        rewrite: { uri: "/v2/", authority: "new.host" },
        route: [{ destination: { host: "api" } }],
      }),
    );
    expect(a.prefixRewrite).toBe("/v2/");
    expect(a.hostRewriteSpecifier).toEqual({ case: "hostRewriteLiteral", value: "new.host" });
    const re = action(
      translate({
        rewrite: { uriRegexRewrite: { match: "^/a/(.*)$", rewrite: "/b/\\1" } },
        route: [{ destination: { host: "api" } }],
      }),
    );
    expect(re.regexRewrite?.pattern?.regex).toBe("^/a/(.*)$");
    expect(re.regexRewrite?.substitution).toBe("/b/\\1");
  });

  test("translateHttpRoute() mirrors with a fraction, 100% when no percentage is given", () => {
    const a = action(
      translate({
        mirror: { host: "api", subset: "shadow" },
        mirrorPercentage: { value: 2.5 },
        route: [{ destination: { host: "api" } }],
      }),
    );
    expect(a.requestMirrorPolicies[0]?.cluster).toBe("outbound|8000|shadow|api.web.svc.cluster.local");
    expect(a.requestMirrorPolicies[0]?.runtimeFraction?.defaultValue).toMatchObject({
      numerator: 25000,
      denominator: 2,
    });
    const none = action(
      translate({
        mirror: { host: "api" },
        mirrorPercentage: { value: 0 },
        route: [{ destination: { host: "api" } }],
      }),
    );
    expect(none.requestMirrorPolicies).toEqual([]);
    const many = action(
      translate({ mirrors: [{ destination: { host: "api" } }], route: [{ destination: { host: "api" } }] }),
    );
    expect(many.requestMirrorPolicies[0]?.runtimeFraction?.defaultValue).toMatchObject({
      numerator: 100,
      denominator: 0,
    });
  });

  test("translateHttpRoute() redirects without :80 for http and with the request port when asked", () => {
    const r = translate({
      redirect: { uri: "/new", authority: "a.example.com", port: 80, redirectCode: 307 },
    });
    expect(r.action.case).toBe("redirect");
    if (r.action.case === "redirect") {
      expect(r.action.value.portRedirect).toBe(0);
      expect(r.action.value.responseCode).toBe(RedirectAction_RedirectResponseCode.TEMPORARY_REDIRECT);
      expect(r.action.value.pathRewriteSpecifier).toEqual({ case: "pathRedirect", value: "/new" });
    }
    const derived = translate({ redirect: { derivePort: "FROM_REQUEST_PORT" } });
    expect(derived.action.case === "redirect" && derived.action.value.portRedirect).toBe(8000);
  });

  test("translateHttpRoute() answers directly with a body", () => {
    const r = translate({ directResponse: { status: 503, body: { string: "down" } } });
    expect(r.action.case === "directResponse" && r.action.value.status).toBe(503);
    expect(r.action.case === "directResponse" && r.action.value.body?.specifier).toEqual({
      case: "inlineString",
      value: "down",
    });
  });

  test("translateHttpRoute() puts fault and CORS in typed_per_filter_config", () => {
    const r = translate({
      fault: { abort: { httpStatus: 500, percentage: { value: 0.01 } } },
      corsPolicy: { allowOrigins: [{ exact: "https://a.example.com" }], allowMethods: ["GET"] },
      route: [{ destination: { host: "api" } }],
    });
    const fault = anyUnpack(r.typedPerFilterConfig["envoy.filters.http.fault"]!, HTTPFaultSchema)!;
    expect(fault.abort?.percentage).toMatchObject({ numerator: 100, denominator: 2 });
    const cors = anyUnpack(r.typedPerFilterConfig["envoy.filters.http.cors"]!, CorsPolicySchema)!;
    expect(cors.allowMethods).toBe("GET");
  });

  test("translateHttpRoute() skips matches for other ports, other sources and JWT claims", () => {
    expect(translateHttpRoute({ route: [] }, { port: 1 }, vs([]), ctx)).toBeUndefined();
    expect(translateHttpRoute({ route: [] }, { sourceLabels: { a: "b" } }, vs([]), ctx)).toBeUndefined();
    expect(
      translateHttpRoute(
        { route: [] },
        { headers: { "@request.auth.claims.sub": { exact: "x" } } },
        vs([]),
        ctx,
      ),
    )
      .toBeUndefined();
  });
});

describe("defaultRoute()", () => {
  test("defaultRoute() sends everything to the service's cluster with Istio's default retries", () => {
    const r = defaultRoute("multi.web.svc.cluster.local", 80, { ...ctx, port: 80 });
    expect(r.name).toBe("default");
    const a = action(r);
    expect(a.clusterSpecifier).toEqual({
      case: "cluster",
      value: "outbound|80||multi.web.svc.cluster.local",
    });
    expect(a.retryPolicy?.numRetries).toBe(2);
    expect(a.retryPolicy?.retryHostPredicate[0]?.name).toBe("envoy.retry_host_predicates.previous_hosts");
  });

  test("hashPolicy() covers header, cookie, source IP and query parameter", () => {
    expect(hashPolicy({ httpCookie: { name: "s", ttl: "10s" } })?.policySpecifier.case).toBe("cookie");
    expect(hashPolicy({ useSourceIp: true })?.policySpecifier.case).toBe("connectionProperties");
    expect(hashPolicy({ httpQueryParameterName: "q" })?.policySpecifier.case).toBe("queryParameter");
    expect(hashPolicy(undefined)).toBeUndefined();
  });
});
