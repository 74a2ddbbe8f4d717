/**
 * Route configurations for proxyless gRPC clients (RDS), rendered from the same route plans
 * as Envoy's (route_plan.ts): one per target name, with one virtual host whose only domain is
 * that name, and a route per planned route (the VirtualService's, or the default route).
 *
 * Rendered for what both gRPC clients accept (gRFC A28, A31, A33, A42, A44): matches with the
 * long-standing header matcher fields (route_match.ts); weighted_clusters whose weights add up
 * to total_weight (C-core checks the sum; grpc-js wants it above 0); timeouts as
 * max_stream_duration; retries on gRPC status codes only (retry.ts); faults with explicit
 * percentages (fault.ts). A virtual host is never left without routes (C-core rejects that):
 * when no planned route can be expressed, one route fails every call with UNAVAILABLE, as a
 * client finding no route does. Routes gRPC cannot forward (redirects, direct responses) fail
 * calls through the fault filter. Everything left out is listed by unsupported.ts.
 *
 * @module
 */
import { create } from "@bufbuild/protobuf";
import type { Any } from "@bufbuild/protobuf/wkt";
import {
  type Route,
  type RouteAction,
  type RouteAction_HashPolicy,
  RouteAction_HashPolicy_FilterStateSchema,
  RouteAction_HashPolicy_HeaderSchema,
  RouteAction_HashPolicySchema,
  RouteAction_MaxStreamDurationSchema,
  RouteActionSchema,
  RouteSchema,
  VirtualHostSchema,
  WeightedCluster_ClusterWeightSchema,
  WeightedClusterSchema,
} from "#gen/envoy/config/route/v3/route_components_pb.ts";
import { type RouteConfiguration, RouteConfigurationSchema } from "#gen/envoy/config/route/v3/route_pb.ts";
import type { ConsistentHashLB } from "../../../api/kinds/networking.ts";
import type { Proxy } from "../../model/proxy.ts";
import type { PushContext } from "../../model/push_context.ts";
import { parseDuration } from "../../../shared/duration.ts";
import { outboundClusterName } from "../cluster_name.ts";
import { durationFromString } from "../conversion.ts";
import { type DestinationPlan, type RoutePlan, serviceRoutePlans } from "../route_plan.ts";
import { failAll, failAllHttp, faultOverride } from "./fault.ts";
import { FAULT_FILTER } from "./filters.ts";
import { retryPolicy } from "./retry.ts";
import { grpcRouteMatch, matchAll } from "./route_match.ts";
import { requestedTargets, type Target } from "./targets.ts";

/** gRPC's UNAVAILABLE, which clients return when no route matches. */
const UNAVAILABLE = 14;

/** The channel-id filter state key gRPC hashes on for source affinity (gRFC A42). */
export const CHANNEL_ID_KEY = "io.grpc.channel_id";

/**
 * The hash policy gRPC can use for a consistent-hash setting: a header (lower-cased, as gRPC
 * sees metadata), or the client channel for source-IP affinity; cookies and query parameters
 * do not exist in gRPC.
 */
export function grpcHashPolicy(ch: ConsistentHashLB | undefined): RouteAction_HashPolicy | undefined {
  if (ch?.httpHeaderName) {
    return create(RouteAction_HashPolicySchema, {
      policySpecifier: {
        case: "header",
        value: create(RouteAction_HashPolicy_HeaderSchema, { headerName: ch.httpHeaderName.toLowerCase() }),
      },
    });
  }
  if (ch?.useSourceIp) {
    return create(RouteAction_HashPolicySchema, {
      policySpecifier: {
        case: "filterState",
        value: create(RouteAction_HashPolicy_FilterStateSchema, { key: CHANNEL_ID_KEY }),
      },
    });
  }
  return undefined;
}

/** The destinations traffic goes to: the only one, else those with a weight. */
function used(dests: readonly DestinationPlan[]): readonly DestinationPlan[] {
  return dests.length === 1 ? dests : dests.filter((d) => d.weight > 0);
}

function clusterSpecifier(dests: readonly DestinationPlan[]): RouteAction["clusterSpecifier"] {
  const weighted = used(dests);
  if (weighted.length === 0) return { case: "cluster", value: dests[0]!.cluster };
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

function hashPolicies(dests: readonly DestinationPlan[]): RouteAction_HashPolicy[] {
  const out: RouteAction_HashPolicy[] = [];
  const seen = new Set<string>();
  for (const d of used(dests)) {
    const hp = grpcHashPolicy(d.consistentHash);
    const key = hp ? JSON.stringify(hp.policySpecifier) : "";
    if (hp && !seen.has(key)) {
      seen.add(key);
      out.push(hp);
    }
  }
  return out;
}

function routeAction(plan: RoutePlan): RouteAction {
  const ms = plan.timeout ? parseDuration(plan.timeout) ?? 0 : 0;
  const timeout = ms > 0 ? durationFromString(plan.timeout!) : undefined;
  return create(RouteActionSchema, {
    clusterSpecifier: clusterSpecifier(plan.destinations),
    hashPolicy: hashPolicies(plan.destinations),
    ...(timeout
      ? {
        timeout,
        maxStreamDuration: create(RouteAction_MaxStreamDurationSchema, {
          maxStreamDuration: timeout,
          grpcTimeoutHeaderMax: timeout,
        }),
      }
      : {}),
    retryPolicy: retryPolicy(plan.retry),
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

/** Renders one route plan, or undefined when gRPC cannot match it (see route_match.ts). */
export function grpcRoute(plan: RoutePlan, defaultCluster: string): Route | undefined {
  const match = grpcRouteMatch(plan.match);
  if (!match) return undefined;
  const http = plan.http;
  if (plan.action === "direct") {
    return failingRoute(plan.name, match, defaultCluster, failAllHttp(http!.directResponse!.status));
  }
  if (plan.action === "redirect") {
    return failingRoute(plan.name, match, defaultCluster, failAllHttp(http!.redirect!.redirectCode ?? 301));
  }
  if (plan.destinations.length === 0) return undefined;
  const fault = faultOverride(plan.fault);
  return create(RouteSchema, {
    name: plan.name,
    match,
    action: { case: "route", value: routeAction(plan) },
    typedPerFilterConfig: fault ? { [FAULT_FILTER]: fault } : {},
  });
}

function routesFor(push: PushContext, proxy: Proxy, target: Target): Route[] {
  const host = target.service.hostname;
  const port = target.port.number;
  const defaultCluster = outboundClusterName(port, host);
  const routes = serviceRoutePlans(push, proxy, host, port).routes
    .map((plan) => grpcRoute(plan, defaultCluster))
    .filter((r): r is Route => r !== undefined);
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
