/**
 * Which DestinationRule traffic policy applies to one port of its host, optionally for one
 * subset: Istio's merge order, written once for every consumer (pilot's cluster and route plans,
 * and through them Envoy and proxyless gRPC alike).
 *
 * @module
 */
import type {
  ConnectionPoolSettings,
  DestinationRuleSpec,
  LoadBalancerSettings,
  OutlierDetection,
  TrafficPolicy,
} from "./kinds/networking.ts";

/** The parts of a traffic policy that apply to one cluster, after port and subset overrides. */
export interface ClusterPolicy {
  readonly loadBalancer?: LoadBalancerSettings;
  readonly connectionPool?: ConnectionPoolSettings;
  readonly outlierDetection?: OutlierDetection;
  readonly tls?: TrafficPolicy["tls"];
}

function portOverride(policy: TrafficPolicy | undefined, port: number): ClusterPolicy | undefined {
  const pls = policy?.portLevelSettings?.find((p) => p.port?.number === port);
  if (!pls) return undefined;
  // Port-level settings do not inherit from the level above (Istio's documented rule).
  return {
    loadBalancer: pls.loadBalancer,
    connectionPool: pls.connectionPool,
    outlierDetection: pls.outlierDetection,
    tls: pls.tls,
  };
}

/**
 * The policy for `port` of the rule's host, optionally for one subset, merged as Istio does:
 * the top-level policy, replaced wholesale by its matching port-level settings; then each part
 * the subset's policy sets, replaced wholesale by the subset's matching port-level settings.
 */
export function mergeTrafficPolicy(
  rule: DestinationRuleSpec | undefined,
  port: number,
  subset?: string,
): ClusterPolicy {
  const top = rule?.trafficPolicy;
  let merged: ClusterPolicy = portOverride(top, port) ?? {
    loadBalancer: top?.loadBalancer,
    connectionPool: top?.connectionPool,
    outlierDetection: top?.outlierDetection,
    tls: top?.tls,
  };
  if (subset === undefined) return merged;
  const sp = rule?.subsets?.find((s) => s.name === subset)?.trafficPolicy;
  if (!sp) return merged;
  merged = {
    loadBalancer: sp.loadBalancer ?? merged.loadBalancer,
    connectionPool: sp.connectionPool ?? merged.connectionPool,
    outlierDetection: sp.outlierDetection ?? merged.outlierDetection,
    tls: sp.tls ?? merged.tls,
  };
  return portOverride(sp, port) ?? merged;
}
