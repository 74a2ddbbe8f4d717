/**
 * The transport-security seam. gRPC takes mTLS from a cluster's (client side) or a filter
 * chain's (server side) transport socket, naming certificate providers from its bootstrap.
 * Until meshd's security work lands, every connection is plaintext: both functions return
 * undefined, and their callers leave the transport socket unset.
 */
import type { TransportSocket } from "#gen/envoy/config/core/v3/base_pb.ts";
import type { ClientTLSSettings } from "../../../galley/kinds/networking.ts";
import type { Proxy } from "../../model/proxy.ts";
import type { PushContext } from "../../model/push_context.ts";
import type { Endpoint, Service } from "../../model/service.ts";

/**
 * The transport socket for connections from `proxy` to `service` under the DestinationRule's
 * TLS settings (`tls`), or undefined for plaintext.
 */
export function clientTransportSocket(
  _push: PushContext,
  _proxy: Proxy,
  _target: { readonly service: Service; readonly tls?: ClientTLSSettings },
): TransportSocket | undefined {
  return undefined;
}

/** The transport socket of the server listener for `instance` of `proxy`, or undefined for plaintext. */
export function serverTransportSocket(
  _push: PushContext,
  _proxy: Proxy,
  _instance: Endpoint,
): TransportSocket | undefined {
  return undefined;
}
