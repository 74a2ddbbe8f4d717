/**
 * Listeners of a router proxy: one bound `0.0.0.0_PORT` per gateway port, and one `BIND_PORT`
 * on the address per distinct server `bind` on that port (a `unix://` bind listens on that
 * socket). HTTP ports carry one HTTP connection manager on RDS `http.PORT` (`http.PORT.BIND`).
 * Other ports carry a filter chain per server:
 * TLS-terminating HTTPS servers match their hosts as SNI and route over their own RDS name,
 * their HTTP stats prefixed with the server's `name` when it has one (as Istio does);
 * TLS passthrough servers forward by SNI as the bound VirtualServices' `tls` routes say; TCP
 * servers (and TLS servers that terminate) forward as their `tcp` routes say. TCP and TLS chains
 * start with the authorization filters of the policies selecting the gateway (CUSTOM, then
 * network RBAC; ext_authz.ts `tcpAuthzFilters`), as Istio's gateways do. AUTO_PASSTHROUGH
 * servers forward every reachable service by its `outbound_.PORT_.SUBSET_.HOST` SNI
 * (sni_dnat.ts).
 *
 * @module
 */
import { create } from "@bufbuild/protobuf";
import { TrafficDirection } from "#gen/envoy/config/core/v3/base_pb.ts";
import {
  type FilterChain,
  FilterChainMatchSchema,
  FilterChainSchema,
  ListenerFilterSchema,
} from "#gen/envoy/config/listener/v3/listener_components_pb.ts";
import { type Listener, ListenerSchema } from "#gen/envoy/config/listener/v3/listener_pb.ts";
import { TlsInspectorSchema } from "#gen/envoy/extensions/filters/listener/tls_inspector/v3/tls_inspector_pb.ts";
import type { RouteDestination } from "../../api/kinds/networking.ts";
import type { PushContext } from "../model/push_context.ts";
import type { Proxy } from "../model/proxy.ts";
import { hostCovers, splitNamespacedHost } from "../../api/mod.ts";
import { tcpProxySettings } from "./cluster_plan.ts";
import { socketAddress, typedConfig } from "./conversion.ts";
import { type GatewayPort, type GatewayServer } from "./gateway_server.ts";
import { gatewayPorts } from "./gateway_server.ts";
import { hcmFilter, httpConnectionManager } from "./http_connection_manager.ts";
import { listenerName, TLS_INSPECTOR } from "./listener_outbound.ts";
import type { RouteContext } from "./route_action.ts";
import { l4MatchApplies, planL4Destinations } from "./route_plan.ts";
import { tcpProxy, tcpProxyFilter, type WeightedTarget } from "./tcp_proxy.ts";
import { downstreamTlsContext, downstreamTransportSocket } from "./tls.ts";
import { autoPassthroughChains, isAutoPassthrough } from "./sni_dnat.ts";
import { tcpAuthzFilters } from "./ext_authz.ts";

/** The SNI names a server answers to: its hosts without namespaces; none when it takes any ("*"). */
export function serverNames(gs: GatewayServer): string[] {
  const hosts = gs.server.hosts.map((h) => splitNamespacedHost(h).host);
  return hosts.includes("*") ? [] : [...new Set(hosts)].sort();
}

function targets(
  route: readonly RouteDestination[],
  vsNamespace: string,
  ctx: RouteContext,
): WeightedTarget[] {
  return planL4Destinations(route, vsNamespace, ctx).map((d) => ({ cluster: d.cluster, weight: d.weight }));
}

/** The TCP proxy to `route`'s clusters, with the DestinationRule's TCP settings for a single one. */
function routeTcpProxy(route: readonly RouteDestination[], vsNamespace: string, ctx: RouteContext) {
  const t = targets(route, vsNamespace, ctx);
  const settings = t.length === 1 ? tcpProxySettings(ctx.push, ctx.proxy, t[0]!.cluster) : {};
  return tcpProxy(t, { push: ctx.push, proxy: ctx.proxy, direction: "gateway" }, settings);
}

/** Filter chains of a TLS passthrough server: one per applicable `tls` route match, by SNI. */
function passthroughChains(gs: GatewayServer, ctx: RouteContext): FilterChain[] {
  const names = serverNames(gs);
  const chains: FilterChain[] = [];
  for (const vs of ctx.push.virtualServices(ctx.proxy, gs.gateway)) {
    for (const tls of vs.spec.tls ?? []) {
      for (const m of tls.match) {
        if (!l4MatchApplies(m, vs.metadata.namespace, ctx)) continue;
        const sni = m.sniHosts.filter((h) => names.length === 0 || names.some((n) => hostCovers(n, h)));
        if (sni.length === 0 || !tls.route || tls.route.length === 0) continue;
        chains.push(create(FilterChainSchema, {
          name: `${gs.gateway}|${[...sni].sort().join(",")}`,
          filterChainMatch: { serverNames: [...sni].sort() },
          filters: [
            ...tcpAuthzFilters(ctx.push, ctx.proxy),
            tcpProxyFilter(routeTcpProxy(tls.route, vs.metadata.namespace, ctx)),
          ],
        }));
      }
    }
  }
  return chains;
}

