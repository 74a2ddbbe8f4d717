/**
 * Reads the standard Envoy resources pilot serves a node proxy (CDS, EDS, LDS; see pilot's
 * translate/node_proxy.ts) into the {@link NodeProxyView} its data plane reads.
 *
 * - Outbound clusters carry Istio's `filter_metadata["istio"]` (`services` with host, namespace
 *   and addresses; `port`, `protocol`, `subset`); their hosts come from EDS (or, for DNS
 *   clusters, the inline assignment), each with its transport in
 *   `filter_metadata["envoy.transport_socket_match"]` (`tunnel: "http"`: HBONE, `tlsMode:
 *   "istio"`: mTLS, else plaintext) and identities in `filter_metadata["istio"]["identities"]`,
 *   with the workload behind it in `filter_metadata["istio"]` (Istio's `workload` string
 *   `NAME;NAMESPACE;CANONICAL_SERVICE;CANONICAL_REVISION;CLUSTER`, `app`, `version`).
 * - `inbound|PORT||` clusters (STATIC, one host) are where accepted connections go; ORIGINAL_DST
 *   clusters (the inbound passthrough) send them to the original port on loopback.
 * - The TCP listener's filter chains give each inbound port (no destination port: the rule for
 *   every other port, 0) its PeerAuthentication mode (one chain with TLS: STRICT; chains for
 *   `tls` and `raw_buffer`: PERMISSIVE; one plaintext chain: DISABLE) and its network RBAC
 *   filters, in order, before a TCP proxy.
 * - The UDP listener with Envoy's DNS filter gives the DNS table.
 * - The TCP listener with traffic direction OUTBOUND (`virtualOutbound`) gives the VirtualService
 *   `tcp` routes: per filter chain a `destination_port`, `prefix_ranges` and a TCP proxy to a
 *   cluster or `weighted_clusters`, the service in the chain's `filter_metadata["istio"]`.
 *
 * Anything else is refused with an error naming the resource and field, so the client NACKs the
 * update and keeps its last good view rather than running a config it would misread.
 *
 * @module
 */
import {
  type DescMessage,
  type JsonObject,
  type JsonValue,
  type MessageShape,
  toBinary,
} from "@bufbuild/protobuf";
import { type Any, anyUnpack, type Duration } from "@bufbuild/protobuf/wkt";
import {
  type Cluster,
  Cluster_DiscoveryType,
  Cluster_LbPolicy,
  ClusterSchema,
} from "#gen/envoy/config/cluster/v3/cluster_pb.ts";
import {
  type Address,
  type CidrRange,
  SocketAddress_Protocol,
} from "#gen/envoy/config/core/v3/address_pb.ts";
import { TrafficDirection } from "#gen/envoy/config/core/v3/base_pb.ts";
import { HealthStatus } from "#gen/envoy/config/core/v3/health_check_pb.ts";
import {
  type ClusterLoadAssignment,
  ClusterLoadAssignmentSchema,
} from "#gen/envoy/config/endpoint/v3/endpoint_pb.ts";
import type { FilterChain } from "#gen/envoy/config/listener/v3/listener_components_pb.ts";
import { type Listener, ListenerSchema } from "#gen/envoy/config/listener/v3/listener_pb.ts";
import { type RBAC, RBACSchema } from "#gen/envoy/config/rbac/v3/rbac_pb.ts";
import { DnsFilterConfigSchema } from "#gen/envoy/extensions/filters/udp/dns_filter/v3/dns_filter_pb.ts";
import { RBACSchema as NetworkRbacSchema } from "#gen/envoy/extensions/filters/network/rbac/v3/rbac_pb.ts";
import { TcpProxySchema } from "#gen/envoy/extensions/filters/network/tcp_proxy/v3/tcp_proxy_pb.ts";
import { contentVersion } from "../../shared/content_version.ts";
import type {
  Endpoint,
  EndpointTransport,
  InboundPort,
  MeshService,
  NodeProxyView,
  ServicePort,
  TcpRoute,
  UpstreamCluster,
  WorkloadLabels,
} from "./view.ts";

