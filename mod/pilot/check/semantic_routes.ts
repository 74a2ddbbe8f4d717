/**
 * Envoy's semantic checks on route configurations (RDS, and route configurations inlined in an
 * HTTP connection manager): what source/common/router/config_impl.cc refuses although every
 * field is valid on its own. Docs: api-v3/config/route/v3/route.proto and
 * route_components.proto ("domains", "weighted_clusters", "validate_clusters").
 *
 * @module
 */
import type { Listener } from "#gen/envoy/config/listener/v3/listener_pb.ts";
import type {
  RetryPolicy,
  RouteAction,
  VirtualHost,
} from "#gen/envoy/config/route/v3/route_components_pb.ts";
import type { RouteConfiguration } from "#gen/envoy/config/route/v3/route_pb.ts";
import {
  duplicates,
  type Place,
  type ProxyKind,
  TYPE,
  under,
  unpackHcm,
  violation,
} from "./semantic_context.ts";
import { retryOnPolicies } from "../../api/kinds/networking.ts";
import type { Violation } from "./violation.ts";

/** A route configuration to check, where it sits, and whether Envoy validates its clusters. */
export interface RouteConfigAt {
  readonly config: RouteConfiguration;
  readonly at: Place;
  /**
   * route.proto `validate_clusters`: defaults to true for a route configuration inlined in a
   * listener (route_config) and false for one loaded over RDS.
   */
  readonly validateDefault: boolean;
}

/**
 * retry_on values Envoy knows (source/common/router/retry_state_impl.cc parseRetryOn and
 * parseRetryGrpcOn; docs: config/http/http_conn_man/headers "x-envoy-retry-on" and
 * "x-envoy-retry-grpc-on").
 */
const RETRY_ON: ReadonlySet<string> = new Set(retryOnPolicies);

/** Route configurations inlined in the HTTP connection managers of `listeners`. */
export function inlineRouteConfigs(listeners: readonly Listener[]): RouteConfigAt[] {
  const out: RouteConfigAt[] = [];
  for (const l of listeners) {
    const at: Place = { typeUrl: TYPE.listener, resource: l.name, path: "" };
    const note = (hcm: ReturnType<typeof unpackHcm>, path: string) => {
      if (hcm?.routeSpecifier.case === "routeConfig") {
        out.push({
          config: hcm.routeSpecifier.value,
          at: under(at, `${path}.route_config`),
          validateDefault: true,
        });
      }
    };
    note(unpackHcm(l.apiListener?.apiListener), "api_listener.api_listener");
    const chains = l.filterChains.map((fc, i) => [fc, `filter_chains[${i}]`] as const);
    for (
      const [fc, p] of l.defaultFilterChain
        ? [...chains, [l.defaultFilterChain, "default_filter_chain"] as const]
        : chains
    ) {
      fc.filters.forEach((f, i) => {
        if (f.configType.case === "typedConfig") {
          note(unpackHcm(f.configType.value), `${p}.filters[${i}].typed_config`);
        }
      });
    }
  }
  return out;
}

/** Checks RDS route configurations (unique names) and every route configuration given. */
export function checkRoutes(
  rds: readonly RouteConfiguration[],
  all: readonly RouteConfigAt[],
  clusterNames: ReadonlySet<string> | undefined,
  kind: ProxyKind,
): Violation[] {
  const out: Violation[] = [];
  // A SotW RDS response naming one configuration twice hands its subscription two resources
  // (rds_impl.cc: "Unexpected RDS resource length: 2").
  for (const name of duplicates(rds.map((r) => r.name))) {
    out.push(
      violation(
        "route.unique_names",
        { typeUrl: TYPE.route, resource: name, path: "name" },
        `Unexpected RDS resource length: route configuration ${name} is sent more than once`,
      ),
    );
  }
  for (const rc of all) out.push(...checkRouteConfig(rc, clusterNames, kind));
  return out;
}

function checkRouteConfig(
  rc: RouteConfigAt,
  clusterNames: ReadonlySet<string> | undefined,
  kind: ProxyKind,
): Violation[] {
  const out: Violation[] = [];
  const { config, at } = rc;
  // Virtual host names key VHDS updates and per-virtual-host stats; Envoy refuses a repeated
  // name (config_impl.cc; not certain every Envoy version checks it, meshd never repeats one).
  for (const name of duplicates(config.virtualHosts.map((v) => v.name))) {
    out.push(
      violation(
        "route.unique_virtual_host_names",
        under(at, "virtual_hosts"),
        `Only unique values for name are permitted. Duplicate entry of virtual host ${name} in route ${config.name}`,
      ),
    );
  }
  out.push(...domains(config, at));
  const validate = config.validateClusters ?? rc.validateDefault;
  config.virtualHosts.forEach((vh, i) => {
    const vat = under(at, `virtual_hosts[${i}]`);
    // gRPC's xds_route_config.cc: "no valid routes in VirtualHost".
    if (kind === "proxyless" && vh.routes.length === 0) {
      out.push(
        violation(
          "grpc.route.empty_virtual_host",
          under(vat, "routes"),
          `no valid routes in VirtualHost ${vh.name}`,
        ),
      );
    }
    if (vh.retryPolicy && kind !== "proxyless") {
      out.push(...retryOn(vh.retryPolicy, under(vat, "retry_policy")));
    }
    out.push(...routesOf(vh, vat, validate ? clusterNames : undefined, kind));
  });
  return out;
}

