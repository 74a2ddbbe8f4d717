/**
 * Envoy's semantic checks on clusters (CDS) and endpoints (EDS, and the load_assignment of
 * STATIC and DNS clusters): what Envoy's cluster manager and cluster implementations refuse
 * although every field is valid on its own (source/common/upstream/ and
 * source/extensions/clusters/; docs: api-v3/config/cluster/v3/cluster.proto,
 * intro/arch_overview/upstream/service_discovery), plus what gRPC's xds_cluster.cc and
 * xds_endpoint.cc refuse for proxyless clients.
 *
 * @module
 */
import {
  type Cluster,
  Cluster_DiscoveryType,
  Cluster_LbPolicy,
} from "#gen/envoy/config/cluster/v3/cluster_pb.ts";
import type { ClusterLoadAssignment } from "#gen/envoy/config/endpoint/v3/endpoint_pb.ts";
import {
  duplicates,
  isIpLiteral,
  type Place,
  type ProxyKind,
  TYPE,
  typeUrlOf,
  under,
  violation,
} from "./semantic_context.ts";
import type { Violation } from "./violation.ts";

/**
 * Upstream protocol options Envoy registers (typed_extension_protocol_options is keyed by the
 * extension's name; Envoy looks the factory up by the Any's type or the key, else "Didn't find a
 * registered network or http filter or protocol options implementation for name").
 */
const PROTOCOL_OPTIONS = new Set([
  "envoy.extensions.upstreams.http.v3.HttpProtocolOptions",
  "envoy.extensions.upstreams.tcp.v3.TcpProtocolOptions",
]);

/** The EDS name of a cluster (eds_cluster_config.service_name, else its name), or undefined. */
export function edsName(c: Cluster): string | undefined {
  if (c.clusterDiscoveryType.case !== "type" || c.clusterDiscoveryType.value !== Cluster_DiscoveryType.EDS) {
    return undefined;
  }
  return c.edsClusterConfig?.serviceName || c.name;
}

/** Checks a set's clusters. */
export function checkClusters(clusters: readonly Cluster[], kind: ProxyKind): Violation[] {
  const out: Violation[] = [];
  // cds_api_helper.cc: "duplicate cluster X found".
  for (const name of duplicates(clusters.map((c) => c.name))) {
    out.push(
      violation(
        "cluster.unique_names",
        { typeUrl: TYPE.cluster, resource: name, path: "name" },
        `duplicate cluster ${name} found`,
      ),
    );
  }
  for (const c of clusters) out.push(...checkCluster(c, kind));
  return out;
}

