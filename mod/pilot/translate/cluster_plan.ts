/**
 * The outbound clusters a proxy needs, decided once and rendered for each data plane: as
 * Envoy Clusters (cluster.ts) and ClusterLoadAssignments (endpoint.ts), and as proxyless-gRPC
 * clusters and assignments (grpc/cluster.ts, grpc/endpoint.ts). One plan per port of every
 * reachable service, and one per DestinationRule subset, with the traffic policy merged as
 * Istio merges it (cluster_traffic_policy.ts: port-level settings over subset over top level).
 *
 * @module
 */
import type { DestinationRuleSpec, TrafficPolicy } from "../../api/kinds/networking.ts";
import type { TcpProxy } from "#gen/envoy/extensions/filters/network/tcp_proxy/v3/tcp_proxy_pb.ts";
import { tunnelingConfig } from "./cluster_traffic_policy.ts";
import type { PushContext } from "../model/push_context.ts";
import type { Proxy } from "../model/proxy.ts";
import { type Endpoint, type Service, type ServicePort } from "../model/service.ts";
import { type ClusterPolicy, mergeTrafficPolicy, selectorMatches } from "../../api/mod.ts";
import { outboundClusterName, parseOutboundClusterName } from "./cluster_name.ts";
import { byString, durationFromString } from "./conversion.ts";
import { proxyLocality, reachableServices } from "./proxy_scope.ts";
import { topologyLabels } from "./locality_lb.ts";
import { spiffeId } from "./tls.ts";

/** How Envoy finds a cluster's hosts. */
export type Discovery = "EDS" | "STRICT_DNS" | "LOGICAL_DNS" | "ORIGINAL_DST";

/**
 * A cluster's traffic policy: mod/api's merge for the port and subset, plus the parts that
 * port-level settings cannot hold (`tunnel`, `proxyProtocol`, `retryBudget`), taken from the
 * subset's policy when it sets them, else from the top level (Istio's MergeTrafficPolicy).
 */
export interface PlanPolicy extends ClusterPolicy {
  readonly tunnel?: TrafficPolicy["tunnel"];
  readonly proxyProtocol?: TrafficPolicy["proxyProtocol"];
  readonly retryBudget?: TrafficPolicy["retryBudget"];
}

/** The traffic policy of one port (and subset) of a DestinationRule's host (see {@link PlanPolicy}). */
export function planPolicy(rule: DestinationRuleSpec | undefined, port: number, subset?: string): PlanPolicy {
  const top = rule?.trafficPolicy;
  const sub = subset === undefined ? undefined : rule?.subsets?.find((s) => s.name === subset)?.trafficPolicy;
  const tunnel = sub?.tunnel ?? top?.tunnel;
  const proxyProtocol = sub?.proxyProtocol ?? top?.proxyProtocol;
  const retryBudget = sub?.retryBudget ?? top?.retryBudget;
  return {
    ...mergeTrafficPolicy(rule, port, subset),
    ...(tunnel ? { tunnel } : {}),
    ...(proxyProtocol ? { proxyProtocol } : {}),
    ...(retryBudget ? { retryBudget } : {}),
  };
}

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
  readonly policy: PlanPolicy;
  readonly discovery: Discovery;
  /** Healthy endpoints of the port, narrowed to the subset's labels. Sorted by address and port. */
  readonly endpoints: readonly Endpoint[];
  /** SPIFFE identities of every workload behind the port (and the service's subjectAltNames). */
  readonly identities: readonly string[];
  /**
   * The proxy's labels with its topology labels (region, zone, subzone, network) added, which
   * `failoverPriority` compares endpoint labels with.
   */
  readonly proxyLabels: Readonly<Record<string, string>>;
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
  const proxyLabels = {
    ...proxy.labels,
    ...topologyLabels(proxyLocality(push, proxy), push.instancesOf(proxy).find((e) => e.network)?.network),
  };
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
      const policy = planPolicy(rule, port.number);
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
        proxyLabels,
      });
      for (const subset of rule?.subsets ?? []) {
        const subsetPolicy = planPolicy(rule, port.number, subset.name);
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
          proxyLabels,
        });
      }
    }
  }
  return plans.sort((a, b) => byString(a.name, b.name));
}

/** What a DestinationRule sets on a TCP proxy to one of its clusters. */
export type TcpProxySettings = Pick<
  TcpProxy,
  "idleTimeout" | "maxDownstreamConnectionDuration" | "tunnelingConfig"
>;

/**
 * The DestinationRule settings for a TCP proxy whose single upstream is `cluster` (an
 * `outbound|PORT|SUBSET|HOST` name; empty for any other), from the policy of that port and
 * subset: `connectionPool.tcp.idleTimeout` and `maxConnectionDuration` close idle and
 * long-lived connections, and `tunnel` carries the connection in an HTTP CONNECT (or POST)
 * request to the cluster's endpoints (Istio's TCP proxy settings).
 */
export function tcpProxySettings(push: PushContext, proxy: Proxy, cluster: string): TcpProxySettings {
  const name = parseOutboundClusterName(cluster);
  if (!name) return {};
  const rule = push.destinationRule(proxy, name.host)?.spec;
  if (!rule) return {};
  const policy = planPolicy(rule, name.port, name.subset || undefined);
  const tcp = policy.connectionPool?.tcp;
  return {
    ...(tcp?.idleTimeout ? { idleTimeout: durationFromString(tcp.idleTimeout) } : {}),
    ...(tcp?.maxConnectionDuration
      ? { maxDownstreamConnectionDuration: durationFromString(tcp.maxConnectionDuration) }
      : {}),
    ...(policy.tunnel ? { tunnelingConfig: tunnelingConfig(policy.tunnel) } : {}),
  };
}