/** The resources of one consistent update. */
export interface NodeProxyResources {
  readonly clusters: readonly Cluster[];
  readonly endpoints: readonly ClusterLoadAssignment[];
  readonly listeners: readonly Listener[];
}

/** Thrown for resources the node proxy cannot understand; the message names resource and field. */
export class NodeProxyDecodeError extends Error {
  override readonly name = "NodeProxyDecodeError";
}

const ISTIO = "istio";
const TRANSPORT_SOCKET_MATCH = "envoy.transport_socket_match";
const TYPE_PREFIX = "type.googleapis.com/";
/** Envoy's defaults where a field is unset. */
const DEFAULT_CONNECT_TIMEOUT_MS = 5000;
const DEFAULT_CONSECUTIVE_ERRORS = 5;
const DEFAULT_BASE_EJECTION_MS = 30_000;
/** Listener filters of the inbound listener that need no reading (the data plane does their job). */
const INBOUND_LISTENER_FILTERS = new Set([
  "envoy.filters.listener.original_dst",
  "envoy.filters.listener.tls_inspector",
]);

function fail(where: string, problem: string): never {
  throw new NodeProxyDecodeError(`${where}: ${problem}`);
}

function ms(d: Duration | undefined, fallback: number): number {
  return d ? Number(d.seconds) * 1000 + Math.round(d.nanos / 1e6) : fallback;
}

function unpack<D extends DescMessage>(any: Any | undefined, schema: D, where: string): MessageShape<D> {
  if (!any || any.typeUrl !== `${TYPE_PREFIX}${schema.typeName}`) {
    fail(where, `want typed_config ${schema.typeName}, got ${any?.typeUrl || "none"}`);
  }
  const msg = anyUnpack(any, schema);
  if (!msg) fail(where, `typed_config does not decode as ${schema.typeName}`);
  return msg;
}

function obj(v: JsonValue | undefined): JsonObject | undefined {
  return v !== null && typeof v === "object" && !Array.isArray(v) ? v : undefined;
}

function strings(v: JsonValue | undefined, where: string): string[] {
  if (v === undefined) return [];
  if (!Array.isArray(v) || v.some((s) => typeof s !== "string")) fail(where, "want a list of strings");
  return v as string[];
}

function socketAddress(a: Address | undefined, where: string): { address: string; port: number } {
  if (a?.address.case !== "socketAddress") fail(where, "want a socket_address");
  const sa = a.address.value;
  if (sa.portSpecifier.case !== "portValue") fail(where, "want a port_value");
  return { address: sa.address, port: sa.portSpecifier.value };
}

/** What an outbound cluster's `filter_metadata["istio"]` says. */
interface ClusterMeta {
  readonly host: string;
  readonly namespace: string;
  readonly addresses: string[];
  readonly port: number;
  readonly protocol: string;
  readonly subset: string;
}

function clusterMeta(c: Cluster): ClusterMeta {
  const where = `cluster ${c.name}: metadata.filter_metadata.istio`;
  const md = obj(c.metadata?.filterMetadata[ISTIO]);
  if (!md) fail(where, "missing (want services, port, protocol and subset)");
  const services = md.services;
  if (!Array.isArray(services) || services.length !== 1) {
    fail(`${where}.services`, "want exactly one service");
  }
  const s = obj(services[0]);
  if (!s || typeof s.host !== "string" || s.host === "" || typeof s.namespace !== "string") {
    fail(`${where}.services[0]`, "want host and namespace");
  }
  if (typeof md.port !== "number" || !Number.isInteger(md.port) || md.port < 1 || md.port > 65535) {
    fail(`${where}.port`, `want a port number, got ${JSON.stringify(md.port)}`);
  }
  if (typeof md.protocol !== "string") fail(`${where}.protocol`, "want a protocol name");
  return {
    host: s.host.toLowerCase().replace(/\.$/, ""),
    namespace: s.namespace,
    addresses: strings(s.addresses, `${where}.services[0].addresses`),
    port: md.port,
    protocol: md.protocol,
    subset: typeof md.subset === "string" ? md.subset : "",
  };
}

