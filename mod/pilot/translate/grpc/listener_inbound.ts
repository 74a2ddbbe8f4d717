/**
 * Server listeners for xDS-enabled gRPC servers (gRFC A36), named
 * `xds.istio.io/grpc/lds/inbound/IP:PORT` after the address the server listens on. Each has the
 * listening address, one filter chain holding only an HttpConnectionManager with an inline
 * route configuration (virtual host "*", every call allowed through with non_forwarding_action)
 * and the router filter, RBAC filters ahead of it when AuthorizationPolicies apply, and mTLS
 * when PeerAuthentication makes the port STRICT (tls.ts).
 *
 * The ports served are the proxy's instances, or, when a Sidecar with `ingress` listeners
 * selects the server, those listeners' ports instead (as Envoy's inbound listeners follow them):
 * a server asking for a port the Sidecar does not declare gets no listener (gRFC A36: it does
 * not serve there), and a non-wildcard `bind` restricts the listener to that address. What an
 * ingress listener asks for that a gRPC server cannot do (forward to a `defaultEndpoint`, its own
 * `tls`, connection limits, capture, a Unix socket, a protocol other than gRPC) is listed by
 * {@link ingressGaps}.
 *
 * @module
 */
import { create } from "@bufbuild/protobuf";
import { anyPack } from "@bufbuild/protobuf/wkt";
import { AddressSchema, SocketAddressSchema } from "#gen/envoy/config/core/v3/address_pb.ts";
import { FilterChainSchema, FilterSchema } from "#gen/envoy/config/listener/v3/listener_components_pb.ts";
import { type Listener, ListenerSchema } from "#gen/envoy/config/listener/v3/listener_pb.ts";
import {
  NonForwardingActionSchema,
  RouteSchema,
  VirtualHostSchema,
} from "#gen/envoy/config/route/v3/route_components_pb.ts";
import { RouteConfigurationSchema } from "#gen/envoy/config/route/v3/route_pb.ts";
import { HttpConnectionManagerSchema } from "#gen/envoy/extensions/filters/network/http_connection_manager/v3/http_connection_manager_pb.ts";
import type { Proxy } from "../../model/proxy.ts";
import type { PushContext } from "../../model/push_context.ts";
import type { Endpoint } from "../../model/service.ts";
import { isWildcardBind, sidecarIngressPorts } from "../listener_inbound.ts";
import { routerFilter } from "./filters.ts";
import { SERVER_LISTENER_PREFIX, serverListenerName, splitHostPort } from "./names.ts";
import { matchAll } from "./route_match.ts";
import { serverRbacFilters, serverTransportSocket } from "./tls.ts";

function serverListener(
  push: PushContext,
  proxy: Proxy,
  name: string,
  ip: string,
  port: number,
): Listener {
  const hcm = create(HttpConnectionManagerSchema, {
    statPrefix: `inbound_${port}`,
    routeSpecifier: {
      case: "routeConfig",
      value: create(RouteConfigurationSchema, {
        name: `inbound|${port}`,
        virtualHosts: [create(VirtualHostSchema, {
          name: `inbound|${port}`,
          domains: ["*"],
          routes: [create(RouteSchema, {
            name: "default",
            match: matchAll(),
            action: { case: "nonForwardingAction", value: create(NonForwardingActionSchema) },
          })],
        })],
      }),
    },
    httpFilters: [...serverRbacFilters(push, proxy), routerFilter()],
  });
  // serverTransportSocket reads only the instance's port; an ingress port may have no instance.
  const instance = push.instancesOf(proxy).find((e) => e.port === port) ?? ({ port } as Endpoint);
  const transportSocket = serverTransportSocket(push, proxy, instance);
  return create(ListenerSchema, {
    name,
    address: create(AddressSchema, {
      address: {
        case: "socketAddress",
        value: create(SocketAddressSchema, {
          address: ip,
          portSpecifier: { case: "portValue", value: port },
        }),
      },
    }),
    filterChains: [create(FilterChainSchema, {
      name: transportSocket ? "inbound-mtls" : "inbound-plaintext",
      filters: [create(FilterSchema, {
        name: "envoy.filters.network.http_connection_manager",
        configType: { case: "typedConfig", value: anyPack(HttpConnectionManagerSchema, hcm) },
      })],
      transportSocket,
    })],
  });
}

/** True for a server listener name. */
export function isServerListenerName(name: string): boolean {
  return name.startsWith(SERVER_LISTENER_PREFIX);
}

/** A port a gRPC server serves: where it listens by default, and the only address allowed. */
interface ServedPort {
  readonly port: number;
  /** The address of its "*" listener. */
  readonly address: string;
  /** A Sidecar ingress `bind` that is not a wildcard: the only address served. */
  readonly bind?: string;
}

