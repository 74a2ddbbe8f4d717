/**
 * Endpoints for proxyless gRPC clients (EDS): one ClusterLoadAssignment per cluster, holding
 * the healthy endpoints of the service port (of the subset, for subset clusters), grouped by
 * locality. Every locality carries a load_balancing_weight (the sum of its endpoints'
 * weights): gRPC ignores a locality without one, which leaves every call failing.
 * Endpoints whose address is not an IP (DNS names, Unix sockets) are left out, as gRPC rejects
 * them, and an address:port listed twice is listed once (gRPC rejects duplicates too).
 */
import { create } from "@bufbuild/protobuf";
import { isIP } from "node:net";
import { AddressSchema, SocketAddressSchema } from "#gen/envoy/config/core/v3/address_pb.ts";
import { LocalitySchema } from "#gen/envoy/config/core/v3/base_pb.ts";
import { HealthStatus } from "#gen/envoy/config/core/v3/health_check_pb.ts";
import {
  EndpointSchema,
  type LbEndpoint,
  LbEndpointSchema,
  LocalityLbEndpointsSchema,
} from "#gen/envoy/config/endpoint/v3/endpoint_components_pb.ts";
import {
  type ClusterLoadAssignment,
  ClusterLoadAssignmentSchema,
} from "#gen/envoy/config/endpoint/v3/endpoint_pb.ts";
import type { Proxy } from "../../model/proxy.ts";
import type { PushContext } from "../../model/push_context.ts";
import { labelsMatch } from "../../model/service.ts";
import type { ClusterRef } from "./cluster.ts";
import { joinHostPort } from "./names.ts";
import { findSubset } from "./traffic_policy.ts";

/** Splits "region/zone/subzone" (any part may be missing). */
function locality(text: string | undefined) {
  const [region = "", zone = "", subZone = ""] = (text ?? "").split("/");
  return create(LocalitySchema, { region, zone, subZone });
}

/** Builds the ClusterLoadAssignment of one cluster. */
export function buildLoadAssignment(
  push: PushContext,
  _proxy: Proxy,
  ref: ClusterRef,
): ClusterLoadAssignment {
  const subsetLabels = ref.subset ? findSubset(ref.dr, ref.subset)?.labels ?? {} : undefined;
  const seen = new Set<string>();
  const groups = new Map<string, { weight: number; endpoints: { key: string; lb: LbEndpoint }[] }>();
  for (const e of push.endpoints(ref.service, ref.port)) {
    if (!e.healthy || isIP(e.address) === 0) continue;
    if (subsetLabels && !labelsMatch(subsetLabels, e.labels)) continue;
    const key = joinHostPort(e.address, e.port);
    if (seen.has(key)) continue;
    seen.add(key);
    const weight = Math.max(1, Math.floor(e.weight));
    // "r/z" and "r/z/" are one locality: gRPC rejects a locality listed twice.
    const [region = "", zone = "", subZone = ""] = (e.locality ?? "").split("/");
    const loc = `${region}/${zone}/${subZone}`;
    let g = groups.get(loc);
    if (!g) groups.set(loc, g = { weight: 0, endpoints: [] });
    g.weight += weight;
    g.endpoints.push({
      key,
      lb: create(LbEndpointSchema, {
        hostIdentifier: {
          case: "endpoint",
          value: create(EndpointSchema, {
            address: create(AddressSchema, {
              address: {
                case: "socketAddress",
                value: create(SocketAddressSchema, {
                  address: e.address,
                  portSpecifier: { case: "portValue", value: e.port },
                }),
              },
            }),
          }),
        },
        healthStatus: HealthStatus.HEALTHY,
        loadBalancingWeight: weight,
      }),
    });
  }
  const localities = [...groups].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)).map(([loc, g]) =>
    create(LocalityLbEndpointsSchema, {
      locality: locality(loc),
      lbEndpoints: g.endpoints.sort((a, b) => (a.key < b.key ? -1 : a.key > b.key ? 1 : 0)).map((x) => x.lb),
      loadBalancingWeight: g.weight,
      priority: 0,
    })
  );
  return create(ClusterLoadAssignmentSchema, { clusterName: ref.name, endpoints: localities });
}
