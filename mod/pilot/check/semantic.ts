/**
 * Envoy's semantic checks: configuration Envoy (or a gRPC client, for proxyless sets) refuses
 * although every field is valid on its own — names unique per type, listener addresses and
 * filter chain matches, the HTTP filter order, domains, weighted clusters, regexes, cluster
 * types and their endpoints, SDS secrets, and the references between the four types. Each rule
 * names the Envoy (or gRPC) source file or docs page it comes from, in the file that holds it.
 *
 * @module
 */
import { ClusterSchema } from "#gen/envoy/config/cluster/v3/cluster_pb.ts";
import { ClusterLoadAssignmentSchema } from "#gen/envoy/config/endpoint/v3/endpoint_pb.ts";
import { ListenerSchema } from "#gen/envoy/config/listener/v3/listener_pb.ts";
import { RouteConfigurationSchema } from "#gen/envoy/config/route/v3/route_pb.ts";
import { type EnvoyResourceSet, type SemanticOptions, TYPE, violation } from "./semantic_context.ts";
import { checkClusters, checkEndpoints } from "./semantic_clusters.ts";
import { checkListeners, rdsNames } from "./semantic_listeners.ts";
import { checkMessages } from "./semantic_messages.ts";
import { checkRoutes, inlineRouteConfigs, type RouteConfigAt } from "./semantic_routes.ts";
import type { Violation } from "./violation.ts";

export {
  DEFAULT_SECRET_NAMES,
  type EnvoyResourceSet,
  type ProxyKind,
  type SemanticOptions,
} from "./semantic_context.ts";

/**
 * Every semantic rule `set` breaks for a proxy of kind `opts.proxyKind`; empty when Envoy (or,
 * for "proxyless", a gRPC client) would accept it. With `opts.partial`, rules that need the whole
 * set (references between types) are skipped.
 */
export function checkSemantics(set: EnvoyResourceSet, opts: SemanticOptions): Violation[] {
  const kind = opts.proxyKind;
  const partial = opts.partial ?? false;
  const out: Violation[] = [];
  out.push(...checkListeners(set.listeners, kind));
  out.push(...checkClusters(set.clusters, kind));
  out.push(...checkEndpoints(set.endpoints, set.clusters, kind, partial));
  const rds: RouteConfigAt[] = set.routes.map((config) => ({
    config,
    at: { typeUrl: TYPE.route, resource: config.name, path: "" },
    validateDefault: false,
  }));
  const clusterNames = partial ? undefined : new Set(set.clusters.map((c) => c.name));
  out.push(...checkRoutes(set.routes, [...rds, ...inlineRouteConfigs(set.listeners)], clusterNames, kind));
  if (!partial) {
    // An RDS name without its configuration keeps the listener warming (Envoy) or the channel
    // without a config (gRPC); the docs' "listener warming" (arch_overview/listeners/lds).
    const have = new Set(set.routes.map((r) => r.name));
    for (const [name, at] of rdsNames(set.listeners)) {
      if (!have.has(name)) {
        out.push(
          violation(
            "rds.missing",
            at,
            `listener ${at.resource} uses RDS ${name}, which has no RouteConfiguration; the listener never warms`,
          ),
        );
      }
    }
  }
  const msgOpts = { proxyKind: kind, secretNames: opts.secretNames };
  for (const l of set.listeners) {
    out.push(...checkMessages(ListenerSchema, l, { typeUrl: TYPE.listener, resource: l.name }, msgOpts));
  }
  for (const c of set.clusters) {
    out.push(...checkMessages(ClusterSchema, c, { typeUrl: TYPE.cluster, resource: c.name }, msgOpts));
  }
  for (const r of set.routes) {
    out.push(
      ...checkMessages(RouteConfigurationSchema, r, { typeUrl: TYPE.route, resource: r.name }, msgOpts),
    );
  }
  for (const e of set.endpoints) {
    out.push(
      ...checkMessages(
        ClusterLoadAssignmentSchema,
        e,
        { typeUrl: TYPE.endpoint, resource: e.clusterName },
        msgOpts,
      ),
    );
  }
  return out;
}
