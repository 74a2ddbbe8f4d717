/**
 * Load balancing for gRPC clients: ROUND_ROBIN, or RING_HASH (gRFC A42) for consistent hashing,
 * with the routes' hash policies. gRPC has no other policies, so LEAST_REQUEST, RANDOM and
 * PASSTHROUGH become ROUND_ROBIN and maglev becomes a ring hash.
 */
import { create } from "@bufbuild/protobuf";
import {
  type Cluster,
  Cluster_LbPolicy,
  Cluster_RingHashLbConfig_HashFunction,
  Cluster_RingHashLbConfigSchema,
} from "#gen/envoy/config/cluster/v3/cluster_pb.ts";
import {
  type RouteAction_HashPolicy,
  RouteAction_HashPolicy_FilterStateSchema,
  RouteAction_HashPolicy_HeaderSchema,
  RouteAction_HashPolicySchema,
} from "#gen/envoy/config/route/v3/route_components_pb.ts";
import type { LoadBalancerSettings } from "../../../galley/kinds/networking.ts";

/** gRPC's largest accepted ring size. */
export const MAX_RING_SIZE = 8_388_608;

/** The cluster fields for a load balancer setting: lbPolicy and, for ring hash, its config. */
export function clusterLoadBalancing(
  lb: LoadBalancerSettings | undefined,
): Pick<Cluster, "lbPolicy" | "lbConfig"> {
  const ch = lb?.consistentHash;
  if (!ch) return { lbPolicy: Cluster_LbPolicy.ROUND_ROBIN, lbConfig: { case: undefined } };
  const min = ch.ringHash?.minimumRingSize ?? ch.minimumRingSize;
  return {
    lbPolicy: Cluster_LbPolicy.RING_HASH,
    lbConfig: {
      case: "ringHashLbConfig",
      value: create(Cluster_RingHashLbConfigSchema, {
        hashFunction: Cluster_RingHashLbConfig_HashFunction.XX_HASH,
        ...(min ? { minimumRingSize: BigInt(Math.min(Math.max(1, min), MAX_RING_SIZE)) } : {}),
      }),
    },
  };
}

/**
 * The route hash policies for a consistent-hash setting: a header, or the client channel
 * ("io.grpc.channel_id") for source-IP affinity. Cookies and query parameters do not exist
 * in gRPC; a ring hash without a hash policy spreads calls randomly.
 */
export function hashPolicies(lb: LoadBalancerSettings | undefined): RouteAction_HashPolicy[] {
  const ch = lb?.consistentHash;
  if (!ch) return [];
  if (ch.httpHeaderName) {
    return [create(RouteAction_HashPolicySchema, {
      policySpecifier: {
        case: "header",
        value: create(RouteAction_HashPolicy_HeaderSchema, { headerName: ch.httpHeaderName.toLowerCase() }),
      },
    })];
  }
  if (ch.useSourceIp) {
    return [create(RouteAction_HashPolicySchema, {
      policySpecifier: {
        case: "filterState",
        value: create(RouteAction_HashPolicy_FilterStateSchema, { key: "io.grpc.channel_id" }),
      },
    })];
  }
  return [];
}