/**
 * The ports the proxy serves as a gRPC server: its Sidecar's ingress ports when it declares any
 * (a Unix socket or port 0 left out: server listeners are IP:PORT), else its instances' ports.
 */
function servedPorts(push: PushContext, proxy: Proxy): ServedPort[] {
  const instances = push.instancesOf(proxy);
  const ingress = sidecarIngressPorts(push, proxy);
  if (!ingress) return instances.map((e) => ({ port: e.port, address: e.address }));
  return ingress.filter((p) => p.port > 0 && !p.bind?.startsWith("unix://")).map((p) =>
    isWildcardBind(p.bind)
      ? { port: p.port, address: p.endpoint?.address ?? proxy.ipAddresses[0] ?? "0.0.0.0" }
      : { port: p.port, address: p.bind!, bind: p.bind! }
  );
}

/**
 * Server listeners: for "*", one per address and port the proxy serves (its instances, or its
 * Sidecar's ingress ports); for names, each requested name whose port the proxy serves, with the
 * requested address (a server bound to 0.0.0.0 asks for that, and gRPC wants it echoed), unless
 * an ingress `bind` names another address.
 */
export function serverListeners(push: PushContext, proxy: Proxy, names: readonly string[] | "*"): Listener[] {
  const served = servedPorts(push, proxy);
  const out = new Map<string, Listener>();
  if (names === "*") {
    for (const p of served) {
      const name = serverListenerName(p.address, p.port);
      if (!out.has(name)) out.set(name, serverListener(push, proxy, name, p.address, p.port));
    }
  } else {
    for (const name of names) {
      if (!isServerListenerName(name) || out.has(name)) continue;
      const hp = splitHostPort(name.slice(SERVER_LISTENER_PREFIX.length));
      const p = hp && served.find((s) => s.port === hp.port && (s.bind === undefined || s.bind === hp.host));
      if (hp && p) out.set(name, serverListener(push, proxy, name, hp.host, p.port));
    }
  }
  return [...out.values()];
}

/** One Sidecar field a gRPC server does not apply: the field (from the Sidecar) and why. */
export interface IngressGap {
  readonly field: string;
  readonly reason: string;
}

const GRPC_PROTOCOLS = new Set(["GRPC", "GRPC-WEB", "HTTP2", "HTTP"]);

/**
 * What the Sidecar selecting a gRPC server asks of its ingress that the server cannot do, one
 * entry per listener and field, named `Sidecar NS/NAME ingress[i].FIELD`. Empty without a
 * Sidecar or for a proxy that serves nothing and declares no ingress.
 */
export function ingressGaps(push: PushContext, proxy: Proxy): IngressGap[] {
  const sidecar = push.sidecarFor(proxy);
  if (!sidecar) return [];
  const prefix = `Sidecar ${sidecar.metadata.namespace}/${sidecar.metadata.name}`;
  const out: IngressGap[] = [];
  const ingress = sidecar.spec.ingress ?? [];
  if (sidecar.spec.inboundConnectionPool && (ingress.length > 0 || push.instancesOf(proxy).length > 0)) {
    out.push({ field: `${prefix} inboundConnectionPool`, reason: "gRPC servers read no connection limits" });
  }
  ingress.forEach((l, i) => {
    const at = (f: string) => `${prefix} ingress[${i}].${f}`;
    const port = l.port.number ?? 0;
    if (l.bind?.startsWith("unix://") || port === 0) {
      out.push({
        field: at("bind"),
        reason: "gRPC server listeners are IP:PORT; a Unix socket gets no listener",
      });
    }
    const target = l.defaultEndpoint;
    if (
      target && (target.startsWith("unix://") || Number(target.slice(target.lastIndexOf(":") + 1)) !== port)
    ) {
      out.push({
        field: at("defaultEndpoint"),
        reason: `a gRPC server serves the calls itself on port ${port}; it cannot forward them to ${target}`,
      });
    }
    if (l.tls) {
      out.push({
        field: at("tls"),
        reason: "gRPC servers take certificates only from their bootstrap's certificate providers: " +
          "the listener's own TLS is not applied; PeerAuthentication's mesh mTLS is",
      });
    }
    if (l.connectionPool) {
      out.push({ field: at("connectionPool"), reason: "gRPC servers read no connection limits" });
    }
    if (l.captureMode === "IPTABLES") {
      out.push({
        field: at("captureMode"),
        reason: "nothing captures traffic for a proxyless gRPC server: it listens on the port itself",
      });
    }
    const protocol = l.port.protocol?.toUpperCase();
    if (protocol && !GRPC_PROTOCOLS.has(protocol)) {
      out.push({
        field: at("port.protocol"),
        reason: `${protocol}: an xDS-enabled gRPC server serves gRPC only; its listener is HTTP/2`,
      });
    }
  });
  return out;
}
