/**
 * Translation for proxyless gRPC clients and xDS-enabled gRPC servers (Istio's "grpc"
 * generator): pure functions of a PushContext and a Proxy. Names follow Istio: client API
 * listeners and route configurations `HOST:PORT` (the name the client dials; short forms of
 * Kubernetes-style names too), clusters and EDS `outbound|PORT|SUBSET|HOST`, server listeners
 * `xds.istio.io/grpc/lds/inbound/IP:PORT`. Every output is sorted by name.
 *
 * @module
 */
import type { Cluster } from "#gen/envoy/config/cluster/v3/cluster_pb.ts";
import type { ClusterLoadAssignment } from "#gen/envoy/config/endpoint/v3/endpoint_pb.ts";
import type { Listener } from "#gen/envoy/config/listener/v3/listener_pb.ts";
import type { RouteConfiguration } from "#gen/envoy/config/route/v3/route_pb.ts";
import type { Proxy } from "../../model/proxy.ts";
import type { PushContext } from "../../model/push_context.ts";
import { buildCluster, clusterRefs } from "./cluster.ts";
import { buildLoadAssignment } from "./endpoint.ts";
import { isServerListenerName, serverListeners } from "./listener_inbound.ts";
import { apiListener } from "./listener_outbound.ts";
import { buildRouteConfigurations } from "./route.ts";
import { requestedTargets } from "./targets.ts";

function byName<T>(items: T[], nameOf: (t: T) => string): T[] {
  return items.sort((a, b) => (nameOf(a) < nameOf(b) ? -1 : nameOf(a) > nameOf(b) ? 1 : 0));
}

/**
 * Listeners for `names` ("*": every one the proxy could ask for): an API listener per client
 * target name that resolves to a service port the proxy can see, and a server listener per
 * `xds.istio.io/grpc/lds/inbound/IP:PORT` name whose port the proxy serves. Names that resolve
 * to nothing are left out.
 */
export function buildGrpcListeners(
  push: PushContext,
  proxy: Proxy,
  names: readonly string[] | "*",
): Listener[] {
  const clientNames = names === "*" ? "*" : names.filter((n) => !isServerListenerName(n));
  const serverNames = names === "*" ? "*" : names.filter(isServerListenerName);
  const out = requestedTargets(push, proxy, clientNames).map((t) => apiListener(push, proxy, t));
  out.push(...serverListeners(push, proxy, serverNames));
  return byName(out, (l) => l.name);
}

/**
 * Route configurations for client target names ("*": every target): one virtual host per
 * configuration, routes from the VirtualService covering the host or a default route.
 */
export function buildGrpcRoutes(
  push: PushContext,
  proxy: Proxy,
  names: readonly string[] | "*",
): RouteConfiguration[] {
  return byName(buildRouteConfigurations(push, proxy, names), (r) => r.name);
}

/** Every cluster the proxy may ask for: each service port and DestinationRule subset, EDS over ADS. */
export function buildGrpcClusters(push: PushContext, proxy: Proxy): Cluster[] {
  return clusterRefs(push, proxy).map((ref) => buildCluster(push, proxy, ref));
}

/**
 * ClusterLoadAssignments for cluster names ("*": every cluster): healthy endpoints, grouped by
 * locality with every locality weighted. Unknown names are left out.
 */
export function buildGrpcEndpoints(
  push: PushContext,
  proxy: Proxy,
  names: readonly string[] | "*",
): ClusterLoadAssignment[] {
  const refs = clusterRefs(push, proxy);
  const wanted = names === "*" ? refs : (() => {
    const set = new Set(names);
    return refs.filter((r) => set.has(r.name));
  })();
  return wanted.map((ref) => buildLoadAssignment(push, proxy, ref));
}
