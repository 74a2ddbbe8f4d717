import { describe, expect, test } from "bun:test";
import { anyUnpack } from "@bufbuild/protobuf/wkt";
import type { Route, RouteAction } from "#gen/envoy/config/route/v3/route_components_pb.ts";
import { HTTPFaultSchema } from "#gen/envoy/extensions/filters/http/fault/v3/fault_pb.ts";
import { FractionalPercent_DenominatorType } from "#gen/envoy/type/v3/percent_pb.ts";
import { buildGrpcRoutes } from "../../../mod/pilot/translate/grpc/mod.ts";
import { pushFrom } from "../_push.ts";
import { destinationRule, ECHO, grpcProxy, MESH, virtualService } from "./_fixture.ts";

const NAME = `${ECHO}:9000`;

function routesOf(http: string | undefined, extra: string[] = [], proxy = grpcProxy()): Route[] {
  const push = pushFrom(...MESH, destinationRule(), ...(http ? [virtualService(http)] : []), ...extra);
  const rcs = buildGrpcRoutes(push, proxy, [NAME]);
  expect(rcs.map((r) => r.name)).toEqual([NAME]);
  expect(rcs[0]!.virtualHosts.map((v) => [v.name, v.domains])).toEqual([[NAME, [NAME]]]);
  return rcs[0]!.virtualHosts[0]!.routes;
}

function actionOf(r: Route): RouteAction {
  if (r.action.case !== "route") throw new Error(`route ${r.name} has action ${r.action.case}`);
  return r.action.value;
}

function faultOf(r: Route) {
  const any = r.typedPerFilterConfig["envoy.filters.http.fault"];
  return any && anyUnpack(any, HTTPFaultSchema);
}

const to = (subset?: string, weight?: number) =>
  `{ destination: { host: ${ECHO}${subset ? `, subset: ${subset}` : ""} }${
    weight !== undefined ? `, weight: ${weight}` : ""
  } }`;

