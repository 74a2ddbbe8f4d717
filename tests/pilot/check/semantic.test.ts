/**
 * checkSemantics(): every rule passes real translation output (golden cases for a sidecar, a
 * gateway with credentials and a proxyless gRPC client) and catches that output with one thing
 * broken by hand.
 */
import { describe, expect, test } from "bun:test";
import { clone, create, type DescMessage, type MessageShape } from "@bufbuild/protobuf";
import { anyPack, anyUnpack } from "@bufbuild/protobuf/wkt";
import {
  type Cluster,
  Cluster_DiscoveryType,
  Cluster_LbPolicy,
  ClusterSchema,
} from "#gen/envoy/config/cluster/v3/cluster_pb.ts";
import {
  type ClusterLoadAssignment,
  ClusterLoadAssignmentSchema,
} from "#gen/envoy/config/endpoint/v3/endpoint_pb.ts";
import { type Listener, ListenerSchema } from "#gen/envoy/config/listener/v3/listener_pb.ts";
import type { FilterChain } from "#gen/envoy/config/listener/v3/listener_components_pb.ts";
import type { Route, RouteAction } from "#gen/envoy/config/route/v3/route_components_pb.ts";
import { type RouteConfiguration, RouteConfigurationSchema } from "#gen/envoy/config/route/v3/route_pb.ts";
import {
  type HttpConnectionManager,
  HttpConnectionManagerSchema,
  ScopedRoutesSchema,
} from "#gen/envoy/extensions/filters/network/http_connection_manager/v3/http_connection_manager_pb.ts";
import { RBACSchema } from "#gen/envoy/extensions/filters/network/rbac/v3/rbac_pb.ts";
import {
  DownstreamTlsContextSchema,
  UpstreamTlsContextSchema,
} from "#gen/envoy/extensions/transport_sockets/tls/v3/tls_pb.ts";
import { AddressSchema, SocketAddress_Protocol } from "#gen/envoy/config/core/v3/address_pb.ts";
import { checkSemantics, configuredSecretNames, type ProxyKind } from "../../../mod/pilot/check/mod.ts";
import { proxyFromNode } from "../../../mod/pilot/model/proxy.ts";
import {
  buildClusters,
  buildEndpoints,
  buildListeners,
  buildRoutes,
} from "../../../mod/pilot/translate/mod.ts";
import {
  buildGrpcClusters,
  buildGrpcEndpoints,
  buildGrpcListeners,
  buildGrpcRoutes,
} from "../../../mod/pilot/translate/grpc/mod.ts";
import { readCase, ROOT } from "../translate/_golden.ts";
import { readFileSync } from "node:fs";
import { join } from "node:path";

interface Set {
  clusters: Cluster[];
  endpoints: ClusterLoadAssignment[];
  listeners: Listener[];
  routes: RouteConfiguration[];
}
interface Base {
  readonly set: Set;
  readonly kind: ProxyKind;
  readonly secretNames: ReadonlySet<string>;
}

function envoyBase(name: string, kind: ProxyKind): Base {
  const { push, proxy } = readCase(name);
  return {
    kind,
    secretNames: configuredSecretNames(push.config),
    set: {
      clusters: buildClusters(push, proxy),
      endpoints: buildEndpoints(push, proxy),
      listeners: buildListeners(push, proxy),
      routes: buildRoutes(push, proxy),
    },
  };
}

/** The proxyless gRPC client of a golden case's namespace, with the whole set ("*"). */
function grpcBase(name: string): Base {
  const { push, proxy } = readCase(name);
  const g = proxyFromNode({
    id: proxy.id.replace(/^(sidecar|router)/, "proxyless"),
    metadata: { NAMESPACE: proxy.namespace, GENERATOR: "grpc" },
  });
  return {
    kind: "proxyless",
    secretNames: new Set(),
    set: {
      clusters: buildGrpcClusters(push, g),
      endpoints: buildGrpcEndpoints(push, g, "*"),
      listeners: buildGrpcListeners(push, g, "*"),
      routes: buildGrpcRoutes(push, g, "*"),
    },
  };
}

const BASES = {
  sidecar: envoyBase("bookinfo_productpage", "sidecar"),
  gateway: envoyBase("gateway_tls_credentials", "router"),
  grpc: grpcBase("bookinfo_productpage"),
};
type BaseName = keyof typeof BASES;

