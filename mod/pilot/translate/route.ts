/**
 * Route configurations (RDS). Sidecars get one per outbound HTTP port, named by the port
 * ("9080"), with a virtual host per reachable service on that port and a catch-all host.
 * Routers get one per HTTP gateway port (`http.PORT`) and per TLS-terminating server
 * (`https.PORT.PORTNAME.GATEWAY.NAMESPACE`), with a virtual host per VirtualService host bound
 * to the gateway. Inbound listeners carry their route configuration inline.
 *
 * @module
 */
import { create } from "@bufbuild/protobuf";
import { type RouteConfiguration, RouteConfigurationSchema } from "#gen/envoy/config/route/v3/route_pb.ts";
import {
  type RateLimit,
  type Route,
  RouteActionSchema,
  type VirtualHost,
  VirtualHost_TlsRequirementType,
  VirtualHostSchema,
} from "#gen/envoy/config/route/v3/route_components_pb.ts";
import type { VirtualServiceSpec } from "../../api/kinds/networking.ts";
import type { Resource } from "../../api/resource.ts";
import type { PushContext } from "../model/push_context.ts";
import type { Proxy } from "../model/proxy.ts";
import { isHttpProtocol } from "../model/service.ts";
import { inboundClusterName } from "./cluster_name.ts";
import { byString, zeroDuration } from "./conversion.ts";
import { boundHosts, gatewayPorts } from "./gateway_server.ts";
import { outboundPolicy, reachableServices } from "./proxy_scope.ts";
import { DEFAULT_ROUTE_NAME, destinationCluster, renderRoute } from "./route_action.ts";
import { translateRouteMatch } from "./route_match.ts";
import { type RouteContext, serviceRoutePlans, virtualServiceRoutePlans } from "./route_plan.ts";
import { catchAllVirtualHost, serviceDomains } from "./virtual_host.ts";

/** Largest direct response body Envoy accepts (1 MiB, as Istio; Envoy's default is 4 KiB). */
export const MAX_DIRECT_RESPONSE_BODY = 1024 * 1024;

/** The RDS name of a sidecar's outbound HTTP routes on a port: the port number. */
export function outboundRouteName(port: number): string {
  return String(port);
}

/**
 * The routes one VirtualService contributes in a scope: each HTTP rule once per match
 * condition that applies (or once without conditions), stopping after a catch-all route.
 */
export function virtualServiceRoutes(vs: Resource<VirtualServiceSpec>, ctx: RouteContext): Route[] {
  return virtualServiceRoutePlans(vs, ctx).map((plan) => renderRoute(plan, ctx));
}

export { virtualServiceFor } from "./route_plan.ts";

/** The outbound HTTP ports of a sidecar: every HTTP port of a reachable service, sorted. */
export function outboundHttpPorts(push: PushContext, proxy: Proxy): number[] {
  const ports = new Set<number>();
  for (const s of reachableServices(push, proxy)) {
    for (const p of s.ports) if (isHttpProtocol(p.protocol)) ports.add(p.number);
  }
  return [...ports].sort((a, b) => a - b);
}

function routeConfiguration(name: string, virtualHosts: VirtualHost[]): RouteConfiguration {
  return create(RouteConfigurationSchema, {
    name,
    virtualHosts,
    validateClusters: false,
    maxDirectResponseBodySizeBytes: MAX_DIRECT_RESPONSE_BODY,
  });
}

/** The outbound route configuration of a sidecar for one HTTP port. */
export function sidecarRouteConfiguration(push: PushContext, proxy: Proxy, port: number): RouteConfiguration {
  const ctx: RouteContext = { push, proxy, port, gateways: ["mesh"] };
  const seenDomains = new Set<string>();
  const vhosts: VirtualHost[] = [];
  for (const service of reachableServices(push, proxy)) {
    const sp = service.ports.find((p) => p.number === port);
    if (!sp || !isHttpProtocol(sp.protocol)) continue;
    const routes = serviceRoutePlans(push, proxy, service.hostname, port).routes.map((plan) =>
      renderRoute(plan, ctx)
    );
    const domains = serviceDomains(service, port, proxy.dnsDomain).filter((d) => {
      if (seenDomains.has(d)) return false;
      seenDomains.add(d);
      return true;
    });
    if (domains.length === 0) continue;
    vhosts.push(create(VirtualHostSchema, { name: `${service.hostname}:${port}`, domains, routes }));
  }
  vhosts.sort((a, b) => byString(a.name, b.name));
  const policy = outboundPolicy(push, proxy);
  const egress = policy.egressProxy
    ? destinationCluster(policy.egressProxy, proxy.namespace, ctx)
    : undefined;
  vhosts.push(catchAllVirtualHost(policy, egress));
  return routeConfiguration(outboundRouteName(port), vhosts);
}

