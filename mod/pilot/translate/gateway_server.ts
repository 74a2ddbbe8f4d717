/**
 * Gateway servers as a router proxy serves them: the servers of every Gateway selecting the
 * proxy, grouped by port, each classified (plain HTTP, TLS-terminating HTTPS, TLS by SNI, TCP)
 * and given its RDS name as Istio spells it (`http.PORT`, `https.PORT.PORTNAME.GATEWAY.NAMESPACE`).
 * Listeners (listener_gateway.ts) and routes (route.ts) both read this.
 *
 * @module
 */
import type { Server, VirtualServiceSpec } from "../../api/kinds/networking.ts";
import { hostCovers, namespaceAdmits, splitNamespacedHost } from "../../api/mod.ts";
import type { Resource } from "../../api/resource.ts";
import { type PushContext } from "../model/push_context.ts";
import { resolveHost } from "../../api/mod.ts";
import type { Proxy } from "../model/proxy.ts";
import { parseProtocol } from "../model/service.ts";
import { terminatesTls } from "./tls.ts";

/** How a gateway server handles connections. */
export type ServerKind = "http" | "https" | "tls" | "tcp";

/** One server of one Gateway. */
export interface GatewayServer {
  /** "namespace/name" of the Gateway, as VirtualServices bind to it. */
  readonly gateway: string;
  readonly namespace: string;
  readonly name: string;
  readonly server: Server;
  readonly kind: ServerKind;
  /** RDS name, for http and https servers. */
  readonly routeName?: string;
}

/** The servers sharing one port. */
export interface GatewayPort {
  readonly port: number;
  /** "http" ports hold only HTTP servers; others hold https, tls and tcp servers. */
  readonly http: boolean;
  readonly servers: readonly GatewayServer[];
}

/** Classifies a server by its port protocol and TLS mode. */
export function serverKind(server: Server): ServerKind {
  const protocol = parseProtocol(server.port.protocol);
  if (protocol === "HTTP" || protocol === "HTTP2" || protocol === "GRPC" || protocol === "GRPC-WEB") {
    return "http";
  }
  if (protocol === "HTTPS") return terminatesTls(server.tls) ? "https" : "tls";
  if (protocol === "TLS") return "tls";
  return "tcp";
}

/** `http.PORT` for HTTP servers, `https.PORT.PORTNAME.GATEWAY.NAMESPACE` for HTTPS ones. */
export function gatewayRouteName(
  kind: ServerKind,
  server: Server,
  name: string,
  namespace: string,
): string | undefined {
  if (kind === "http") return `http.${server.port.number}`;
  if (kind === "https") return `https.${server.port.number}.${server.port.name}.${name}.${namespace}`;
  return undefined;
}

/**
 * The ports a router proxy listens on, sorted, with their servers in Gateway order. A port's
 * first server decides whether it is an HTTP port; servers of the other sort on that port are
 * left out (they cannot share a listener), as are TCP servers after the first.
 */
export function gatewayPorts(push: PushContext, proxy: Proxy): GatewayPort[] {
  const ports = new Map<number, { http: boolean; servers: GatewayServer[] }>();
  for (const gw of push.gatewaysFor(proxy)) {
    const { namespace, name } = gw.metadata;
    for (const server of gw.spec.servers) {
      const kind = serverKind(server);
      const entry: GatewayServer = {
        gateway: `${namespace}/${name}`,
        namespace,
        name,
        server,
        kind,
        ...(gatewayRouteName(kind, server, name, namespace)
          ? { routeName: gatewayRouteName(kind, server, name, namespace) }
          : {}),
      };
      const existing = ports.get(server.port.number);
      if (!existing) ports.set(server.port.number, { http: kind === "http", servers: [entry] });
      else if (existing.http === (kind === "http")) {
        if (kind === "tcp" && existing.servers.some((s) => s.kind === "tcp")) continue;
        existing.servers.push(entry);
      }
    }
  }
  return [...ports.entries()].sort(([a], [b]) => a - b).map(([port, v]) => ({ port, ...v }));
}

/**
 * The hosts a VirtualService serves through a gateway server: each of its hosts that overlaps
 * a server host whose namespace part admits the VirtualService, narrowed to the more specific
 * of the two names. Sorted, without duplicates.
 */
export function boundHosts(vs: Resource<VirtualServiceSpec>, gs: GatewayServer): string[] {
  const out = new Set<string>();
  for (const sh of gs.server.hosts) {
    const { namespace, host } = splitNamespacedHost(sh);
    if (!namespaceAdmits(namespace, gs.namespace, vs.metadata.namespace)) continue;
    for (const raw of vs.spec.hosts ?? []) {
      const h = resolveHost(raw, vs.metadata.namespace);
      if (hostCovers(host, h)) out.add(h);
      else if (hostCovers(h, host)) out.add(host);
    }
  }
  return [...out].sort();
}
