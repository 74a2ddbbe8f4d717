/**
 * Pilot's Envoy translation: pure functions from a PushContext and a Proxy to the four xDS
 * resource types of a sidecar or router proxy, or of a node proxy (`GENERATOR: "node-proxy"`,
 * node_proxy.ts: clusters, endpoints and listeners, no routes). No I/O, clock, environment or randomness; the
 * same inputs give the same (sorted) output, so content hashes are stable.
 *
 * Consistency guaranteed to the xDS server: every EDS cluster of buildClusters has a
 * ClusterLoadAssignment in buildEndpoints (possibly empty), and every RDS name the listeners of
 * buildListeners reference has a RouteConfiguration in buildRoutes.
 *
 * @module
 */
import type { Cluster } from "#gen/envoy/config/cluster/v3/cluster_pb.ts";
import type { ClusterLoadAssignment } from "#gen/envoy/config/endpoint/v3/endpoint_pb.ts";
import type { Listener } from "#gen/envoy/config/listener/v3/listener_pb.ts";
import type { RouteConfiguration } from "#gen/envoy/config/route/v3/route_pb.ts";
import type { PushContext } from "../model/push_context.ts";
import type { Proxy } from "../model/proxy.ts";
import { buildClusters as clusters } from "./cluster.ts";
import { buildEndpoints as endpoints } from "./endpoint.ts";
import { buildListeners as listeners } from "./listener.ts";
import { buildRoutes as routes } from "./route.ts";
import { buildNodeProxyClusters, buildNodeProxyEndpoints, buildNodeProxyListeners } from "./node_proxy.ts";

export {
  buildNodeProxy,
  endpointTransport,
  ISTIO_METADATA_KEY,
  NODE_PROXY_GENERATOR,
  type NodeProxyResources,
  type NodeProxyUnsupported,
  nodeProxyUnsupported,
  serviceAddresses,
  TUNNEL_LABEL,
} from "./node_proxy.ts";

const isNodeProxy = (proxy: Proxy) => proxy.generator === "node-proxy";

/** The clusters (CDS) of a proxy, sorted by name. */
export function buildClusters(push: PushContext, proxy: Proxy): Cluster[] {
  return isNodeProxy(proxy) ? buildNodeProxyClusters(push, proxy) : clusters(push, proxy);
}

/** The listeners (LDS) of a proxy, sorted by name. */
export function buildListeners(push: PushContext, proxy: Proxy): Listener[] {
  return isNodeProxy(proxy) ? buildNodeProxyListeners(push, proxy) : listeners(push, proxy);
}

/** Every route configuration (RDS) the proxy's listeners name, sorted by name. */
export function buildRoutes(push: PushContext, proxy: Proxy): RouteConfiguration[] {
  return isNodeProxy(proxy) ? [] : routes(push, proxy);
}

/** One ClusterLoadAssignment (EDS) per EDS cluster of {@link buildClusters}, possibly empty. */
export function buildEndpoints(push: PushContext, proxy: Proxy): ClusterLoadAssignment[] {
  return isNodeProxy(proxy) ? buildNodeProxyEndpoints(push, proxy) : endpoints(push, proxy);
}

/** The xDS type URLs of the four resource types. */
export const TYPE_URLS: {
  readonly cluster: string;
  readonly listener: string;
  readonly route: string;
  readonly endpoint: string;
} = {
  cluster: "type.googleapis.com/envoy.config.cluster.v3.Cluster",
  listener: "type.googleapis.com/envoy.config.listener.v3.Listener",
  route: "type.googleapis.com/envoy.config.route.v3.RouteConfiguration",
  endpoint: "type.googleapis.com/envoy.config.endpoint.v3.ClusterLoadAssignment",
};