function checkCluster(c: Cluster, kind: ProxyKind): Violation[] {
  const out: Violation[] = [];
  const at: Place = { typeUrl: TYPE.cluster, resource: c.name, path: "" };
  const type = c.clusterDiscoveryType.case === "type" ? c.clusterDiscoveryType.value : undefined;
  const la = c.loadAssignment;
  const hosts = la?.endpoints.flatMap((e) => e.lbEndpoints) ?? [];
  if (type === Cluster_DiscoveryType.EDS) {
    // eds.cc subscribes through eds_cluster_config.eds_config; without one there is nothing to
    // subscribe to ("Missing config source specifier in envoy::config::core::v3::ConfigSource").
    const src = c.edsClusterConfig?.edsConfig?.configSourceSpecifier.case;
    if (src === undefined) {
      out.push(
        violation(
          "cluster.eds_config",
          under(at, "eds_cluster_config.eds_config"),
          `cluster ${c.name}: an EDS cluster needs eds_cluster_config.eds_config (Missing config source specifier)`,
        ),
      );
    } else if (kind === "proxyless" && src !== "ads" && src !== "self") {
      out.push(
        violation(
          "grpc.cluster.eds_source",
          under(at, "eds_cluster_config.eds_config"),
          "EDS ConfigSource is not ADS or SELF",
        ),
      );
    }
  }
  if (type === Cluster_DiscoveryType.LOGICAL_DNS && (la?.endpoints.length !== 1 || hosts.length !== 1)) {
    // logical_dns_cluster.cc.
    out.push(
      violation(
        "cluster.logical_dns_single_host",
        under(at, "load_assignment"),
        "LOGICAL_DNS clusters must have a single locality_lb_endpoint and a single lb_endpoint",
      ),
    );
  }
  if (type === Cluster_DiscoveryType.ORIGINAL_DST) {
    // cluster_factory_impl.cc / upstream_impl.cc: only CLUSTER_PROVIDED (or the deprecated
    // ORIGINAL_DST_LB); original_dst_cluster.cc: no load assignment.
    if (c.lbPolicy !== Cluster_LbPolicy.CLUSTER_PROVIDED) {
      out.push(
        violation(
          "cluster.original_dst_lb",
          under(at, "lb_policy"),
          `cluster: LB policy ${
            Cluster_LbPolicy[c.lbPolicy]
          } is not valid for Cluster type ORIGINAL_DST. Only 'CLUSTER_PROVIDED' is allowed with cluster type 'ORIGINAL_DST'`,
        ),
      );
    }
    if (hosts.length > 0) {
      out.push(
        violation(
          "cluster.original_dst_lb",
          under(at, "load_assignment"),
          "ORIGINAL_DST clusters must have no load assignment configured",
        ),
      );
    }
  } else if (type !== undefined && c.lbPolicy === Cluster_LbPolicy.CLUSTER_PROVIDED) {
    out.push(
      violation(
        "cluster.original_dst_lb",
        under(at, "lb_policy"),
        `cluster: LB policy CLUSTER_PROVIDED is not valid for Cluster type ${
          Cluster_DiscoveryType[type]
        }. 'CLUSTER_PROVIDED' is allowed only with cluster type 'ORIGINAL_DST'`,
      ),
    );
  }
  // Policy-specific settings under another policy: Envoy ignores them silently (the policy's
  // own defaults apply), which in generated config means the setting meant was lost.
  const lbConfig = c.lbConfig.case;
  const wants: Partial<Record<NonNullable<typeof lbConfig>, Cluster_LbPolicy>> = {
    ringHashLbConfig: Cluster_LbPolicy.RING_HASH,
    maglevLbConfig: Cluster_LbPolicy.MAGLEV,
    leastRequestLbConfig: Cluster_LbPolicy.LEAST_REQUEST,
    roundRobinLbConfig: Cluster_LbPolicy.ROUND_ROBIN,
  };
  const wanted = lbConfig === undefined ? undefined : wants[lbConfig];
  if (wanted !== undefined && c.lbPolicy !== wanted) {
    out.push(
      violation(
        "cluster.lb_config_policy",
        under(at, "lb_config"),
        `cluster ${c.name}: ${lbConfig} is read only with lb_policy ${Cluster_LbPolicy[wanted]}, not ${
          Cluster_LbPolicy[c.lbPolicy]
        }`,
      ),
    );
  }
  // TransportSocketMatch names key the match's stats; a repeated name is a generation error
  // (Envoy's transport_socket_match.cc keeps both; not a NACK in every version).
  for (const name of duplicates(c.transportSocketMatches.map((m) => m.name))) {
    out.push(
      violation(
        "cluster.transport_socket_match_names",
        under(at, "transport_socket_matches"),
        `transport socket match name ${name} is used more than once`,
      ),
    );
  }
  for (const [key, any] of Object.entries(c.typedExtensionProtocolOptions)) {
    const byType = [...PROTOCOL_OPTIONS].some((t) => typeUrlOf(t) === any.typeUrl);
    if (!PROTOCOL_OPTIONS.has(key) && !byType) {
      out.push(
        violation(
          "cluster.protocol_options",
          under(at, `typed_extension_protocol_options[${key}]`),
          `Didn't find a registered network or http filter or protocol options implementation for name: '${key}'`,
        ),
      );
    }
  }
  if (la) out.push(...checkAssignment(la, under(at, "load_assignment"), kind, type));
  if (kind === "proxyless") out.push(...grpcCluster(c, at, type));
  return out;
}

