/**
 * The TCP proxy network filter: opaque bytes to one cluster or split across weighted ones.
 *
 * @module
 */
import { create } from "@bufbuild/protobuf";
import { type Filter, FilterSchema } from "#gen/envoy/config/listener/v3/listener_components_pb.ts";
import {
  type TcpProxy,
  TcpProxy_WeightedClusterSchema,
  TcpProxySchema,
} from "#gen/envoy/extensions/filters/network/tcp_proxy/v3/tcp_proxy_pb.ts";
import type { MeshConfig } from "../../api/kinds/mesh_config.ts";
import { accessLogs } from "./access_log.ts";
import type { TcpProxySettings } from "./cluster_plan.ts";
import { typedConfig } from "./conversion.ts";

/** The network filter name of the TCP proxy. */
export const TCP_PROXY_FILTER = "envoy.filters.network.tcp_proxy";

/** A weighted upstream of a TCP proxy. */
export interface WeightedTarget {
  readonly cluster: string;
  readonly weight: number;
}

/**
 * A TCP proxy to one cluster (stat prefix = the cluster name, as Istio) or, given several
 * targets, to weighted clusters. `settings` (idle timeout, connection lifetime, tunneling:
 * cluster_plan.ts's `tcpProxySettings` for the cluster) apply to a single cluster, as in Istio.
 */
export function tcpProxy(
  target: string | readonly WeightedTarget[],
  mesh: MeshConfig,
  settings: TcpProxySettings = {},
): TcpProxy {
  if (typeof target === "string" || target.length === 1) {
    const cluster = typeof target === "string" ? target : target[0]!.cluster;
    return create(TcpProxySchema, {
      statPrefix: cluster,
      clusterSpecifier: { case: "cluster", value: cluster },
      accessLog: accessLogs(mesh),
      ...settings,
    });
  }
  return create(TcpProxySchema, {
    statPrefix: target.map((t) => t.cluster).join(","),
    clusterSpecifier: {
      case: "weightedClusters",
      value: create(TcpProxy_WeightedClusterSchema, {
        clusters: target.map((t) => ({ name: t.cluster, weight: t.weight })),
      }),
    },
    accessLog: accessLogs(mesh),
  });
}

/** Wraps a TCP proxy as a listener's network filter. */
export function tcpProxyFilter(proxy: TcpProxy): Filter {
  return create(FilterSchema, {
    name: TCP_PROXY_FILTER,
    configType: { case: "typedConfig", value: typedConfig(TcpProxySchema, proxy) },
  });
}
