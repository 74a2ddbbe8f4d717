/**
 * The inbound listener of a sidecar: `virtualInbound` on 0.0.0.0:15006, where captured
 * inbound traffic arrives. Its original destination port picks a filter chain: an HTTP
 * connection manager (routes inline, to `inbound|PORT||`) or a TCP proxy per port the
 * workload serves; anything else passes through to its original destination.
 *
 * Mutual TLS follows PeerAuthentication (authn.ts) per port: STRICT chains require TLS with
 * the workload certificate; PERMISSIVE ports get two chains, one matching transport protocol
 * `tls` (mTLS) and one `raw_buffer` (plaintext), told apart by the TLS inspector; DISABLE is
 * plaintext only. The passthrough chain follows the workload's port-less mode. TCP chains carry
 * the network RBAC filters of the AuthorizationPolicies selecting the workload (HTTP chains
 * carry the HTTP RBAC filter, see http_filters.ts).
 *
 * @module
 */
import { clone, create } from "@bufbuild/protobuf";
import { TrafficDirection } from "#gen/envoy/config/core/v3/base_pb.ts";
import {
  type FilterChain,
  FilterChainMatchSchema,
  FilterChainSchema,
  ListenerFilterSchema,
} from "#gen/envoy/config/listener/v3/listener_components_pb.ts";
import { type Listener, ListenerSchema } from "#gen/envoy/config/listener/v3/listener_pb.ts";
import { OriginalDstSchema } from "#gen/envoy/extensions/filters/listener/original_dst/v3/original_dst_pb.ts";
import { TlsInspectorSchema } from "#gen/envoy/extensions/filters/listener/tls_inspector/v3/tls_inspector_pb.ts";
import type { Filter } from "#gen/envoy/config/listener/v3/listener_components_pb.ts";
import { type EffectiveMtlsMode, effectiveMtlsMode } from "./authn.ts";
import { buildRbac, rbacNetworkFilters } from "./authz.ts";
import { downstreamTransportSocket, inboundMtlsContext } from "./tls.ts";
import type { PushContext } from "../model/push_context.ts";
import type { Proxy } from "../model/proxy.ts";
import { type Endpoint, isHttpProtocol } from "../model/service.ts";
import { BLACKHOLE_CLUSTER, inboundClusterName, PASSTHROUGH_CLUSTER } from "./cluster_name.ts";
import { socketAddress, typedConfig } from "./conversion.ts";
import { hcmFilter, httpConnectionManager } from "./http_connection_manager.ts";
import { inboundPorts } from "./proxy_scope.ts";
import { inboundRateLimits } from "./rate_limit.ts";
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
/** Listener filter that detects TLS (and SNI, ALPN) so chains can match on the transport protocol. */
export const TLS_INSPECTOR_FILTER = "envoy.filters.listener.tls_inspector";
/** Suffix of the name of an inbound chain that terminates mTLS. */
export const MTLS_CHAIN_SUFFIX = "-mtls";

/**
 * The chains one inbound destination gets for an mTLS mode, built from one plaintext chain:
 * STRICT: the chain with TLS required (name + `-mtls`); PERMISSIVE: that one matching
 * transport protocol `tls` and the plaintext one matching `raw_buffer`; DISABLE: the plaintext
 * chain as given.
 */
export function mtlsChains(plain: FilterChain, mode: EffectiveMtlsMode, http: boolean): FilterChain[] {
  if (mode === "DISABLE") return [plain];
  const tls = clone(FilterChainSchema, plain);
  tls.name = `${plain.name}${MTLS_CHAIN_SUFFIX}`;
  tls.filterChainMatch ??= create(FilterChainMatchSchema, {});
  if (mode === "PERMISSIVE") tls.filterChainMatch.transportProtocol = "tls";
  tls.transportSocket = downstreamTransportSocket(inboundMtlsContext(http));
  if (mode === "STRICT") return [tls];
  const raw = clone(FilterChainSchema, plain);
  raw.filterChainMatch ??= create(FilterChainMatchSchema, {});
  raw.filterChainMatch.transportProtocol = "raw_buffer";
  return [tls, raw];
}

function tcpFilters(push: PushContext, proxy: Proxy, cluster: string): Filter[] {
  return [
    ...rbacNetworkFilters(buildRbac(push.authorizationPolicies(proxy), "tcp")),
    tcpProxyFilter(tcpProxy(cluster, push.mesh)),
  ];
}

/**
 * The plaintext filter chain for one inbound port (`endpoint` is the instance served there):
 * HTTP or TCP by the served port's protocol (TCP chains start with the network RBAC filters;
 * HTTP routes carry mixer's rate-limit actions when mixer runs). {@link mtlsChains} derives the
 * chains the port's mTLS mode asks for.
 */
export function inboundFilterChain(
  push: PushContext,
  proxy: Proxy,
  port: number,
  http: boolean,
  endpoint: Endpoint,
): FilterChain {
  const cluster = inboundClusterName(port);
  const filters = http
    ? [hcmFilter(httpConnectionManager({
      push,
      proxy,
      direction: "inbound",
      port,
      statPrefix: `inbound_0.0.0.0_${port}`,
      routes: { inline: inboundRouteConfiguration(port, inboundRateLimits(push, proxy, endpoint)) },
    }))]
    : tcpFilters(push, proxy, cluster);
  return create(FilterChainSchema, {
    name: cluster,
    filterChainMatch: { destinationPort: port },
    filters,
  });
}

/**
 * `virtualInbound`: the chains of every served port (per its mTLS mode), a guard against
 * loops, and the passthrough chains (per the workload's mTLS mode). The TLS inspector runs
 * when a chain matches on the transport protocol (PERMISSIVE).
 */
export function virtualInboundListener(push: PushContext, proxy: Proxy): Listener {
  const chains = inboundPorts(push, proxy).flatMap(({ port, endpoint }) => {
    const http = isHttpProtocol(endpoint.servicePort.protocol);
    return mtlsChains(
      inboundFilterChain(push, proxy, port, http, endpoint),
      effectiveMtlsMode(push, proxy, port),
      http,
    );
  });
  const passthrough = mtlsChains(
    create(FilterChainSchema, {
      name: INBOUND_PASSTHROUGH_CHAIN,
      filters: tcpFilters(push, proxy, PASSTHROUGH_CLUSTER),
    }),
    effectiveMtlsMode(push, proxy),
    false,
  );
  const inspectTls = [...chains, ...passthrough].some((c) => c.filterChainMatch?.transportProtocol);
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
      ...(inspectTls
        ? [create(ListenerFilterSchema, {
          name: TLS_INSPECTOR_FILTER,
          configType: {
            case: "typedConfig",
            value: typedConfig(TlsInspectorSchema, create(TlsInspectorSchema, {})),
          },
        })]
        : []),
    ],
    filterChains: [
      // A connection addressed to 15006 itself would loop forever.
      create(FilterChainSchema, {
        name: `${VIRTUAL_INBOUND}-blackhole`,
        filterChainMatch: { destinationPort: VIRTUAL_INBOUND_PORT },
        filters: [tcpProxyFilter(tcpProxy(BLACKHOLE_CLUSTER, push.mesh))],
      }),
      ...chains,
      ...passthrough,
    ],
  });
}
