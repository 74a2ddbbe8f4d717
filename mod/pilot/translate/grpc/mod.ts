/**
 * Translation for proxyless gRPC clients and xDS-enabled gRPC servers (Istio's "grpc"
 * generator): pure functions of a PushContext and a Proxy. Names follow Istio: client API
 * listeners and route configurations `HOST:PORT` (the name the client dials; short forms of
 * Kubernetes-style names too), clusters and EDS `outbound|PORT|SUBSET|HOST`, server listeners
 * `xds.istio.io/grpc/lds/inbound/IP:PORT`. Every output is sorted by name.
 *
 * Decided once, rendered twice: clusters and endpoints come from the cluster plans
 * (cluster_plan.ts) and routes from the route plans (route_plan.ts) that Envoy's resources are
 * rendered from; the files here only render them as gRPC clients accept them.
 * {@link grpcUnsupported} lists, per resource and field, what gRPC cannot express.
 *
 * @module
 */
import type { Cluster } from "#gen/envoy/config/cluster/v3/cluster_pb.ts";
import type { ClusterLoadAssignment } from "#gen/envoy/config/endpoint/v3/endpoint_pb.ts";
import type { Listener } from "#gen/envoy/config/listener/v3/listener_pb.ts";
import type { RouteConfiguration } from "#gen/envoy/config/route/v3/route_pb.ts";
import type { Proxy } from "../../model/proxy.ts";
import type { PushContext } from "../../model/push_context.ts";
import { networkView } from "../endpoint.ts";
import { proxyLocality } from "../proxy_scope.ts";
import { buildClusters, grpcClusterPlans } from "./cluster.ts";
import { buildLoadAssignment } from "./endpoint.ts";
import { isServerListenerName, serverListeners } from "./listener_inbound.ts";
import { apiListener } from "./listener_outbound.ts";
import { buildRouteConfigurations } from "./route.ts";
import { requestedTargets } from "./targets.ts";

export { type GrpcUnsupported, grpcUnsupported } from "./unsupported.ts";

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

/**
 * Every cluster the proxy may ask for: each service port and DestinationRule subset, EDS over
 * ADS, rendered from the cluster plans Envoy's clusters come from.
 */
export function buildGrpcClusters(push: PushContext, proxy: Proxy): Cluster[] {
  return buildClusters(push, proxy);
}

/**
 * ClusterLoadAssignments for cluster names ("*": every cluster): healthy endpoints, grouped by
 * locality with every locality weighted, with the DestinationRule's locality weights and
 * failover priorities as Envoy gets them. Unknown names are left out. In a multi-network mesh
 * the endpoints are split by the proxy's network as Envoy's are (split horizon: another
 * network's endpoints as its gateways), as Istio's gRPC generator sends Envoy's EDS; what a
 * gRPC client cannot do through such a gateway is listed by {@link grpcUnsupported}.
 */
export function buildGrpcEndpoints(
  push: PushContext,
  proxy: Proxy,
  names: readonly string[] | "*",
): ClusterLoadAssignment[] {
  const plans = grpcClusterPlans(push, proxy);
  const set = names === "*" ? undefined : new Set(names);
  const locality = proxyLocality(push, proxy);
  const view = networkView(push, proxy);
  return plans.filter((p) => !set || set.has(p.name)).map((p) => buildLoadAssignment(p, locality, view));
}
