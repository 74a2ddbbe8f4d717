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
 * the authorization filters of the AuthorizationPolicies selecting the workload: CUSTOM
 * (network ext_authz, ext_authz.ts), then network RBAC (HTTP chains carry the HTTP ones, see
 * http_filters.ts).
 *
 * A Sidecar with `ingress` listeners replaces the served ports with its own (Istio's sidecar
 * listener builder): one chain set per listener port, forwarding to `inbound|PORT||` (whose
 * endpoint is the listener's `defaultEndpoint`, see {@link ingressTarget}), with the listener's
 * `tls` in place of mesh mTLS when set. Where traffic is captured (`captureMode` IPTABLES, or
 * DEFAULT on a proxy with capture) the chains sit in virtualInbound, matching the `bind`
 * address when it is not a wildcard; where it is not (`NONE`, or DEFAULT with node metadata
 * `INTERCEPTION_MODE: NONE`, the usual VM) Envoy binds `BIND_PORT` itself
 * ({@link boundIngressListeners}).
 *
 * @module
 */
import { clone, create } from "@bufbuild/protobuf";
import { TrafficDirection } from "#gen/envoy/config/core/v3/base_pb.ts";
import {
  type FilterChain,
  FilterChainMatchSchema,
  FilterChainSchema,
  type ListenerFilter,
  ListenerFilterSchema,
} from "#gen/envoy/config/listener/v3/listener_components_pb.ts";
import { type Listener, ListenerSchema } from "#gen/envoy/config/listener/v3/listener_pb.ts";
import { OriginalDstSchema } from "#gen/envoy/extensions/filters/listener/original_dst/v3/original_dst_pb.ts";
import { TlsInspectorSchema } from "#gen/envoy/extensions/filters/listener/tls_inspector/v3/tls_inspector_pb.ts";
import type { Filter } from "#gen/envoy/config/listener/v3/listener_components_pb.ts";
import { type EffectiveMtlsMode, effectiveMtlsMode } from "./authn.ts";
import { tcpAuthzFilters } from "./ext_authz.ts";
import { downstreamTlsContext, downstreamTransportSocket, inboundMtlsContext, terminatesTls } from "./tls.ts";
import type {
  CaptureMode,
  ConnectionPoolSettings,
  IstioIngressListener,
  ServerTLSSettings,
} from "../../api/kinds/networking.ts";
import type { PushContext } from "../model/push_context.ts";
import type { Proxy } from "../model/proxy.ts";
import {
  type Endpoint,
  isHttpProtocol,
  parseProtocol,
  type Protocol,
  type ServicePort,
} from "../model/service.ts";
import { BLACKHOLE_CLUSTER, inboundClusterName, PASSTHROUGH_CLUSTER } from "./cluster_name.ts";
import { byString, cidrRange, durationFromString, socketAddress, typedConfig } from "./conversion.ts";
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

function tcpFilters(push: PushContext, proxy: Proxy, cluster: string, idleTimeout?: string): Filter[] {
  return [
    ...tcpAuthzFilters(push, proxy),
    tcpProxyFilter(
      tcpProxy(
        cluster,
        { push, proxy, direction: "inbound" },
        idleTimeout ? { idleTimeout: durationFromString(idleTimeout) } : {},
      ),
    ),
  ];
}

/**
 * The connection pool of an inbound port: its Sidecar ingress listener's `connectionPool`,
 * else the Sidecar's `inboundConnectionPool`. Its `tcp.idleTimeout` is the idle timeout of the
 * port's TCP proxy; the rest limits the inbound cluster.
 */
export function inboundConnectionPool(
  push: PushContext,
  proxy: Proxy,
  port: number,
): ConnectionPoolSettings | undefined {
  const spec = push.sidecarFor(proxy)?.spec;
  return spec?.ingress?.find((l) => l.port.number === port)?.connectionPool ?? spec?.inboundConnectionPool;
}

/**
 * The plaintext filter chain for one inbound port (`endpoint` is the instance served there):
 * HTTP or TCP by the served port's protocol (TCP chains start with the authorization filters;
 * HTTP routes carry mixer's rate-limit actions when mixer runs). {@link mtlsChains} derives the
 * chains the port's mTLS mode asks for.
 */
export function inboundFilterChain(
  push: PushContext,
  proxy: Proxy,
  port: number,
  http: boolean,
  endpoint: Endpoint | undefined,
): FilterChain {
  const cluster = inboundClusterName(port);
  const filters = http
    ? [hcmFilter(httpConnectionManager({
      push,
      proxy,
      direction: "inbound",
      port,
      statPrefix: `inbound_0.0.0.0_${port}`,
      routes: {
        inline: inboundRouteConfiguration(port, endpoint ? inboundRateLimits(push, proxy, endpoint) : []),
      },
    }))]
    : tcpFilters(push, proxy, cluster, inboundConnectionPool(push, proxy, port)?.tcp?.idleTimeout);
  return create(FilterChainSchema, {
    name: cluster,
    filterChainMatch: { destinationPort: port },
    filters,
  });
}

/** Node metadata key saying how traffic reaches the proxy (Istio's); `NONE`: nothing is captured. */
export const INTERCEPTION_MODE_KEY = "INTERCEPTION_MODE";

/**
 * Whether Envoy binds a Sidecar listener with this capture mode itself (a real listening
 * socket, no original-destination hand-over): `NONE`, or `DEFAULT` on a proxy whose node
 * metadata says `INTERCEPTION_MODE: NONE` (a VM without capture rules, meshd's default VM
 * set-up). `IPTABLES`, and `DEFAULT` elsewhere, mean traffic is captured and handed over by
 * virtualInbound / virtualOutbound.
 */
export function bindsItself(mode: CaptureMode | undefined, proxy: Proxy): boolean {
  if (mode === "NONE") return true;
  if (mode === "IPTABLES") return false;
  return proxy.metadata[INTERCEPTION_MODE_KEY] === "NONE";
}

/** True for a bind address that accepts any destination address. */
export function isWildcardBind(bind: string | undefined): boolean {
  return bind === undefined || bind === "0.0.0.0" || bind === "::";
}

/** One inbound port a Sidecar `ingress` listener declares, as translation uses it. */
export interface SidecarIngressPort {
  readonly port: number;
  readonly protocol: Protocol;
  /** The address the listener accepts on (`bind`), when set. */
  readonly bind?: string;
  /** Envoy binds the port itself ({@link bindsItself}); else the chains sit in virtualInbound. */
  readonly bound: boolean;
  /** Where accepted traffic goes (`defaultEndpoint`): address (or `unix://` path) and port. */
  readonly target: { readonly address: string; readonly port: number };
  /** TLS the listener terminates in place of mesh mTLS. */
  readonly tls?: ServerTLSSettings;
  /** Limits of the inbound cluster: the listener's own, else the Sidecar's `inboundConnectionPool`. */
  readonly connectionPool?: ConnectionPoolSettings;
  /** The proxy's own instance on this port, when it has one (for rate-limit descriptors). */
  readonly endpoint?: Endpoint;
}

/**
 * Where a Sidecar ingress listener's `defaultEndpoint` sends traffic: `127.0.0.1:PORT` and
 * `[::1]:PORT` to loopback, `0.0.0.0:PORT` and `[::]:PORT` to the proxy's own address of that
 * family (loopback when it has none), `unix://PATH` to the socket. Without one, the listener's
 * port on 127.0.0.1: meshd's VMs have no capture that could hand traffic to its original
 * destination, and the application listens there (as for inbound clusters of served ports).
 */
export function ingressTarget(
  defaultEndpoint: string | undefined,
  port: number,
  proxy: Proxy,
): { address: string; port: number } {
  if (!defaultEndpoint) return { address: "127.0.0.1", port };
  if (defaultEndpoint.startsWith("unix://")) return { address: defaultEndpoint, port: 0 };
  const colon = defaultEndpoint.lastIndexOf(":");
  const host = defaultEndpoint.slice(0, colon).replace(/^\[|\]$/g, "");
  const targetPort = Number(defaultEndpoint.slice(colon + 1));
  const own = (v6: boolean) => proxy.ipAddresses.find((ip) => ip.includes(":") === v6);
  const address = host === "0.0.0.0"
    ? own(false) ?? "127.0.0.1"
    : host === "::"
    ? own(true) ?? "::1"
    : host === "::1"
    ? "::1"
    : "127.0.0.1";
  return { address, port: targetPort };
}

/**
 * An ingress port's protocol: `port.protocol` when set (an empty string is unset), else the
 * protocol its name starts with (`http-web`, Istio's naming convention), else the protocol of
 * the instance served there, else TCP. Behind the listener's own TLS, HTTPS is HTTP and TLS
 * is TCP (what the application receives).
 */
function ingressProtocol(l: IstioIngressListener, endpoint: Endpoint | undefined): Protocol {
  const byName = parseProtocol(l.port.name?.split("-")[0]);
  const declared = l.port.protocol
    ? parseProtocol(l.port.protocol)
    : byName !== "UNSUPPORTED"
    ? byName
    : endpoint?.servicePort.protocol ?? "TCP";
  if (!terminatesTls(l.tls)) return declared;
  return declared === "HTTPS" ? "HTTP" : declared === "TLS" ? "TCP" : declared;
}

/**
 * The inbound ports of the proxy's Sidecar `ingress` listeners, in their order, or undefined
 * when its Sidecar has none (then the ports its workload serves are used, see proxy_scope.ts).
 * As in Istio, declaring ingress listeners replaces the served ports.
 */
export function sidecarIngressPorts(push: PushContext, proxy: Proxy): SidecarIngressPort[] | undefined {
  const sidecar = push.sidecarFor(proxy);
  const ingress = sidecar?.spec.ingress;
  if (!sidecar || !ingress || ingress.length === 0) return undefined;
  const instances = push.instancesOf(proxy);
  return ingress.map((l) => {
    const port = l.port.number ?? 0;
    const endpoint = instances.find((e) => e.port === port);
    const connectionPool = inboundConnectionPool(push, proxy, port);
    return {
      port,
      protocol: ingressProtocol(l, endpoint),
      ...(l.bind ? { bind: l.bind } : {}),
      // A Unix socket cannot receive captured traffic: Envoy must listen on it.
      bound: bindsItself(l.captureMode, proxy) || (l.bind?.startsWith("unix://") ?? false),
      target: ingressTarget(l.defaultEndpoint, port, proxy),
      ...(l.tls ? { tls: l.tls } : {}),
      ...(connectionPool ? { connectionPool } : {}),
      ...(endpoint ? { endpoint } : {}),
    };
  });
}

/** What an inbound cluster `inbound|PORT||` forwards to, and with which limits. */
export interface InboundTarget {
  readonly port: number;
  /** Address (or `unix://` path) and port of the application. */
  readonly target: { readonly address: string; readonly port: number };
  /** The port as a service port (its protocol decides HTTP/2 upstream). */
  readonly servicePort: ServicePort;
  readonly connectionPool?: ConnectionPoolSettings;
}

/**
 * The targets of the proxy's inbound clusters: per Sidecar ingress port its `defaultEndpoint`
 * and connection pool; without ingress listeners, per served port 127.0.0.1:PORT with the
 * Sidecar's `inboundConnectionPool`.
 */
export function inboundTargets(push: PushContext, proxy: Proxy): InboundTarget[] {
  const ingress = sidecarIngressPorts(push, proxy);
  if (ingress) {
    return ingress.map((p) => ({
      port: p.port,
      target: p.target,
      servicePort: { name: p.endpoint?.servicePort.name ?? "", number: p.port, protocol: p.protocol },
      ...(p.connectionPool ? { connectionPool: p.connectionPool } : {}),
    }));
  }
  const pool = push.sidecarFor(proxy)?.spec.inboundConnectionPool;
  return inboundPorts(push, proxy).map(({ port, endpoint }) => ({
    port,
    target: { address: "127.0.0.1", port },
    servicePort: endpoint.servicePort,
    ...(pool ? { connectionPool: pool } : {}),
  }));
}

/**
 * The chains of one Sidecar ingress port: the plaintext chain ({@link inboundFilterChain}),
 * matching the `bind` address when traffic is captured and the bind is not a wildcard, then
 * either the listener's own `tls` (SIMPLE, MUTUAL, OPTIONAL_MUTUAL with its files) or the
 * port's mesh mTLS mode ({@link mtlsChains}). Bound listeners match no destination port: the
 * socket is the port.
 */
export function ingressChains(push: PushContext, proxy: Proxy, p: SidecarIngressPort): FilterChain[] {
  const http = isHttpProtocol(p.protocol);
  const plain = inboundFilterChain(push, proxy, p.port, http, p.endpoint);
  plain.filterChainMatch ??= create(FilterChainMatchSchema, {});
  if (p.bound) plain.filterChainMatch.destinationPort = undefined;
  else if (!isWildcardBind(p.bind)) plain.filterChainMatch.prefixRanges = [cidrRange(p.bind!)];
  const context = p.tls ? downstreamTlsContext(p.tls) : undefined;
  if (context) {
    plain.name = `${plain.name}-tls`;
    plain.transportSocket = downstreamTransportSocket(context);
    return [plain];
  }
  return mtlsChains(plain, effectiveMtlsMode(push, proxy, p.port), http);
}

function tlsInspectorIfNeeded(chains: readonly FilterChain[]): ListenerFilter[] {
  if (!chains.some((c) => c.filterChainMatch?.transportProtocol)) return [];
  return [create(ListenerFilterSchema, {
    name: TLS_INSPECTOR_FILTER,
    configType: {
      case: "typedConfig",
      value: typedConfig(TlsInspectorSchema, create(TlsInspectorSchema, {})),
    },
  })];
}

/**
 * The listeners Envoy binds for Sidecar ingress ports that are not captured: `BIND_PORT` on
 * the `bind` address (0.0.0.0 when unset; a `unix://` bind is named by its path), inbound,
 * without original-destination hand-over, with the port's chains. Sorted by name.
 */
export function boundIngressListeners(push: PushContext, proxy: Proxy): Listener[] {
  return (sidecarIngressPorts(push, proxy) ?? []).filter((p) => p.bound).map((p) => {
    const bind = p.bind ?? "0.0.0.0";
    const chains = ingressChains(push, proxy, p);
    return create(ListenerSchema, {
      name: bind.startsWith("unix://") ? bind : `${bind}_${p.port}`,
      address: socketAddress(bind, p.port),
      trafficDirection: TrafficDirection.INBOUND,
      listenerFilters: tlsInspectorIfNeeded(chains),
      filterChains: chains,
    });
  }).sort((a, b) => byString(a.name, b.name));
}

/**
 * The chains virtualInbound gets for the proxy's inbound ports: those of its Sidecar's captured
 * ingress ports when it declares any, else those of the ports its workload serves (each per
 * its mTLS mode).
 */
function capturedInboundChains(push: PushContext, proxy: Proxy): FilterChain[] {
  const ingress = sidecarIngressPorts(push, proxy);
  if (ingress) return ingress.filter((p) => !p.bound).flatMap((p) => ingressChains(push, proxy, p));
  return inboundPorts(push, proxy).flatMap(({ port, endpoint }) => {
    const http = isHttpProtocol(endpoint.servicePort.protocol);
    return mtlsChains(
      inboundFilterChain(push, proxy, port, http, endpoint),
      effectiveMtlsMode(push, proxy, port),
      http,
    );
  });
}

/**
 * `virtualInbound`: the chains of every served port (per its mTLS mode), a guard against
 * loops, and the passthrough chains (per the workload's mTLS mode). The TLS inspector runs
 * when a chain matches on the transport protocol (PERMISSIVE).
 */
export function virtualInboundListener(push: PushContext, proxy: Proxy): Listener {
  const chains = capturedInboundChains(push, proxy);
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
        filters: [tcpProxyFilter(tcpProxy(BLACKHOLE_CLUSTER, { push, proxy, direction: "inbound" }))],
      }),
      ...chains,
      ...passthrough,
    ],
  });
}
