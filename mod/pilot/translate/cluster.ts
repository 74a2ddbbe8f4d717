/**
 * Clusters (CDS): `outbound|PORT|SUBSET|HOST` for every reachable service port and subset,
 * `inbound|PORT||` for every port the proxy's workload serves, and `BlackHoleCluster` and
 * `PassthroughCluster` for traffic outside the registry. Each outbound cluster is a skeleton
 * per discovery type, then an ordered list of configurers, each changing one part. A
 * DestinationRule's `proxyProtocol` wraps the cluster's transport socket (TLS, or plain bytes
 * when there is none) in Envoy's upstream PROXY protocol socket, as Istio does, so every
 * connection to an endpoint starts with a PROXY header (V1 text or V2 binary) naming the
 * original client. When the mesh's default tracing names a Zipkin address that is not a
 * registry service, sidecars and routers also get the `zipkin` cluster dialling it
 * (telemetry.ts).
 *
 * @module
 */
import { create } from "@bufbuild/protobuf";
import {
  type Cluster,
  Cluster_DiscoveryType,
  Cluster_DnsLookupFamily,
  Cluster_EdsClusterConfigSchema,
  Cluster_LbPolicy,
  ClusterSchema,
} from "#gen/envoy/config/cluster/v3/cluster_pb.ts";
import { ClusterLoadAssignmentSchema } from "#gen/envoy/config/endpoint/v3/endpoint_pb.ts";
import { HttpProtocolOptionsSchema } from "#gen/envoy/extensions/upstreams/http/v3/http_protocol_options_pb.ts";
import { type TransportSocket, TransportSocketSchema } from "#gen/envoy/config/core/v3/base_pb.ts";
import { ProxyProtocolConfig_Version } from "#gen/envoy/config/core/v3/proxy_protocol_pb.ts";
import { ProxyProtocolUpstreamTransportSchema } from "#gen/envoy/extensions/transport_sockets/proxy_protocol/v3/upstream_proxy_protocol_pb.ts";
import { RawBufferSchema } from "#gen/envoy/extensions/transport_sockets/raw_buffer/v3/raw_buffer_pb.ts";
import type { PushContext } from "../model/push_context.ts";
import type { Proxy } from "../model/proxy.ts";
import { BLACKHOLE_CLUSTER, inboundClusterName, PASSTHROUGH_CLUSTER } from "./cluster_name.ts";
import { type Discovery, type OutboundClusterPlan, outboundClusterPlans } from "./cluster_plan.ts";
import {
  applyConnectionPool,
  applyHttpProtocolOptions,
  applyLoadBalancer,
  applyLocalityLbConfig,
  applyOutlierDetection,
  HTTP_PROTOCOL_OPTIONS_KEY,
} from "./cluster_traffic_policy.ts";
import { adsConfigSource, byString, durationFromString, socketAddress, typedConfig } from "./conversion.ts";
import { planLoadAssignment } from "./endpoint.ts";
import { inboundTargets } from "./listener_inbound.ts";
import { proxyLocality } from "./proxy_scope.ts";
import { sniDnatClusters } from "./sni_dnat.ts";
import type { ClientTLSSettings, TrafficPolicy } from "../../api/kinds/networking.ts";
import { effectiveMtlsMode } from "./authn.ts";
import { upstreamTlsContext, upstreamTransportSocket } from "./tls.ts";
import { isIP } from "../../api/schema.ts";
import { lookupProviderTarget } from "./ext_authz.ts";
import { meshZipkinTarget } from "./telemetry.ts";

/** What an outbound cluster configurer may read besides the plan. */
export interface ClusterContext {
  readonly push: PushContext;
  readonly proxy: Proxy;
  /** The proxy's locality ("region/zone/subzone"), if known. */
  readonly locality?: string;
}

/** Changes one part of an outbound cluster according to its plan. */
export type ClusterConfigurer = (cluster: Cluster, plan: OutboundClusterPlan, ctx: ClusterContext) => void;

