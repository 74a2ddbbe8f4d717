/**
 * Listeners (LDS) of a proxy: for sidecars virtualOutbound, the outbound service listeners,
 * virtualInbound and the listeners a Sidecar's ingress and egress ask Envoy to bind (or to be
 * handed traffic for a specific address); for routers one listener per gateway port.
 *
 * @module
 */
import type { Listener } from "#gen/envoy/config/listener/v3/listener_pb.ts";
import type { PushContext } from "../model/push_context.ts";
import type { Proxy } from "../model/proxy.ts";
import { byString } from "./conversion.ts";
import { gatewayListeners } from "./listener_gateway.ts";
import { boundIngressListeners, virtualInboundListener } from "./listener_inbound.ts";
import {
  outboundServiceListeners,
  sidecarEgressListeners,
  virtualOutboundListener,
} from "./listener_outbound.ts";

function addressKey(l: Listener): string {
  const a = l.address?.address;
  if (a?.case === "pipe") return `unix://${a.value.path}`;
  if (a?.case !== "socketAddress") return `name:${l.name}`;
  const port = a.value.portSpecifier.case === "portValue" ? a.value.portSpecifier.value : 0;
  return `${a.value.address}:${port}`;
}

/**
 * Listeners merged in order of precedence, later groups first: a listener replaces an earlier
 * one with the same name or the same address (Envoy refuses two of either). So the Sidecar's
 * own ingress and egress listeners replace the service listeners they overlap.
 */
export function mergeListeners(groups: readonly (readonly Listener[])[]): Listener[] {
  const byName = new Map<string, Listener>();
  const byAddress = new Map<string, string>();
  for (const group of groups) {
    for (const l of group) {
      const key = addressKey(l);
      const previous = byAddress.get(key);
      if (previous !== undefined) byName.delete(previous);
      const old = byName.get(l.name);
      if (old) byAddress.delete(addressKey(old));
      byName.set(l.name, l);
      byAddress.set(key, l.name);
    }
  }
  return [...byName.values()];
}

/** Every listener of a sidecar or router, sorted by name. */
export function buildListeners(push: PushContext, proxy: Proxy): Listener[] {
  const listeners = proxy.type === "router" ? gatewayListeners(push, proxy) : mergeListeners([
    [virtualOutboundListener(push, proxy), virtualInboundListener(push, proxy)],
    outboundServiceListeners(push, proxy),
    sidecarEgressListeners(push, proxy),
    boundIngressListeners(push, proxy),
  ]);
  return listeners.sort((a, b) => byString(a.name, b.name));
}
