/**
 * Endpoints for proxyless gRPC clients (EDS), rendered from Envoy's assignment of the same
 * cluster plan (endpoint.ts): the same healthy endpoints, narrowed to the subset, grouped by
 * locality, with the DestinationRule's locality weights and failover priorities. Rendered for
 * what gRPC accepts (gRFC A27): every locality carries a load_balancing_weight (gRPC ignores a
 * locality without one, which leaves every call failing); endpoints whose address is not an IP
 * (DNS names, Unix sockets) are left out, as gRPC rejects them; an address:port listed twice is
 * listed once and a locality once per priority (gRPC rejects duplicates too); priorities run
 * from 0 without gaps (gRPC rejects gaps; a priority whose hosts were all left out is closed
 * up). gRPC clients honour locality weights and priorities (gRFC A27): the calls go to
 * priority 0 while it has a ready endpoint, then to the next. No Envoy-only metadata
 * (transport socket matches).
 *
 * @module
 */
import { create } from "@bufbuild/protobuf";
import { isIP } from "node:net";
import { HealthStatus } from "#gen/envoy/config/core/v3/health_check_pb.ts";
import {
  type LbEndpoint,
  LbEndpointSchema,
  type LocalityLbEndpoints,
  LocalityLbEndpointsSchema,
} from "#gen/envoy/config/endpoint/v3/endpoint_components_pb.ts";
import {
  type ClusterLoadAssignment,
  ClusterLoadAssignmentSchema,
} from "#gen/envoy/config/endpoint/v3/endpoint_pb.ts";
import type { OutboundClusterPlan } from "../cluster_plan.ts";
import { byString } from "../conversion.ts";
import { DIRECT_VIEW, type NetworkView, planLoadAssignment } from "../endpoint.ts";
import { joinHostPort } from "./names.ts";

function addressOf(lb: LbEndpoint): string | undefined {
  if (lb.hostIdentifier.case !== "endpoint") return undefined;
  const a = lb.hostIdentifier.value.address?.address;
  if (a?.case !== "socketAddress" || isIP(a.value.address) === 0) return undefined;
  const port = a.value.portSpecifier.case === "portValue" ? a.value.portSpecifier.value : 0;
  return joinHostPort(a.value.address, port);
}

function weightOf(lb: LbEndpoint): number {
  return Math.max(1, Math.floor(lb.loadBalancingWeight ?? 1));
}

/** One locality group as gRPC takes it, or undefined when none of its endpoints is usable. */
function grpcGroup(group: LocalityLbEndpoints, seen: Set<string>): LocalityLbEndpoints | undefined {
  const kept: { key: string; lb: LbEndpoint }[] = [];
  for (const lb of group.lbEndpoints) {
    const key = addressOf(lb);
    if (key === undefined || seen.has(key)) continue;
    seen.add(key);
    kept.push({
      key,
      lb: create(LbEndpointSchema, {
        hostIdentifier: lb.hostIdentifier,
        healthStatus: HealthStatus.HEALTHY,
        loadBalancingWeight: weightOf(lb),
      }),
    });
  }
  if (kept.length === 0) return undefined;
  const all = kept.length === group.lbEndpoints.length;
  return create(LocalityLbEndpointsSchema, {
    locality: {
      region: group.locality?.region ?? "",
      zone: group.locality?.zone ?? "",
      subZone: group.locality?.subZone ?? "",
    },
    lbEndpoints: kept.sort((a, b) => byString(a.key, b.key)).map((k) => k.lb),
    // Envoy's weight unless endpoints were left out, then the weight of those kept.
    loadBalancingWeight: all && group.loadBalancingWeight
      ? group.loadBalancingWeight
      : kept.reduce((sum, k) => sum + (k.lb.loadBalancingWeight ?? 1), 0),
    priority: group.priority,
  });
}

function localityKey(g: LocalityLbEndpoints): string {
  return `${g.priority}|${g.locality?.region}/${g.locality?.zone}/${g.locality?.subZone}`;
}

/** Renders Envoy's assignment of a cluster for gRPC (see the module notes). */
export function grpcAssignment(cla: ClusterLoadAssignment): ClusterLoadAssignment {
  const seen = new Set<string>();
  const merged = new Map<string, LocalityLbEndpoints>();
  for (const group of cla.endpoints) {
    const g = grpcGroup(group, seen);
    if (!g) continue;
    const key = localityKey(g);
    const prev = merged.get(key);
    if (!prev) {
      merged.set(key, g);
      continue;
    }
    // "r/z" and "r/z/" are one locality: gRPC rejects a locality listed twice.
    prev.lbEndpoints.push(...g.lbEndpoints);
    prev.loadBalancingWeight = (prev.loadBalancingWeight ?? 0) + (g.loadBalancingWeight ?? 0);
  }
  const endpoints = [...merged.entries()].sort(([a], [b]) => byString(a, b)).map(([, g]) => g);
  // gRPC rejects priorities with gaps: a priority whose hosts were all left out is closed up.
  const used = [...new Set(endpoints.map((g) => g.priority))].sort((a, b) => a - b);
  for (const g of endpoints) g.priority = used.indexOf(g.priority);
  return create(ClusterLoadAssignmentSchema, { clusterName: cla.clusterName, endpoints });
}

/**
 * The ClusterLoadAssignment of one planned cluster, seen from the proxy's locality and network
 * (the same split horizon as Envoy's, endpoint.ts).
 */
export function buildLoadAssignment(
  plan: OutboundClusterPlan,
  locality: string | undefined,
  view: NetworkView = DIRECT_VIEW,
): ClusterLoadAssignment {
  // Every gRPC cluster is EDS, also where Envoy resolves DNS itself: all of its hosts.
  return grpcAssignment(planLoadAssignment({ ...plan, discovery: "EDS" }, locality, view));
}