/**
 * config_impl.cc RouteMatcher: domains are lower-cased and must be unique across all virtual
 * hosts of a configuration ("Only unique values for domains are permitted. Duplicate entry of
 * domain D in route R"), "*" at most once ("Only a single wildcard domain is permitted in route
 * R"). A "*" elsewhere than first or last is taken literally by Envoy and so never matches a
 * real host: reported as a translation error.
 */
function domains(config: RouteConfiguration, at: Place): Violation[] {
  const out: Violation[] = [];
  const seen = new Set<string>();
  config.virtualHosts.forEach((vh, i) => {
    vh.domains.forEach((d, j) => {
      const place = under(at, `virtual_hosts[${i}].domains[${j}]`);
      const domain = d.toLowerCase();
      if (seen.has(domain)) {
        out.push(
          domain === "*"
            ? violation(
              "route.unique_domains",
              place,
              `Only a single wildcard domain is permitted in route ${config.name}`,
            )
            : violation(
              "route.unique_domains",
              place,
              `Only unique values for domains are permitted. Duplicate entry of domain ${domain} in route ${config.name}`,
            ),
        );
      }
      seen.add(domain);
      if (domain.length > 1 && domain.slice(1, -1).includes("*")) {
        out.push(
          violation(
            "route.domain_wildcard",
            place,
            `domain ${d} of virtual host ${vh.name}: a wildcard is honoured only as the whole domain, its first or its last character`,
          ),
        );
      }
    });
  });
  return out;
}

function routesOf(
  vh: VirtualHost,
  at: Place,
  clusterNames: ReadonlySet<string> | undefined,
  kind: ProxyKind,
): Violation[] {
  const out: Violation[] = [];
  vh.routes.forEach((r, i) => {
    const rat = under(at, `routes[${i}]`);
    if (r.action.case === "route") {
      out.push(...routeAction(r.action.value, under(rat, "route"), clusterNames, kind));
    }
  });
  return out;
}

function routeAction(
  a: RouteAction,
  at: Place,
  clusterNames: ReadonlySet<string> | undefined,
  kind: ProxyKind,
): Violation[] {
  const out: Violation[] = [];
  const cs = a.clusterSpecifier;
  // config_impl.cc: with validate_clusters, "route: unknown cluster 'X'". Without it (RDS's
  // default) Envoy accepts the route and answers 503 (NC), as Istio does for a destination with
  // no service; meshd keeps that, so the rule applies only where Envoy would refuse.
  const known = (name: string, place: Place) => {
    if (clusterNames && !clusterNames.has(name)) {
      out.push(violation("route.unknown_cluster", place, `route: unknown cluster '${name}'`));
    }
  };
  if (cs.case === "cluster") known(cs.value, under(at, "cluster"));
  if (cs.case === "weightedClusters") {
    const wc = cs.value;
    const place = under(at, "weighted_clusters");
    wc.clusters.forEach((c, i) => known(c.name, under(place, `clusters[${i}].name`)));
    // config_impl.cc: "Sum of weights in the weighted_cluster must add up to total_weight." /
    // "Sum of weights in the weighted_cluster must be greater than 0." gRPC C-core checks the same.
    const sum = wc.clusters.reduce((s, c) => s + (c.weight ?? 0), 0);
    if (wc.totalWeight !== undefined && sum !== wc.totalWeight) {
      out.push(
        violation(
          "route.weighted_clusters_total",
          place,
          `Sum of weights in the weighted_cluster must add up to total_weight (${sum} != ${wc.totalWeight})`,
        ),
      );
    } else if (sum === 0) {
      out.push(
        violation(
          "route.weighted_clusters_total",
          place,
          "Sum of weights in the weighted_cluster must be greater than 0",
        ),
      );
    }
  }
  // config_impl.cc: "Specify only one of prefix_rewrite, regex_rewrite or path_rewrite_policy".
  const rewrites = [a.prefixRewrite !== "", a.regexRewrite !== undefined, a.pathRewritePolicy !== undefined]
    .filter(Boolean);
  if (rewrites.length > 1) {
    out.push(
      violation(
        "route.rewrite_exclusive",
        at,
        "Specify only one of prefix_rewrite, regex_rewrite or path_rewrite_policy",
      ),
    );
  }
  // gRPC reads only the gRPC status names of retry_on and ignores the rest (gRFC A44).
  if (a.retryPolicy && kind !== "proxyless") out.push(...retryOn(a.retryPolicy, under(at, "retry_policy")));
  return out;
}

/**
 * retry_on is a comma-separated list of Envoy's retry conditions (docs: x-envoy-retry-on and
 * x-envoy-retry-grpc-on). Envoy refuses a route whose policy names an unknown one
 * (config_impl.cc RetryPolicyImpl, "invalid retry policy"; recent versions — not certain for
 * every version, so stated from the docs' list). Status codes go in retriable_status_codes.
 */
function retryOn(p: RetryPolicy, at: Place): Violation[] {
  const unknown = p.retryOn.split(",").map((s) => s.trim()).filter((s) => s !== "" && !RETRY_ON.has(s));
  return unknown.length === 0 ? [] : [
    violation(
      "route.retry_on",
      under(at, "retry_on"),
      `invalid retry policy: unknown retry_on value(s) ${unknown.join(", ")}`,
    ),
  ];
}
