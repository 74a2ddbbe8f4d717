/**
 * Gateway servers in `AUTO_PASSTHROUGH` mode (Istio's "sni-dnat", usually port 15443 of a
 * network's east-west gateway): a proxy in another network opens mTLS to its destination with
 * SNI `outbound_.PORT_.SUBSET_.HOST` and sends it to this gateway (split horizon EDS,
 * endpoint.ts); the gateway reads the SNI without terminating TLS and forwards the bytes to the
 * endpoints of that cluster, where the destination's sidecar terminates the mTLS.
 *
 * The listener side ({@link autoPassthroughChains}) has one filter chain per reachable service
 * port and DestinationRule subset whose host the server's hosts cover, matching that SNI and
 * forwarding by TCP proxy to the cluster of the same name. The cluster side
 * ({@link sniDnatClusters}) renders those clusters from the gateway's `outbound|PORT|SUBSET|HOST`
 * clusters: the same settings and endpoints (EDS over the same assignment), without a TLS
 * transport socket, since the traffic is already mTLS end to end.
 *
 * @module
 */
import { create } from "@bufbuild/protobuf";
import { type Cluster, ClusterSchema } from "#gen/envoy/config/cluster/v3/cluster_pb.ts";
import {
  type Filter,
  type FilterChain,
  FilterChainSchema,
} from "#gen/envoy/config/listener/v3/listener_components_pb.ts";
import { hostCovers, namespaceAdmits, splitNamespacedHost } from "../../api/mod.ts";
import type { PushContext } from "../model/push_context.ts";
import type { Proxy } from "../model/proxy.ts";
import type { Service } from "../model/service.ts";
import { parseOutboundClusterName } from "./cluster_name.ts";
import { outboundClusterPlans } from "./cluster_plan.ts";
import { byString } from "./conversion.ts";
import { gatewayPorts, type GatewayServer } from "./gateway_server.ts";
import { tcpProxy, tcpProxyFilter } from "./tcp_proxy.ts";
import { istioMtlsSni } from "./tls.ts";

/** Whether a gateway server is in AUTO_PASSTHROUGH mode. */
export function isAutoPassthrough(gs: GatewayServer): boolean {
  return gs.server.tls?.mode === "AUTO_PASSTHROUGH";
}

/** Whether one of the server's hosts (with its namespace part) covers the service. */
function serverCovers(gs: GatewayServer, service: Service): boolean {
  return gs.server.hosts.some((h) => {
    const { namespace, host } = splitNamespacedHost(h);
    return namespaceAdmits(namespace, gs.namespace, service.namespace) && hostCovers(host, service.hostname);
  });
}

/** An SNI-DNAT cluster's name, which is also the SNI it is reached by: `outbound_.PORT_.SUBSET_.HOST`. */
export function sniDnatName(host: string, port: number, subset = ""): string {
  return istioMtlsSni({ host, port, subset });
}

/**
 * The filter chains of an AUTO_PASSTHROUGH server: per reachable service port and subset whose
 * host it covers (wildcard hosts left out), SNI `outbound_.PORT_.SUBSET_.HOST` to the cluster
 * of that name, after the `authz` filters (the gateway's TCP authorization filters). Sorted by
 * SNI.
 */
export function autoPassthroughChains(
  push: PushContext,
  proxy: Proxy,
  gs: GatewayServer,
  authz: readonly Filter[] = [],
): FilterChain[] {
  return outboundClusterPlans(push, proxy)
    .filter((p) => !p.service.hostname.startsWith("*") && serverCovers(gs, p.service))
    .map((p) => sniDnatName(p.service.hostname, p.port.number, p.subset))
    .sort(byString)
    .map((name) =>
      create(FilterChainSchema, {
        name,
        filterChainMatch: { serverNames: [name] },
        filters: [...authz, tcpProxyFilter(tcpProxy(name, { push, proxy, direction: "gateway" }))],
      })
    );
}

/**
 * The SNI-DNAT clusters a router needs for its AUTO_PASSTHROUGH servers, from its rendered
 * `outbound|PORT|SUBSET|HOST` clusters (`outbound`): each one an AUTO_PASSTHROUGH server covers,
 * renamed `outbound_.PORT_.SUBSET_.HOST`, without its TLS transport socket, its EDS service name
 * kept (so it shares the original's assignment). None for sidecars. Sorted by name.
 */
export function sniDnatClusters(push: PushContext, proxy: Proxy, outbound: readonly Cluster[]): Cluster[] {
  if (proxy.type !== "router") return [];
  const servers = gatewayPorts(push, proxy).flatMap((gp) => gp.servers).filter(isAutoPassthrough);
  if (servers.length === 0) return [];
  const covered = new Set<string>();
  for (const p of outboundClusterPlans(push, proxy)) {
    if (servers.some((gs) => serverCovers(gs, p.service))) covered.add(p.name);
  }
  const out: Cluster[] = [];
  for (const c of outbound) {
    const name = parseOutboundClusterName(c.name);
    if (!name || !covered.has(c.name)) continue;
    const copy = create(ClusterSchema, { ...c, name: sniDnatName(name.host, name.port, name.subset) });
    copy.transportSocket = undefined;
    copy.transportSocketMatches = [];
    out.push(copy);
  }
  return out.sort((a, b) => byString(a.name, b.name));
}
