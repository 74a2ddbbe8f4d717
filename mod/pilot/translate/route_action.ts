/**
 * Envoy routes, rendered from route plans (route_plan.ts): where a rule sends traffic (a
 * cluster, weighted clusters, a redirect or a direct response) and how (timeout, retries,
 * consistent-hash policy, fault injection as the plan decides them; rewrites, mirrors, header
 * changes and CORS, which only Envoy renders). Also the default route of a service without a
 * VirtualService.
 *
 * @module
 */
import { create } from "@bufbuild/protobuf";
import type { Any } from "@bufbuild/protobuf/wkt";
import { DataSourceSchema } from "#gen/envoy/config/core/v3/base_pb.ts";
import { RegexMatchAndSubstituteSchema } from "#gen/envoy/type/matcher/v3/regex_pb.ts";
import {
  DirectResponseActionSchema,
  RedirectAction_RedirectResponseCode,
  RedirectActionSchema,
  type Route,
  type RouteAction,
  type RouteAction_HashPolicy,
  RouteAction_HashPolicySchema,
  RouteAction_MaxStreamDurationSchema,
  type RouteAction_RequestMirrorPolicy,
  RouteAction_RequestMirrorPolicySchema,
  RouteActionSchema,
  RouteSchema,
  WeightedCluster_ClusterWeightSchema,
  WeightedClusterSchema,
} from "#gen/envoy/config/route/v3/route_components_pb.ts";
import { CorsPolicySchema } from "#gen/envoy/extensions/filters/http/cors/v3/cors_pb.ts";
import { HTTPFaultSchema } from "#gen/envoy/extensions/filters/http/fault/v3/fault_pb.ts";
import type {
  ConsistentHashLB,
  Destination,
  HTTPMatchRequest,
  HTTPRedirect,
  HTTPRoute,
  VirtualServiceSpec,
} from "../../api/kinds/networking.ts";
import type { Resource } from "../../api/resource.ts";
import {
  durationFromString,
  fractionalPercent,
  typedConfig,
  wholePercent,
  zeroDuration,
} from "./conversion.ts";
import { CORS_FILTER, translateCors } from "./cors.ts";
import { FAULT_FILTER, renderFault } from "./fault.ts";
import { headerChanges } from "./headers.ts";
import { renderRetryPolicy } from "./retry.ts";
import { translateRouteMatch } from "./route_match.ts";
import {
  type DestinationPlan,
  planDefaultRoute,
  planDestination,
  planHttpRoute,
  type RouteContext,
  type RoutePlan,
} from "./route_plan.ts";

export { DEFAULT_ROUTE_NAME, type RouteContext } from "./route_plan.ts";

/**
 * The cluster a destination names, as Istio picks its port: the destination's port, else the
 * service's only port, else the listener's port.
 */
export function destinationCluster(dest: Destination, vsNamespace: string, ctx: RouteContext): string {
  return planDestination(dest, vsNamespace, ctx).cluster;
}

/** A route hash policy for consistent-hash load balancing (header, cookie, source IP or query parameter). */
export function hashPolicy(ch: ConsistentHashLB | undefined): RouteAction_HashPolicy | undefined {
  if (!ch) return undefined;
  if (ch.httpHeaderName) {
    return create(RouteAction_HashPolicySchema, {
      policySpecifier: { case: "header", value: { headerName: ch.httpHeaderName } },
    });
  }
  if (ch.httpCookie) {
    return create(RouteAction_HashPolicySchema, {
      policySpecifier: {
        case: "cookie",
        value: {
          name: ch.httpCookie.name,
          path: ch.httpCookie.path ?? "",
          ...(ch.httpCookie.ttl ? { ttl: durationFromString(ch.httpCookie.ttl) } : {}),
          attributes: (ch.httpCookie.attributes ?? []).map((a) => ({ name: a.name, value: a.value ?? "" })),
        },
      },
    });
  }
  if (ch.useSourceIp) {
    return create(RouteAction_HashPolicySchema, {
      policySpecifier: { case: "connectionProperties", value: { sourceIp: true } },
    });
  }
  if (ch.httpQueryParameterName) {
    return create(RouteAction_HashPolicySchema, {
      policySpecifier: { case: "queryParameter", value: { name: ch.httpQueryParameterName } },
    });
  }
  return undefined;
}

/** Timeout (0 = none, Istio's default) and the matching cap on gRPC's grpc-timeout header. */
function applyTimeout(action: RouteAction, timeout: string | undefined): void {
  action.timeout = timeout ? durationFromString(timeout) : zeroDuration();
  action.maxStreamDuration = create(RouteAction_MaxStreamDurationSchema, {
    grpcTimeoutHeaderMax: action.timeout,
  });
}

