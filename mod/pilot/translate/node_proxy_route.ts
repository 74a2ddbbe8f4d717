/**
 * A node proxy's outbound routes: the `virtualOutbound` listener (0.0.0.0:15001), holding one
 * filter chain per VirtualService `tcp` route that applies to a service port, matched by
 * destination address (`prefix_ranges`: the route's `destinationSubnets`, else the service's
 * virtual IPs) and `destination_port`, with a TCP proxy to the route's cluster or
 * `weighted_clusters` (subsets included). Each chain's `filter_metadata["istio"]` names the
 * service (`host`, `namespace`) so a host name given to the explicit proxy finds it too.
 *
 * The routes are the sidecar's (`sidecarL4RoutePlans` in route_plan.ts) for ports a sidecar
 * routes by `tcp` rules (neither HTTP nor TLS). Service ports without such rules get no chain:
 * the node proxy sends them to the service's own cluster, as the sidecar's default route does.
 * Every connection a node proxy carries starts on its own machine, so a match's `sourceSubnet`
 * is decided here against the proxy's addresses; a route whose source does not match is left
 * out, one whose source does keeps its place without the condition. Where two routes share a
 * destination match the first keeps it, as in the sidecar's chain order.
 *
 * @module
 */
import { create } from "@bufbuild/protobuf";
import { BlockList, isIPv6 } from "node:net";
import { MetadataSchema, TrafficDirection } from "#gen/envoy/config/core/v3/base_pb.ts";
import {
  type FilterChain,
  FilterChainSchema,
  ListenerFilterSchema,
} from "#gen/envoy/config/listener/v3/listener_components_pb.ts";
import { type Listener, ListenerSchema } from "#gen/envoy/config/listener/v3/listener_pb.ts";
import { OriginalDstSchema } from "#gen/envoy/extensions/filters/listener/original_dst/v3/original_dst_pb.ts";
import type { PushContext } from "../model/push_context.ts";
import type { Proxy } from "../model/proxy.ts";
import { isHttpProtocol, type Service, type ServicePort } from "../model/service.ts";
import { byString, cidrRange, socketAddress, typedConfig } from "./conversion.ts";
import { ORIGINAL_DST_FILTER } from "./listener_inbound.ts";
import { VIRTUAL_OUTBOUND, VIRTUAL_OUTBOUND_PORT } from "./listener_outbound.ts";
import { ISTIO_METADATA_KEY, serviceAddresses } from "./node_proxy_cluster.ts";
import { reachableServices } from "./proxy_scope.ts";
import { type L4RoutePlan, sidecarL4RoutePlans } from "./route_plan.ts";
import { tcpProxy, tcpProxyFilter } from "./tcp_proxy.ts";

/** True for ports a sidecar routes by a VirtualService's `http` rules. */
export function routesByHttp(port: ServicePort): boolean {
  return isHttpProtocol(port.protocol);
}

/** True for ports a sidecar routes by a VirtualService's `tls` rules. */
export function routesByTls(port: ServicePort): boolean {
  return port.protocol === "TLS" || port.protocol === "HTTPS";
}

/** Whether `address` lies in one of `cidrs` (single addresses or blocks). */
export function inAnyCidr(address: string, cidrs: readonly string[]): boolean {
  const list = new BlockList();
  for (const c of cidrs) {
    const [ip, len] = c.split("/") as [string, string | undefined];
    const type = isIPv6(ip) ? "ipv6" : "ipv4";
    list.addSubnet(ip, len === undefined ? (type === "ipv6" ? 128 : 32) : Number(len), type);
  }
  return list.check(address, isIPv6(address) ? "ipv6" : "ipv4");
}

/**
 * The plans of one service port when a VirtualService routes it by `tcp` rules, with source
 * conditions decided against the proxy's addresses; empty when only the default route applies.
 */
export function nodeProxyRoutePlans(
  push: PushContext,
  proxy: Proxy,
  service: Service,
  port: ServicePort,
): L4RoutePlan[] {
  if (routesByHttp(port) || routesByTls(port)) return [];
  const addresses = serviceAddresses(push, service);
  const wildcard = addresses.length > 0 && addresses.every((a) => a.includes("/") && !/\/(32|128)$/.test(a));
  const plans = sidecarL4RoutePlans(push, proxy, {
    host: service.hostname,
    port: port.number,
    tls: false,
    wildcard,
  });
  const own = proxy.ipAddresses.length > 0 ? proxy.ipAddresses : [proxy.ip];
  const applied = plans
    .filter((p) => p.sourceSubnets.length === 0 || own.some((ip) => inAnyCidr(ip, p.sourceSubnets)))
    .map((p) => ({ ...p, sourceSubnets: [] }));
  return applied.length === 1 && applied[0]!.path === "" ? [] : applied;
}

function routeChain(
  plan: L4RoutePlan,
  ctx: { push: PushContext; proxy: Proxy; service: Service; port: number; ranges: readonly string[] },
): FilterChain {
  const targets = plan.destinations.map((d) => ({ cluster: d.cluster, weight: d.weight }));
  const ranges = [...ctx.ranges].sort(byString);
  return create(FilterChainSchema, {
    name: [targets.map((t) => t.cluster).join(","), ...ranges].join("|"),
    filterChainMatch: { destinationPort: ctx.port, prefixRanges: ranges.map(cidrRange) },
    filters: [tcpProxyFilter(tcpProxy(targets, { push: ctx.push, proxy: ctx.proxy, direction: "outbound" }))],
    metadata: create(MetadataSchema, {
      filterMetadata: {
        [ISTIO_METADATA_KEY]: { host: ctx.service.hostname, namespace: ctx.service.namespace },
      },
    }),
  });
}

/** The route chains of every service port the proxy reaches, in service then port order. */
export function nodeProxyRouteChains(push: PushContext, proxy: Proxy): FilterChain[] {
  const out: FilterChain[] = [];
  const claimed = new Set<string>();
  const services = [...reachableServices(push, proxy)]
    .filter((s) => !s.hostname.includes("*"))
    .sort((a, b) => byString(a.hostname, b.hostname) || byString(a.namespace, b.namespace));
  for (const service of services) {
    for (const port of [...service.ports].sort((a, b) => a.number - b.number)) {
      const own = serviceAddresses(push, service);
      for (const plan of nodeProxyRoutePlans(push, proxy, service, port)) {
        const wanted = plan.destinationSubnets.length > 0 ? plan.destinationSubnets : own;
        const ranges = wanted.filter((r) => !claimed.has(`${port.number}|${r}`));
        if (ranges.length === 0) continue;
        for (const r of ranges) claimed.add(`${port.number}|${r}`);
        out.push(routeChain(plan, { push, proxy, service, port: port.number, ranges }));
      }
    }
  }
  return out;
}

/**
 * The node proxy's `virtualOutbound` listener with its route chains (see the module notes), or
 * undefined when no route applies.
 */
export function nodeProxyOutboundListener(push: PushContext, proxy: Proxy): Listener | undefined {
  const chains = nodeProxyRouteChains(push, proxy);
  if (chains.length === 0) return undefined;
  return create(ListenerSchema, {
    name: VIRTUAL_OUTBOUND,
    address: socketAddress("0.0.0.0", VIRTUAL_OUTBOUND_PORT),
    trafficDirection: TrafficDirection.OUTBOUND,
    listenerFilters: [
      create(ListenerFilterSchema, {
        name: ORIGINAL_DST_FILTER,
        configType: {
          case: "typedConfig",
          value: typedConfig(OriginalDstSchema, create(OriginalDstSchema, {})),
        },
      }),
    ],
    filterChains: chains,
  });
}
