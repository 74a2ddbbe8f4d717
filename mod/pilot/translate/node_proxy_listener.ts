/**
 * A node proxy's listeners (LDS):
 *
 * - `virtualInbound` (0.0.0.0:15006): what the machine's own workload accepts. One chain set per
 *   port it serves (listener_inbound.ts's `inboundTargets`), built as the sidecar's inbound TCP
 *   chains are: the port's PeerAuthentication mode as chains matching transport protocol `tls`
 *   and `raw_buffer` (`mtlsChains`), the network RBAC filters of the AuthorizationPolicies
 *   selecting the workload (CUSTOM, DENY... see {@link nodeProxyRbac}) and a TCP proxy to
 *   `inbound|PORT||`. The passthrough chains (no destination port) hold the rule for every
 *   other port and go to `InboundPassthroughCluster`.
 * - `virtualOutbound` (0.0.0.0:15001), only when VirtualService `tcp` routes apply: their chains
 *   by destination address and port (node_proxy_route.ts).
 * - `127.0.0.1_15053` (UDP): Envoy's DNS filter with an inline table of every host name the
 *   proxy can reach and its addresses (declared, or allocated, see node_proxy_cluster.ts).
 *
 * @module
 */
import { create } from "@bufbuild/protobuf";
import { TrafficDirection } from "#gen/envoy/config/core/v3/base_pb.ts";
import { AddressSchema, SocketAddress_Protocol } from "#gen/envoy/config/core/v3/address_pb.ts";
import {
  type Filter,
  FilterChainSchema,
  ListenerFilterSchema,
} from "#gen/envoy/config/listener/v3/listener_components_pb.ts";
import { type Listener, ListenerSchema } from "#gen/envoy/config/listener/v3/listener_pb.ts";
import { DnsTable_DnsVirtualDomainSchema, DnsTableSchema } from "#gen/envoy/data/dns/v3/dns_table_pb.ts";
import { OriginalDstSchema } from "#gen/envoy/extensions/filters/listener/original_dst/v3/original_dst_pb.ts";
import { TlsInspectorSchema } from "#gen/envoy/extensions/filters/listener/tls_inspector/v3/tls_inspector_pb.ts";
import { DnsFilterConfigSchema } from "#gen/envoy/extensions/filters/udp/dns_filter/v3/dns_filter_pb.ts";
import type { PushContext } from "../model/push_context.ts";
import type { Proxy } from "../model/proxy.ts";
import { effectiveMtlsMode } from "./authn.ts";
import { badCustomRbac, buildRbac, type RbacConfig, rbacNetworkFilters } from "./authz.ts";
import { inboundClusterName } from "./cluster_name.ts";
import { byString, durationFromString, typedConfig } from "./conversion.ts";
import { planCustomAuthz } from "./ext_authz.ts";
import {
  INBOUND_PASSTHROUGH_CHAIN,
  inboundTargets,
  mtlsChains,
  ORIGINAL_DST_FILTER,
  TLS_INSPECTOR_FILTER,
  VIRTUAL_INBOUND,
  VIRTUAL_INBOUND_PORT,
} from "./listener_inbound.ts";
import { INBOUND_PASSTHROUGH_CLUSTER, serviceAddresses } from "./node_proxy_cluster.ts";
import { nodeProxyOutboundListener } from "./node_proxy_route.ts";
import { reachableServices } from "./proxy_scope.ts";
import { tcpProxy, tcpProxyFilter } from "./tcp_proxy.ts";

/** The node proxy's DNS port (Istio's DNS proxy). */
export const NODE_PROXY_DNS_PORT = 15053;
/** The name of the DNS listener. */
export const NODE_PROXY_DNS_LISTENER = `127.0.0.1_${NODE_PROXY_DNS_PORT}`;
/** Envoy's UDP DNS filter. */
export const DNS_FILTER = "envoy.filters.udp.dns_filter";
/** The TTL of DNS answers for mesh hosts. */
const DNS_TTL = "30s";

/**
 * The RBAC configs that guard the workload's inbound connections, in the order they run:
 * CUSTOM rules as DENY (a node proxy has no external authorizer, so it fails closed as Istio
 * does for a provider it cannot use), then AUDIT (LOG), DENY and ALLOW as the TCP chains of
 * sidecars get them (authz.ts, flavor `tcp`: HTTP-only fields make ALLOW rules match nothing
 * and are left out of DENY rules).
 */
export function nodeProxyRbac(push: PushContext, proxy: Proxy): RbacConfig[] {
  const custom = planCustomAuthz(push, proxy, "tcp").providers.map((p): RbacConfig => ({
    action: "DENY",
    rules: badCustomRbac(p.rules),
  }));
  return [...custom, ...buildRbac(push.authorizationPolicies(proxy), "tcp")];
}

