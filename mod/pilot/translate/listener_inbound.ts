/**
 * The inbound listener of a sidecar: `virtualInbound` on 0.0.0.0:15006, where captured
 * inbound traffic arrives. Its original destination port picks a filter chain: an HTTP
 * connection manager (routes inline, to `inbound|PORT||`) or a TCP proxy per port the
 * workload serves; anything else passes through to its original destination.
 *
 * Mutual TLS on inbound chains (PeerAuthentication) and authorization filters belong to the
 * security work; they attach to these chains.
 *
 * @module
 */
import { create } from "@bufbuild/protobuf";
import { TrafficDirection } from "#gen/envoy/config/core/v3/base_pb.ts";
import {
  type FilterChain,
  FilterChainSchema,
  ListenerFilterSchema,
} from "#gen/envoy/config/listener/v3/listener_components_pb.ts";
import { type Listener, ListenerSchema } from "#gen/envoy/config/listener/v3/listener_pb.ts";
import { OriginalDstSchema } from "#gen/envoy/extensions/filters/listener/original_dst/v3/original_dst_pb.ts";
import type { PushContext } from "../model/push_context.ts";
import type { Proxy } from "../model/proxy.ts";
import { isHttpProtocol } from "../model/service.ts";
import { BLACKHOLE_CLUSTER, inboundClusterName, PASSTHROUGH_CLUSTER } from "./cluster_name.ts";
import { socketAddress, typedConfig } from "./conversion.ts";
import { hcmFilter, httpConnectionManager } from "./http_connection_manager.ts";
import { inboundPorts } from "./proxy_scope.ts";
import { inboundRouteConfiguration } from "./route.ts";
import { tcpProxy, tcpProxyFilter } from "./tcp_proxy.ts";

/** Name of the listener captured inbound traffic arrives at. */
export const VIRTUAL_INBOUND = "virtualInbound";
/** The port iptables redirects inbound traffic to. */
export const VIRTUAL_INBOUND_PORT = 15006;
/** Filter chain name for inbound traffic to ports no service claims. */
export const INBOUND_PASSTHROUGH_CHAIN = "InboundPassthroughFilterChain";
/** Listener filter that restores a redirected connection's original destination. */
export const ORIGINAL_DST_FILTER = "envoy.filters.listener.original_dst";

/** The filter chain for one inbound port: HTTP or TCP by the served port's protocol. */
export function inboundFilterChain(
  push: PushContext,
  proxy: Proxy,
  port: number,
  http: boolean,
): FilterChain {
  const cluster = inboundClusterName(port);
  const filter = http
    ? hcmFilter(httpConnectionManager({
      push,
      proxy,
      direction: "inbound",
      port,
      statPrefix: `inbound_0.0.0.0_${port}`,
      routes: { inline: inboundRouteConfiguration(port) },
    }))
    : tcpProxyFilter(tcpProxy(cluster, push.mesh));
  return create(FilterChainSchema, {
    name: cluster,
    filterChainMatch: { destinationPort: port },
    filters: [filter],
  });
}

/** `virtualInbound`: a chain per served port, a guard against loops, and a passthrough chain. */
export function virtualInboundListener(push: PushContext, proxy: Proxy): Listener {
  const chains = inboundPorts(push, proxy).map(({ port, endpoint }) =>
    inboundFilterChain(push, proxy, port, isHttpProtocol(endpoint.servicePort.protocol))
  );
  return create(ListenerSchema, {
    name: VIRTUAL_INBOUND,
    address: socketAddress("0.0.0.0", VIRTUAL_INBOUND_PORT),
    trafficDirection: TrafficDirection.INBOUND,
    listenerFilters: [
      create(ListenerFilterSchema, {
        name: ORIGINAL_DST_FILTER,
        configType: {
          case: "typedConfig",
          value: typedConfig(OriginalDstSchema, create(OriginalDstSchema, {})),
        },
      }),
    ],
    filterChains: [
      // A connection addressed to 15006 itself would loop forever.
      create(FilterChainSchema, {
        name: `${VIRTUAL_INBOUND}-blackhole`,
        filterChainMatch: { destinationPort: VIRTUAL_INBOUND_PORT },
        filters: [tcpProxyFilter(tcpProxy(BLACKHOLE_CLUSTER, push.mesh))],
      }),
      ...chains,
      create(FilterChainSchema, {
        name: INBOUND_PASSTHROUGH_CHAIN,
        filters: [tcpProxyFilter(tcpProxy(PASSTHROUGH_CLUSTER, push.mesh))],
      }),
    ],
  });
}