function mirrorPolicy(cluster: string, percent: number | undefined): RouteAction_RequestMirrorPolicy {
  return create(RouteAction_RequestMirrorPolicySchema, {
    cluster,
    runtimeFraction: { defaultValue: percent === undefined ? wholePercent(100) : fractionalPercent(percent) },
    traceSampled: false,
  });
}

function mirrors(http: HTTPRoute, vsNamespace: string, ctx: RouteContext): RouteAction_RequestMirrorPolicy[] {
  const out: RouteAction_RequestMirrorPolicy[] = [];
  if (http.mirror) {
    const pct = http.mirrorPercentage !== undefined ? http.mirrorPercentage.value ?? 0 : http.mirrorPercent;
    if (pct === undefined || pct > 0) {
      out.push(mirrorPolicy(destinationCluster(http.mirror, vsNamespace, ctx), pct));
    }
  }
  for (const m of http.mirrors ?? []) {
    const pct = m.percentage !== undefined ? m.percentage.value ?? 0 : undefined;
    if (pct === undefined || pct > 0) {
      out.push(mirrorPolicy(destinationCluster(m.destination, vsNamespace, ctx), pct));
    }
  }
  return out;
}

const REDIRECT_CODES: Readonly<Record<number, RedirectAction_RedirectResponseCode>> = {
  301: RedirectAction_RedirectResponseCode.MOVED_PERMANENTLY,
  302: RedirectAction_RedirectResponseCode.FOUND,
  303: RedirectAction_RedirectResponseCode.SEE_OTHER,
  307: RedirectAction_RedirectResponseCode.TEMPORARY_REDIRECT,
  308: RedirectAction_RedirectResponseCode.PERMANENT_REDIRECT,
};

function applyRedirect(route: Route, redirect: HTTPRedirect, ctx: RouteContext): boolean {
  const code = REDIRECT_CODES[redirect.redirectCode ?? 301];
  if (code === undefined) return false;
  const action = create(RedirectActionSchema, { hostRedirect: redirect.authority ?? "", responseCode: code });
  if (redirect.prefixRewrite !== undefined) {
    action.pathRewriteSpecifier = { case: "prefixRewrite", value: redirect.prefixRewrite };
  } else if (redirect.uri !== undefined) {
    action.pathRewriteSpecifier = { case: "pathRedirect", value: redirect.uri };
  }
  if (redirect.scheme) action.schemeRewriteSpecifier = { case: "schemeRedirect", value: redirect.scheme };
  const port = redirect.port ?? (redirect.derivePort === "FROM_REQUEST_PORT" ? ctx.port : undefined);
  if (port !== undefined) {
    const scheme = redirect.scheme || (ctx.tls ? "https" : "http");
    // No explicit :80 for http or :443 for https.
    action.portRedirect = (port === 80 && scheme === "http") || (port === 443 && scheme === "https")
      ? 0
      : port;
  }
  route.action = { case: "redirect", value: action };
  return true;
}

