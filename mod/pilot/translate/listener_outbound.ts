/**
 * Outbound listeners of a sidecar. Captured traffic arrives at `virtualOutbound`
 * (0.0.0.0:15001), which hands each connection to the listener for its original destination:
 * `VIP_PORT` for a TCP service with that address, else `0.0.0.0_PORT`. Those listeners are not
 * bound (`bind_to_port: false`); what matches none stays in virtualOutbound and goes to
 * PassthroughCluster or BlackHoleCluster as the outbound traffic policy says.
 *
 * - HTTP ports: `0.0.0.0_PORT` with an HTTP connection manager whose routes are RDS `PORT`.
 * - TCP ports: a TCP proxy per service; a service with single addresses gets `ADDRESS_PORT`
 *   listeners, one with CIDR addresses a filter chain matching them on `0.0.0.0_PORT`, one
 *   with TLS on the port a chain matching its host as SNI, and the first other service the
 *   listener's default chain. Without a default, unmatched traffic falls through as above.
 *   On an HTTP port a TCP service without addresses cannot be told apart from HTTP traffic
 *   and gets no chain (as in Istio, the HTTP listener wins).
 *
 * @module
 */
import { create } from "@bufbuild/protobuf";
import {
  type FilterChain,
  FilterChainMatchSchema,
  FilterChainSchema,
  type ListenerFilter,
  ListenerFilterSchema,
} from "#gen/envoy/config/listener/v3/listener_components_pb.ts";
import { type Listener, ListenerSchema } from "#gen/envoy/config/listener/v3/listener_pb.ts";
import { TrafficDirection } from "#gen/envoy/config/core/v3/base_pb.ts";
import { TlsInspectorSchema } from "#gen/envoy/extensions/filters/listener/tls_inspector/v3/tls_inspector_pb.ts";
import type { PushContext } from "../model/push_context.ts";
import type { Proxy } from "../model/proxy.ts";
import { isHttpProtocol, type Service, type ServicePort } from "../model/service.ts";
import { BLACKHOLE_CLUSTER, outboundClusterName, PASSTHROUGH_CLUSTER } from "./cluster_name.ts";
import { byString, cidrRange, isCidrBlock, socketAddress, typedConfig } from "./conversion.ts";
import { hcmFilter, httpConnectionManager } from "./http_connection_manager.ts";
import { outboundPolicy, reachableServices } from "./proxy_scope.ts";
import { outboundHttpPorts, outboundRouteName } from "./route.ts";
import { destinationCluster } from "./route_action.ts";
import { tcpProxy, tcpProxyFilter } from "./tcp_proxy.ts";

/** Name and port of the listener captured outbound traffic arrives at. */
export const VIRTUAL_OUTBOUND = "virtualOutbound";
/** The port iptables redirects outbound traffic to. */
export const VIRTUAL_OUTBOUND_PORT = 15001;
/** Filter chain name for traffic no listener claims, passed through. */
export const PASSTHROUGH_CHAIN = "PassthroughFilterChain";
/** Filter chain name for traffic no listener claims, refused. */
export const BLACKHOLE_CHAIN = "BlackHoleFilterChain";
/** Listener filter that reads the TLS client hello (SNI, ALPN). */
export const TLS_INSPECTOR = "envoy.filters.listener.tls_inspector";

/** `ADDRESS_PORT`, Istio's listener name. */
export function listenerName(address: string, port: number): string {
  return `${address}_${port}`;
}

/**
 * The cluster for traffic to unknown destinations: PassthroughCluster (or the egress proxy's
 * cluster) with ALLOW_ANY, BlackHoleCluster with REGISTRY_ONLY.
 */
export function fallthroughCluster(push: PushContext, proxy: Proxy): string {
  const policy = outboundPolicy(push, proxy);
  if (policy.mode !== "ALLOW_ANY") return BLACKHOLE_CLUSTER;
  if (!policy.egressProxy) return PASSTHROUGH_CLUSTER;
  return destinationCluster(policy.egressProxy, proxy.namespace, {
    push,
    proxy,
    port: VIRTUAL_OUTBOUND_PORT,
    gateways: ["mesh"],
  });
}

/** The filter chain for unclaimed traffic, per the outbound traffic policy. */
export function fallthroughChain(push: PushContext, proxy: Proxy): FilterChain {
  const cluster = fallthroughCluster(push, proxy);
  return create(FilterChainSchema, {
    name: cluster === BLACKHOLE_CLUSTER ? BLACKHOLE_CHAIN : PASSTHROUGH_CHAIN,
    filters: [tcpProxyFilter(tcpProxy(cluster, push.mesh))],
  });
}

/** `virtualOutbound`: 0.0.0.0:15001, hands connections on by original destination. */
export function virtualOutboundListener(push: PushContext, proxy: Proxy): Listener {
  return create(ListenerSchema, {
    name: VIRTUAL_OUTBOUND,
    address: socketAddress("0.0.0.0", VIRTUAL_OUTBOUND_PORT),
    useOriginalDst: true,
    trafficDirection: TrafficDirection.OUTBOUND,
    filterChains: [
      // A connection addressed to 15001 itself would loop forever.
      create(FilterChainSchema, {
        name: `${VIRTUAL_OUTBOUND}-blackhole`,
        filterChainMatch: { destinationPort: VIRTUAL_OUTBOUND_PORT },
        filters: [tcpProxyFilter(tcpProxy(BLACKHOLE_CLUSTER, push.mesh))],
      }),
      fallthroughChain(push, proxy),
    ],
  });
}