function inboundFilters(push: PushContext, proxy: Proxy, cluster: string, rbac: Filter[]): Filter[] {
  return [...rbac, tcpProxyFilter(tcpProxy(cluster, { push, proxy, direction: "inbound" }))];
}

/** The `virtualInbound` listener of a node proxy (see the module notes). */
export function nodeProxyInboundListener(push: PushContext, proxy: Proxy): Listener {
  const rbac = rbacNetworkFilters(nodeProxyRbac(push, proxy));
  const chains = inboundTargets(push, proxy).flatMap(({ port }) =>
    mtlsChains(
      create(FilterChainSchema, {
        name: inboundClusterName(port),
        filterChainMatch: { destinationPort: port },
        filters: inboundFilters(push, proxy, inboundClusterName(port), rbac),
      }),
      effectiveMtlsMode(push, proxy, port),
      false,
    )
  );
  const passthrough = mtlsChains(
    create(FilterChainSchema, {
      name: INBOUND_PASSTHROUGH_CHAIN,
      filters: inboundFilters(push, proxy, INBOUND_PASSTHROUGH_CLUSTER, rbac),
    }),
    effectiveMtlsMode(push, proxy),
    false,
  );
  return create(ListenerSchema, {
    name: VIRTUAL_INBOUND,
    address: {
      address: {
        case: "socketAddress",
        value: { address: "0.0.0.0", portSpecifier: { case: "portValue", value: VIRTUAL_INBOUND_PORT } },
      },
    },
    trafficDirection: TrafficDirection.INBOUND,
    listenerFilters: [
      create(ListenerFilterSchema, {
        name: ORIGINAL_DST_FILTER,
        configType: {
          case: "typedConfig",
          value: typedConfig(OriginalDstSchema, create(OriginalDstSchema, {})),
        },
      }),
      create(ListenerFilterSchema, {
        name: TLS_INSPECTOR_FILTER,
        configType: {
          case: "typedConfig",
          value: typedConfig(TlsInspectorSchema, create(TlsInspectorSchema, {})),
        },
      }),
    ],
    filterChains: [...chains, ...passthrough],
  });
}

/** True for a single IP address (not a CIDR block). */
function isAddress(text: string): boolean {
  return !text.includes("/");
}

/**
 * Host names (lower case) to their addresses, for every non-wildcard service the proxy can
 * reach that has at least one address. Sorted by name.
 */
export function nodeProxyDnsTable(push: PushContext, proxy: Proxy): [string, string[]][] {
  const out: [string, string[]][] = [];
  for (const s of reachableServices(push, proxy)) {
    if (s.hostname.includes("*")) continue;
    const addresses = serviceAddresses(push, s).filter(isAddress);
    if (addresses.length > 0) out.push([s.hostname.toLowerCase(), [...addresses]]);
  }
  return out.sort(([a], [b]) => byString(a, b));
}

/** The DNS listener on 127.0.0.1:15053/UDP with Envoy's DNS filter (see the module notes). */
export function nodeProxyDnsListener(push: PushContext, proxy: Proxy): Listener {
  const table = create(DnsTableSchema, {
    virtualDomains: nodeProxyDnsTable(push, proxy).map(([name, address]) =>
      create(DnsTable_DnsVirtualDomainSchema, {
        name,
        endpoint: { endpointConfig: { case: "addressList", value: { address } } },
        answerTtl: durationFromString(DNS_TTL),
      })
    ),
  });
  const config = create(DnsFilterConfigSchema, {
    statPrefix: "dns",
    serverConfig: { configSource: { case: "inlineDnsTable", value: table } },
  });
  return create(ListenerSchema, {
    name: NODE_PROXY_DNS_LISTENER,
    address: create(AddressSchema, {
      address: {
        case: "socketAddress",
        value: {
          protocol: SocketAddress_Protocol.UDP,
          address: "127.0.0.1",
          portSpecifier: { case: "portValue", value: NODE_PROXY_DNS_PORT },
        },
      },
    }),
    udpListenerConfig: {},
    listenerFilters: [
      create(ListenerFilterSchema, {
        name: DNS_FILTER,
        configType: { case: "typedConfig", value: typedConfig(DnsFilterConfigSchema, config) },
      }),
    ],
  });
}

/**
 * A node proxy's listeners, sorted by name: the DNS listener, `virtualInbound` and, when a
 * VirtualService's `tcp` routes apply, `virtualOutbound` (node_proxy_route.ts).
 */
export function buildNodeProxyListeners(push: PushContext, proxy: Proxy): Listener[] {
  const outbound = nodeProxyOutboundListener(push, proxy);
  return [
    nodeProxyDnsListener(push, proxy),
    nodeProxyInboundListener(push, proxy),
    ...(outbound ? [outbound] : []),
  ].sort((a, b) => byString(a.name, b.name));
}
