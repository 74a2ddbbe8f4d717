import { describe, expect, test } from "bun:test";
import { mergeDelegateMatches, mergeDelegateRoute } from "../../../mod/pilot/model/push_context.ts";
import { buildGrpcRoutes } from "../../../mod/pilot/translate/grpc/mod.ts";
import { serviceRoutePlans } from "../../../mod/pilot/translate/route_plan.ts";
import { pushFrom, sidecar } from "../_push.ts";

const SERVICES = `
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: { name: shop, namespace: shop }
spec:
  hosts: [front.shop.svc.cluster.local, reviews.shop.svc.cluster.local]
  location: MESH_INTERNAL
  resolution: STATIC
  ports:
    - { number: 9080, name: http, protocol: HTTP }
  endpoints:
    - { address: 10.1.0.1 }
`;

const ROOT = `
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: { name: front, namespace: shop }
spec:
  hosts: [front.shop.svc.cluster.local]
  http:
    - name: reviews
      match:
        - uri: { prefix: /reviews }
      timeout: 3s
      delegate: { name: reviews, namespace: team }
    - name: rest
      route:
        - destination: { host: front.shop.svc.cluster.local }
`;

const DELEGATE = (exportTo: string) => `
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: { name: reviews, namespace: team }
spec:
  exportTo: [${exportTo}]
  http:
    - name: jason
      match:
        - uri: { prefix: /reviews/v2 }
          headers: { end-user: { exact: jason } }
      route:
        - destination: { host: reviews.shop.svc.cluster.local }
    - name: outside
      match:
        - uri: { prefix: /ratings }
      route:
        - destination: { host: reviews.shop.svc.cluster.local }
`;

const client = sidecar("10.0.0.9", "shop", { app: "client" });
const FRONT = "front.shop.svc.cluster.local";

describe("VirtualService delegate", () => {
  test("mergeDelegateMatches() narrows the root's match and refuses what lies outside it", () => {
    expect(mergeDelegateMatches([{ uri: { prefix: "/a" } }], [{ uri: { prefix: "/a/b" }, name: "x" }]))
      .toEqual([{ uri: { prefix: "/a/b" }, name: "x" }]);
    expect(mergeDelegateMatches([{ uri: { prefix: "/a" } }], [{ uri: { exact: "/b" } }])).toBeUndefined();
    expect(mergeDelegateMatches([{ uri: { exact: "/a" } }], [{ uri: { prefix: "/a" } }])).toBeUndefined();
    expect(mergeDelegateMatches([{ uri: { regex: "/a.*" } }], [{ uri: { prefix: "/a" } }])).toBeUndefined();
    expect(mergeDelegateMatches([{ headers: { h: { exact: "1" } } }], [{ headers: { h: { exact: "2" } } }]))
      .toBeUndefined();
    expect(mergeDelegateMatches([{ uri: { prefix: "/a" }, name: "r" }], [{ headers: { h: { exact: "1" } } }]))
      .toEqual([{ uri: { prefix: "/a" }, headers: { h: { exact: "1" } }, name: "r" }]);
    expect(mergeDelegateMatches(undefined, [{ uri: { prefix: "/x" } }])).toEqual([{ uri: { prefix: "/x" } }]);
    expect(mergeDelegateMatches([{ uri: { prefix: "/a" } }], undefined)).toEqual([{ uri: { prefix: "/a" } }]);
  });

  test("mergeDelegateRoute() joins names and inherits what the delegate leaves unset", () => {
    const merged = mergeDelegateRoute(
      { name: "root", timeout: "3s", retries: { attempts: 1 }, delegate: { name: "d" } },
      { name: "leaf", timeout: "1s", route: [{ destination: { host: "x" } }] },
    );
    expect(merged).toEqual({
      name: "root-leaf",
      timeout: "1s",
      retries: { attempts: 1 },
      route: [{ destination: { host: "x" } }],
    });
  });

  test("a root's delegating rule is replaced by the delegate's rules, merged; the delegate routes nothing itself", () => {
    const push = pushFrom(SERVICES, ROOT, DELEGATE("shop"));
    expect(push.virtualServices(client, "mesh").map((vs) => vs.metadata.name)).toEqual(["front"]);
    const plans = serviceRoutePlans(push, client, FRONT, 9080).routes;
    expect(plans.map((p) => [p.name, p.match?.uri, p.timeout, p.destinations[0]?.host])).toEqual([
      ["reviews-jason", { prefix: "/reviews/v2" }, "3s", "reviews.shop.svc.cluster.local"],
      ["rest", undefined, undefined, FRONT],
    ]);
    expect(plans[0]!.match?.headers).toEqual({ "end-user": { exact: "jason" } });
  });

  test("a delegate not exported to the root's namespace is not used", () => {
    const push = pushFrom(SERVICES, ROOT, DELEGATE("team"));
    expect(serviceRoutePlans(push, client, FRONT, 9080).routes.map((p) => p.name)).toEqual(["rest"]);
  });

  test("proxyless gRPC gets the same merged routes", () => {
    const push = pushFrom(SERVICES, ROOT, DELEGATE("shop"));
    const grpc = sidecar("10.0.0.9", "shop", { app: "client" });
    const rc = buildGrpcRoutes(push, grpc, [`${FRONT}:9080`]).find((r) => r.name === `${FRONT}:9080`);
    expect(rc!.virtualHosts[0]!.routes.map((r) => r.name)).toEqual(["reviews-jason", "rest"]);
  });

  test("a delegate's short host names are read in its own namespace", () => {
    const push = pushFrom(
      SERVICES,
      ROOT,
      `
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: { name: reviews, namespace: team }
spec:
  http:
    - route:
        - destination: { host: reviews-backend }
`,
    );
    const plans = serviceRoutePlans(push, client, FRONT, 9080).routes;
    expect(plans[0]!.destinations[0]!.host).toBe("reviews-backend.team.svc.cluster.local");
  });
});