describe("buildGrpcRoutes()", () => {
  test("without a VirtualService, one route sends everything to the whole service", () => {
    const [r, ...rest] = routesOf(undefined);
    expect(rest).toEqual([]);
    expect(r!.match?.pathSpecifier).toEqual({ case: "prefix", value: "/" });
    expect(actionOf(r!).clusterSpecifier).toEqual({ case: "cluster", value: `outbound|9000||${ECHO}` });
    // Istio's default retries, as Envoy's default route has them, in gRPC's status codes.
    expect(actionOf(r!).retryPolicy?.retryOn).toBe("cancelled,unavailable");
    expect(actionOf(r!).retryPolicy?.numRetries).toBe(2);
    expect(actionOf(r!).maxStreamDuration).toBeUndefined();
  });

  test("weighted destinations become weighted clusters whose weights add up to total_weight", () => {
    const [r] = routesOf(`- route: [${to("v1", 90)}, ${to("v2", 10)}]`);
    const cs = actionOf(r!).clusterSpecifier;
    expect(cs.case).toBe("weightedClusters");
    const wc = cs.value as { clusters: { name: string; weight?: number }[]; totalWeight?: number };
    expect(wc.clusters.map((c) => [c.name, c.weight])).toEqual([
      [`outbound|9000|v1|${ECHO}`, 90],
      [`outbound|9000|v2|${ECHO}`, 10],
    ]);
    expect(wc.totalWeight).toBe(100);
  });

  test("a destination with weight 0 is left out, and one left over is a plain cluster", () => {
    const [r] = routesOf(`- route: [${to("v1", 100)}, ${to("v2", 0)}]`);
    expect(actionOf(r!).clusterSpecifier).toEqual({ case: "cluster", value: `outbound|9000|v1|${ECHO}` });
    const [single] = routesOf(`- route: [${to("v2", 0)}]`);
    expect(actionOf(single!).clusterSpecifier).toEqual({
      case: "cluster",
      value: `outbound|9000|v2|${ECHO}`,
    });
  });

  test("matches: path, prefix and regex; headers exact, prefix and regex; withoutHeaders inverted", () => {
    const routes = routesOf(`
- match:
  - uri: { exact: /meshd.test.Echo/Call }
    headers:
      end-user: { exact: jason }
      tier: { prefix: gold }
      trace: { regex: "a+b" }
  - uri: { prefix: /meshd.test. }
    ignoreUriCase: true
    withoutHeaders:
      canary: { exact: "yes" }
  - uri: { regex: "/meshd\\\\..*" }
  route: [${to("v2")}]
- route: [${to("v1")}]`);
    expect(routes.map((r) => r.match?.pathSpecifier.case)).toEqual(["path", "prefix", "safeRegex", "prefix"]);
    expect(routes[0]!.match!.pathSpecifier.value).toBe("/meshd.test.Echo/Call");
    expect(routes[0]!.match!.headers.map((h) => [h.name, h.headerMatchSpecifier.case, h.invertMatch]))
      .toEqual([
        ["end-user", "exactMatch", false],
        ["tier", "prefixMatch", false],
        ["trace", "safeRegexMatch", false],
      ]);
    expect(routes[1]!.match!.caseSensitive).toBe(false);
    expect(routes[1]!.match!.headers.map((h) => [h.name, h.headerMatchSpecifier, h.invertMatch])).toEqual([
      ["canary", { case: "exactMatch", value: "yes" }, true],
    ]);
    expect((routes[2]!.match!.pathSpecifier.value as { regex: string }).regex).toBe("/meshd\\..*");
    expect(routes.map((r) => (actionOf(r).clusterSpecifier.value as string).split("|")[2])).toEqual([
      "v2",
      "v2",
      "v2",
      "v1",
    ]);
  });

  test("matches no gRPC call can satisfy are dropped: query parameters, relative prefixes, non-method paths, other ports or sources", () => {
    const routes = routesOf(
      `
- match:
  - queryParams: { a: { exact: b } }
  - uri: { prefix: relative }
  - uri: { exact: /not-a-method }
  - port: 9999
  - sourceLabels: { app: someone-else }
  - sourceNamespace: prod
  route: [${to("v2")}]
- match:
  - sourceLabels: { app: client }
  route: [${to("v1")}]`,
      [],
      grpcProxy("test", "10.9.9.9", { app: "client" }),
    );
    expect(routes.map((r) => [r.match?.pathSpecifier, actionOf(r).clusterSpecifier.value])).toEqual([
      [{ case: "prefix", value: "/" }, `outbound|9000|v1|${ECHO}`],
    ]);
  });

  test("when no rule of the VirtualService applies, the default route is used, as for Envoy", () => {
    const routes = routesOf(`- match: [{ sourceLabels: { app: someone-else } }]\n  route: [${to("v2")}]`);
    expect(routes.map((r) => [r.name, actionOf(r).clusterSpecifier.value])).toEqual([
      ["default", `outbound|9000||${ECHO}`],
    ]);
  });

  test("when no route can be expressed, one catch-all route fails calls with UNAVAILABLE (gRPC rejects a virtual host without routes)", () => {
    const routes = routesOf(`- match: [{ queryParams: { a: { exact: b } } }]\n  route: [${to("v2")}]`);
    expect(routes).toHaveLength(1);
    expect(routes[0]!.match?.pathSpecifier).toEqual({ case: "prefix", value: "/" });
    expect(actionOf(routes[0]!).clusterSpecifier).toEqual({
      case: "cluster",
      value: `outbound|9000||${ECHO}`,
    });
    expect(faultOf(routes[0]!)?.abort?.errorType).toEqual({ case: "grpcStatus", value: 14 });
    expect(faultOf(routes[0]!)?.abort?.percentage?.numerator).toBe(1_000_000);
  });

  test("redirects and direct responses fail calls through the fault filter instead of an action gRPC rejects", () => {
    const routes = routesOf(`
- match: [{ headers: { x: { exact: a } } }]
  directResponse: { status: 503 }
- match: [{ headers: { x: { exact: b } } }]
  redirect: { uri: /elsewhere }
- route: [${to("v1")}]`);
    expect(routes.map((r) => r.action.case)).toEqual(["route", "route", "route"]);
    expect(faultOf(routes[0]!)?.abort?.errorType).toEqual({ case: "httpStatus", value: 503 });
    expect(faultOf(routes[1]!)?.abort?.errorType).toEqual({ case: "httpStatus", value: 301 });
    expect(faultOf(routes[2]!)).toBeUndefined();
  });

  test("a timeout sets max_stream_duration and grpc_timeout_header_max, as gRPC reads them", () => {
    const [r] = routesOf(`- timeout: 1.5s\n  route: [${to("v1")}]`);
    const a = actionOf(r!);
    expect(a.maxStreamDuration?.maxStreamDuration).toMatchObject({ seconds: 1n, nanos: 500_000_000 });
    expect(a.maxStreamDuration?.grpcTimeoutHeaderMax).toMatchObject({ seconds: 1n, nanos: 500_000_000 });
    expect(a.timeout).toMatchObject({ seconds: 1n, nanos: 500_000_000 });
  });

  test("retries keep the gRPC status codes of retryOn (Envoy's connection failures mean UNAVAILABLE) and the back-off", () => {
    const [r] = routesOf(
      `- retries: { attempts: 3, retryOn: "connect-failure,cancelled,deadline-exceeded,retriable-4xx,unavailable", backoff: 20ms, perTryTimeout: 1s }\n  route: [${
        to("v1")
      }]`,
    );
    const rp = actionOf(r!).retryPolicy!;
    expect(rp.retryOn).toBe("cancelled,deadline-exceeded,unavailable");
    expect(rp.numRetries).toBe(3);
    expect(rp.retryBackOff?.baseInterval).toMatchObject({ seconds: 0n, nanos: 20_000_000 });
    expect(rp.retryBackOff?.maxInterval).toMatchObject({ seconds: 0n, nanos: 200_000_000 });
    const [dflt] = routesOf(`- retries: { attempts: 2 }\n  route: [${to("v1")}]`);
    expect(actionOf(dflt!).retryPolicy?.retryOn).toBe("cancelled,unavailable");
    expect(actionOf(dflt!).retryPolicy?.retryBackOff).toBeUndefined();
    const [off] = routesOf(`- retries: { attempts: 0 }\n  route: [${to("v1")}]`);
    expect(actionOf(off!).retryPolicy).toBeUndefined();
    const [nothingToRetry] = routesOf(
      `- retries: { attempts: 2, retryOn: retriable-4xx }\n  route: [${to("v1")}]`,
    );
    expect(actionOf(nothingToRetry!).retryPolicy).toBeUndefined();
  });

  test("faults become a per-route fault filter override with percentages per million", () => {
    const [r] = routesOf(`
- fault:
    abort: { grpcStatus: PERMISSION_DENIED, percentage: { value: 12.5 } }
    delay: { fixedDelay: 300ms, percentage: { value: 50 } }
  route: [${to("v1")}]`);
    const f = faultOf(r!)!;
    expect(f.abort?.errorType).toEqual({ case: "grpcStatus", value: 7 });
    expect([f.abort?.percentage?.numerator, f.abort?.percentage?.denominator]).toEqual([
      125_000,
      FractionalPercent_DenominatorType.MILLION,
    ]);
    expect(f.delay?.faultDelaySecifier.case).toBe("fixedDelay");
    expect(f.delay?.faultDelaySecifier.value).toMatchObject({ seconds: 0n, nanos: 300_000_000 });
    expect(f.delay?.percentage?.numerator).toBe(500_000);
    // A percentage left unset injects into no call (Istio's rule; Envoy reads it the same way).
    const [http] = routesOf(`- fault: { abort: { httpStatus: 503 } }\n  route: [${to("v1")}]`);
    expect(faultOf(http!)?.abort?.errorType).toEqual({ case: "httpStatus", value: 503 });
    expect(faultOf(http!)?.abort?.percentage?.numerator).toBe(0);
  });

  test("consistent hashing on a header adds a hash policy to the route", () => {
    const push = pushFrom(
      ...MESH,
      destinationRule("loadBalancer:\n  consistentHash: { httpHeaderName: X-User }"),
      virtualService(`- route: [${to("v1")}]`),
    );
    const a = actionOf(buildGrpcRoutes(push, grpcProxy(), [NAME])[0]!.virtualHosts[0]!.routes[0]!);
    expect(
      a.hashPolicy.map((
        h,
      ) => [h.policySpecifier.case, (h.policySpecifier.value as { headerName: string }).headerName]),
    ).toEqual([
      ["header", "x-user"],
    ]);
    const byChannel = pushFrom(
      ...MESH,
      destinationRule("loadBalancer:\n  consistentHash: { useSourceIp: true }"),
    );
    const d = actionOf(buildGrpcRoutes(byChannel, grpcProxy(), [NAME])[0]!.virtualHosts[0]!.routes[0]!);
    expect(
      d.hashPolicy.map((h) => [h.policySpecifier.case, (h.policySpecifier.value as { key: string }).key]),
    ).toEqual([
      ["filterState", "io.grpc.channel_id"],
    ]);
  });

  test('"*" gives one route configuration per listener name, with the same routes under every name', () => {
    const push = pushFrom(
      ...MESH,
      destinationRule(),
      virtualService(`- route: [${to("v2")}]`, "test", "echo"),
    );
    const rcs = buildGrpcRoutes(push, grpcProxy(), "*");
    expect(rcs.map((r) => r.name)).toEqual([NAME, "echo.test.svc:9000", "echo.test:9000", "echo:9000"]);
    for (const rc of rcs) {
      expect(rc.virtualHosts[0]!.domains).toEqual([rc.name]);
      expect(actionOf(rc.virtualHosts[0]!.routes[0]!).clusterSpecifier.value).toBe(
        `outbound|9000|v2|${ECHO}`,
      );
    }
  });
});
