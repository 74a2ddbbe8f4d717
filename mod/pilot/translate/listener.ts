/**
 * Listeners (LDS) of a proxy: for sidecars virtualOutbound, the outbound service listeners and
 * virtualInbound; for routers one listener per gateway port.
 *
 * @module
 */
import type { Listener } from "#gen/envoy/config/listener/v3/listener_pb.ts";
import type { PushContext } from "../model/push_context.ts";
import type { Proxy } from "../model/proxy.ts";
import { byString } from "./conversion.ts";
import { gatewayListeners } from "./listener_gateway.ts";
import { virtualInboundListener } from "./listener_inbound.ts";
import { outboundServiceListeners, virtualOutboundListener } from "./listener_outbound.ts";

/** Every listener of a sidecar or router, sorted by name. */
export function buildListeners(push: PushContext, proxy: Proxy): Listener[] {
  const listeners = proxy.type === "router" ? gatewayListeners(push, proxy) : [
    virtualOutboundListener(push, proxy),
    virtualInboundListener(push, proxy),
    ...outboundServiceListeners(push, proxy),
  ];
  return listeners.sort((a, b) => byString(a.name, b.name));
}