const LB_POLICIES: ReadonlyMap<Cluster_LbPolicy, UpstreamCluster["lbPolicy"]> = new Map([
  [Cluster_LbPolicy.ROUND_ROBIN, "ROUND_ROBIN"],
  [Cluster_LbPolicy.LEAST_REQUEST, "LEAST_REQUEST"],
  [Cluster_LbPolicy.RANDOM, "RANDOM"],
]);

function transportOf(md: JsonObject | undefined, where: string): EndpointTransport {
  const tunnel = md?.tunnel;
  if (tunnel !== undefined && tunnel !== "http") {
    fail(`${where}.tunnel`, `unknown tunnel ${JSON.stringify(tunnel)}`);
  }
  if (tunnel === "http") return "hbone";
  return md?.tlsMode === "istio" ? "mtls" : "plaintext";
}

/**
 * The workload in an endpoint's `filter_metadata["istio"]`: Istio's `workload` string and the
 * `app` and `version` labels (the canonical service and revision where those are missing).
 */
export function workloadOf(md: JsonObject | undefined, where: string): WorkloadLabels | undefined {
  const text = md?.workload;
  if (text === undefined) return undefined;
  if (typeof text !== "string") fail(`${where}.workload`, "want NAME;NAMESPACE;SERVICE;REVISION;CLUSTER");
  const [name = "", namespace = "", canonicalService = "", canonicalRevision = ""] = text.split(";");
  const label = (k: string) => (typeof md?.[k] === "string" ? md[k] as string : "");
  return {
    name,
    namespace,
    app: label("app") || canonicalService,
    version: label("version") || canonicalRevision,
    canonicalService,
    canonicalRevision,
  };
}

function endpointsOf(cla: ClusterLoadAssignment, where: string): Endpoint[] {
  const out: Endpoint[] = [];
  cla.endpoints.forEach((group, g) => {
    const locality = {
      region: group.locality?.region ?? "",
      zone: group.locality?.zone ?? "",
      subZone: group.locality?.subZone ?? "",
    };
    group.lbEndpoints.forEach((lb, i) => {
      const at = `${where}.endpoints[${g}].lb_endpoints[${i}]`;
      if (lb.hostIdentifier.case !== "endpoint") {
        fail(at, "want an endpoint (named endpoints are not supported)");
      }
      const { address, port } = socketAddress(lb.hostIdentifier.value.address, `${at}.endpoint.address`);
      const md = lb.metadata?.filterMetadata;
      const weight = lb.loadBalancingWeight ?? 1;
      if (weight < 1) fail(`${at}.load_balancing_weight`, "want at least 1");
      const workload = workloadOf(obj(md?.[ISTIO]), `${at}.metadata.filter_metadata.istio`);
      out.push({
        address,
        port,
        weight,
        locality,
        priority: group.priority,
        transport: transportOf(
          obj(md?.[TRANSPORT_SOCKET_MATCH]),
          `${at}.metadata.filter_metadata.${TRANSPORT_SOCKET_MATCH}`,
        ),
        identities: strings(obj(md?.[ISTIO])?.identities, `${at}.metadata.filter_metadata.istio.identities`),
        healthy: lb.healthStatus === HealthStatus.UNKNOWN || lb.healthStatus === HealthStatus.HEALTHY,
        ...(workload ? { workload } : {}),
      });
    });
  });
  return out;
}

function isType(c: Cluster, t: Cluster_DiscoveryType): boolean {
  return c.clusterDiscoveryType.case === "type" && c.clusterDiscoveryType.value === t;
}

