/**
 * Clusters for proxyless gRPC clients (CDS): for every port of every service the proxy can
 * dial, `outbound|PORT||HOST` and one `outbound|PORT|SUBSET|HOST` per DestinationRule subset,
 * each of type EDS over ADS (the EDS name is the cluster name), with the merged traffic policy:
 * ROUND_ROBIN or RING_HASH, outlier detection and circuit breakers.
 */
import { create } from "@bufbuild/protobuf";
import {
  type Cluster,
  Cluster_DiscoveryType,
  Cluster_EdsClusterConfigSchema,
  ClusterSchema,
} from "#gen/envoy/config/cluster/v3/cluster_pb.ts";
import type { DestinationRuleSpec } from "../../../galley/kinds/networking.ts";
import type { Proxy } from "../../model/proxy.ts";
import type { PushContext } from "../../model/push_context.ts";
import type { Service } from "../../model/service.ts";
import { circuitBreakers } from "./circuit_breakers.ts";
import { protoDuration } from "./durations.ts";
import { adsConfigSource } from "./listener_outbound.ts";
import { clusterLoadBalancing } from "./load_balancer.ts";
import { clusterName } from "./names.ts";
import { outlierDetection } from "./outlier_detection.ts";
import { dialableServices } from "./targets.ts";
import { clientTransportSocket } from "./tls.ts";
import { clusterPolicy } from "./traffic_policy.ts";

/** One cluster the proxy may ask for, before it is built. */
export interface ClusterRef {
  readonly name: string;
  readonly service: Service;
  readonly port: number;
  readonly subset?: string;
  readonly dr?: DestinationRuleSpec;
}

/** Every cluster of the proxy, sorted by name. */
export function clusterRefs(push: PushContext, proxy: Proxy): ClusterRef[] {
  const out: ClusterRef[] = [];
  for (const service of dialableServices(push, proxy)) {
    const dr = push.destinationRule(proxy, service.hostname)?.spec;
    for (const p of service.ports) {
      out.push({ name: clusterName(service.hostname, p.number), service, port: p.number, dr });
      const seen = new Set<string>();
      for (const s of dr?.subsets ?? []) {
        if (seen.has(s.name)) continue;
        seen.add(s.name);
        out.push({
          name: clusterName(service.hostname, p.number, s.name),
          service,
          port: p.number,
          subset: s.name,
          dr,
        });
      }
    }
  }
  return out.sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
}

/** Builds one cluster. */
export function buildCluster(push: PushContext, proxy: Proxy, ref: ClusterRef): Cluster {
  const policy = clusterPolicy(ref.dr, ref.port, ref.subset);
  return create(ClusterSchema, {
    name: ref.name,
    clusterDiscoveryType: { case: "type", value: Cluster_DiscoveryType.EDS },
    edsClusterConfig: create(Cluster_EdsClusterConfigSchema, {
      edsConfig: adsConfigSource(),
      serviceName: ref.name,
    }),
    connectTimeout: protoDuration(policy.connectionPool?.tcp?.connectTimeout ?? push.mesh.connectTimeout),
    ...clusterLoadBalancing(policy.loadBalancer),
    outlierDetection: outlierDetection(policy.outlierDetection),
    circuitBreakers: circuitBreakers(policy.connectionPool),
    transportSocket: clientTransportSocket(push, proxy, { service: ref.service, tls: policy.tls }),
  });
}
