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
 * - Where each of those chains forwards is the service's L4 route plans
 *   (`sidecarL4RoutePlans` in route_plan.ts): a VirtualService's `tcp` rules (TCP ports) or
 *   `tls` rules (TLS and HTTPS ports) bound to "mesh" give one chain per route, matching the
 *   rule's destination subnets and SNI hosts in place of the service's own, with a TCP proxy to
 *   the rule's (weighted) clusters; without such rules, the service's own cluster. A match
 *   (SNI name and range) an earlier chain of the listener has is left to that chain.
 * - A Sidecar's egress listeners with a port add listeners of their own where they are not
 *   captured or bind a specific address (`sidecarEgressListeners`).
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
import type { CidrRange } from "#gen/envoy/config/core/v3/address_pb.ts";
import { TlsInspectorSchema } from "#gen/envoy/extensions/filters/listener/tls_inspector/v3/tls_inspector_pb.ts";
import { egressHostsAdmit, type PushContext } from "../model/push_context.ts";
import type { Proxy } from "../model/proxy.ts";
import {
  isHttpProtocol,
  parseProtocol,
  type Protocol,
  type Service,
  type ServicePort,
} from "../model/service.ts";
import type { SidecarPort } from "../../api/kinds/networking.ts";
import { bindsItself, isWildcardBind } from "./listener_inbound.ts";
import { BLACKHOLE_CLUSTER, PASSTHROUGH_CLUSTER } from "./cluster_name.ts";
import { byString, cidrRange, isCidrBlock, socketAddress, typedConfig } from "./conversion.ts";
import { hcmFilter, httpConnectionManager } from "./http_connection_manager.ts";
import { outboundPolicy, reachableServices } from "./proxy_scope.ts";
import { outboundHttpPorts, outboundRouteName } from "./route.ts";
import { destinationCluster } from "./route_action.ts";
import { type L4RoutePlan, sidecarL4RoutePlans } from "./route_plan.ts";
import type { TcpProxy } from "#gen/envoy/extensions/filters/network/tcp_proxy/v3/tcp_proxy_pb.ts";
import { tcpProxySettings } from "./cluster_plan.ts";
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
    filters: [tcpProxyFilter(tcpProxy(cluster, { push, proxy, direction: "outbound" }))],
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
        filters: [tcpProxyFilter(tcpProxy(BLACKHOLE_CLUSTER, { push, proxy, direction: "outbound" }))],
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

/**
 * The TCP proxy for an L4 route's destinations, with the DestinationRule's TCP settings when
 * it has one cluster (see cluster_plan.ts's `tcpProxySettings`).
 */
function l4TcpProxy(plan: L4RoutePlan, push: PushContext, proxy: Proxy): TcpProxy {
  const targets = plan.destinations.map((d) => ({ cluster: d.cluster, weight: d.weight }));
  const settings = targets.length === 1 ? tcpProxySettings(push, proxy, targets[0]!.cluster) : {};
  return tcpProxy(targets, { push, proxy, direction: "outbound" }, settings);
}

/** A chain forwarding as an L4 route plan says; named by its clusters and conditions. */
function planChain(
  plan: L4RoutePlan,
  ctx: { push: PushContext; proxy: Proxy },
  base: { sni?: string[]; ranges?: string[] },
): FilterChain {
  const targets = plan.destinations.map((d) => ({ cluster: d.cluster, weight: d.weight }));
  const sni = plan.sniHosts.length > 0 ? [...plan.sniHosts] : base.sni ?? [];
  const ranges = plan.destinationSubnets.length > 0 ? [...plan.destinationSubnets] : base.ranges ?? [];
  const sources = plan.sourceSubnets.map((s) => `from ${s}`);
  const name = [targets.map((t) => t.cluster).join(","), ...sni, ...ranges, ...sources].join("|");
  return create(FilterChainSchema, {
    name: plan.path === "" ? targets[0]!.cluster : name,
    ...(sni.length > 0 || ranges.length > 0 || plan.sourceSubnets.length > 0
      ? {
        filterChainMatch: create(FilterChainMatchSchema, {
          serverNames: sni,
          prefixRanges: ranges.map(cidrRange),
          sourcePrefixRanges: plan.sourceSubnets.map(cidrRange),
        }),
      }
      : {}),
    filters: [tcpProxyFilter(l4TcpProxy(plan, ctx.push, ctx.proxy))],
  });
}