function upstreamCluster(
  c: Cluster,
  assignments: ReadonlyMap<string, ClusterLoadAssignment>,
): UpstreamCluster {
  const where = `cluster ${c.name}`;
  if (c.loadBalancingPolicy) fail(`${where}.load_balancing_policy`, "not supported by the node proxy");
  const lbPolicy = LB_POLICIES.get(c.lbPolicy);
  if (!lbPolicy) {
    fail(`${where}.lb_policy`, `${Cluster_LbPolicy[c.lbPolicy]} is not supported by the node proxy`);
  }
  let endpoints: Endpoint[];
  if (isType(c, Cluster_DiscoveryType.EDS)) {
    const name = c.edsClusterConfig?.serviceName || c.name;
    const cla = assignments.get(name);
    if (!cla) fail(`${where}.eds_cluster_config.service_name`, `${name} has no ClusterLoadAssignment`);
    endpoints = endpointsOf(cla, `ClusterLoadAssignment ${name}`);
  } else if (
    c.clusterDiscoveryType.case === "type" &&
    c.clusterDiscoveryType.value !== Cluster_DiscoveryType.ORIGINAL_DST
  ) {
    if (!c.loadAssignment) fail(`${where}.load_assignment`, "missing");
    endpoints = endpointsOf(c.loadAssignment, `${where}.load_assignment`);
  } else {
    fail(`${where}.type`, "want EDS, STATIC, STRICT_DNS or LOGICAL_DNS");
  }
  const od = c.outlierDetection;
  return {
    name: c.name,
    connectTimeoutMs: ms(c.connectTimeout, DEFAULT_CONNECT_TIMEOUT_MS),
    lbPolicy,
    ...(od
      ? {
        outlier: {
          consecutiveErrors: od.consecutiveGatewayFailure ?? od.consecutive5xx ?? DEFAULT_CONSECUTIVE_ERRORS,
          baseEjectionMs: ms(od.baseEjectionTime, DEFAULT_BASE_EJECTION_MS),
        },
      }
      : {}),
    endpoints,
  };
}

/** The services of the outbound clusters without a subset, sorted by host then namespace. */
function servicesOf(outbound: readonly { cluster: Cluster; meta: ClusterMeta }[]): MeshService[] {
  const byKey = new Map<
    string,
    { host: string; namespace: string; addresses: string[]; ports: ServicePort[] }
  >();
  for (const { cluster, meta } of outbound) {
    if (meta.subset !== "") continue;
    const key = `${meta.host}|${meta.namespace}`;
    let s = byKey.get(key);
    if (!s) {
      byKey.set(
        key,
        s = { host: meta.host, namespace: meta.namespace, addresses: meta.addresses, ports: [] },
      );
    }
    s.ports.push({ port: meta.port, protocol: meta.protocol, cluster: cluster.name });
  }
  return [...byKey.values()]
    .map((s) => ({ ...s, ports: s.ports.sort((a, b) => a.port - b.port) }))
    .sort((a, b) => (a.host < b.host ? -1 : a.host > b.host ? 1 : a.namespace < b.namespace ? -1 : 1));
}

/** Where an inbound chain's TCP proxy sends connections. */
type Targets = ReadonlyMap<string, { address: string; port: number }>;

/** One inbound chain: its port (0: any other), whether it needs TLS, and what it runs. */
interface InboundChain {
  readonly port: number;
  readonly tls: boolean;
  readonly transportProtocol: string;
  readonly rbac: RBAC[];
  readonly target: { address: string; port: number };
}

