/**
 * The TCP proxy network filter: opaque bytes to one cluster or split across weighted ones.
 * Its access logs are what the Telemetry API gives the proxy on the listener's side
 * (telemetry.ts), else the mesh's access log file, as for connection managers.
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
import type { AccessLog } from "#gen/envoy/config/accesslog/v3/accesslog_pb.ts";
import type { MeshConfig } from "../../api/kinds/mesh_config.ts";
import type { PushContext } from "../model/push_context.ts";
import type { Proxy } from "../model/proxy.ts";
import { accessLogs } from "./access_log.ts";
import type { TcpProxySettings } from "./cluster_plan.ts";
import { typedConfig } from "./conversion.ts";
import type { TrafficDirection } from "./http_filter_context.ts";
import { telemetryAccessLogs } from "./telemetry.ts";

/** The network filter name of the TCP proxy. */
export const TCP_PROXY_FILTER = "envoy.filters.network.tcp_proxy";

/** A weighted upstream of a TCP proxy. */
export interface WeightedTarget {
  readonly cluster: string;
  readonly weight: number;
}

/** Where a TCP proxy runs: the proxy, its push context and the side of its listener. */
export interface TcpProxyContext {
  readonly push: PushContext;
  readonly proxy: Proxy;
  readonly direction: TrafficDirection;
}

/**
 * The access logs of a TCP proxy: what Telemetry gives `ctx.proxy` on `ctx.direction` (the
 * HTTP-only mixer logger left out), else the mesh's access log file. Given only a MeshConfig
 * (no proxy to select Telemetry for), the mesh's access log file.
 */
export function tcpAccessLogs(ctx: TcpProxyContext | MeshConfig): AccessLog[] {
  if (!("push" in ctx)) return accessLogs(ctx);
  const { mesh, features } = ctx.push;
  return telemetryAccessLogs(ctx.push.telemetryFor(ctx.proxy), {
    mesh,
    features,
    direction: ctx.direction,
    tcp: true,
  }) ?? accessLogs(mesh);
}

/**
 * A TCP proxy to one cluster (stat prefix = the cluster name, as Istio) or, given several
 * targets, to weighted clusters. `settings` (idle timeout, connection lifetime, tunneling:
 * cluster_plan.ts's `tcpProxySettings` for the cluster) apply to a single cluster, as in Istio.
 * Access logs as {@link tcpAccessLogs} gives them for `logs`.
 */
export function tcpProxy(
  target: string | readonly WeightedTarget[],
  logs: TcpProxyContext | MeshConfig,
  settings: TcpProxySettings = {},
): TcpProxy {
  if (typeof target === "string" || target.length === 1) {
    const cluster = typeof target === "string" ? target : target[0]!.cluster;
    return create(TcpProxySchema, {
      statPrefix: cluster,
      clusterSpecifier: { case: "cluster", value: cluster },
      accessLog: tcpAccessLogs(logs),
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
    accessLog: tcpAccessLogs(logs),
  });
}

/** Wraps a TCP proxy as a listener's network filter. */
export function tcpProxyFilter(proxy: TcpProxy): Filter {
  return create(FilterSchema, {
    name: TCP_PROXY_FILTER,
    configType: { case: "typedConfig", value: typedConfig(TcpProxySchema, proxy) },
  });
}
