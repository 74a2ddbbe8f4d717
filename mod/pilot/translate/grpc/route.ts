/**
 * Route configurations for proxyless gRPC clients (RDS): one per target name, with one virtual
 * host whose only domain is that name, routes from the VirtualService that covers the host,
 * or a default route to the whole service when none does.
 *
 * Everything emitted is what both gRPC clients accept (gRFC A28, A31, A33, A42, A44):
 * weighted_clusters carry weights that add up to total_weight (C-core checks the sum; grpc-js
 * wants it above 0), a virtual host is never left without routes (C-core rejects that), and
 * routes gRPC cannot forward (redirects, direct responses) fail calls through the fault filter
 * instead of using actions grpc-js rejects.
 */
import { create } from "@bufbuild/protobuf";
import type { Any } from "@bufbuild/protobuf/wkt";
import {
  type Route,
  type RouteAction,
  RouteAction_MaxStreamDurationSchema,
  RouteActionSchema,
  RouteSchema,
  VirtualHostSchema,
  WeightedCluster_ClusterWeightSchema,
  WeightedClusterSchema,
} from "#gen/envoy/config/route/v3/route_components_pb.ts";
import { type RouteConfiguration, RouteConfigurationSchema } from "#gen/envoy/config/route/v3/route_pb.ts";
import type { HTTPRoute, HTTPRouteDestination } from "../../../galley/kinds/networking.ts";
import type { Proxy } from "../../model/proxy.ts";
import { type PushContext, resolveHost } from "../../model/push_context.ts";
import { durationFromMs, durationMs } from "./durations.ts";
import { failAll, failAllHttp, faultOverride } from "./fault.ts";
import { FAULT_FILTER } from "./filters.ts";
import { hashPolicies } from "./load_balancer.ts";
import { clusterName } from "./names.ts";
import { retryPolicy } from "./retry.ts";
import { matchAll, routeMatch } from "./route_match.ts";
import { dialableService, requestedTargets, type Target } from "./targets.ts";
import { clusterPolicy } from "./traffic_policy.ts";
import { applicableRoutes, virtualServiceFor } from "./virtual_service.ts";

/** gRPC's UNAVAILABLE, which clients return when no route matches. */
const UNAVAILABLE = 14;

interface Dest {
  readonly cluster: string;
  readonly host: string;
  readonly port: number;
  readonly subset?: string;
  readonly weight: number;
}

function resolveDestination(
  push: PushContext,
  proxy: Proxy,
  target: Target,
  vsNamespace: string,
  d: HTTPRouteDestination,
): Dest {
  const host = resolveHost(d.destination.host, vsNamespace);
  let port = d.destination.port?.number;
  if (port === undefined) {
    const svc = host === target.service.hostname ? target.service : dialableService(push, proxy, host);
    port = svc === target.service
      ? target.port.number
      : svc?.ports.length === 1
      ? svc.ports[0]!.number
      : target.port.number;
  }
  const subset = d.destination.subset || undefined;
  return { cluster: clusterName(host, port, subset), host, port, subset, weight: d.weight ?? 0 };
}

function hashPoliciesFor(push: PushContext, proxy: Proxy, dests: readonly Dest[]) {
  const first = dests[0];
  if (!first) return [];
  const lb = (d: Dest) =>
    clusterPolicy(push.destinationRule(proxy, d.host)?.spec, d.port, d.subset).loadBalancer;
  const policies = hashPolicies(lb(first));
  // Calls split over clusters hash alike only when every cluster hashes the same way.
  const same = dests.every((d) =>
    JSON.stringify(lb(d)?.consistentHash) === JSON.stringify(lb(first)?.consistentHash)
  );
  return same ? policies : [];
}

function clusterSpecifier(dests: readonly Dest[]): RouteAction["clusterSpecifier"] {
  const weighted = dests.filter((d) => d.weight > 0);
  if (dests.length === 1 || weighted.length === 0) return { case: "cluster", value: dests[0]!.cluster };
  if (weighted.length === 1) return { case: "cluster", value: weighted[0]!.cluster };
  // Two destinations naming the same cluster share one entry.
  const byCluster = new Map<string, number>();
  for (const d of weighted) byCluster.set(d.cluster, (byCluster.get(d.cluster) ?? 0) + d.weight);
  if (byCluster.size === 1) return { case: "cluster", value: weighted[0]!.cluster };
  const clusters = [...byCluster].map(([name, weight]) =>
    create(WeightedCluster_ClusterWeightSchema, { name, weight })
  );
  const total = clusters.reduce((sum, c) => sum + (c.weight ?? 0), 0);
  return { case: "weightedClusters", value: create(WeightedClusterSchema, { clusters, totalWeight: total }) };
}