/**
 * xds_cluster.cc: gRPC clients accept EDS, LOGICAL_DNS and aggregate clusters, and the ROUND_ROBIN,
 * RING_HASH, LEAST_REQUEST and WRR policies ("DiscoveryType is not valid", "LB policy is not
 * supported").
 */
function grpcCluster(c: Cluster, at: Place, type: Cluster_DiscoveryType | undefined): Violation[] {
  const out: Violation[] = [];
  const aggregate = c.clusterDiscoveryType.case === "clusterType" &&
    c.clusterDiscoveryType.value.name === "envoy.clusters.aggregate";
  if (!aggregate && type !== Cluster_DiscoveryType.EDS && type !== Cluster_DiscoveryType.LOGICAL_DNS) {
    out.push(
      violation(
        "grpc.cluster.type",
        under(at, "type"),
        "DiscoveryType is not valid (gRPC accepts EDS, LOGICAL_DNS and aggregate clusters)",
      ),
    );
  }
  const lb = [Cluster_LbPolicy.ROUND_ROBIN, Cluster_LbPolicy.RING_HASH, Cluster_LbPolicy.LEAST_REQUEST];
  if (!c.loadBalancingPolicy && !lb.includes(c.lbPolicy)) {
    out.push(
      violation(
        "grpc.cluster.lb_policy",
        under(at, "lb_policy"),
        `LB policy ${Cluster_LbPolicy[c.lbPolicy]} is not supported`,
      ),
    );
  }
  return out;
}

/** Checks a set's ClusterLoadAssignments against its clusters. */
export function checkEndpoints(
  endpoints: readonly ClusterLoadAssignment[],
  clusters: readonly Cluster[],
  kind: ProxyKind,
  partial: boolean,
): Violation[] {
  const out: Violation[] = [];
  // A SotW EDS response naming one cluster twice hands the cluster two assignments.
  for (const name of duplicates(endpoints.map((e) => e.clusterName))) {
    out.push(
      violation(
        "eds.unique_names",
        { typeUrl: TYPE.endpoint, resource: name, path: "cluster_name" },
        `ClusterLoadAssignment ${name} is sent more than once`,
      ),
    );
  }
  if (!partial) {
    // Envoy's EDS cluster stays warming until its assignment arrives, and so does every listener
    // and route that names it (docs: arch_overview/upstream/cluster_manager "cluster warming").
    const have = new Set(endpoints.map((e) => e.clusterName));
    for (const c of clusters) {
      const name = edsName(c);
      if (name !== undefined && !have.has(name)) {
        out.push(
          violation(
            "eds.missing",
            { typeUrl: TYPE.cluster, resource: c.name, path: "eds_cluster_config.service_name" },
            `cluster ${c.name} uses EDS ${name}, which has no ClusterLoadAssignment; the cluster never warms`,
          ),
        );
      }
    }
  }
  for (const e of endpoints) {
    out.push(
      ...checkAssignment(
        e,
        { typeUrl: TYPE.endpoint, resource: e.clusterName, path: "" },
        kind,
        Cluster_DiscoveryType.EDS,
      ),
    );
  }
  return out;
}

/**
 * One assignment's localities and endpoints. `type` is the discovery type of the cluster it
 * belongs to: STATIC and EDS addresses are resolved as IP literals ("malformed IP address"),
 * STRICT_DNS and LOGICAL_DNS ones as names, and neither DNS type takes a pipe.
 */