interface PortChains {
  /** Chains matching a destination CIDR or an SNI name. */
  readonly specific: FilterChain[];
  /** The chain for everything else on the port, if a service claims it. */
  fallback?: FilterChain;
  /** SNI name and CIDR pairs already matched: Envoy refuses two chains with the same match. */
  readonly claimed: Set<string>;
}

/**
 * Adds a chain to a listener's, narrowed to the SNI name and range pairs no earlier chain
 * matches (the first service keeps a match); a chain without conditions becomes the fallback
 * unless there is one.
 */
function addChain(pc: PortChains, chain: FilterChain): void {
  const m = chain.filterChainMatch;
  if (!m) {
    pc.fallback ??= chain;
    return;
  }
  const cidr = (r: CidrRange) => `${r.addressPrefix}/${r.prefixLen}`;
  // Chains from different sources are different matches.
  const names = (m.serverNames.length > 0 ? m.serverNames : [""]).map((n) =>
    m.sourcePrefixRanges.length > 0 ? `${n}<${m.sourcePrefixRanges.map(cidr).join(",")}` : n
  );
  const key = (n: string, r?: CidrRange) => `${n}|${r ? cidr(r) : ""}`;
  if (m.prefixRanges.length === 0) {
    if (names.some((n) => pc.claimed.has(key(n)))) return;
    for (const n of names) pc.claimed.add(key(n));
  } else {
    m.prefixRanges = m.prefixRanges.filter((r) => names.every((n) => !pc.claimed.has(key(n, r))));
    if (m.prefixRanges.length === 0) return;
    for (const r of m.prefixRanges) for (const n of names) pc.claimed.add(key(n, r));
  }
  pc.specific.push(chain);
}

function needsTlsInspector(chains: readonly FilterChain[]): ListenerFilter[] {
  return chains.some((c) => (c.filterChainMatch?.serverNames.length ?? 0) > 0) ? [tlsInspector()] : [];
}

function isTlsPort(port: ServicePort): boolean {
  return port.protocol === "TLS" || port.protocol === "HTTPS";
}

/** Every outbound listener of a sidecar except virtualOutbound, sorted by name. */
export function outboundServiceListeners(push: PushContext, proxy: Proxy): Listener[] {
  const listeners = new Map<string, Listener>();
  const httpPorts = new Set(outboundHttpPorts(push, proxy));
  const wildcard = new Map<number, PortChains>();
  const chainsFor = (port: number) => {
    let c = wildcard.get(port);
    if (!c) wildcard.set(port, c = { specific: [], claimed: new Set() });
    return c;
  };
  const tcpPorts: Array<{ service: Service; port: ServicePort }> = [];
  for (const service of reachableServices(push, proxy)) {
    for (const port of service.ports) if (!isHttpProtocol(port.protocol)) tcpPorts.push({ service, port });
  }
  for (const { service, port } of tcpPorts) {
    const scope = { host: service.hostname, port: port.number, tls: isTlsPort(port) };
    const ips = service.addresses.filter((a) => !isCidrBlock(a)).map((a) => a.split("/")[0]!);
    const blocks = service.addresses.filter(isCidrBlock);
    for (const ip of ips) {
      const name = listenerName(ip, port.number);
      if (listeners.has(name)) continue;
      const own: PortChains = { specific: [], claimed: new Set() };
      for (const plan of sidecarL4RoutePlans(push, proxy, { ...scope, wildcard: false })) {
        addChain(own, planChain(plan, { push, proxy }, {}));
      }
      const chains = [...own.specific, ...(own.fallback ? [own.fallback] : [])];
      listeners.set(name, outboundListener(ip, port.number, chains, needsTlsInspector(chains)));
    }
    const plans = blocks.length > 0 || (service.addresses.length === 0 && !httpPorts.has(port.number))
      ? sidecarL4RoutePlans(push, proxy, { ...scope, wildcard: true })
      : [];
    if (blocks.length > 0) {
      const pc = chainsFor(port.number);
      // A range already claimed stays with its first service.
      for (const plan of plans) addChain(pc, planChain(plan, { push, proxy }, { ranges: blocks }));
    }
    if (service.addresses.length > 0 || httpPorts.has(port.number)) continue;
    const pc = chainsFor(port.number);
    const sni = scope.tls && service.hostname !== "*" ? [service.hostname] : [];
    for (const plan of plans) addChain(pc, planChain(plan, { push, proxy }, { sni }));
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
    listeners.set(
      listenerName("0.0.0.0", port),
      outboundListener("0.0.0.0", port, chains, needsTlsInspector(chains)),
    );
  }
  return [...listeners.values()].sort((a, b) => byString(a.name, b.name));
}

