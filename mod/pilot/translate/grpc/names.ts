/**
 * Resource names of the proxyless-gRPC flavour, as Istio's grpcgen spells them: client
 * listeners and route configurations `HOST:PORT`, server listeners
 * `xds.istio.io/grpc/lds/inbound/IP:PORT`. Cluster names (`outbound|PORT|SUBSET|HOST`, also the
 * EDS name) are Envoy's, from cluster_name.ts.
 *
 * @module
 */

/** The prefix of the server listener names gRPC's xDS-enabled servers ask for. */
export const SERVER_LISTENER_PREFIX = "xds.istio.io/grpc/lds/inbound/";

/** A socket address split into host and port; IPv6 hosts come without brackets. */
export interface HostPort {
  readonly host: string;
  readonly port: number;
}

/** Splits "host:port" or "[v6]:port"; undefined when there is no valid port. */
export function splitHostPort(text: string): HostPort | undefined {
  let host: string;
  let portText: string;
  if (text.startsWith("[")) {
    const end = text.indexOf("]:");
    if (end < 0) return undefined;
    host = text.slice(1, end);
    portText = text.slice(end + 2);
  } else {
    const colon = text.lastIndexOf(":");
    if (colon < 0 || text.indexOf(":") !== colon) return undefined;
    host = text.slice(0, colon);
    portText = text.slice(colon + 1);
  }
  if (!/^\d{1,5}$/.test(portText)) return undefined;
  const port = Number(portText);
  if (port <= 0 || port > 65535 || host === "") return undefined;
  return { host, port };
}

/** Joins host and port, bracketing IPv6 hosts. */
export function joinHostPort(host: string, port: number): string {
  return host.includes(":") ? `[${host}]:${port}` : `${host}:${port}`;
}

/** The server listener name for an address. */
export function serverListenerName(ip: string, port: number): string {
  return SERVER_LISTENER_PREFIX + joinHostPort(ip, port);
}

/**
 * The host names a client in `namespace` may dial for `hostname` (fully qualified first): for
 * a Kubernetes-style name `NAME.NS.svc.SUFFIX`, also `NAME.NS.svc` and `NAME.NS` (resolvable
 * from any namespace through the DNS search path) and `NAME` from NS itself.
 */
export function dialableHosts(hostname: string, namespace: string, dnsSuffix: string): string[] {
  const out = [hostname];
  const tail = `.svc.${dnsSuffix.replace(/^svc\./, "")}`;
  if (!hostname.endsWith(tail)) return out;
  const nameNs = hostname.slice(0, -tail.length);
  const dot = nameNs.indexOf(".");
  if (dot <= 0 || nameNs.indexOf(".", dot + 1) >= 0) return out;
  out.push(`${nameNs}.svc`, nameNs);
  if (nameNs.slice(dot + 1) === namespace) out.push(nameNs.slice(0, dot));
  return out;
}