function checkAssignment(
  la: ClusterLoadAssignment,
  at: Place,
  kind: ProxyKind,
  type: Cluster_DiscoveryType | undefined,
): Violation[] {
  const out: Violation[] = [];
  const priorities = new Set(la.endpoints.map((e) => e.priority));
  // Priorities are dense from 0: gRPC refuses a gap ("sparse priority list", xds_endpoint.cc);
  // Envoy fills a gap with an empty priority, which spills load as if that level failed.
  for (let p = 0; p < priorities.size; p++) {
    if (!priorities.has(p)) {
      out.push(
        violation(
          "eds.priorities_contiguous",
          under(at, "endpoints"),
          `sparse priority list: priorities ${
            [...priorities].sort((a, b) => a - b).join(",")
          } do not run 0..${priorities.size - 1}`,
        ),
      );
      break;
    }
  }
  // Locality weights take effect only with locality-weighted balancing, and then a locality
  // without one gets no traffic (docs: arch_overview/upstream/load_balancing/locality_weight);
  // gRPC ACKs an unweighted locality and ignores it, so every call fails (meshd's DESIGN notes).
  const weighted = la.endpoints.filter((e) => (e.loadBalancingWeight ?? 0) > 0).length;
  if (kind === "proxyless" && weighted < la.endpoints.length) {
    out.push(
      violation(
        "grpc.eds.locality_weight",
        under(at, "endpoints"),
        "every locality needs a load_balancing_weight > 0: gRPC ignores localities without one",
      ),
    );
  } else if (weighted > 0 && weighted < la.endpoints.length) {
    out.push(
      violation(
        "eds.locality_weights",
        under(at, "endpoints"),
        "locality weights are set on some localities but not all: those without one get no traffic",
      ),
    );
  }
  const localities = new Set<string>();
  const addresses = new Set<string>();
  la.endpoints.forEach((loc, i) => {
    const lat = under(at, `endpoints[${i}]`);
    const l = loc.locality;
    const lkey = `${loc.priority}|${l?.region ?? ""}/${l?.zone ?? ""}/${l?.subZone ?? ""}`;
    // gRPC xds_endpoint.cc: "duplicate locality ... found in priority".
    if (kind === "proxyless" && localities.has(lkey)) {
      out.push(
        violation(
          "grpc.eds.duplicate_locality",
          under(lat, "locality"),
          `duplicate locality ${lkey.split("|")[1]} found in priority ${loc.priority}`,
        ),
      );
    }
    localities.add(lkey);
    loc.lbEndpoints.forEach((lb, j) => {
      const eat = under(lat, `lb_endpoints[${j}].endpoint.address`);
      if (lb.hostIdentifier.case !== "endpoint") return;
      const addr = lb.hostIdentifier.value.address?.address;
      if (addr?.case === "socketAddress") {
        const s = addr.value;
        const ipOnly = type === Cluster_DiscoveryType.STATIC || type === Cluster_DiscoveryType.EDS;
        if (ipOnly && !isIpLiteral(s.address)) {
          out.push(
            violation(
              "eds.endpoint_address",
              under(eat, "socket_address.address"),
              `malformed IP address: ${s.address}`,
            ),
          );
        }
        if (s.portSpecifier.case === "namedPort") {
          out.push(
            violation(
              "eds.endpoint_address",
              under(eat, "socket_address.named_port"),
              "named ports are not supported for endpoints",
            ),
          );
        }
        const key = `${s.address}:${s.portSpecifier.value ?? ""}`;
        // gRPC xds_endpoint.cc (recent versions): "duplicate endpoint address".
        if (kind === "proxyless" && addresses.has(key)) {
          out.push(violation("grpc.eds.duplicate_address", eat, `duplicate endpoint address ${key}`));
        }
        addresses.add(key);
      } else if (
        addr?.case === "pipe" &&
        (kind === "proxyless" || type === Cluster_DiscoveryType.STRICT_DNS ||
          type === Cluster_DiscoveryType.LOGICAL_DNS)
      ) {
        out.push(
          violation(
            "eds.endpoint_address",
            under(eat, "pipe"),
            "a pipe address is not valid here: DNS clusters and gRPC clients need socket addresses",
          ),
        );
      } else if (addr === undefined) {
        out.push(violation("eds.endpoint_address", eat, "endpoint has no address"));
      }
    });
  });
  return out;
}
