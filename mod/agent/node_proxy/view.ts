/**
 * What pilot tells a node proxy, decoded from the standard Envoy resources it serves one (CDS,
 * EDS, LDS): the mesh's services by address, how to reach each service port's endpoints, what
 * this machine accepts inbound, and the mesh's host names for the DNS proxy. The data plane
 * (outbound, inbound, DNS) reads only this; `decodeNodeProxyView` builds it from xDS.
 *
 * @module
 */
import type { RBAC } from "#gen/envoy/config/rbac/v3/rbac_pb.ts";

/** One port of a mesh service. */
export interface ServicePort {
  readonly port: number;
  /** Istio's protocol name (HTTP, TCP, GRPC, ...); the node proxy carries every one as TCP. */
  readonly protocol: string;
  /** The cluster that reaches this port's endpoints (`outbound|PORT||HOST`). */
  readonly cluster: string;
}

/** A mesh service as the node proxy routes to it. */
export interface MeshService {
  /** Its host name, fully qualified, lower case, no trailing dot. */
  readonly host: string;
  readonly namespace: string;
  /**
   * Its virtual IPs: declared addresses (which may be CIDR blocks), or the one pilot allocated
   * where none was declared.
   */
  readonly addresses: readonly string[];
  readonly ports: readonly ServicePort[];
}

/** How the node proxy reaches one endpoint. */
export type EndpointTransport =
  /** An HTTP/2 CONNECT tunnel over mTLS to the endpoint machine's node proxy (HBONE, 15008). */
  | "hbone"
  /** Istio mutual TLS straight to the endpoint's port (a workload with an Envoy sidecar). */
  | "mtls"
  /** Plain TCP (outside the mesh, or mTLS disabled by a DestinationRule). */
  | "plaintext";

/**
 * The workload behind an endpoint (or this machine's), as Istio's telemetry labels it. Empty
 * strings for what is not known.
 */
export interface WorkloadLabels {
  readonly name: string;
  readonly namespace: string;
  /** Its `app` label, else its canonical service. */
  readonly app: string;
  /** Its `version` label, else its canonical revision. */
  readonly version: string;
  readonly canonicalService: string;
  readonly canonicalRevision: string;
}

/** One endpoint of a cluster. */
export interface Endpoint {
  /** An IP address, or a DNS name for a ServiceEntry with DNS resolution. */
  readonly address: string;
  readonly port: number;
  /** Load-balancing weight, at least 1. */
  readonly weight: number;
  readonly locality: { readonly region: string; readonly zone: string; readonly subZone: string };
  /** Locality failover priority, 0 first. */
  readonly priority: number;
  readonly transport: EndpointTransport;
  /** The SPIFFE identities the endpoint may present (checked for "hbone" and "mtls"). */
  readonly identities: readonly string[];
  /** Always true from pilot, which leaves unhealthy endpoints out of EDS as for sidecars. */
  readonly healthy: boolean;
  /** The workload behind it, when pilot said (endpoint metadata `istio.workload`). */
  readonly workload?: WorkloadLabels;
}

/** One cluster: a service port (or a subset of it) and its endpoints. */
export interface UpstreamCluster {
  readonly name: string;
  readonly connectTimeoutMs: number;
  readonly lbPolicy: "ROUND_ROBIN" | "LEAST_REQUEST" | "RANDOM";
  /** Outlier detection, when the DestinationRule asks for it. */
  readonly outlier?: { readonly consecutiveErrors: number; readonly baseEjectionMs: number };
  readonly endpoints: readonly Endpoint[];
}

/** What this machine accepts on one port. */
export interface InboundPort {
  /** The port; 0 is the rule for every port not listed. */
  readonly port: number;
  /** PeerAuthentication's mode for it. */
  readonly mtls: "STRICT" | "PERMISSIVE" | "DISABLE";
  /**
   * Envoy network RBAC configs in the order Envoy would run them (Istio's DENY, then ALLOW, with
   * LOG for AUDIT); empty allows everything.
   */
  readonly rbac: readonly RBAC[];
  /**
   * Where accepted connections go (the local application). An empty address or port 0 (as in the
   * rule for port 0) means the address or port the connection was for.
   */
  readonly target: { readonly address: string; readonly port: number };
}

/**
 * A VirtualService `tcp` route: connections to one of `destinations` on `port` go to one of
 * `clusters`, chosen per connection by weight.
 */
export interface TcpRoute {
  /** The service the route belongs to (lower case, no trailing dot). */
  readonly host: string;
  readonly namespace: string;
  readonly port: number;
  /** Destination addresses as CIDRs (`IP/LEN`). */
  readonly destinations: readonly string[];
  /** Clusters (`outbound|PORT|SUBSET|HOST`) with weights; one cluster has weight 1. */
  readonly clusters: readonly { readonly name: string; readonly weight: number }[];
}

/** Everything the node proxy's data plane reads. Immutable; a new view replaces the old. */
export interface NodeProxyView {
  /** A version that changes whenever the content does (for logs and /debug). */
  readonly version: string;
  readonly services: readonly MeshService[];
  readonly clusters: ReadonlyMap<string, UpstreamCluster>;
  readonly inbound: ReadonlyMap<number, InboundPort>;
  /** Mesh host names (lower case, no trailing dot) to their addresses, for the DNS proxy. */
  readonly dns: ReadonlyMap<string, readonly string[]>;
  /** VirtualService `tcp` routes in pilot's order (none: every service goes to its own cluster). */
  readonly tcpRoutes?: readonly TcpRoute[];
}

/** An empty view: nothing known yet (every destination passes through, nothing in DNS). */
export const EMPTY_VIEW: NodeProxyView = {
  version: "",
  services: [],
  clusters: new Map(),
  inbound: new Map(),
  dns: new Map(),
  tcpRoutes: [],
};