/** A service port an egress listener serves. */
interface EgressTarget {
  readonly service: Service;
  readonly port: ServicePort;
}

/**
 * The protocol of a Sidecar egress listener: `port.protocol` when set (an empty string is
 * unset), else the protocol its name starts with (`http-…`), else that of its first target.
 */
function egressProtocol(port: SidecarPort, targets: readonly EgressTarget[]): Protocol {
  if (port.protocol) return parseProtocol(port.protocol);
  const byName = parseProtocol(port.name?.split("-")[0]);
  if (byName !== "UNSUPPORTED") return byName;
  return targets[0]?.port.protocol ?? "TCP";
}

/** The TCP chains of an egress listener: per target its L4 route plans (SNI on TLS ports). */
function egressTcpChains(push: PushContext, proxy: Proxy, targets: readonly EgressTarget[]): FilterChain[] {
  const pc: PortChains = { specific: [], claimed: new Set() };
  for (const { service, port } of targets) {
    const tls = isTlsPort(port);
    const sni = tls && service.hostname !== "*" ? [service.hostname] : [];
    const scope = { host: service.hostname, port: port.number, tls, wildcard: true };
    for (const plan of sidecarL4RoutePlans(push, proxy, scope)) {
      addChain(pc, planChain(plan, { push, proxy }, { sni }));
    }
  }
  return [...pc.specific, pc.fallback ?? fallthroughChain(push, proxy)];
}

/**
 * Listeners for the proxy's Sidecar `egress` listeners that name a port and are either not
 * captured (`captureMode` NONE, DEFAULT on a proxy with `INTERCEPTION_MODE: NONE`, or a
 * `unix://` bind) or captured on a specific `bind` address:
 *
 * - Name `BIND_PORT` (a Unix socket: its `unix://` path) on the bind address; unset, 127.0.0.1
 *   when not captured (the application calls the sidecar on loopback, as on meshd's VMs
 *   without capture) and 0.0.0.0 when captured (then the service listeners above already are
 *   that listener, scoped by the Sidecar's hosts, and nothing is added).
 * - Envoy binds it when not captured; a captured one is handed connections for `BIND:PORT` by
 *   virtualOutbound (`bind_to_port: false`).
 * - Its chains serve the reachable services the listener's `hosts` admit that have the port
 *   (a Unix socket listener: each such service's first port). HTTP listeners get an HTTP
 *   connection manager on that port's routes (RDS `PORT`); the others a TCP proxy per service
 *   (SNI chains on TLS ports), the first service the default, else the fall-through chain.
 */
export function sidecarEgressListeners(push: PushContext, proxy: Proxy): Listener[] {
  const sidecar = push.sidecarFor(proxy);
  if (!sidecar) return [];
  const httpPorts = new Set(outboundHttpPorts(push, proxy));
  const out: Listener[] = [];
  for (const l of sidecar.spec.egress ?? []) {
    if (!l.port) continue;
    const unix = l.bind?.startsWith("unix://") ?? false;
    const bound = unix || bindsItself(l.captureMode, proxy);
    if (!bound && isWildcardBind(l.bind)) continue;
    const bind = l.bind ?? (bound ? "127.0.0.1" : "0.0.0.0");
    const number = l.port.number ?? 0;
    const targets = reachableServices(push, proxy)
      .filter((s) => egressHostsAdmit(l.hosts, sidecar.metadata.namespace, s))
      .flatMap((service) => {
        const ports = unix ? service.ports.slice(0, 1) : service.ports.filter((p) => p.number === number);
        return ports.map((port) => ({ service, port }));
      });
    const routePort = unix ? targets[0]?.port.number : number;
    const http = isHttpProtocol(egressProtocol(l.port, targets)) && routePort !== undefined &&
      httpPorts.has(routePort);
    const name = unix ? bind : listenerName(bind, number);
    const chains = http
      ? [create(FilterChainSchema, {
        name,
        filters: [hcmFilter(httpConnectionManager({
          push,
          proxy,
          direction: "outbound",
          port: routePort!,
          statPrefix: `outbound_${name}`,
          routes: { rds: outboundRouteName(routePort!) },
        }))],
      })]
      : egressTcpChains(push, proxy, targets);
    out.push(create(ListenerSchema, {
      name,
      address: socketAddress(bind, number),
      filterChains: chains,
      listenerFilters: needsTlsInspector(chains),
      ...(bound ? {} : { bindToPort: false }),
      trafficDirection: TrafficDirection.OUTBOUND,
    }));
  }
  return out.sort((a, b) => byString(a.name, b.name));
}