function cloneAll<D extends DescMessage>(schema: D, list: readonly MessageShape<D>[]): MessageShape<D>[] {
  return list.map((m) => clone(schema, m));
}

function fresh(base: BaseName): Set {
  const s = BASES[base].set;
  return {
    clusters: cloneAll(ClusterSchema, s.clusters),
    endpoints: cloneAll(ClusterLoadAssignmentSchema, s.endpoints),
    listeners: cloneAll(ListenerSchema, s.listeners),
    routes: cloneAll(RouteConfigurationSchema, s.routes),
  };
}

function rulesOf(base: BaseName, set: Set): string[] {
  const b = BASES[base];
  return [
    ...new Set(checkSemantics(set, { proxyKind: b.kind, secretNames: b.secretNames }).map((v) => v.rule)),
  ].sort();
}

function named<T extends { name: string }>(list: T[], name: string): T {
  const found = list.find((x) => x.name === name);
  if (!found) throw new Error(`no ${name} in ${list.map((x) => x.name).join(", ")}`);
  return found;
}

/** Unpacks the first HTTP connection manager of `fc`, lets `edit` change it, packs it back. */
function editHcm(fc: FilterChain, edit: (h: HttpConnectionManager) => void): void {
  const f = fc.filters.find((x) =>
    x.configType.case === "typedConfig" && anyUnpack(x.configType.value, HttpConnectionManagerSchema)
  );
  if (!f || f.configType.case !== "typedConfig") {
    throw new Error("no HttpConnectionManager in the filter chain");
  }
  const hcm = anyUnpack(f.configType.value, HttpConnectionManagerSchema)!;
  edit(hcm);
  f.configType.value = anyPack(HttpConnectionManagerSchema, hcm);
}

function firstRoute(set: Set): Route {
  return set.routes.flatMap((r) => r.virtualHosts).flatMap((v) => v.routes).find((r) =>
    r.action.case === "route"
  )!;
}

function firstAction(set: Set): RouteAction {
  const r = firstRoute(set);
  if (r.action.case !== "route") throw new Error("no route action");
  return r.action.value;
}

function edsCluster(set: Set): Cluster {
  return set.clusters.find((c) =>
    c.clusterDiscoveryType.case === "type" && c.clusterDiscoveryType.value === Cluster_DiscoveryType.EDS
  )!;
}

function socket(address: string, port: number) {
  return {
    address: {
      case: "socketAddress" as const,
      value: { address, portSpecifier: { case: "portValue" as const, value: port } },
    },
  };
}