function applyDestinations(route: Route, plan: RoutePlan, ctx: RouteContext): void {
  const http: HTTPRoute = plan.http ?? {};
  const action = create(RouteActionSchema, {});
  applyTimeout(action, plan.timeout);
  const changes = headerChanges(http.headers);
  let authority = changes.authority;
  const destinations = plan.destinations;
  if (http.rewrite?.uriRegexRewrite) {
    action.regexRewrite = create(RegexMatchAndSubstituteSchema, {
      pattern: { regex: http.rewrite.uriRegexRewrite.match ?? "" },
      substitution: http.rewrite.uriRegexRewrite.rewrite ?? "",
    });
  } else if (http.rewrite?.uri) {
    action.prefixRewrite = http.rewrite.uri;
  }
  if (http.rewrite?.authority) authority = http.rewrite.authority;
  if (authority) action.hostRewriteSpecifier = { case: "hostRewriteLiteral", value: authority };
  action.requestMirrorPolicies = mirrors(http, plan.vsNamespace, ctx);

  let consistentHash = false;
  if (destinations.length === 1) {
    const d = destinations[0]!;
    action.clusterSpecifier = { case: "cluster", value: d.cluster };
    const dc = headerChanges(d.source?.headers);
    route.requestHeadersToAdd.push(...dc.requestHeadersToAdd);
    route.requestHeadersToRemove.push(...dc.requestHeadersToRemove);
    route.responseHeadersToAdd.push(...dc.responseHeadersToAdd);
    route.responseHeadersToRemove.push(...dc.responseHeadersToRemove);
    if (dc.authority && action.hostRewriteSpecifier.case === undefined) {
      action.hostRewriteSpecifier = { case: "hostRewriteLiteral", value: dc.authority };
    }
    const hp = hashPolicy(d.consistentHash);
    if (hp) {
      action.hashPolicy.push(hp);
      consistentHash = true;
    }
  } else {
    const clusters = destinations.filter((d) => d.weight > 0).map((d: DestinationPlan) => {
      const dc = headerChanges(d.source?.headers);
      const hp = hashPolicy(d.consistentHash);
      if (hp) action.hashPolicy.push(hp);
      return create(WeightedCluster_ClusterWeightSchema, {
        name: d.cluster,
        weight: d.weight,
        requestHeadersToAdd: dc.requestHeadersToAdd,
        requestHeadersToRemove: dc.requestHeadersToRemove,
        responseHeadersToAdd: dc.responseHeadersToAdd,
        responseHeadersToRemove: dc.responseHeadersToRemove,
        ...(dc.authority
          ? { hostRewriteSpecifier: { case: "hostRewriteLiteral" as const, value: dc.authority } }
          : {}),
      });
    });
    action.clusterSpecifier = {
      case: "weightedClusters",
      value: create(WeightedClusterSchema, { clusters }),
    };
  }
  const retry = renderRetryPolicy(plan.retry, consistentHash);
  if (retry) action.retryPolicy = retry;
  route.action = { case: "route", value: action };
}

/** Renders one route plan as an Envoy Route (see the module notes for what only Envoy renders). */
export function renderRoute(plan: RoutePlan, ctx: RouteContext): Route {
  const http = plan.http;
  const match = plan.match;
  const route = create(RouteSchema, {
    name: plan.name,
    match: translateRouteMatch(match, plan.claims),
    ...(match?.statPrefix ? { statPrefix: match.statPrefix } : {}),
  });
  if (!http) {
    // The default route: no header changes, no rule-level settings.
    applyDestinations(route, plan, ctx);
    return route;
  }
  const changes = headerChanges(http.headers);
  route.requestHeadersToAdd = changes.requestHeadersToAdd;
  route.requestHeadersToRemove = changes.requestHeadersToRemove;
  route.responseHeadersToAdd = changes.responseHeadersToAdd;
  route.responseHeadersToRemove = changes.responseHeadersToRemove;
  if (plan.action === "redirect") {
    applyRedirect(route, http.redirect!, ctx);
  } else if (plan.action === "direct") {
    const body = http.directResponse!.body;
    const direct = create(DirectResponseActionSchema, { status: http.directResponse!.status });
    if (body?.string !== undefined) {
      direct.body = create(DataSourceSchema, { specifier: { case: "inlineString", value: body.string } });
    } else if (body?.bytes !== undefined) {
      direct.body = create(DataSourceSchema, {
        specifier: { case: "inlineBytes", value: new Uint8Array(Buffer.from(body.bytes, "base64")) },
      });
    }
    route.action = { case: "directResponse", value: direct };
  } else {
    applyDestinations(route, plan, ctx);
  }
  const perFilter: Record<string, Any> = {};
  const fault = renderFault(plan.fault);
  if (fault) perFilter[FAULT_FILTER] = typedConfig(HTTPFaultSchema, fault);
  if (http.corsPolicy) perFilter[CORS_FILTER] = typedConfig(CorsPolicySchema, translateCors(http.corsPolicy));
  route.typedPerFilterConfig = perFilter;
  return route;
}

/**
 * The Envoy route for one rule of a VirtualService and one of its match conditions (or none),
 * or undefined when the condition does not apply here (port, source labels, gateways), matches
 * on JWT claims no issuer here provides, or the rule still delegates (see planHttpRoute).
 */
export function translateHttpRoute(
  http: HTTPRoute,
  match: HTTPMatchRequest | undefined,
  vs: Resource<VirtualServiceSpec>,
  ctx: RouteContext,
): Route | undefined {
  const plan = planHttpRoute(http, match, vs, ctx);
  return plan ? renderRoute(plan, ctx) : undefined;
}

/**
 * The route of a service port without a VirtualService: everything ("/") to
 * `outbound|PORT||HOST` with no timeout, Istio's default retries, and the DestinationRule's
 * consistent-hash policy.
 */
export function defaultRoute(host: string, port: number, ctx: RouteContext): Route {
  return renderRoute(planDefaultRoute(host, port, ctx), ctx);
}
