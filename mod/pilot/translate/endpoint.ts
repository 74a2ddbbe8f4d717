/**
 * Endpoints (EDS): one ClusterLoadAssignment per EDS cluster, its hosts grouped by locality,
 * each host tagged with its `tlsMode` for transport socket matching, and the DestinationRule's
 * locality weights and failover priorities applied. Proxyless gRPC's assignments are rendered
 * from these (grpc/endpoint.ts).
 *
 * @module
 */
import { create } from "@bufbuild/protobuf";
import {
  type ClusterLoadAssignment,
  ClusterLoadAssignmentSchema,
} from "#gen/envoy/config/endpoint/v3/endpoint_pb.ts";
import {
  LbEndpointSchema,
  LocalityLbEndpointsSchema,
} from "#gen/envoy/config/endpoint/v3/endpoint_components_pb.ts";
import type { PushContext } from "../model/push_context.ts";
import type { Proxy } from "../model/proxy.ts";
import type { Endpoint } from "../model/service.ts";
import { type OutboundClusterPlan, outboundClusterPlans } from "./cluster_plan.ts";
import { byString, socketAddress } from "./conversion.ts";
import { applyLocalityLoadBalancing, splitLocality } from "./locality_lb.ts";
import { proxyLocality } from "./proxy_scope.ts";

/** The metadata key Envoy's transport socket matches read. */
export const TRANSPORT_SOCKET_MATCH_KEY = "envoy.transport_socket_match";

/**
 * The hosts of one cluster as a ClusterLoadAssignment: grouped by locality (sorted), each
 * group weighted by the sum of its hosts' weights (gRPC clients need the group weight), hosts
 * in the order given.
 */
export function loadAssignment(clusterName: string, endpoints: readonly Endpoint[]): ClusterLoadAssignment {
  const groups = new Map<string, Endpoint[]>();
  for (const e of endpoints) {
    const key = e.locality ?? "";
    const list = groups.get(key);
    if (list) list.push(e);
    else groups.set(key, [e]);
  }
  return create(ClusterLoadAssignmentSchema, {
    clusterName,
    endpoints: [...groups.keys()].sort(byString).map((key) => {
      const members = groups.get(key)!;
      return create(LocalityLbEndpointsSchema, {
        ...(key ? { locality: splitLocality(key) } : {}),
        lbEndpoints: members.map((e) =>
          create(LbEndpointSchema, {
            hostIdentifier: { case: "endpoint", value: { address: socketAddress(e.address, e.port) } },
            metadata: { filterMetadata: { [TRANSPORT_SOCKET_MATCH_KEY]: { tlsMode: e.tlsMode } } },
            loadBalancingWeight: e.weight,
          })
        ),
        loadBalancingWeight: members.reduce((sum, e) => sum + e.weight, 0),
      });
    }),
  });
}

/**
 * The assignment of one planned cluster as this proxy sees it (locality settings applied).
 * LOGICAL_DNS clusters keep only their first host, as Envoy requires.
 */
export function planLoadAssignment(
  plan: OutboundClusterPlan,
  locality: string | undefined,
): ClusterLoadAssignment {
  const endpoints = plan.discovery === "LOGICAL_DNS" ? plan.endpoints.slice(0, 1) : plan.endpoints;
  const cla = loadAssignment(plan.name, endpoints);
  applyLocalityLoadBalancing(
    cla,
    locality,
    plan.policy.loadBalancer?.localityLbSetting,
    plan.policy.outlierDetection !== undefined,
  );
  return cla;
}

/**
 * One ClusterLoadAssignment per EDS cluster that {@link outboundClusterPlans} (and so
 * buildClusters) produces, in the same order; a cluster without healthy hosts gets an empty one.
 */
export function buildEndpoints(push: PushContext, proxy: Proxy): ClusterLoadAssignment[] {
  const locality = proxyLocality(push, proxy);
  return outboundClusterPlans(push, proxy)
    .filter((p) => p.discovery === "EDS")
    .map((p) => planLoadAssignment(p, locality));
}