function inboundChain(l: Listener, fc: FilterChain, index: number, targets: Targets): InboundChain {
  const where = `listener ${l.name} filter_chains[${index}] (${fc.name || "unnamed"})`;
  const m = fc.filterChainMatch;
  const narrower = m &&
    [
      m.prefixRanges,
      m.sourcePrefixRanges,
      m.directSourcePrefixRanges,
      m.sourcePorts,
      m.serverNames,
      m.applicationProtocols,
    ]
      .some((list) => list.length > 0);
  if (narrower) {
    fail(`${where}.filter_chain_match`, "only destination_port and transport_protocol are supported");
  }
  const rbac: RBAC[] = [];
  let target: { address: string; port: number } | undefined;
  fc.filters.forEach((f, i) => {
    const at = `${where}.filters[${i}] (${f.name})`;
    if (target) fail(at, "nothing may follow the TCP proxy");
    const any = f.configType.case === "typedConfig" ? f.configType.value : undefined;
    if (any?.typeUrl === `${TYPE_PREFIX}${NetworkRbacSchema.typeName}`) {
      const r = unpack(any, NetworkRbacSchema, at);
      if (!r.rules) fail(`${at}.rules`, "missing (shadow rules alone are not supported)");
      if (r.matcher) fail(`${at}.matcher`, "not supported by the node proxy");
      rbac.push(r.rules);
    } else if (any?.typeUrl === `${TYPE_PREFIX}${TcpProxySchema.typeName}`) {
      const t = unpack(any, TcpProxySchema, at);
      if (t.clusterSpecifier.case !== "cluster") fail(`${at}.cluster`, "want a single cluster");
      target = targets.get(t.clusterSpecifier.value);
      if (!target) fail(`${at}.cluster`, `${t.clusterSpecifier.value} is not an inbound cluster`);
    } else {
      fail(at, `filter ${any?.typeUrl ?? "without typed_config"} is not supported by the node proxy`);
    }
  });
  if (!target) fail(where, "no TCP proxy");
  return {
    port: m?.destinationPort ?? 0,
    tls: fc.transportSocket !== undefined,
    transportProtocol: m?.transportProtocol ?? "",
    rbac,
    target,
  };
}

function sameRbac(a: readonly RBAC[], b: readonly RBAC[]): boolean {
  const bytes = (r: RBAC) => contentVersion(toBinary(RBACSchema, r));
  return a.length === b.length && a.every((r, i) => bytes(r) === bytes(b[i]!));
}

/** The inbound ports of the TCP listener (see the module notes). */
function inboundOf(l: Listener, targets: Targets): Map<number, InboundPort> {
  l.listenerFilters.forEach((f, i) => {
    if (!INBOUND_LISTENER_FILTERS.has(f.name)) {
      fail(`listener ${l.name} listener_filters[${i}]`, `${f.name} is not supported by the node proxy`);
    }
  });
  const byPort = new Map<number, InboundChain[]>();
  l.filterChains.forEach((fc, i) => {
    const chain = inboundChain(l, fc, i, targets);
    byPort.set(chain.port, [...(byPort.get(chain.port) ?? []), chain]);
  });
  const out = new Map<number, InboundPort>();
  for (const [port, chains] of [...byPort.entries()].sort(([a], [b]) => a - b)) {
    const where = `listener ${l.name} port ${port}`;
    let mtls: InboundPort["mtls"];
    if (chains.length === 1 && !chains[0]!.transportProtocol) mtls = chains[0]!.tls ? "STRICT" : "DISABLE";
    else if (
      chains.length === 2 &&
      chains.some((c) => c.tls && c.transportProtocol === "tls") &&
      chains.some((c) => !c.tls && c.transportProtocol === "raw_buffer")
    ) {
      mtls = "PERMISSIVE";
    } else {
      fail(where, "want one chain (STRICT or DISABLE) or a tls and a raw_buffer chain (PERMISSIVE)");
    }
    const [first, second] = chains as [InboundChain, InboundChain | undefined];
    if (second && (!sameRbac(first.rbac, second.rbac) || first.target.port !== second.target.port)) {
      fail(where, "the tls and raw_buffer chains differ in RBAC or target");
    }
    out.set(port, { port, mtls, rbac: first.rbac, target: first.target });
  }
  return out;
}

function cidrText(r: CidrRange, where: string): string {
  const len = r.prefixLen ?? (r.addressPrefix.includes(":") ? 128 : 32);
  if (r.addressPrefix === "") fail(`${where}.address_prefix`, "missing");
  return `${r.addressPrefix}/${len}`;
}

