/**
 * Listeners of a router proxy: one bound `0.0.0.0_PORT` per gateway port. HTTP ports carry one
 * HTTP connection manager on RDS `http.PORT`. Other ports carry a filter chain per server:
 * TLS-terminating HTTPS servers match their hosts as SNI and route over their own RDS name;
 * TLS passthrough servers forward by SNI as the bound VirtualServices' `tls` routes say; TCP
 * servers (and TLS servers that terminate) forward as their `tcp` routes say.
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
import type { L4MatchAttributes, RouteDestination, TLSMatchAttributes } from "../../api/kinds/networking.ts";
import { type PushContext, qualifyGateway } from "../model/push_context.ts";
import type { Proxy } from "../model/proxy.ts";
import { hostCovers, selectorMatches, splitNamespacedHost } from "../../api/mod.ts";
import { socketAddress, typedConfig } from "./conversion.ts";
import { type GatewayPort, type GatewayServer } from "./gateway_server.ts";
import { gatewayPorts } from "./gateway_server.ts";
import { hcmFilter, httpConnectionManager } from "./http_connection_manager.ts";
import { listenerName, TLS_INSPECTOR } from "./listener_outbound.ts";
import { destinationCluster, type RouteContext } from "./route_action.ts";
import { tcpProxy, tcpProxyFilter, type WeightedTarget } from "./tcp_proxy.ts";
import { downstreamTlsContext, downstreamTransportSocket } from "./tls.ts";

/** The SNI names a server answers to: its hosts without namespaces; none when it takes any ("*"). */
export function serverNames(gs: GatewayServer): string[] {
  const hosts = gs.server.hosts.map((h) => splitNamespacedHost(h).host);
  return hosts.includes("*") ? [] : [...new Set(hosts)].sort();
}

function l4Applies(
  m: L4MatchAttributes | TLSMatchAttributes,
  vsNamespace: string,
  ctx: RouteContext,
): boolean {
  if (m.port !== undefined && m.port !== 0 && m.port !== ctx.port) return false;
  if (m.gateways && m.gateways.length > 0) {
    return m.gateways.some((g) => ctx.gateways.includes(qualifyGateway(g, vsNamespace)));
  }
  return selectorMatches(m.sourceLabels, ctx.proxy.labels);
}

function targets(
  route: readonly RouteDestination[],
  vsNamespace: string,
  ctx: RouteContext,
): WeightedTarget[] {
  const list = route.length === 1 ? route : route.filter((d) => (d.weight ?? 0) > 0);
  return list.map((d) => ({
    cluster: destinationCluster(d.destination, vsNamespace, ctx),
    weight: d.weight ?? 100,
  }));
}

/** Filter chains of a TLS passthrough server: one per applicable `tls` route match, by SNI. */
function passthroughChains(gs: GatewayServer, ctx: RouteContext): FilterChain[] {
  const names = serverNames(gs);
  const chains: FilterChain[] = [];
  for (const vs of ctx.push.virtualServices(ctx.proxy, gs.gateway)) {
    for (const tls of vs.spec.tls ?? []) {
      for (const m of tls.match) {
        if (!l4Applies(m, vs.metadata.namespace, ctx)) continue;
        const sni = m.sniHosts.filter((h) => names.length === 0 || names.some((n) => hostCovers(n, h)));
        if (sni.length === 0 || !tls.route || tls.route.length === 0) continue;
        chains.push(create(FilterChainSchema, {
          name: `${gs.gateway}|${[...sni].sort().join(",")}`,
          filterChainMatch: { serverNames: [...sni].sort() },
          filters: [tcpProxyFilter(tcpProxy(targets(tls.route, vs.metadata.namespace, ctx), ctx.push.mesh))],
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
        tcp.match.some((m) => l4Applies(m, vs.metadata.namespace, ctx));
      if (!applies || !tcp.route || tcp.route.length === 0) continue;
      const tls = gs.server.tls ? downstreamTlsContext(gs.server.tls) : undefined;
      const names = tls ? serverNames(gs) : [];
      return create(FilterChainSchema, {
        name: gs.gateway,
        ...(names.length > 0
          ? { filterChainMatch: create(FilterChainMatchSchema, { serverNames: names }) }
          : {}),
        filters: [tcpProxyFilter(tcpProxy(targets(tcp.route, vs.metadata.namespace, ctx), ctx.push.mesh))],
        ...(tls ? { transportSocket: downstreamTransportSocket(tls) } : {}),
      });
    }
  }
  return undefined;
}

function serverChains(gs: GatewayServer, gp: GatewayPort, ctx: RouteContext): FilterChain[] {
  switch (gs.kind) {
    case "https": {
      const hcm = httpConnectionManager({
        push: ctx.push,
        proxy: ctx.proxy,
        direction: "gateway",
        port: gp.port,
        statPrefix: `outbound_0.0.0.0_${gp.port}`,
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
  const name = listenerName("0.0.0.0", gp.port);
  let chains: FilterChain[];
  if (gp.http) {
    const hcm = httpConnectionManager({
      push,
      proxy,
      direction: "gateway",
      port: gp.port,
      statPrefix: `outbound_0.0.0.0_${gp.port}`,
      routes: { rds: `http.${gp.port}` },
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
    address: socketAddress("0.0.0.0", gp.port),
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

/** Every listener of a router proxy, one per gateway port, sorted by port. */
export function gatewayListeners(push: PushContext, proxy: Proxy): Listener[] {
  return gatewayPorts(push, proxy).flatMap((gp) => {
    const l = gatewayListener(push, proxy, gp);
    return l ? [l] : [];
  });
}
