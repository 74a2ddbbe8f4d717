/**
 * The traffic policy in force for one cluster, merged as Istio merges it: the DestinationRule's
 * policy, its port-level settings for the port, then the subset's policy and its port-level
 * settings; each of load balancer, connection pool, outlier detection and TLS is replaced whole
 * by the more specific level.
 */
import type {
  ClientTLSSettings,
  ConnectionPoolSettings,
  DestinationRuleSpec,
  LoadBalancerSettings,
  OutlierDetection,
  Subset,
  TrafficPolicy,
} from "../../../galley/kinds/networking.ts";

/** The settings a cluster is built from. */
export interface ClusterPolicy {
  readonly loadBalancer?: LoadBalancerSettings;
  readonly connectionPool?: ConnectionPoolSettings;
  readonly outlierDetection?: OutlierDetection;
  readonly tls?: ClientTLSSettings;
}

function atPort(policy: TrafficPolicy | undefined, port: number): ClusterPolicy {
  if (!policy) return {};
  const pl = policy.portLevelSettings?.find((p) => p.port?.number === port);
  return {
    loadBalancer: pl?.loadBalancer ?? policy.loadBalancer,
    connectionPool: pl?.connectionPool ?? policy.connectionPool,
    outlierDetection: pl?.outlierDetection ?? policy.outlierDetection,
    tls: pl?.tls ?? policy.tls,
  };
}

function over(base: ClusterPolicy, top: ClusterPolicy): ClusterPolicy {
  return {
    loadBalancer: top.loadBalancer ?? base.loadBalancer,
    connectionPool: top.connectionPool ?? base.connectionPool,
    outlierDetection: top.outlierDetection ?? base.outlierDetection,
    tls: top.tls ?? base.tls,
  };
}

/** The subset of a DestinationRule with this name, if any. */
export function findSubset(dr: DestinationRuleSpec | undefined, name: string): Subset | undefined {
  return dr?.subsets?.find((s) => s.name === name);
}

/** The policy for `port` and optionally a subset (by name) of the DestinationRule `dr`. */
export function clusterPolicy(
  dr: DestinationRuleSpec | undefined,
  port: number,
  subset?: string,
): ClusterPolicy {
  const base = atPort(dr?.trafficPolicy, port);
  if (!subset) return base;
  return over(base, atPort(findSubset(dr, subset)?.trafficPolicy, port));
}
