/**
 * The outbound clusters a proxy needs, decided once and rendered for each data plane: as
 * Envoy Clusters (cluster.ts) and ClusterLoadAssignments (endpoint.ts), and as proxyless-gRPC
 * clusters and assignments (grpc/cluster.ts, grpc/endpoint.ts). One plan per port of every
 * reachable service, and one per DestinationRule subset, with the traffic policy merged as
 * Istio merges it (cluster_traffic_policy.ts: port-level settings over subset over top level).
 *
 * @module
 */
import type { DestinationRuleSpec } from "../../api/kinds/networking.ts";
import type { PushContext } from "../model/push_context.ts";
import type { Proxy } from "../model/proxy.ts";
import { type Endpoint, type Service, type ServicePort } from "../model/service.ts";
import { type ClusterPolicy, mergeTrafficPolicy, selectorMatches } from "../../api/mod.ts";
import { outboundClusterName } from "./cluster_name.ts";
import { byString } from "./conversion.ts";
import { reachableServices } from "./proxy_scope.ts";
import { spiffeId } from "./tls.ts";

/** How Envoy finds a cluster's hosts. */
export type Discovery = "EDS" | "STRICT_DNS" | "LOGICAL_DNS" | "ORIGINAL_DST";

/** One outbound cluster, before it is rendered. */
export interface OutboundClusterPlan {
  /** `outbound|PORT|SUBSET|HOST`. */
  readonly name: string;
  readonly service: Service;
  readonly port: ServicePort;
  /** Subset name; "" for the service's default cluster. */
  readonly subset: string;
  /** The DestinationRule that applies, if any. */
  readonly rule?: DestinationRuleSpec;
  /** Its traffic policy for this port and subset. */
  readonly policy: ClusterPolicy;
  readonly discovery: Discovery;
  /** Healthy endpoints of the port, narrowed to the subset's labels. Sorted by address and port. */
  readonly endpoints: readonly Endpoint[];
  /** SPIFFE identities of every workload behind the port (and the service's subjectAltNames). */
  readonly identities: readonly string[];
}

function discoveryOf(service: Service, endpoints: readonly Endpoint[], policy: ClusterPolicy): Discovery {
  if (policy.loadBalancer?.simple === "PASSTHROUGH") return "ORIGINAL_DST";
  switch (service.resolution) {
    case "DNS":
      return "STRICT_DNS";
    case "DNS_ROUND_ROBIN":
      return "LOGICAL_DNS";
    case "STATIC":
      return "EDS";
    case "NONE":
      return endpoints.length > 0 ? "EDS" : "ORIGINAL_DST";
  }
}

function byAddress(a: Endpoint, b: Endpoint): number {
  return byString(a.address, b.address) || a.port - b.port || byString(a.source, b.source);
}

/**
 * The outbound cluster plans of a proxy, sorted by cluster name: per reachable service and
 * port the default cluster, then one per subset of the DestinationRule that applies.
 */
export function outboundClusterPlans(push: PushContext, proxy: Proxy): OutboundClusterPlan[] {
  const plans: OutboundClusterPlan[] = [];
  for (const service of reachableServices(push, proxy)) {
    const rule = push.destinationRule(proxy, service.hostname)?.spec;
    for (const port of service.ports) {
      const all = push.endpoints(service, port.number);
      const healthy = all.filter((e) => e.healthy).sort(byAddress);
      const identities = [
        ...new Set([
          ...all.filter((e) => e.serviceAccount).map((e) =>
            spiffeId(push.mesh.trustDomain, e.namespace, e.serviceAccount!)
          ),
          ...service.subjectAltNames,
        ]),
      ].sort(byString);
      const policy = mergeTrafficPolicy(rule, port.number);
      plans.push({
        name: outboundClusterName(port.number, service.hostname),
        service,
        port,
        subset: "",
        ...(rule ? { rule } : {}),
        policy,
        discovery: discoveryOf(service, all, policy),
        endpoints: healthy,
        identities,
      });
      for (const subset of rule?.subsets ?? []) {
        const subsetPolicy = mergeTrafficPolicy(rule, port.number, subset.name);
        plans.push({
          name: outboundClusterName(port.number, service.hostname, subset.name),
          service,
          port,
          subset: subset.name,
          rule,
          policy: subsetPolicy,
          discovery: discoveryOf(service, all, subsetPolicy),
          endpoints: healthy.filter((e) => selectorMatches(subset.labels, e.labels)),
          identities,
        });
      }
    }
  }
  return plans.sort((a, b) => byString(a.name, b.name));
}