/** One route chain of the outbound listener (see the module notes). */
function routeOf(l: Listener, fc: FilterChain, index: number): TcpRoute {
  const where = `listener ${l.name} filter_chains[${index}] (${fc.name || "unnamed"})`;
  const m = fc.filterChainMatch;
  if (!m?.destinationPort || m.prefixRanges.length === 0) {
    fail(`${where}.filter_chain_match`, "want destination_port and prefix_ranges");
  }
  const narrower = [m.sourcePrefixRanges, m.directSourcePrefixRanges, m.sourcePorts, m.serverNames]
    .some((list) => list.length > 0) || m.transportProtocol !== "" || m.applicationProtocols.length > 0;
  if (narrower) {
    fail(`${where}.filter_chain_match`, "only destination_port and prefix_ranges are supported");
  }
  const md = obj(fc.metadata?.filterMetadata[ISTIO]);
  if (!md || typeof md.host !== "string" || md.host === "" || typeof md.namespace !== "string") {
    fail(`${where}.metadata.filter_metadata.istio`, "want host and namespace");
  }
  if (fc.filters.length !== 1) fail(`${where}.filters`, "want exactly one TCP proxy");
  const f = fc.filters[0]!;
  const at = `${where}.filters[0] (${f.name})`;
  const t = unpack(f.configType.case === "typedConfig" ? f.configType.value : undefined, TcpProxySchema, at);
  let clusters: TcpRoute["clusters"];
  if (t.clusterSpecifier.case === "cluster") clusters = [{ name: t.clusterSpecifier.value, weight: 1 }];
  else if (t.clusterSpecifier.case === "weightedClusters") {
    clusters = t.clusterSpecifier.value.clusters.map((c) => ({ name: c.name, weight: c.weight }));
    if (clusters.length === 0 || clusters.every((c) => c.weight < 1)) {
      fail(`${at}.weighted_clusters`, "want at least one cluster with a weight");
    }
  } else fail(`${at}.cluster_specifier`, "want cluster or weighted_clusters");
  return {
    host: md.host.toLowerCase().replace(/\.$/, ""),
    namespace: md.namespace,
    port: m.destinationPort,
    destinations: m.prefixRanges.map((r, i) =>
      cidrText(r, `${where}.filter_chain_match.prefix_ranges[${i}]`)
    ),
    clusters,
  };
}

/** The routes of the outbound listener, in chain order. */
function routesOf(l: Listener): TcpRoute[] {
  if (l.listenerFilters.some((f) => f.name !== "envoy.filters.listener.original_dst")) {
    fail(`listener ${l.name}.listener_filters`, "only original_dst is supported on the outbound listener");
  }
  if (l.defaultFilterChain) {
    fail(`listener ${l.name}.default_filter_chain`, "not supported by the node proxy");
  }
  return l.filterChains.map((fc, i) => routeOf(l, fc, i));
}

/** The DNS table of the UDP listener's DNS filter. */
function dnsOf(l: Listener): Map<string, string[]> {
  const out = new Map<string, string[]>();
  l.listenerFilters.forEach((f, i) => {
    const where = `listener ${l.name} listener_filters[${i}] (${f.name})`;
    const any = f.configType.case === "typedConfig" ? f.configType.value : undefined;
    const config = unpack(any, DnsFilterConfigSchema, where);
    const source = config.serverConfig?.configSource;
    if (source?.case !== "inlineDnsTable") fail(`${where}.server_config`, "want inline_dns_table");
    source.value.virtualDomains.forEach((d, j) => {
      const at = `${where}.server_config.inline_dns_table.virtual_domains[${j}] (${d.name})`;
      const ep = d.endpoint?.endpointConfig;
      if (ep?.case !== "addressList") fail(`${at}.endpoint`, "want address_list");
      const name = d.name.toLowerCase().replace(/\.$/, "");
      out.set(name, [...(out.get(name) ?? []), ...ep.value.address]);
    });
  });
  return out;
}