/** One broken set per rule: the base it starts from and what is broken. */
const CASES: readonly { rule: string; base: BaseName; what: string; breakIt: (s: Set) => void }[] = [
  {
    rule: "listener.unique_names",
    base: "sidecar",
    what: "a listener sent twice",
    breakIt: (s) => s.listeners.push(clone(ListenerSchema, s.listeners[0]!)),
  },
  {
    rule: "listener.unique_address",
    base: "sidecar",
    what: "a second listener bound to virtualOutbound's address",
    breakIt: (s) =>
      s.listeners.push({ ...clone(ListenerSchema, named(s.listeners, "virtualOutbound")), name: "other" }),
  },
  {
    rule: "listener.api_listener_over_lds",
    base: "sidecar",
    what: "a gRPC API listener sent to Envoy",
    breakIt: (s) =>
      s.listeners.push(clone(ListenerSchema, BASES.grpc.set.listeners.find((l) => l.apiListener)!)),
  },
  {
    rule: "listener.address_required",
    base: "sidecar",
    what: "a listener without address",
    breakIt: (s) => (named(s.listeners, "0.0.0.0_80").address = undefined),
  },
  {
    rule: "listener.filter_chains_required",
    base: "sidecar",
    what: "a listener without filter chains",
    breakIt: (s) => (named(s.listeners, "0.0.0.0_80").filterChains = []),
  },
  {
    rule: "listener.udp_filter_chains",
    base: "sidecar",
    what: "a UDP listener without QUIC that keeps its filter chains",
    breakIt: (s) => {
      const a = named(s.listeners, "0.0.0.0_80").address!.address;
      if (a.case === "socketAddress") a.value.protocol = SocketAddress_Protocol.UDP;
    },
  },
  {
    rule: "listener.filter_chain_match_unique",
    base: "sidecar",
    what: "virtualInbound's 9080 chain twice",
    breakIt: (s) => {
      const l = named(s.listeners, "virtualInbound");
      l.filterChains.push({ ...clone(ListenerSchema, l).filterChains[1]!, name: "copy" });
    },
  },
  {
    rule: "listener.filter_chain_match_overlap",
    base: "gateway",
    what: "two chains sharing a server name",
    breakIt: (s) => {
      const l = named(s.listeners, "0.0.0.0_443");
      const copy = clone(ListenerSchema, l).filterChains[0]!;
      copy.name = "copy";
      copy.filterChainMatch!.serverNames = ["other.example.com", ...copy.filterChainMatch!.serverNames];
      l.filterChains.push(copy);
    },
  },
  {
    rule: "listener.server_name_wildcard",
    base: "gateway",
    what: "a partial wildcard server name",
    breakIt: (
      s,
    ) => (named(s.listeners, "0.0.0.0_443").filterChains[0]!.filterChainMatch!.serverNames = [
      "shop*.example.com",
    ]),
  },
  {
    rule: "listener.filter_chain_match_unimplemented",
    base: "gateway",
    what: "address_suffix",
    breakIt: (
      s,
    ) => (named(s.listeners, "0.0.0.0_443").filterChains[0]!.filterChainMatch!.addressSuffix = "0.0.0.1"),
  },
  {
    rule: "listener.cidr",
    base: "gateway",
    what: "a prefix range that is not an IP",
    breakIt: (s) =>
      named(s.listeners, "0.0.0.0_443").filterChains[0]!.filterChainMatch!.prefixRanges.push({
        $typeName: "envoy.config.core.v3.CidrRange",
        addressPrefix: "shop",
        prefixLen: 32,
      }),
  },
  {
    rule: "listener.terminal_filter",
    base: "sidecar",
    what: "an RBAC filter after tcp_proxy",
    breakIt: (s) => {
      named(s.listeners, "virtualOutbound").filterChains[0]!.filters.push({
        $typeName: "envoy.config.listener.v3.Filter",
        name: "envoy.filters.network.rbac",
        configType: {
          case: "typedConfig",
          value: anyPack(RBACSchema, create(RBACSchema, { statPrefix: "x" })),
        },
      });
    },
  },
  {
    rule: "hcm.router_last",
    base: "sidecar",
    what: "the router moved first",
    breakIt: (s) =>
      editHcm(named(s.listeners, "0.0.0.0_80").filterChains[0]!, (h) => h.httpFilters.reverse()),
  },
  {
    rule: "hcm.router_last",
    base: "sidecar",
    what: "no HTTP filters",
    breakIt: (s) => editHcm(named(s.listeners, "0.0.0.0_80").filterChains[0]!, (h) => (h.httpFilters = [])),
  },
  {
    rule: "rds.missing",
    base: "sidecar",
    what: "route configuration 80 left out",
    breakIt: (s) => (s.routes = s.routes.filter((r) => r.name !== "80")),
  },
  {
    rule: "route.unique_names",
    base: "sidecar",
    what: "a route configuration sent twice",
    breakIt: (s) => s.routes.push(clone(RouteConfigurationSchema, s.routes[0]!)),
  },
  {
    rule: "route.unique_domains",
    base: "sidecar",
    what: "a domain in two virtual hosts (differing in case)",
    breakIt: (s) =>
      s.routes[0]!.virtualHosts[1]!.domains.push(s.routes[0]!.virtualHosts[0]!.domains[0]!.toUpperCase()),
  },
  {
    rule: "route.unique_domains",
    base: "sidecar",
    what: "two '*' domains",
    breakIt: (s) => s.routes[0]!.virtualHosts[0]!.domains.push("*"),
  },
  {
    rule: "route.domain_wildcard",
    base: "sidecar",
    what: "a wildcard inside a domain",
    breakIt: (s) => s.routes[0]!.virtualHosts[0]!.domains.push("a*b.example.com"),
  },
  {
    rule: "route.unique_virtual_host_names",
    base: "sidecar",
    what: "two virtual hosts with one name",
    breakIt: (s) => (s.routes[1]!.virtualHosts[1]!.name = s.routes[1]!.virtualHosts[0]!.name),
  },
  {
    rule: "route.weighted_clusters_total",
    base: "sidecar",
    what: "weights that do not add up to total_weight",
    breakIt: (s) => {
      const a = firstAction(s);
      const cluster = a.clusterSpecifier.value as string;
      a.clusterSpecifier = {
        case: "weightedClusters",
        value: {
          $typeName: "envoy.config.route.v3.WeightedCluster",
          clusters: [
            {
              $typeName: "envoy.config.route.v3.WeightedCluster.ClusterWeight",
              name: cluster,
              weight: 60,
            } as never,
          ],
          totalWeight: 100,
          runtimeKeyPrefix: "",
          randomValueSpecifier: { case: undefined },
        },
      };
    },
  },
  {
    rule: "route.weighted_clusters_total",
    base: "sidecar",
    what: "weights adding up to 0",
    breakIt: (s) => {
      const a = firstAction(s);
      a.clusterSpecifier = {
        case: "weightedClusters",
        value: {
          $typeName: "envoy.config.route.v3.WeightedCluster",
          clusters: [
            {
              $typeName: "envoy.config.route.v3.WeightedCluster.ClusterWeight",
              name: a.clusterSpecifier.value as string,
              weight: 0,
            } as never,
          ],
          runtimeKeyPrefix: "",
          randomValueSpecifier: { case: undefined },
        },
      };
    },
  },
  {
    rule: "route.unknown_cluster",
    base: "sidecar",
    what: "an unknown cluster with validate_clusters",
    breakIt: (s) => {
      s.routes[0]!.validateClusters = true;
      firstAction(s).clusterSpecifier = { case: "cluster", value: "outbound|1||nowhere" };
    },
  },
  {
    rule: "route.rewrite_exclusive",
    base: "sidecar",
    what: "prefix_rewrite and regex_rewrite together",
    breakIt: (s) => {
      const a = firstAction(s);
      a.prefixRewrite = "/v2";
      a.regexRewrite = {
        $typeName: "envoy.type.matcher.v3.RegexMatchAndSubstitute",
        pattern: {
          $typeName: "envoy.type.matcher.v3.RegexMatcher",
          regex: "^/v1",
          engineType: { case: undefined },
        },
        substitution: "/v2",
      };
    },
  },
  {
    rule: "route.retry_on",
    base: "sidecar",
    what: "a status code in retry_on",
    breakIt: (s) => {
      const a = firstAction(s);
      a.retryPolicy = {
        ...(a.retryPolicy ?? { $typeName: "envoy.config.route.v3.RetryPolicy" } as never),
        retryOn: "5xx,503",
      };
    },
  },
  {
    rule: "regex.re2",
    base: "sidecar",
    what: "a route regex RE2 does not compile",
    breakIt: (s) => {
      firstRoute(s).match!.pathSpecifier = {
        case: "safeRegex",
        value: {
          $typeName: "envoy.type.matcher.v3.RegexMatcher",
          regex: "/api/(?<=v1)",
          engineType: { case: undefined },
        },
      };
    },
  },
  {
    rule: "cluster.unique_names",
    base: "sidecar",
    what: "a cluster sent twice",
    breakIt: (s) => s.clusters.push(clone(ClusterSchema, s.clusters[0]!)),
  },
  {
    rule: "cluster.eds_config",
    base: "sidecar",
    what: "an EDS cluster without eds_config",
    breakIt: (s) => (edsCluster(s).edsClusterConfig!.edsConfig = undefined),
  },
  {
    rule: "cluster.logical_dns_single_host",
    base: "sidecar",
    what: "a LOGICAL_DNS cluster with two hosts",
    breakIt: (s) => {
      const c = named(s.clusters, "inbound|9080||");
      c.clusterDiscoveryType = { case: "type", value: Cluster_DiscoveryType.LOGICAL_DNS };
      const loc = c.loadAssignment!.endpoints[0]!;
      loc.lbEndpoints.push(
        clone(ClusterLoadAssignmentSchema, c.loadAssignment!).endpoints[0]!.lbEndpoints[0]!,
      );
    },
  },
  {
    rule: "cluster.original_dst_lb",
    base: "sidecar",
    what: "ORIGINAL_DST with ROUND_ROBIN",
    breakIt: (s) => (named(s.clusters, "PassthroughCluster").lbPolicy = Cluster_LbPolicy.ROUND_ROBIN),
  },
  {
    rule: "cluster.original_dst_lb",
    base: "sidecar",
    what: "CLUSTER_PROVIDED on an EDS cluster",
    breakIt: (s) => (edsCluster(s).lbPolicy = Cluster_LbPolicy.CLUSTER_PROVIDED),
  },
  {
    rule: "cluster.lb_config_policy",
    base: "sidecar",
    what: "ring hash settings on a LEAST_REQUEST cluster",
    breakIt: (s) => {
      const c = s.clusters.find((x) => x.lbPolicy === Cluster_LbPolicy.LEAST_REQUEST)!;
      c.lbConfig = {
        case: "ringHashLbConfig",
        value: {
          $typeName: "envoy.config.cluster.v3.Cluster.RingHashLbConfig",
          minimumRingSize: 1024n,
          hashFunction: 0,
        },
      };
    },
  },
  {
    rule: "cluster.transport_socket_match_names",
    base: "sidecar",
    what: "two transport socket matches with one name",
    breakIt: (s) => {
      const c = edsCluster(s);
      const m = {
        $typeName: "envoy.config.cluster.v3.Cluster.TransportSocketMatch" as const,
        name: "tlsMode-istio",
        match: {},
        transportSocket: c.transportSocket,
      };
      c.transportSocketMatches = [m, { ...m }];
    },
  },
  {
    rule: "cluster.protocol_options",
    base: "sidecar",
    what: "protocol options under an unknown name and type",
    breakIt: (
      s,
    ) => (edsCluster(s).typedExtensionProtocolOptions["envoy.unknown"] = anyPack(
      RBACSchema,
      create(RBACSchema, { statPrefix: "x" }),
    )),
  },
  {
    rule: "eds.unique_names",
    base: "sidecar",
    what: "an assignment sent twice",
    breakIt: (s) => s.endpoints.push(clone(ClusterLoadAssignmentSchema, s.endpoints[0]!)),
  },
  {
    rule: "eds.missing",
    base: "sidecar",
    what: "an EDS cluster's assignment left out",
    breakIt: (s) => (s.endpoints = s.endpoints.slice(1)),
  },
  {
    rule: "eds.priorities_contiguous",
    base: "sidecar",
    what: "a locality at priority 2 with none at 1",
    breakIt: (s) => {
      const e = s.endpoints.find((x) => x.endpoints.length > 0)!;
      e.endpoints.push({ ...clone(ClusterLoadAssignmentSchema, e).endpoints[0]!, priority: 2 });
    },
  },
  {
    rule: "eds.locality_weights",
    base: "sidecar",
    what: "a weight on one locality of two",
    breakIt: (s) => {
      const e = s.endpoints.find((x) => x.endpoints.length > 0)!;
      const other = {
        ...clone(ClusterLoadAssignmentSchema, e).endpoints[0]!,
        locality: {
          $typeName: "envoy.config.core.v3.Locality" as const,
          region: "r2",
          zone: "",
          subZone: "",
        },
        loadBalancingWeight: 3,
      };
      e.endpoints[0]!.loadBalancingWeight = undefined;
      e.endpoints.push(other);
    },
  },
  {
    rule: "eds.endpoint_address",
    base: "sidecar",
    what: "a host name in EDS",
    breakIt: (s) => {
      const lb = s.endpoints.find((x) => x.endpoints.length > 0)!.endpoints[0]!.lbEndpoints[0]!;
      if (lb.hostIdentifier.case === "endpoint") {
        lb.hostIdentifier.value.address = create(AddressSchema, socket("details.example.com", 9080));
      }
    },
  },
  {
    rule: "sds.secret_name",
    base: "gateway",
    what: "a credential no config names",
    breakIt: (s) => {
      editTls(
        named(s.listeners, "0.0.0.0_443").filterChains[0]!,
        (name) => (name === "shop-rsa" ? "stolen" : name),
      );
    },
  },
  {
    rule: "sds.config_source",
    base: "sidecar",
    what: "an SDS secret without sds_config",
    breakIt: (s) => {
      const c = edsCluster(s);
      const tls = anyUnpack(c.transportSocket!.configType.value as never, UpstreamTlsContextSchema)!;
      tls.commonTlsContext!.tlsCertificateSdsSecretConfigs[0]!.sdsConfig = undefined;
      c.transportSocket!.configType = { case: "typedConfig", value: anyPack(UpstreamTlsContextSchema, tls) };
    },
  },
  {
    rule: "grpc.hcm.unique_filter_names",
    base: "grpc",
    what: "two HTTP filters with one name",
    breakIt: (s) =>
      editGrpcHcm(
        s,
        (h) => h.httpFilters.unshift({ ...h.httpFilters.at(-1)!, name: h.httpFilters[0]!.name }),
      ),
  },
  {
    rule: "grpc.hcm.rds_source",
    base: "grpc",
    what: "RDS from a path",
    breakIt: (s) =>
      editGrpcHcm(s, (h) => {
        if (h.routeSpecifier.case === "rds") {
          h.routeSpecifier.value.configSource!.configSourceSpecifier = { case: "path", value: "/tmp/x" };
        }
      }),
  },
  {
    rule: "grpc.hcm.route_specifier",
    base: "grpc",
    what: "scoped routes",
    breakIt: (s) =>
      editGrpcHcm(s, (h) => {
        h.routeSpecifier = { case: "scopedRoutes", value: create(ScopedRoutesSchema, { name: "x" }) };
      }),
  },
  {
    rule: "grpc.tls.sds",
    base: "grpc",
    what: "an SDS secret in a gRPC cluster",
    breakIt: (s) => {
      s.clusters.find((x) => x.transportSocket)!.transportSocket =
        clone(ClusterSchema, edsCluster(BASES.sidecar.set)).transportSocket;
    },
  },
  {
    rule: "grpc.listener.api_listener_hcm",
    base: "grpc",
    what: "an API listener holding RBAC",
    breakIt: (
      s,
    ) => (s.listeners.find((l) => l.apiListener)!.apiListener!.apiListener = anyPack(
      RBACSchema,
      create(RBACSchema, { statPrefix: "x" }),
    )),
  },
  {
    rule: "grpc.listener.filter_chain_hcm",
    base: "grpc",
    what: "a server listener's chain with two filters",
    breakIt: (s) => {
      const fc = s.listeners.find((l) => !l.apiListener)!.filterChains[0]!;
      fc.filters.push(fc.filters[0]!);
    },
  },
  {
    rule: "grpc.route.empty_virtual_host",
    base: "grpc",
    what: "a virtual host without routes",
    breakIt: (s) => (s.routes[0]!.virtualHosts[0]!.routes = []),
  },
  {
    rule: "grpc.cluster.type",
    base: "grpc",
    what: "a STATIC cluster",
    breakIt: (
      s,
    ) => (edsCluster(s).clusterDiscoveryType = { case: "type", value: Cluster_DiscoveryType.STATIC }),
  },
  {
    rule: "grpc.cluster.lb_policy",
    base: "grpc",
    what: "MAGLEV",
    breakIt: (s) => (edsCluster(s).lbPolicy = Cluster_LbPolicy.MAGLEV),
  },
  {
    rule: "grpc.cluster.eds_source",
    base: "grpc",
    what: "EDS from a path",
    breakIt: (
      s,
    ) => (edsCluster(s).edsClusterConfig!.edsConfig!.configSourceSpecifier = {
      case: "path",
      value: "/tmp/x",
    }),
  },
  {
    rule: "grpc.eds.locality_weight",
    base: "grpc",
    what: "a locality without weight",
    breakIt: (
      s,
    ) => (s.endpoints.find((x) => x.endpoints.length > 0)!.endpoints[0]!.loadBalancingWeight = undefined),
  },
  {
    rule: "grpc.eds.duplicate_locality",
    base: "grpc",
    what: "one locality twice in a priority",
    breakIt: (s) => {
      const e = s.endpoints.find((x) => x.endpoints.length > 0)!;
      e.endpoints.push(clone(ClusterLoadAssignmentSchema, e).endpoints[0]!);
    },
  },
  {
    rule: "grpc.eds.duplicate_address",
    base: "grpc",
    what: "one address twice",
    breakIt: (s) => {
      const loc = s.endpoints.find((x) => x.endpoints.length > 0)!.endpoints[0]!;
      loc.lbEndpoints.push(loc.lbEndpoints[0]!);
    },
  },
  {
    rule: "grpc.tls.certificate_provider",
    base: "grpc",
    what: "a certificate provider instance the bootstrap lacks",
    breakIt: (s) => {
      const c = s.clusters.find((x) => x.transportSocket)!;
      const tls = anyUnpack(c.transportSocket!.configType.value as never, UpstreamTlsContextSchema)!;
      tls.commonTlsContext!.tlsCertificateProviderInstance!.instanceName = "spire";
      c.transportSocket!.configType = { case: "typedConfig", value: anyPack(UpstreamTlsContextSchema, tls) };
    },
  },
];

