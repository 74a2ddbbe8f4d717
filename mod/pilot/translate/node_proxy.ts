/**
 * Translation for node proxies (node metadata `GENERATOR: "node-proxy"`, `meshd agent
 * --node-proxy`): an L4 proxy serving every process of a machine, given standard Envoy
 * resources a real Envoy would also accept, so that no private protocol sits between pilot and
 * the agent. Pure functions of a PushContext and a Proxy, every output sorted by name.
 *
 * - CDS: the sidecar's outbound clusters with the service's host, namespace and virtual IPs in
 *   Istio's cluster metadata, `inbound|PORT||` per served port, `InboundPassthroughCluster`
 *   (node_proxy_cluster.ts).
 * - EDS: per EDS cluster its endpoints with locality, priority and weight, each with its
 *   transport (HBONE, mTLS or plaintext) and identities in endpoint metadata.
 * - LDS: the inbound side of the machine's workload (PeerAuthentication as filter chains,
 *   AuthorizationPolicy as network RBAC filters), the DNS table (node_proxy_listener.ts) and
 *   VirtualService `tcp` routes as `virtualOutbound` chains by destination address and port with
 *   (weighted) TCP proxies (node_proxy_route.ts).
 * - RDS: none; a node proxy carries every protocol as TCP (`http` and `tls` routes are reported
 *   by `nodeProxyUnsupported`).
 *
 * @module
 */
import type { Cluster } from "#gen/envoy/config/cluster/v3/cluster_pb.ts";
import type { ClusterLoadAssignment } from "#gen/envoy/config/endpoint/v3/endpoint_pb.ts";
import type { Listener } from "#gen/envoy/config/listener/v3/listener_pb.ts";
import type { PushContext } from "../model/push_context.ts";
import type { Proxy } from "../model/proxy.ts";
import { buildNodeProxyClusters, buildNodeProxyEndpoints } from "./node_proxy_cluster.ts";
import { buildNodeProxyListeners } from "./node_proxy_listener.ts";

export {
  allocatedVips,
  endpointTransport,
  INBOUND_PASSTHROUGH_CLUSTER,
  ISTIO_METADATA_KEY,
  serviceAddresses,
  TUNNEL_HTTP,
  TUNNEL_LABEL,
} from "./node_proxy_cluster.ts";
export {
  DNS_FILTER,
  NODE_PROXY_DNS_LISTENER,
  NODE_PROXY_DNS_PORT,
  nodeProxyRbac,
} from "./node_proxy_listener.ts";

export { type NodeProxyUnsupported, nodeProxyUnsupported } from "./node_proxy_unsupported.ts";
export { nodeProxyOutboundListener, nodeProxyRouteChains } from "./node_proxy_route.ts";

/** The node metadata GENERATOR value of a node proxy. */
export const NODE_PROXY_GENERATOR = "node-proxy";

/** A node proxy's resources for one push. */
export interface NodeProxyResources {
  readonly clusters: Cluster[];
  readonly endpoints: ClusterLoadAssignment[];
  readonly listeners: Listener[];
}

/** Every resource of a node proxy (see the module notes). */
export function buildNodeProxy(push: PushContext, proxy: Proxy): NodeProxyResources {
  return {
    clusters: buildNodeProxyClusters(push, proxy),
    endpoints: buildNodeProxyEndpoints(push, proxy),
    listeners: buildNodeProxyListeners(push, proxy),
  };
}

export { buildNodeProxyClusters, buildNodeProxyEndpoints, buildNodeProxyListeners };