/** A content hash over every resource, by type and name. */
function versionOf(r: NodeProxyResources): string {
  const parts: Uint8Array[] = [];
  const add = <D extends DescMessage>(
    schema: D,
    items: readonly MessageShape<D>[],
    name: (m: MessageShape<D>) => string,
  ) => {
    for (const m of [...items].sort((a, b) => (name(a) < name(b) ? -1 : name(a) > name(b) ? 1 : 0))) {
      parts.push(new TextEncoder().encode(`${schema.typeName}\u0000${name(m)}\u0000`), toBinary(schema, m));
    }
  };
  add(ClusterSchema, r.clusters, (c) => c.name);
  add(ClusterLoadAssignmentSchema, r.endpoints, (e) => e.clusterName);
  add(ListenerSchema, r.listeners, (l) => l.name);
  const all = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const p of parts) {
    all.set(p, at);
    at += p.length;
  }
  return contentVersion(all);
}

/**
 * Decodes a node proxy's resources into its view. Throws {@link NodeProxyDecodeError} naming
 * the resource and field of the first thing it cannot understand.
 */
export function decodeNodeProxyView(r: NodeProxyResources): NodeProxyView {
  const assignments = new Map(r.endpoints.map((e) => [e.clusterName, e]));
  const targets = new Map<string, { address: string; port: number }>();
  const outbound: { cluster: Cluster; meta: ClusterMeta }[] = [];
  const clusters = new Map<string, UpstreamCluster>();
  for (const c of r.clusters) {
    if (isType(c, Cluster_DiscoveryType.ORIGINAL_DST)) {
      // The inbound passthrough: to the connection's original port, on loopback.
      targets.set(c.name, { address: "127.0.0.1", port: 0 });
    } else if (c.name.startsWith("inbound|")) {
      const hosts = c.loadAssignment?.endpoints.flatMap((g) => g.lbEndpoints) ?? [];
      const host = hosts[0];
      if (
        !isType(c, Cluster_DiscoveryType.STATIC) || hosts.length !== 1 ||
        host?.hostIdentifier.case !== "endpoint"
      ) {
        fail(`cluster ${c.name}`, "an inbound cluster must be STATIC with one endpoint");
      }
      targets.set(
        c.name,
        socketAddress(host.hostIdentifier.value.address, `cluster ${c.name} endpoint address`),
      );
    } else {
      const meta = clusterMeta(c);
      clusters.set(c.name, upstreamCluster(c, assignments));
      outbound.push({ cluster: c, meta });
    }
  }
  let inbound = new Map<number, InboundPort>();
  let dns = new Map<string, string[]>();
  let tcpListeners = 0;
  let tcpRoutes: TcpRoute[] = [];
  let outboundListeners = 0;
  for (const l of r.listeners) {
    const sa = l.address?.address.case === "socketAddress" ? l.address.address.value : undefined;
    if (!sa) fail(`listener ${l.name}.address`, "want a socket_address");
    if (sa.protocol === SocketAddress_Protocol.UDP) {
      for (const [name, addresses] of dnsOf(l)) dns.set(name, [...(dns.get(name) ?? []), ...addresses]);
    } else if (l.trafficDirection === TrafficDirection.OUTBOUND) {
      if (++outboundListeners > 1) fail(`listener ${l.name}`, "a node proxy takes one outbound TCP listener");
      tcpRoutes = routesOf(l);
    } else {
      if (++tcpListeners > 1) fail(`listener ${l.name}`, "a node proxy takes one inbound TCP listener");
      inbound = inboundOf(l, targets);
    }
  }
  dns = new Map([...dns.entries()].sort(([a], [b]) => (a < b ? -1 : 1)));
  return {
    version: versionOf(r),
    services: servicesOf(outbound),
    clusters,
    inbound,
    dns,
    tcpRoutes,
  };
}