const DISCOVERY_TYPES: Readonly<Record<Discovery, Cluster_DiscoveryType>> = {
  EDS: Cluster_DiscoveryType.EDS,
  STRICT_DNS: Cluster_DiscoveryType.STRICT_DNS,
  LOGICAL_DNS: Cluster_DiscoveryType.LOGICAL_DNS,
  ORIGINAL_DST: Cluster_DiscoveryType.ORIGINAL_DST,
};

/** The bare cluster for a plan: name, discovery type and where its hosts come from. */
function clusterSkeleton(plan: OutboundClusterPlan, ctx: ClusterContext): Cluster {
  const cluster = create(ClusterSchema, {
    name: plan.name,
    clusterDiscoveryType: { case: "type", value: DISCOVERY_TYPES[plan.discovery] },
    connectTimeout: durationFromString(ctx.push.mesh.connectTimeout),
  });
  switch (plan.discovery) {
    case "EDS":
      cluster.edsClusterConfig = create(Cluster_EdsClusterConfigSchema, {
        edsConfig: adsConfigSource(),
        serviceName: plan.name,
      });
      break;
    case "STRICT_DNS":
    case "LOGICAL_DNS":
      cluster.loadAssignment = planLoadAssignment(plan, ctx.locality);
      cluster.dnsLookupFamily = Cluster_DnsLookupFamily.V4_ONLY;
      cluster.respectDnsTtl = true;
      break;
    case "ORIGINAL_DST":
      cluster.lbPolicy = Cluster_LbPolicy.CLUSTER_PROVIDED;
      break;
  }
  return cluster;
}

/**
 * Auto-mTLS (MeshConfig `enableAutoMtls`), for a cluster no DestinationRule `tls` applies to:
 * ISTIO_MUTUAL when the mesh enables it, the service is inside the mesh, it has endpoints, all
 * of them carry a meshd identity (`tlsMode: istio`), and none of their workloads has mTLS
 * disabled (PeerAuthentication DISABLE for the endpoint's port); otherwise undefined
 * (plaintext). Istio decides per endpoint with transport socket matches; deciding per cluster
 * keeps every endpoint of a cluster on one transport and the output simple and deterministic.
 */
export function autoMtlsSettings(
  plan: OutboundClusterPlan,
  push: PushContext,
): ClientTLSSettings | undefined {
  if (!push.mesh.enableAutoMtls || plan.service.location === "MESH_EXTERNAL") return undefined;
  if (plan.endpoints.length === 0 || plan.endpoints.some((e) => e.tlsMode !== "istio")) return undefined;
  const disabled = plan.endpoints.some((e) =>
    effectiveMtlsMode(push, { namespace: e.namespace, labels: e.labels }, e.port) === "DISABLE"
  );
  return disabled ? undefined : { mode: "ISTIO_MUTUAL" };
}

/** The client TLS settings of a planned cluster: its DestinationRule's `tls`, else auto-mTLS. */
export function clusterTlsSettings(
  plan: OutboundClusterPlan,
  push: PushContext,
): ClientTLSSettings | undefined {
  return plan.policy.tls?.mode ? plan.policy.tls : autoMtlsSettings(plan, push);
}

/** The transport socket that sends a PROXY protocol header before the wrapped socket's bytes. */
export const PROXY_PROTOCOL_TRANSPORT_SOCKET = "envoy.transport_sockets.upstream_proxy_protocol";
/** The transport socket that passes bytes as they are (plaintext). */
export const RAW_BUFFER_TRANSPORT_SOCKET = "envoy.transport_sockets.raw_buffer";

/** A DestinationRule's `proxyProtocol`. */
export type ProxyProtocolSettings = NonNullable<TrafficPolicy["proxyProtocol"]>;

const PROXY_PROTOCOL_VERSIONS: Readonly<Record<"V1" | "V2", ProxyProtocolConfig_Version>> = {
  V1: ProxyProtocolConfig_Version.V1,
  V2: ProxyProtocolConfig_Version.V2,
};

/** The plaintext transport socket, for a PROXY protocol socket to wrap when the cluster has none. */
function rawBufferTransportSocket(): TransportSocket {
  return create(TransportSocketSchema, {
    name: RAW_BUFFER_TRANSPORT_SOCKET,
    configType: { case: "typedConfig", value: typedConfig(RawBufferSchema, create(RawBufferSchema, {})) },
  });
}