/** A virtual host answering 404 for everything, for a gateway port no VirtualService serves. */
function notFoundVirtualHost(port: number): VirtualHost {
  return create(VirtualHostSchema, {
    name: `blackhole:${port}`,
    domains: ["*"],
    routes: [{
      name: DEFAULT_ROUTE_NAME,
      match: { pathSpecifier: { case: "prefix", value: "/" } },
      action: { case: "directResponse", value: { status: 404 } },
    }],
  });
}

/**
 * The route configurations of a router proxy: `http.PORT` per HTTP gateway port and one per
 * TLS-terminating server, each with a virtual host per host a bound VirtualService serves
 * (routes of several VirtualServices for the same host are concatenated in push order).
 */
export function gatewayRouteConfigurations(push: PushContext, proxy: Proxy): RouteConfiguration[] {
  const byName = new Map<string, Map<string, VirtualHost>>();
  for (const gp of gatewayPorts(push, proxy)) {
    for (const gs of gp.servers) {
      if (!gs.routeName) continue;
      const vhosts = byName.get(gs.routeName) ?? new Map<string, VirtualHost>();
      byName.set(gs.routeName, vhosts);
      const ctx: RouteContext = {
        push,
        proxy,
        port: gp.port,
        gateways: [gs.gateway],
        tls: gs.kind === "https",
      };
      for (const vs of push.virtualServices(proxy, gs.gateway)) {
        const hosts = boundHosts(vs, gs);
        if (hosts.length === 0) continue;
        const routes = virtualServiceRoutes(vs, ctx);
        if (routes.length === 0) continue;
        for (const host of hosts) {
          const name = `${host}:${gp.port}`;
          const existing = vhosts.get(name);
          if (existing) {
            existing.routes.push(...routes);
            continue;
          }
          vhosts.set(
            name,
            create(VirtualHostSchema, {
              name,
              domains: [host, `${host}:${gp.port}`],
              routes: [...routes],
              ...(gs.server.tls?.httpsRedirect ? { requireTls: VirtualHost_TlsRequirementType.ALL } : {}),
            }),
          );
        }
      }
    }
  }
  return [...byName.entries()].sort(([a], [b]) => byString(a, b)).map(([name, vhosts]) => {
    const list = [...vhosts.values()].sort((a, b) => byString(a.name, b.name));
    const port = Number(name.split(".")[1]);
    return routeConfiguration(name, list.length > 0 ? list : [notFoundVirtualHost(port)]);
  });
}

/**
 * The inline route configuration of an inbound HTTP port: everything to `inbound|PORT||`
 * with no timeout; the virtual host carries `rateLimits` (mixer's, see rate_limit.ts), if any.
 */
export function inboundRouteConfiguration(
  port: number,
  rateLimits: readonly RateLimit[] = [],
): RouteConfiguration {
  const cluster = inboundClusterName(port);
  return routeConfiguration(cluster, [
    create(VirtualHostSchema, {
      name: `inbound|http|${port}`,
      domains: ["*"],
      rateLimits: [...rateLimits],
      routes: [{
        name: DEFAULT_ROUTE_NAME,
        match: translateRouteMatch(undefined),
        action: {
          case: "route",
          value: create(RouteActionSchema, {
            clusterSpecifier: { case: "cluster", value: cluster },
            timeout: zeroDuration(),
            maxStreamDuration: { maxStreamDuration: zeroDuration(), grpcTimeoutHeaderMax: zeroDuration() },
          }),
        },
      }],
    }),
  ]);
}

/**
 * Every route configuration the proxy's listeners name over RDS, sorted by name: per
 * outbound HTTP port for sidecars, per gateway HTTP port and HTTPS server for routers.
 */
export function buildRoutes(push: PushContext, proxy: Proxy): RouteConfiguration[] {
  if (proxy.type === "router") return gatewayRouteConfigurations(push, proxy);
  return outboundHttpPorts(push, proxy)
    .map((port) => sidecarRouteConfiguration(push, proxy, port))
    .sort((a, b) => byString(a.name, b.name));
}