function tlsInspector(): ListenerFilter {
  return create(ListenerFilterSchema, {
    name: TLS_INSPECTOR,
    configType: {
      case: "typedConfig",
      value: typedConfig(TlsInspectorSchema, create(TlsInspectorSchema, {})),
    },
  });
}

function outboundListener(
  address: string,
  port: number,
  chains: FilterChain[],
  filters: ListenerFilter[] = [],
): Listener {
  return create(ListenerSchema, {
    name: listenerName(address, port),
    address: socketAddress(address, port),
    filterChains: chains,
    listenerFilters: filters,
    bindToPort: false,
    trafficDirection: TrafficDirection.OUTBOUND,
  });
}

function tcpChain(cluster: string, push: PushContext): FilterChain {
  return create(FilterChainSchema, {
    name: cluster,
    filters: [tcpProxyFilter(tcpProxy(cluster, push.mesh))],
  });
}

interface PortChains {
  /** Chains matching a destination CIDR or an SNI name. */
  readonly specific: FilterChain[];
  /** The chain for everything else on the port, if a service claims it. */
  fallback?: FilterChain;
  sni: boolean;
  /** CIDR ranges already matched by a chain. */
  readonly claimed: Set<string>;
}

/** Every outbound listener of a sidecar except virtualOutbound, sorted by name. */
export function outboundServiceListeners(push: PushContext, proxy: Proxy): Listener[] {
  const listeners = new Map<string, Listener>();
  const httpPorts = new Set(outboundHttpPorts(push, proxy));
  const wildcard = new Map<number, PortChains>();
  const chainsFor = (port: number) => {
    let c = wildcard.get(port);
    if (!c) wildcard.set(port, c = { specific: [], sni: false, claimed: new Set() });
    return c;
  };
  const tcpPorts: Array<{ service: Service; port: ServicePort }> = [];
  for (const service of reachableServices(push, proxy)) {
    for (const port of service.ports) if (!isHttpProtocol(port.protocol)) tcpPorts.push({ service, port });
  }
  for (const { service, port } of tcpPorts) {
    const cluster = outboundClusterName(port.number, service.hostname);
    const ips = service.addresses.filter((a) => !isCidrBlock(a)).map((a) => a.split("/")[0]!);
    const blocks = service.addresses.filter(isCidrBlock);
    for (const ip of ips) {
      const name = listenerName(ip, port.number);
      if (!listeners.has(name)) {
        listeners.set(name, outboundListener(ip, port.number, [tcpChain(cluster, push)]));
      }
    }
    const pc0 = blocks.length > 0 ? chainsFor(port.number) : undefined;
    const unclaimed = blocks.filter((b) => !pc0?.claimed.has(b));
    if (pc0 && unclaimed.length > 0) {
      // Envoy refuses two chains with the same match: a range already claimed stays with its first service.
      for (const b of unclaimed) pc0.claimed.add(b);
      const chain = tcpChain(cluster, push);
      chain.filterChainMatch = create(FilterChainMatchSchema, { prefixRanges: unclaimed.map(cidrRange) });
      pc0.specific.push(chain);
    }
    if (service.addresses.length > 0 || httpPorts.has(port.number)) continue;
    const pc = chainsFor(port.number);
    if ((port.protocol === "TLS" || port.protocol === "HTTPS") && service.hostname !== "*") {
      const chain = tcpChain(cluster, push);
      chain.filterChainMatch = create(FilterChainMatchSchema, { serverNames: [service.hostname] });
      pc.specific.push(chain);
      pc.sni = true;
    } else {
      pc.fallback ??= tcpChain(cluster, push);
    }
  }
  for (const port of httpPorts) {
    const chains = wildcard.get(port)?.specific ?? [];
    const hcm = httpConnectionManager({
      push,
      proxy,
      direction: "outbound",
      port,
      statPrefix: `outbound_0.0.0.0_${port}`,
      routes: { rds: outboundRouteName(port) },
    });
    const name = listenerName("0.0.0.0", port);
    const httpChain = create(FilterChainSchema, { name, filters: [hcmFilter(hcm)] });
    listeners.set(name, outboundListener("0.0.0.0", port, [...chains, httpChain]));
  }
  for (const [port, pc] of wildcard) {
    if (httpPorts.has(port)) continue;
    const chains = [...pc.specific, pc.fallback ?? fallthroughChain(push, proxy)];
    const filters = pc.sni ? [tlsInspector()] : [];
    listeners.set(listenerName("0.0.0.0", port), outboundListener("0.0.0.0", port, chains, filters));
  }
  return [...listeners.values()].sort((a, b) => byString(a.name, b.name));
}