/** Renames the SDS secrets of the first chain's downstream TLS context with `rename`. */
function editTls(fc: FilterChain, rename: (name: string) => string): void {
  const ts = fc.transportSocket!;
  if (ts.configType.case !== "typedConfig") throw new Error("no typed transport socket");
  const any = ts.configType.value;
  const tls = anyUnpack(any, DownstreamTlsContextSchema)!;
  for (const s of tls.commonTlsContext!.tlsCertificateSdsSecretConfigs) s.name = rename(s.name);
  ts.configType = { case: "typedConfig", value: anyPack(DownstreamTlsContextSchema, tls) };
}

function editGrpcHcm(s: Set, edit: (h: HttpConnectionManager) => void): void {
  const l = s.listeners.find((x) => x.apiListener)!;
  const hcm = anyUnpack(l.apiListener!.apiListener!, HttpConnectionManagerSchema)!;
  edit(hcm);
  l.apiListener!.apiListener = anyPack(HttpConnectionManagerSchema, hcm);
}

describe("checkSemantics()", () => {
  for (const [name, base] of Object.entries(BASES)) {
    test(`passes translation output as it is (${name}: ${base.set.listeners.length} listeners, ${base.set.clusters.length} clusters)`, () => {
      expect(rulesOf(name as BaseName, fresh(name as BaseName))).toEqual([]);
    });
  }

  for (const c of CASES) {
    test(`${c.rule} catches ${c.what} (${c.base})`, () => {
      const set = fresh(c.base);
      c.breakIt(set);
      expect(rulesOf(c.base, set)).toContain(c.rule);
    });
  }

  test("every rule id the checker reports has a case here", () => {
    const tested = new Set(CASES.map((c) => c.rule));
    const files = [
      "semantic_listeners.ts",
      "semantic_routes.ts",
      "semantic_clusters.ts",
      "semantic_messages.ts",
      "semantic.ts",
    ];
    const declared = new Set(
      files.flatMap((f) =>
        [...readFileSync(join(ROOT, "mod/pilot/check", f), "utf8").matchAll(/violation\(\s*"([a-z0-9_.]+)"/g)]
          .map((m) => m[1]!)
      ),
    );
    expect([...declared].filter((r) => !tested.has(r)).sort()).toEqual([]);
  });

  test("a route to an unknown cluster passes over RDS, where Envoy answers 503 instead of refusing", () => {
    const set = fresh("sidecar");
    firstAction(set).clusterSpecifier = { case: "cluster", value: "outbound|1||nowhere" };
    expect(rulesOf("sidecar", set)).toEqual([]);
  });

  test("a partial proxyless set skips the references between types", () => {
    const set = fresh("grpc");
    set.routes = [];
    set.endpoints = [];
    const b = BASES.grpc;
    expect(checkSemantics(set, { proxyKind: b.kind, partial: true }).map((v) => v.rule)).toEqual([]);
    expect(checkSemantics(set, { proxyKind: b.kind }).map((v) => v.rule)).toContain("rds.missing");
  });

  test("a violation names the resource, the path inside it and what Envoy would say", () => {
    const set = fresh("gateway");
    named(set.listeners, "0.0.0.0_443").filterChains[0]!.filterChainMatch!.serverNames = [
      "shop*.example.com",
    ];
    const v = checkSemantics(set, { proxyKind: "router", secretNames: BASES.gateway.secretNames });
    expect(v).toEqual([{
      rule: "listener.server_name_wildcard",
      typeUrl: "type.googleapis.com/envoy.config.listener.v3.Listener",
      resource: "0.0.0.0_443",
      path: "filter_chains[0].filter_chain_match.server_names[0]",
      message:
        `error adding listener '0.0.0.0_443': partial wildcards are not supported in "server_names" (shop*.example.com)`,
    }]);
  });
});
