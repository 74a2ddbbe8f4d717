/**
 * The service registry's vocabulary: services, their ports, and the endpoints behind them.
 */

/** Application protocols, as Istio names them. */
export type Protocol =
  | "HTTP"
  | "HTTPS"
  | "HTTP2"
  | "GRPC"
  | "GRPC-WEB"
  | "TCP"
  | "TLS"
  | "MONGO"
  | "REDIS"
  | "MYSQL"
  | "UDP"
  | "UNSUPPORTED";

/** True for protocols Envoy handles with the HTTP connection manager. */
export function isHttpProtocol(p: Protocol): boolean {
  return p === "HTTP" || p === "HTTP2" || p === "GRPC" || p === "GRPC-WEB";
}

/** True for protocols that need HTTP/2 upstream. */
export function isHttp2Protocol(p: Protocol): boolean {
  return p === "HTTP2" || p === "GRPC" || p === "GRPC-WEB";
}

/** Reads a protocol name (any case); unknown names are UNSUPPORTED (treated as TCP). */
export function parseProtocol(name: string | undefined): Protocol {
  const up = (name ?? "").toUpperCase();
  const known: readonly Protocol[] = [
    "HTTP",
    "HTTPS",
    "HTTP2",
    "GRPC",
    "GRPC-WEB",
    "TCP",
    "TLS",
    "MONGO",
    "REDIS",
    "MYSQL",
    "UDP",
  ];
  return (known as readonly string[]).includes(up) ? up as Protocol : "UNSUPPORTED";
}

/** One port of a service. */
export interface ServicePort {
  readonly name: string;
  readonly number: number;
  readonly protocol: Protocol;
  /** Port the workloads listen on, when it differs from `number`. */
  readonly targetPort?: number;
}

/** A service: a host name with ports, and how its endpoints are found. */
export interface Service {
  /**
   * Fully qualified host name, or a wildcard host ("*.example.com"), resolved as mod/api's
   * `resolveHost` does (short names qualified, lower-case).
   */
  readonly hostname: string;
  /** Namespace of the resource that declared it. */
  readonly namespace: string;
  readonly ports: readonly ServicePort[];
  /** Virtual IPs or CIDRs; empty when the service has none. */
  readonly addresses: readonly string[];
  readonly resolution: "NONE" | "STATIC" | "DNS" | "DNS_ROUND_ROBIN";
  readonly location: "MESH_EXTERNAL" | "MESH_INTERNAL";
  /** Namespaces that can see the service: "*" (all), "." (own) or names. */
  readonly exportTo: readonly string[];
  readonly subjectAltNames: readonly string[];
  /** resourceKey of the declaring resource (e.g. the ServiceEntry). */
  readonly source: string;
}

/** One endpoint of one service port. */
export interface Endpoint {
  readonly hostname: string;
  /** Namespace of the service. */
  readonly namespace: string;
  /** The service port this endpoint serves. */
  readonly servicePort: ServicePort;
  /** IP address, host name (DNS services) or "unix://path". */
  readonly address: string;
  /** Port the endpoint listens on. */
  readonly port: number;
  readonly labels: Readonly<Record<string, string>>;
  readonly serviceAccount?: string;
  /** "region/zone/subzone". */
  readonly locality?: string;
  readonly network?: string;
  /** Load-balancing weight, 1 when unset. */
  readonly weight: number;
  /** Unhealthy endpoints are left out of EDS. */
  readonly healthy: boolean;
  /** "istio" when the workload has a meshd identity (mTLS capable), else "disabled". */
  readonly tlsMode: "istio" | "disabled";
  /** resourceKey of the WorkloadEntry (or ServiceEntry) it came from. */
  readonly source: string;
}
