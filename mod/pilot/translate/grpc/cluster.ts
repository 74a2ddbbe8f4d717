/**
 * Clusters for proxyless gRPC clients (CDS), rendered from the same cluster plans as Envoy's
 * (cluster_plan.ts): the same names, the same merged DestinationRule policy, the same circuit
 * breakers and outlier detection. What differs is only what gRPC clients accept (gRFC A27,
 * A32, A42, A50): every cluster is EDS over ADS (the EDS name is the cluster name); the load
 * balancer is ROUND_ROBIN or RING_HASH (xxHash, ring size clamped to gRPC's maximum); outlier
 * detection adds failure-percentage ejection, since gRPC has no consecutive-error counts; TLS
 * names certificate provider instances instead of SDS secrets (tls.ts). What gRPC cannot
 * express is listed by unsupported.ts, never dropped silently.
 *
 * @module
 */
import { create } from "@bufbuild/protobuf";
import {
  type Cluster,
  Cluster_DiscoveryType,
  Cluster_EdsClusterConfigSchema,
  Cluster_LbPolicy,
  Cluster_RingHashLbConfig_HashFunction,
  Cluster_RingHashLbConfigSchema,
  ClusterSchema,
} from "#gen/envoy/config/cluster/v3/cluster_pb.ts";
import { CircuitBreakersSchema } from "#gen/envoy/config/cluster/v3/circuit_breaker_pb.ts";
import type { OutlierDetection as EnvoyOutlier } from "#gen/envoy/config/cluster/v3/outlier_detection_pb.ts";
import type { OutlierDetection } from "../../../api/kinds/networking.ts";
import type { Proxy } from "../../model/proxy.ts";
import type { PushContext } from "../../model/push_context.ts";
import { type OutboundClusterPlan, outboundClusterPlans } from "../cluster_plan.ts";
import { circuitBreakerThresholds, outlierDetectionConfig, ringHashSize } from "../cluster_traffic_policy.ts";
import { adsConfigSource, durationFromString } from "../conversion.ts";
import { clientTransportSocket } from "./tls.ts";

/** gRPC's largest accepted ring size. */
export const MAX_RING_SIZE = 8_388_608;

/** The failure percentage (of calls to one endpoint in one interval) that ejects it. */
export const FAILURE_THRESHOLD = 50;

/**
 * The cluster plans a gRPC client may ask for: Envoy's, less services under a wildcard host
 * (a client dials a name, never a pattern). Sorted by name.
 */
export function grpcClusterPlans(push: PushContext, proxy: Proxy): OutboundClusterPlan[] {
  return outboundClusterPlans(push, proxy).filter((p) => !p.service.hostname.includes("*"));
}

/**
 * Outlier detection for gRPC (gRFC A50): Envoy's message, plus failure-percentage ejection
 * standing in for the consecutive-error counts gRPC lacks: an endpoint that failed at least
 * {@link FAILURE_THRESHOLD}% of at least N calls in an interval is ejected, N the smallest
 * consecutive count set. The maximum ejection percentage is clamped to 100.
 */
export function grpcOutlierDetection(od: OutlierDetection): EnvoyOutlier {
  const out = outlierDetectionConfig(od);
  const volume = [out.consecutive5xx, out.consecutiveGatewayFailure]
    .filter((n): n is number => n !== undefined && n > 0);
  if (volume.length > 0) {
    out.enforcingFailurePercentage = 100;
    out.failurePercentageThreshold = FAILURE_THRESHOLD;
    out.failurePercentageRequestVolume = Math.min(...volume);
    out.failurePercentageMinimumHosts = 1;
  }
  if (out.maxEjectionPercent !== undefined) out.maxEjectionPercent = Math.min(100, out.maxEjectionPercent);
  return out;
}

/** Renders one planned cluster for gRPC clients. */
export function grpcCluster(push: PushContext, plan: OutboundClusterPlan): Cluster {
  const { policy } = plan;
  const cluster = create(ClusterSchema, {
    name: plan.name,
    clusterDiscoveryType: { case: "type", value: Cluster_DiscoveryType.EDS },
    edsClusterConfig: create(Cluster_EdsClusterConfigSchema, {
      edsConfig: adsConfigSource(),
      serviceName: plan.name,
    }),
    connectTimeout: durationFromString(
      policy.connectionPool?.tcp?.connectTimeout ?? push.mesh.connectTimeout,
    ),
    circuitBreakers: create(CircuitBreakersSchema, {
      thresholds: [circuitBreakerThresholds(policy.connectionPool, policy.retryBudget)],
    }),
    lbPolicy: Cluster_LbPolicy.ROUND_ROBIN,
  });
  const ch = policy.loadBalancer?.consistentHash;
  if (ch) {
    cluster.lbPolicy = Cluster_LbPolicy.RING_HASH;
    cluster.lbConfig = {
      case: "ringHashLbConfig",
      value: create(Cluster_RingHashLbConfigSchema, {
        hashFunction: Cluster_RingHashLbConfig_HashFunction.XX_HASH,
        minimumRingSize: BigInt(Math.min(Math.max(1, ringHashSize(ch)), MAX_RING_SIZE)),
      }),
    };
  }
  if (policy.outlierDetection) cluster.outlierDetection = grpcOutlierDetection(policy.outlierDetection);
  const socket = clientTransportSocket(plan);
  if (socket) cluster.transportSocket = socket;
  return cluster;
}

/** Every cluster a gRPC client of the proxy may ask for, sorted by name. */
export function buildClusters(push: PushContext, proxy: Proxy): Cluster[] {
  return grpcClusterPlans(push, proxy).map((plan) => grpcCluster(push, plan));
}
