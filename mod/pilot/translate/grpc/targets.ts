/**
 * Client targets: the names a proxyless gRPC client may dial (`xds:///NAME`), each tied to one
 * port of one service it can see. Listener and route configuration names are target names.
 *
 * @module
 */
import type { Proxy } from "../../model/proxy.ts";
import { DNS_SUFFIX, type PushContext } from "../../model/push_context.ts";
import type { Service, ServicePort } from "../../model/service.ts";
import { byString } from "../conversion.ts";
import { reachableServices } from "../proxy_scope.ts";
import { dialableHosts, splitHostPort } from "./names.ts";

/** One dialable name and the service port behind it. */
export interface Target {
  /** The name as the client asked for it (listener and route configuration name). */
  readonly name: string;
  readonly service: Service;
  readonly port: ServicePort;
}

/** Memo of dialableServices by the (memoised, immutable) visible list and the proxy's namespace. */
const dialableMemo = new WeakMap<readonly Service[], Map<string, readonly Service[]>>();

/**
 * Services a gRPC client can dial by name: those the proxy reaches (one per host name, as for
 * Envoy's clusters, proxy_scope.ts) with a concrete (non-wildcard) host and a port. Sorted by
 * host name.
 */
export function dialableServices(push: PushContext, proxy: Proxy): readonly Service[] {
  const visible = push.visibleServices(proxy);
  let perNamespace = dialableMemo.get(visible);
  if (!perNamespace) dialableMemo.set(visible, perNamespace = new Map());
  const memo = perNamespace.get(proxy.namespace);
  if (memo) return memo;
  const out = reachableServices(push, proxy)
    .filter((s) => !s.hostname.includes("*") && s.ports.length > 0)
    .sort((a, b) => byString(a.hostname, b.hostname));
  perNamespace.set(proxy.namespace, out);
  return out;
}

/** Every target the proxy could ask for, sorted by name. */
export function allTargets(push: PushContext, proxy: Proxy): Target[] {
  const out = new Map<string, Target>();
  for (const service of dialableServices(push, proxy)) {
    for (const host of dialableHosts(service.hostname, proxy.namespace, DNS_SUFFIX)) {
      for (const port of service.ports) {
        const name = `${host}:${port.number}`;
        // A short name two services share (NAME.NS vs NAME from NS) goes to the first, by host.
        if (!out.has(name)) out.set(name, { name, service, port });
      }
    }
  }
  return [...out.values()].sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
}

/**
 * The target a requested name stands for, or undefined. `HOST:PORT` names a port; a bare HOST
 * stands for the service's only port (a client dialing without a port), and is ambiguous
 * otherwise.
 */
export function resolveTarget(push: PushContext, proxy: Proxy, name: string): Target | undefined {
  const hp = splitHostPort(name);
  const host = hp?.host ?? name;
  if (host === "" || host.includes("*") || host.includes("/")) return undefined;
  for (const service of dialableServices(push, proxy)) {
    if (!dialableHosts(service.hostname, proxy.namespace, DNS_SUFFIX).includes(host)) continue;
    if (hp) {
      const port = service.ports.find((p) => p.number === hp.port);
      if (port) return { name, service, port };
    } else if (service.ports.length === 1) {
      return { name, service, port: service.ports[0]! };
    }
  }
  return undefined;
}

/** The targets for a request: every target for "*", else the requested names that resolve. */
export function requestedTargets(push: PushContext, proxy: Proxy, names: readonly string[] | "*"): Target[] {
  if (names === "*") return allTargets(push, proxy);
  const out: Target[] = [];
  for (const name of [...new Set(names)].sort()) {
    const t = resolveTarget(push, proxy, name);
    if (t) out.push(t);
  }
  return out;
}
