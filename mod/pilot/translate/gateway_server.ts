/**
 * Gateway servers as a router proxy serves them: the servers of every Gateway selecting the
 * proxy, grouped by port, each classified (plain HTTP, TLS-terminating HTTPS, TLS by SNI, TCP)
 * and given its RDS name as Istio spells it (`http.PORT`, `https.PORT.PORTNAME.GATEWAY.NAMESPACE`,
 * each followed by `.BIND` for a server with a `bind` address). Servers on one port with
 * different `bind` addresses are separate listeners, as in Istio. Listeners
 * (listener_gateway.ts) and routes (route.ts) both read this.
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

/** The servers sharing one port and bind address (one listener). */
export interface GatewayPort {
  readonly port: number;
  /** The servers' `bind` address (an IP or `unix://` path); unset for the wildcard. */
  readonly bind?: string;
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

/**
 * `http.PORT` for HTTP servers, `https.PORT.PORTNAME.GATEWAY.NAMESPACE` for HTTPS ones, each
 * followed by `.BIND` when the server has a `bind` address.
 */
export function gatewayRouteName(
  kind: ServerKind,
  server: Server,
  name: string,
  namespace: string,
): string | undefined {
  const bind = server.bind ? `.${server.bind}` : "";
  if (kind === "http") return `http.${server.port.number}${bind}`;
  if (kind === "https") return `https.${server.port.number}.${server.port.name}.${name}.${namespace}${bind}`;
  return undefined;
}

/** The listener key of a server: its port and bind address. */
function portKey(server: Server): string {
  return `${server.port.number}|${server.bind ?? ""}`;
}

function comparePorts(a: GatewayPort, b: GatewayPort): number {
  return a.port - b.port || (a.bind ?? "").localeCompare(b.bind ?? "");
}

/**
 * The ports a router proxy listens on, one per port and `bind` address, sorted by port (the
 * wildcard before bind addresses), with their servers in Gateway order. A listener's first
 * server decides whether it is an HTTP one; servers of the other sort on it are left out (they
 * cannot share a listener), as are TCP servers after the first.
 */
export function gatewayPorts(push: PushContext, proxy: Proxy): GatewayPort[] {
  const ports = new Map<string, { port: number; bind?: string; http: boolean; servers: GatewayServer[] }>();
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
      const existing = ports.get(portKey(server));
      if (!existing) {
        ports.set(portKey(server), {
          port: server.port.number,
          ...(server.bind ? { bind: server.bind } : {}),
          http: kind === "http",
          servers: [entry],
        });
      } else if (existing.http === (kind === "http")) {
        if (kind === "tcp" && existing.servers.some((s) => s.kind === "tcp")) continue;
        existing.servers.push(entry);
      }
    }
  }
  return [...ports.values()].sort(comparePorts);
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