/** `inner` (plaintext when undefined) wrapped so that each connection starts with a PROXY header. */
export function proxyProtocolTransportSocket(
  settings: ProxyProtocolSettings,
  inner: TransportSocket | undefined,
): TransportSocket {
  const wrapper = create(ProxyProtocolUpstreamTransportSchema, {
    // An unset version is V1, the proto's zero value.
    config: { version: PROXY_PROTOCOL_VERSIONS[settings.version ?? "V1"] },
    transportSocket: inner ?? rawBufferTransportSocket(),
  });
  return create(TransportSocketSchema, {
    name: PROXY_PROTOCOL_TRANSPORT_SOCKET,
    configType: { case: "typedConfig", value: typedConfig(ProxyProtocolUpstreamTransportSchema, wrapper) },
  });
}

/**
 * A DestinationRule's `proxyProtocol` on a cluster: its transport socket, and that of each
 * transport socket match, wrapped in the PROXY protocol socket (a cluster without one gets the
 * plaintext socket wrapped). Comes after TLS, so that the header goes before the handshake.
 */
export function applyProxyProtocol(cluster: Cluster, settings: ProxyProtocolSettings | undefined): void {
  if (!settings) return;
  for (const m of cluster.transportSocketMatches) {
    m.transportSocket = proxyProtocolTransportSocket(settings, m.transportSocket);
  }
  if (cluster.transportSocket || cluster.transportSocketMatches.length === 0) {
    cluster.transportSocket = proxyProtocolTransportSocket(settings, cluster.transportSocket);
  }
}

/**
 * The configurers every outbound cluster goes through, in order. Outlier detection comes
 * before locality (failover needs it); TLS (the DestinationRule's, else auto-mTLS) comes
 * next to last, then the PROXY protocol wrapping it.
 */
export const OUTBOUND_CLUSTER_CONFIGURERS: readonly ClusterConfigurer[] = [
  (c, plan) => applyConnectionPool(c, plan.policy.connectionPool, plan.policy.retryBudget),
  (c, plan) => applyHttpProtocolOptions(c, plan.port, plan.policy.connectionPool),
  (c, plan) => applyOutlierDetection(c, plan.policy.outlierDetection),
  (c, plan) => applyLoadBalancer(c, plan.policy.loadBalancer),
  (c, plan) => applyLocalityLbConfig(c, plan.policy.loadBalancer),
  (c, plan, ctx) => {
    const tls = clusterTlsSettings(plan, ctx.push);
    if (!tls) return;
    const context = upstreamTlsContext(tls, {
      host: plan.service.hostname,
      port: plan.port.number,
      protocol: plan.port.protocol,
      subset: plan.subset,
      identities: plan.identities,
    });
    if (context) c.transportSocket = upstreamTransportSocket(context);
  },
  (c, plan) => applyProxyProtocol(c, plan.policy.proxyProtocol),
];

/** Renders one planned outbound cluster. */
export function outboundCluster(plan: OutboundClusterPlan, ctx: ClusterContext): Cluster {
  const cluster = clusterSkeleton(plan, ctx);
  for (const configure of OUTBOUND_CLUSTER_CONFIGURERS) configure(cluster, plan, ctx);
  return cluster;
}

/**
 * `inbound|PORT||` per inbound port (listener_inbound.ts's `inboundTargets`: the Sidecar's
 * ingress ports, else the ports the workload serves): STATIC to the port's target, HTTP/2 for
 * HTTP2 and gRPC ports, with the port's connection pool limits.
 */
export function inboundClusters(push: PushContext, proxy: Proxy): Cluster[] {
  return inboundTargets(push, proxy).map(({ port, target, servicePort, connectionPool: pool }) => {
    const name = inboundClusterName(port);
    const cluster = create(ClusterSchema, {
      name,
      clusterDiscoveryType: { case: "type", value: Cluster_DiscoveryType.STATIC },
      connectTimeout: durationFromString(push.mesh.connectTimeout),
      loadAssignment: create(ClusterLoadAssignmentSchema, {
        clusterName: name,
        endpoints: [{
          lbEndpoints: [{
            hostIdentifier: {
              case: "endpoint",
              value: { address: socketAddress(target.address, target.port) },
            },
          }],
        }],
      }),
    });
    applyConnectionPool(cluster, pool);
    applyHttpProtocolOptions(cluster, servicePort, pool);
    return cluster;
  });
}