/** The filter chain of a TCP server (or a TLS server that terminates): its first applicable `tcp` route. */
function tcpChain(gs: GatewayServer, ctx: RouteContext): FilterChain | undefined {
  for (const vs of ctx.push.virtualServices(ctx.proxy, gs.gateway)) {
    for (const tcp of vs.spec.tcp ?? []) {
      const applies = !tcp.match || tcp.match.length === 0 ||
        tcp.match.some((m) => l4MatchApplies(m, vs.metadata.namespace, ctx));
      if (!applies || !tcp.route || tcp.route.length === 0) continue;
      const tls = gs.server.tls ? downstreamTlsContext(gs.server.tls) : undefined;
      const names = tls ? serverNames(gs) : [];
      return create(FilterChainSchema, {
        name: gs.gateway,
        ...(names.length > 0
          ? { filterChainMatch: create(FilterChainMatchSchema, { serverNames: names }) }
          : {}),
        filters: [
          ...tcpAuthzFilters(ctx.push, ctx.proxy),
          tcpProxyFilter(routeTcpProxy(tcp.route, vs.metadata.namespace, ctx)),
        ],
        ...(tls ? { transportSocket: downstreamTransportSocket(tls) } : {}),
      });
    }
  }
  return undefined;
}

/** The listener name of a gateway port: `ADDRESS_PORT`, the address being the `bind` or 0.0.0.0. */
export function gatewayListenerName(gp: GatewayPort): string {
  return listenerName(gp.bind ?? "0.0.0.0", gp.port);
}

/** The HTTP stat prefix of a server's connection manager: its `name`, else `outbound_LISTENER`. */
export function serverStatPrefix(gs: GatewayServer, gp: GatewayPort): string {
  return gs.server.name || `outbound_${gatewayListenerName(gp)}`;
}

function serverChains(gs: GatewayServer, gp: GatewayPort, ctx: RouteContext): FilterChain[] {
  switch (gs.kind) {
    case "https": {
      const hcm = httpConnectionManager({
        push: ctx.push,
        proxy: ctx.proxy,
        direction: "gateway",
        port: gp.port,
        statPrefix: serverStatPrefix(gs, gp),
        routes: { rds: gs.routeName! },
      });
      const names = serverNames(gs);
      return [create(FilterChainSchema, {
        name: gs.routeName!,
        ...(names.length > 0
          ? { filterChainMatch: create(FilterChainMatchSchema, { serverNames: names }) }
          : {}),
        filters: [hcmFilter(hcm)],
        transportSocket: downstreamTransportSocket(downstreamTlsContext(gs.server.tls!)!),
      })];
    }
    case "tls":
      if (isAutoPassthrough(gs)) {
        return autoPassthroughChains(ctx.push, ctx.proxy, gs, tcpAuthzFilters(ctx.push, ctx.proxy));
      }
      if (gs.server.tls && downstreamTlsContext(gs.server.tls)) {
        const chain = tcpChain(gs, ctx);
        return chain ? [chain] : [];
      }
      return passthroughChains(gs, ctx);
    case "tcp": {
      const chain = tcpChain(gs, ctx);
      return chain ? [chain] : [];
    }
    case "http":
      return [];
  }
}

/** The listener of one gateway port, or undefined when no server on it has anything to serve. */
export function gatewayListener(push: PushContext, proxy: Proxy, gp: GatewayPort): Listener | undefined {
  const name = gatewayListenerName(gp);
  let chains: FilterChain[];
  if (gp.http) {
    const hcm = httpConnectionManager({
      push,
      proxy,
      direction: "gateway",
      port: gp.port,
      statPrefix: `outbound_${name}`,
      routes: { rds: gp.servers[0]!.routeName! },
    });
    chains = [create(FilterChainSchema, { name, filters: [hcmFilter(hcm)] })];
  } else {
    chains = gp.servers.flatMap((gs) =>
      serverChains(gs, gp, { push, proxy, port: gp.port, gateways: [gs.gateway], tls: gs.kind === "https" })
    );
    // Envoy refuses two chains with the same match; the first server keeps it.
    const seen = new Set<string>();
    chains = chains.filter((c) => {
      const key = JSON.stringify(c.filterChainMatch?.serverNames ?? []);
      if (seen.has(key)) return false;
      seen.add(key);
      return true;
    });
  }
  if (chains.length === 0) return undefined;
  const sni = chains.some((c) => (c.filterChainMatch?.serverNames.length ?? 0) > 0 || c.transportSocket);
  return create(ListenerSchema, {
    name,
    address: socketAddress(gp.bind ?? "0.0.0.0", gp.port),
    filterChains: chains,
    trafficDirection: TrafficDirection.OUTBOUND,
    listenerFilters: sni
      ? [create(ListenerFilterSchema, {
        name: TLS_INSPECTOR,
        configType: {
          case: "typedConfig",
          value: typedConfig(TlsInspectorSchema, create(TlsInspectorSchema, {})),
        },
      })]
      : [],
  });
}

/** Every listener of a router proxy, one per gateway port and bind address, sorted by port. */
export function gatewayListeners(push: PushContext, proxy: Proxy): Listener[] {
  return gatewayPorts(push, proxy).flatMap((gp) => {
    const l = gatewayListener(push, proxy, gp);
    return l ? [l] : [];
  });
}