function action(push: PushContext, proxy: Proxy, dests: readonly Dest[], http?: HTTPRoute): RouteAction {
  const timeoutMs = durationMs(http?.timeout);
  const timeout = timeoutMs !== undefined && timeoutMs > 0 ? durationFromMs(timeoutMs) : undefined;
  return create(RouteActionSchema, {
    clusterSpecifier: clusterSpecifier(dests),
    hashPolicy: hashPoliciesFor(push, proxy, dests),
    ...(timeout
      ? {
        timeout,
        maxStreamDuration: create(RouteAction_MaxStreamDurationSchema, {
          maxStreamDuration: timeout,
          grpcTimeoutHeaderMax: timeout,
        }),
      }
      : {}),
    retryPolicy: retryPolicy(http?.retries),
  });
}

function failingRoute(name: string, match: Route["match"], cluster: string, fault: Any): Route {
  return create(RouteSchema, {
    name,
    match,
    action: {
      case: "route",
      value: create(RouteActionSchema, { clusterSpecifier: { case: "cluster", value: cluster } }),
    },
    typedPerFilterConfig: { [FAULT_FILTER]: fault },
  });
}

function routesFor(push: PushContext, proxy: Proxy, target: Target): Route[] {
  const host = target.service.hostname;
  const port = target.port.number;
  const defaultCluster = clusterName(host, port);
  const vs = virtualServiceFor(push, proxy, host);
  if (!vs) {
    const dest: Dest = { cluster: defaultCluster, host, port, weight: 100 };
    return [
      create(RouteSchema, {
        name: "default",
        match: matchAll(),
        action: { case: "route", value: action(push, proxy, [dest]) },
      }),
    ];
  }
  const routes: Route[] = [];
  for (const { route: http, index, matches } of applicableRoutes(vs.spec, proxy, port)) {
    const name = http.name ?? `${vs.metadata.namespace}/${vs.metadata.name}#${index}`;
    const ms = (matches ?? [undefined]).map(routeMatch).filter((m) => m !== undefined);
    if (ms.length === 0) continue;
    const unforwardable = http.directResponse
      ? failAllHttp(http.directResponse.status)
      : http.redirect
      ? failAllHttp(http.redirect.redirectCode ?? 301)
      : undefined;
    if (unforwardable) {
      for (const m of ms) routes.push(failingRoute(name, m, defaultCluster, unforwardable));
      continue;
    }
    if (!http.route || http.route.length === 0) continue; // a delegate: not supported for gRPC
    const dests = http.route.map((d) => resolveDestination(push, proxy, target, vs.metadata.namespace, d));
    const routeAction = action(push, proxy, dests, http);
    const fault = faultOverride(http.fault);
    for (const m of ms) {
      routes.push(create(RouteSchema, {
        name,
        match: m,
        action: { case: "route", value: routeAction },
        typedPerFilterConfig: fault ? { [FAULT_FILTER]: fault } : {},
      }));
    }
  }
  if (routes.length === 0) {
    routes.push(failingRoute("no-route", matchAll(), defaultCluster, failAll(UNAVAILABLE)));
  }
  return routes;
}

/** The route configuration for one target. */
export function routeConfiguration(push: PushContext, proxy: Proxy, target: Target): RouteConfiguration {
  return create(RouteConfigurationSchema, {
    name: target.name,
    virtualHosts: [
      create(VirtualHostSchema, {
        name: target.name,
        domains: [target.name],
        routes: routesFor(push, proxy, target),
      }),
    ],
  });
}

/** True when some route of the configuration overrides the fault filter. */
export function usesFaults(rc: RouteConfiguration): boolean {
  return rc.virtualHosts.some((vh) => vh.routes.some((r) => FAULT_FILTER in r.typedPerFilterConfig));
}

/** Route configurations for the requested names ("*": every target), sorted by name. */
export function buildRouteConfigurations(
  push: PushContext,
  proxy: Proxy,
  names: readonly string[] | "*",
): RouteConfiguration[] {
  return requestedTargets(push, proxy, names).map((t) => routeConfiguration(push, proxy, t));
}
