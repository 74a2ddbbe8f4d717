/**
 * What one proxy sees of the mesh (Istio's SidecarScope): the services it can reach, one per
 * host name, and what happens to traffic for hosts it does not know.
 *
 * @module
 */
import type { Destination } from "../../api/kinds/networking.ts";
import { resolveHost } from "../../api/mod.ts";
import type { PushContext } from "../model/push_context.ts";
import type { Proxy } from "../model/proxy.ts";
import type { Endpoint, Service } from "../model/service.ts";

/**
 * The services the proxy can reach (exportTo, then its Sidecar's egress hosts), one per host
 * name: where two namespaces declare the same host, the one `serviceFor` picks (the proxy's own
 * namespace first). Sorted by host name.
 */
export function reachableServices(push: PushContext, proxy: Proxy): Service[] {
  const visible = push.visibleServices(proxy);
  const visibleSet = new Set(visible);
  const out: Service[] = [];
  const seen = new Set<string>();
  for (const s of visible) {
    if (seen.has(s.hostname)) continue;
    seen.add(s.hostname);
    const chosen = push.serviceFor(proxy, s.hostname);
    out.push(chosen && visibleSet.has(chosen) ? chosen : s);
  }
  return out;
}

/** Where traffic to unknown destinations goes. */
export interface OutboundPolicy {
  /** ALLOW_ANY passes unknown traffic through; REGISTRY_ONLY refuses it. */
  readonly mode: "ALLOW_ANY" | "REGISTRY_ONLY";
  /** With ALLOW_ANY: the service unknown traffic is sent to instead of its original destination. */
  readonly egressProxy?: Destination;
}

/**
 * The proxy's outbound traffic policy: its Sidecar's `outboundTrafficPolicy` when set, else the
 * mesh's. The egress proxy host is qualified with the Sidecar's namespace.
 */
export function outboundPolicy(push: PushContext, proxy: Proxy): OutboundPolicy {
  const sidecar = push.sidecarFor(proxy);
  const own = sidecar?.spec.outboundTrafficPolicy;
  const mode = own?.mode ?? push.mesh.outboundTrafficPolicy.mode;
  if (mode === "ALLOW_ANY" && own?.egressProxy && sidecar) {
    return {
      mode,
      egressProxy: {
        ...own.egressProxy,
        host: resolveHost(own.egressProxy.host, sidecar.metadata.namespace),
      },
    };
  }
  return { mode };
}

/**
 * The locality ("region/zone/subzone") the proxy runs in: that of its own workload entries, or
 * undefined when none says.
 */
export function proxyLocality(push: PushContext, proxy: Proxy): string | undefined {
  for (const e of push.instancesOf(proxy)) if (e.locality) return e.locality;
  return undefined;
}

/** Ports the sidecar itself listens on (outbound and inbound capture). */
const PROXY_PORTS: ReadonlySet<number> = new Set([15001, 15006]);

/** One port the proxy's own workload serves, with the service port it serves it for. */
export interface InboundPort {
  /** The port the workload listens on (where inbound traffic arrives). */
  readonly port: number;
  readonly endpoint: Endpoint;
}

/**
 * The ports the proxy's workload serves (its instances), one per port number: where two
 * services share a port the first by host name wins; the sidecar's own ports 15001 and 15006
 * are left out. Sorted by port.
 */
export function inboundPorts(push: PushContext, proxy: Proxy): InboundPort[] {
  const byPort = new Map<number, Endpoint>();
  const instances = [...push.instancesOf(proxy)].sort((a, b) =>
    a.port - b.port || (a.hostname < b.hostname ? -1 : a.hostname > b.hostname ? 1 : 0)
  );
  for (const e of instances) {
    // The sidecar's own ports cannot be served: traffic to them never reaches the application.
    if (!byPort.has(e.port) && !PROXY_PORTS.has(e.port)) byPort.set(e.port, e);
  }
  return [...byPort.entries()].map(([port, endpoint]) => ({ port, endpoint }));
}
