/**
 * Server listeners for xDS-enabled gRPC servers (gRFC A36), named
 * `xds.istio.io/grpc/lds/inbound/IP:PORT` after the address the server listens on. Each has the
 * listening address, one filter chain holding only an HttpConnectionManager with an inline
 * route configuration (virtual host "*", every call allowed through with non_forwarding_action)
 * and the router filter, RBAC filters ahead of it when AuthorizationPolicies apply, and mTLS
 * when PeerAuthentication makes the port STRICT (tls.ts).
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
import { routerFilter } from "./filters.ts";
import { SERVER_LISTENER_PREFIX, serverListenerName, splitHostPort } from "./names.ts";
import { matchAll } from "./route_match.ts";
import { serverRbacFilters, serverTransportSocket } from "./tls.ts";

function serverListener(
  push: PushContext,
  proxy: Proxy,
  name: string,
  ip: string,
  instance: Endpoint,
): Listener {
  const port = instance.port;
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

/**
 * Server listeners: for "*", one per address and port the proxy serves (its instances); for
 * names, each requested name whose port one of the proxy's instances listens on, with the
 * requested address (a server bound to 0.0.0.0 asks for that, and gRPC wants it echoed).
 */
export function serverListeners(push: PushContext, proxy: Proxy, names: readonly string[] | "*"): Listener[] {
  const instances = push.instancesOf(proxy);
  const out = new Map<string, Listener>();
  if (names === "*") {
    for (const e of instances) {
      const name = serverListenerName(e.address, e.port);
      if (!out.has(name)) out.set(name, serverListener(push, proxy, name, e.address, e));
    }
  } else {
    for (const name of names) {
      if (!isServerListenerName(name) || out.has(name)) continue;
      const hp = splitHostPort(name.slice(SERVER_LISTENER_PREFIX.length));
      const instance = hp && instances.find((e) => e.port === hp.port);
      if (hp && instance) out.set(name, serverListener(push, proxy, name, hp.host, instance));
    }
  }
  return [...out.values()];
}
