/**
 * routeOutbound() with VirtualService tcp routes (outbound_route.ts) over the view decoded from
 * what pilot's node-proxy generator serves: weighted subsets, a route to another host, the
 * longest destination prefix, host names of the explicit proxy, and services without routes.
 */
import { describe, expect, test } from "bun:test";
import { decodeNodeProxyView } from "../../../mod/agent/node_proxy/decode.ts";
import { routeOutbound } from "../../../mod/agent/node_proxy/outbound.ts";
import { cidrHas, matchTcpRoute, pickRouteCluster } from "../../../mod/agent/node_proxy/outbound_route.ts";
import type { NodeProxyView, TcpRoute } from "../../../mod/agent/node_proxy/view.ts";
import { buildNodeProxy } from "../../../mod/pilot/translate/mod.ts";
import { readCase } from "../../pilot/translate/_golden.ts";

const routed = readCase("node_proxy/tcp_routes");
const view = decodeNodeProxyView(buildNodeProxy(routed.push, routed.proxy));

const V1 = "outbound|5432|v1|db.shop.svc.cluster.local";
const V2 = "outbound|5432|v2|db.shop.svc.cluster.local";

function clusterOf(v: NodeProxyView, host: string, port: number, r: number): string {
  const route = routeOutbound(v, host, port, { random: () => r });
  if (route.kind === "service") return route.cluster.name;
  return route.kind === "no-cluster" ? `missing ${route.clusterName}` : "passthrough";
}

describe("routeOutbound() with VirtualService tcp routes", () => {
  test("an 80/20 shift sends draws below 0.8 to v1 and the rest to v2", () => {
    expect(clusterOf(view, "198.18.200.1", 5432, 0)).toBe(V1);
    expect(clusterOf(view, "198.18.200.1", 5432, 0.79)).toBe(V1);
    expect(clusterOf(view, "198.18.200.1", 5432, 0.8)).toBe(V2);
    expect(clusterOf(view, "198.18.200.1", 5432, 0.999)).toBe(V2);
  });

  test("the mesh host name routes like the VIP (explicit proxy)", () => {
    expect(clusterOf(view, "DB.shop.svc.cluster.local.", 5432, 0.9)).toBe(V2);
  });

  test("a route to another host reaches that host's cluster, named as its service", () => {
    const route = routeOutbound(view, "198.18.200.2", 6379, { random: () => 0.5 });
    expect(route.kind).toBe("service");
    if (route.kind !== "service") return;
    expect(route.cluster.name).toBe("outbound|6379||cache-next.shop.svc.cluster.local");
    expect(route.service.host).toBe("cache-next.shop.svc.cluster.local");
    expect(route.cluster.endpoints.map((e) => e.address)).toEqual(["198.18.0.31"]);
  });

  test("ports without a route keep the service's own cluster; other addresses pass through", () => {
    expect(clusterOf(view, "198.18.200.2", 7000, 0)).toBe("outbound|7000||cache.shop.svc.cluster.local");
    expect(clusterOf(view, "198.18.200.9", 5432, 0)).toBe("passthrough");
  });

  test("a route to a cluster the view lacks is no-cluster, not the service's own", () => {
    const tcpRoutes: TcpRoute[] = [{
      ...view.tcpRoutes![1]!,
      clusters: [{ name: "outbound|5432|v9|db.shop.svc.cluster.local", weight: 1 }],
    }];
    expect(clusterOf({ ...view, tcpRoutes }, "198.18.200.1", 5432, 0)).toBe(
      "missing outbound|5432|v9|db.shop.svc.cluster.local",
    );
  });
});

describe("matchTcpRoute() and pickRouteCluster()", () => {
  const route = (destinations: string[], name: string): TcpRoute => ({
    host: `${name}.example`,
    namespace: "ns",
    port: 80,
    destinations,
    clusters: [{ name, weight: 1 }],
  });
  const routes = [
    route(["10.0.0.0/8"], "wide"),
    route(["10.1.0.0/16"], "narrow"),
    route(["fd00::/64"], "v6"),
  ];

  test("the longest matching prefix wins; the port must match; families stay apart", () => {
    expect(matchTcpRoute(routes, "10.1.2.3", 80)?.clusters[0]?.name).toBe("narrow");
    expect(matchTcpRoute(routes, "10.2.2.3", 80)?.clusters[0]?.name).toBe("wide");
    expect(matchTcpRoute(routes, "10.1.2.3", 81)).toBeUndefined();
    expect(matchTcpRoute(routes, "fd00::7", 80)?.clusters[0]?.name).toBe("v6");
    expect(cidrHas("10.0.0.0/8", "fd00::1")).toBe(false);
  });

  test("weights of 0 never win; 100/0 and 0/100 are absolute", () => {
    const split = (a: number, b: number): TcpRoute => ({
      ...route(["10.0.0.0/8"], "x"),
      clusters: [{ name: "a", weight: a }, { name: "b", weight: b }],
    });
    for (const r of [0, 0.5, 0.999999]) {
      expect(pickRouteCluster(split(100, 0), r)).toBe("a");
      expect(pickRouteCluster(split(0, 100), r)).toBe("b");
    }
    expect(pickRouteCluster(split(50, 50), 0.49)).toBe("a");
    expect(pickRouteCluster(split(50, 50), 0.5)).toBe("b");
  });
});
