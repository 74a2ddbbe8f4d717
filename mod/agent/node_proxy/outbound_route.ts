/**
 * VirtualService `tcp` routes on the node proxy's outbound side: which route (from the view's
 * `tcpRoutes`, pilot's `virtualOutbound` chains) takes a connection, and which of its weighted
 * clusters gets it. A destination address matches a route on its port whose destination CIDRs
 * contain it, the longest prefix first as Envoy's filter chain match picks (pilot's order breaks
 * ties); a host name given to the explicit proxy matches the route of that service and port.
 * Each connection picks one cluster at random by weight, as Envoy's TCP proxy does.
 *
 * @module
 */
import { BlockList, isIP } from "node:net";
import type { MeshService, NodeProxyView, TcpRoute } from "./view.ts";

function prefixLength(cidr: string): number {
  const [ip, len] = cidr.split("/") as [string, string | undefined];
  return len === undefined ? (ip.includes(":") ? 128 : 32) : Number(len);
}

/** Whether `address` (an IP) is in `cidr` (`IP/LEN` or a single address). */
export function cidrHas(cidr: string, address: string): boolean {
  const [ip] = cidr.split("/") as [string];
  const family = isIP(ip);
  if (family === 0 || family !== isIP(address)) return false;
  const type = family === 6 ? "ipv6" : "ipv4";
  const list = new BlockList();
  list.addSubnet(ip, prefixLength(cidr), type);
  return list.check(address, type);
}

/**
 * The route that takes a connection to `host:port` (`host` an IP address, or a mesh host name
 * in lower case without a trailing dot), or undefined when none does.
 */
export function matchTcpRoute(
  routes: readonly TcpRoute[],
  host: string,
  port: number,
): TcpRoute | undefined {
  const onPort = routes.filter((r) => r.port === port);
  if (isIP(host) === 0) return onPort.find((r) => r.host === host);
  let best: { route: TcpRoute; len: number } | undefined;
  for (const route of onPort) {
    for (const d of route.destinations) {
      if (!cidrHas(d, host)) continue;
      const len = prefixLength(d);
      if (!best || len > best.len) best = { route, len };
    }
  }
  return best?.route;
}

/**
 * The cluster of `route` a connection goes to, by weight with `r` uniform in [0, 1); clusters
 * with weight 0 never get one.
 */
export function pickRouteCluster(route: TcpRoute, r: number): string {
  const usable = route.clusters.filter((c) => c.weight > 0);
  const total = usable.reduce((n, c) => n + c.weight, 0);
  let at = r * total;
  for (const c of usable) {
    at -= c.weight;
    if (at < 0) return c.name;
  }
  return (usable.at(-1) ?? route.clusters[0]!).name;
}

/** The host of a cluster named `outbound|PORT|SUBSET|HOST`. */
export function clusterHost(name: string): string {
  return name.split("|")[3] ?? "";
}

/**
 * The service a route's cluster belongs to (telemetry's destination service): the view's
 * service of the cluster's host (in the route's namespace when it is the route's own host),
 * else one made from the cluster's host.
 */
export function routeService(view: NodeProxyView, route: TcpRoute, cluster: string): MeshService {
  const host = clusterHost(cluster);
  const own = host === route.host;
  return view.services.find((s) => s.host === host && (!own || s.namespace === route.namespace)) ??
    view.services.find((s) => s.host === host) ??
    { host, namespace: own ? route.namespace : "", addresses: [], ports: [] };
}