/** `BlackHoleCluster`: STATIC without endpoints, so every connection fails at once. */
export function blackHoleCluster(push: PushContext): Cluster {
  return create(ClusterSchema, {
    name: BLACKHOLE_CLUSTER,
    clusterDiscoveryType: { case: "type", value: Cluster_DiscoveryType.STATIC },
    connectTimeout: durationFromString(push.mesh.connectTimeout),
    loadAssignment: { clusterName: BLACKHOLE_CLUSTER },
  });
}

/**
 * `PassthroughCluster`: ORIGINAL_DST, so traffic goes where the application sent it, speaking
 * whichever HTTP version the client spoke.
 */
export function passthroughCluster(push: PushContext): Cluster {
  const cluster = create(ClusterSchema, {
    name: PASSTHROUGH_CLUSTER,
    clusterDiscoveryType: { case: "type", value: Cluster_DiscoveryType.ORIGINAL_DST },
    lbPolicy: Cluster_LbPolicy.CLUSTER_PROVIDED,
    connectTimeout: durationFromString(push.mesh.connectTimeout),
  });
  applyConnectionPool(cluster, undefined);
  cluster.typedExtensionProtocolOptions[HTTP_PROTOCOL_OPTIONS_KEY] = typedConfig(
    HttpProtocolOptionsSchema,
    create(HttpProtocolOptionsSchema, {
      upstreamProtocolOptions: {
        case: "useDownstreamProtocolConfig",
        value: { httpProtocolOptions: {}, http2ProtocolOptions: {} },
      },
    }),
  );
  return cluster;
}

/**
 * The `zipkin` cluster for the mesh's default Zipkin address when no registry service visible to
 * `proxy` has that host and port (none otherwise): STATIC for an IP address, STRICT_DNS for a
 * name, as Istio's bootstrap builds it.
 */
export function meshZipkinClusters(push: PushContext, proxy: Proxy): Cluster[] {
  const target = meshZipkinTarget(push.mesh, (s, p) => lookupProviderTarget(push, proxy, s, p));
  if (!target?.direct) return [];
  const { host, port } = target.direct;
  const name = target.collector.cluster;
  const ip = isIP(host);
  return [create(ClusterSchema, {
    name,
    clusterDiscoveryType: {
      case: "type",
      value: ip ? Cluster_DiscoveryType.STATIC : Cluster_DiscoveryType.STRICT_DNS,
    },
    connectTimeout: durationFromString(push.mesh.connectTimeout),
    ...(ip ? {} : { dnsLookupFamily: Cluster_DnsLookupFamily.V4_ONLY, respectDnsTtl: true }),
    loadAssignment: create(ClusterLoadAssignmentSchema, {
      clusterName: name,
      endpoints: [{
        lbEndpoints: [{
          hostIdentifier: { case: "endpoint", value: { address: socketAddress(host, port) } },
        }],
      }],
    }),
  })];
}

/**
 * Every cluster of a sidecar or router, sorted by name: outbound per reachable service port
 * and subset, inbound per served port (sidecars only), BlackHoleCluster and PassthroughCluster,
 * and the mesh's `zipkin` cluster when it needs one.
 */
export function buildClusters(push: PushContext, proxy: Proxy): Cluster[] {
  const ctx: ClusterContext = { push, proxy, locality: proxyLocality(push, proxy) };
  const clusters = outboundClusterPlans(push, proxy).map((plan) => outboundCluster(plan, ctx));
  if (proxy.type === "sidecar") clusters.push(...inboundClusters(push, proxy));
  // A router's AUTO_PASSTHROUGH servers forward by SNI to outbound_.PORT_.SUBSET_.HOST clusters.
  if (proxy.type === "router") clusters.push(...sniDnatClusters(push, proxy, clusters));
  clusters.push(blackHoleCluster(push), passthroughCluster(push), ...meshZipkinClusters(push, proxy));
  return clusters.sort((a, b) => byString(a.name, b.name));
}
