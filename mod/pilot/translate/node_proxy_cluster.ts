/**
 * A node proxy's clusters (CDS) and endpoints (EDS): the sidecar's outbound cluster plans
 * (cluster_plan.ts) rendered by the sidecar's cluster and endpoint builders, with what an L4
 * node proxy needs to route by address and pick a transport per endpoint, in the metadata Istio
 * uses for it:
 *
 * - Cluster `filter_metadata["istio"]`: `services` (Istio's list of `{host, name, namespace}`,
 *   each here also with `addresses`: the declared virtual IPs, else the one allocated from
 *   MeshConfig `autoAllocateVipRange`, see model/vip.ts), `port`, `protocol` and `subset`.
 * - Endpoint `filter_metadata["envoy.transport_socket_match"]`: `tlsMode` (`istio` when the node
 *   proxy speaks mTLS to it, else `disabled`) and `tunnel: "http"` for workloads behind a node
 *   proxy (label `networking.istio.io/tunnel: http`), reached over HBONE; endpoint
 *   `filter_metadata["istio"]`: `identities`, the SPIFFE identities it may present, and, for
 *   the destination labels of telemetry, Istio's `workload`
 *   (`NAME;NAMESPACE;CANONICAL_SERVICE;CANONICAL_REVISION;CLUSTER`, see {@link workloadMetadata})
 *   with the workload's `app` and `version` labels where it has them.
 *
 * Clusters carry Istio's transport socket matches (mTLS for `tlsMode: istio`, else plaintext),
 * so a real Envoy reads the same choice. What an L4 proxy cannot do is left out: clusters that
 * pass traffic to its original destination (resolution NONE without endpoints, PASSTHROUGH)
 * are not sent (traffic to them passes through), consistent hashing becomes LEAST_REQUEST (there
 * is no request to hash), and a DestinationRule's `proxyProtocol` and TLS origination (SIMPLE,
 * MUTUAL) are not applied (such endpoints are plaintext to the node proxy).
 *
 * @module
 */
import { create, type JsonObject } from "@bufbuild/protobuf";
import {
  type Cluster,
  Cluster_DiscoveryType,
  Cluster_LbPolicy,
  Cluster_TransportSocketMatchSchema,
  ClusterSchema,
} from "#gen/envoy/config/cluster/v3/cluster_pb.ts";
import type { ClusterLoadAssignment } from "#gen/envoy/config/endpoint/v3/endpoint_pb.ts";
import { MetadataSchema, TransportSocketSchema } from "#gen/envoy/config/core/v3/base_pb.ts";
import { RawBufferSchema } from "#gen/envoy/extensions/transport_sockets/raw_buffer/v3/raw_buffer_pb.ts";
import { canonicalLabels } from "../../api/mod.ts";
import type { PushContext } from "../model/push_context.ts";
import type { Proxy } from "../model/proxy.ts";
import type { Endpoint, Service } from "../model/service.ts";
import { allocateVips, vipKey } from "../model/vip.ts";
import { effectiveMtlsMode } from "./authn.ts";
import { inboundClusters, outboundCluster, RAW_BUFFER_TRANSPORT_SOCKET } from "./cluster.ts";
import { type OutboundClusterPlan, outboundClusterPlans } from "./cluster_plan.ts";
import { byString, durationFromString, typedConfig } from "./conversion.ts";
import { networkView, planLoadAssignment, TRANSPORT_SOCKET_MATCH_KEY } from "./endpoint.ts";
import { proxyLocality } from "./proxy_scope.ts";
import { spiffeId, upstreamTlsContext, upstreamTransportSocket } from "./tls.ts";

/** The `filter_metadata` key of Istio's own cluster and endpoint metadata. */
export const ISTIO_METADATA_KEY = "istio";
/** Istio's label for workloads reached over HBONE (value {@link TUNNEL_HTTP}). */
export const TUNNEL_LABEL = "networking.istio.io/tunnel";
/** The value of {@link TUNNEL_LABEL} (and of the endpoint metadata `tunnel`) for HBONE. */
export const TUNNEL_HTTP = "http";
/** The ORIGINAL_DST cluster inbound traffic to ports the workload does not serve goes to. */
export const INBOUND_PASSTHROUGH_CLUSTER = "InboundPassthroughCluster";

/** How a node proxy reaches one endpoint (the data plane's `EndpointTransport`). */
export type NodeProxyTransport = "hbone" | "mtls" | "plaintext";

/** Allocated virtual IPs per PushContext (allocation reads every service, once per push). */
const vipsByPush = new WeakMap<PushContext, ReadonlyMap<string, string>>();

/** The virtual IPs allocated in a push (see model/vip.ts), by `NAMESPACE/HOST`. */
export function allocatedVips(push: PushContext): ReadonlyMap<string, string> {
  let vips = vipsByPush.get(push);
  if (!vips) {
    vips = allocateVips(push.services, push.mesh.autoAllocateVipRange);
    vipsByPush.set(push, vips);
  }
  return vips;
}

/** A service's virtual IPs: those it declares, else the one allocated to it, else none. */
export function serviceAddresses(push: PushContext, service: Service): readonly string[] {
  if (service.addresses.length > 0) return service.addresses;
  const vip = allocatedVips(push).get(vipKey(service));
  return vip ? [vip] : [];
}

/**
 * The transport to one endpoint of a planned cluster: the DestinationRule's `tls` when it sets
 * a mode (ISTIO_MUTUAL: mTLS, any other: plaintext), else auto-mTLS per endpoint (the mesh
 * enables it, the service is in the mesh, the workload has an identity and does not disable
 * mTLS on the port). mTLS to a workload labelled `networking.istio.io/tunnel: http` is HBONE.
 */
export function endpointTransport(
  plan: OutboundClusterPlan,
  e: Endpoint,
  push: PushContext,
): NodeProxyTransport {
  const tunnel = e.labels[TUNNEL_LABEL] === TUNNEL_HTTP;
  const mode = plan.policy.tls?.mode;
  if (mode) return mode !== "ISTIO_MUTUAL" ? "plaintext" : tunnel ? "hbone" : "mtls";
  if (!push.mesh.enableAutoMtls || plan.service.location === "MESH_EXTERNAL" || e.tlsMode !== "istio") {
    return "plaintext";
  }
  if (effectiveMtlsMode(push, { namespace: e.namespace, labels: e.labels }, e.port) === "DISABLE") {
    return "plaintext";
  }
  return tunnel ? "hbone" : "mtls";
}

/** The SPIFFE identities an endpoint may present: its own, else the service port's. */
function endpointIdentities(plan: OutboundClusterPlan, e: Endpoint | undefined, push: PushContext): string[] {
  return e?.serviceAccount ? [spiffeId(push.mesh.trustDomain, e.namespace, e.serviceAccount)] : [
    ...plan.identities,
  ];
}

/** Istio's label naming the workload an entry belongs to. */
export const WORKLOAD_NAME_LABEL = "service.istio.io/workload-name";

/** The workload an endpoint belongs to: its workload-name label, else its WorkloadEntry's name. */
function workloadName(e: Endpoint): string {
  const label = e.labels[WORKLOAD_NAME_LABEL];
  if (label) return label;
  const m = /\/WorkloadEntry\/[^/]+\/([^/]+)$/.exec(e.source);
  return m?.[1] ?? "";
}

/**
 * An endpoint's workload metadata for telemetry (see the module notes): Istio's `workload`
 * string (the registry does not say which cluster an endpoint is in, so that part is empty) and
 * the `app` and `version` labels it has.
 */
export function workloadMetadata(e: Endpoint): JsonObject {
  const name = workloadName(e);
  const canonical = canonicalLabels(e.labels, name);
  return {
    workload: [name, e.namespace, canonical.service, canonical.revision, ""].join(";"),
    ...(e.labels["app"] ? { app: e.labels["app"] } : {}),
    ...(e.labels["version"] ? { version: e.labels["version"] } : {}),
  };
}

/** Plans the node proxy serves: every one whose traffic does not pass through as addressed. */
export function nodeProxyPlans(push: PushContext, proxy: Proxy): OutboundClusterPlan[] {
  return outboundClusterPlans(push, proxy).filter((p) =>
    p.discovery !== "ORIGINAL_DST" && p.policy.loadBalancer?.simple !== "PASSTHROUGH"
  );
}

function clusterMetadata(plan: OutboundClusterPlan, push: PushContext): JsonObject {
  const s = plan.service;
  const short = s.hostname.split(".")[0] ?? s.hostname;
  return {
    services: [{
      host: s.hostname,
      name: short,
      namespace: s.namespace,
      addresses: [...serviceAddresses(push, s)],
    }],
    port: plan.port.number,
    protocol: plan.port.protocol,
    subset: plan.subset,
  };
}

/** Istio's transport socket matches: mTLS for endpoints with `tlsMode: istio`, else plaintext. */
function applyTransportSocketMatches(cluster: Cluster, plan: OutboundClusterPlan, push: PushContext): void {
  cluster.transportSocket = undefined;
  if (!plan.endpoints.some((e) => endpointTransport(plan, e, push) !== "plaintext")) return;
  const mtls = upstreamTlsContext({ mode: "ISTIO_MUTUAL" }, {
    host: plan.service.hostname,
    port: plan.port.number,
    protocol: plan.port.protocol,
    subset: plan.subset,
    identities: plan.identities,
  })!;
  cluster.transportSocketMatches = [
    create(Cluster_TransportSocketMatchSchema, {
      name: "tlsMode-istio",
      match: { tlsMode: "istio" },
      transportSocket: upstreamTransportSocket(mtls),
    }),
    create(Cluster_TransportSocketMatchSchema, {
      name: "tlsMode-disabled",
      match: {},
      transportSocket: create(TransportSocketSchema, {
        name: RAW_BUFFER_TRANSPORT_SOCKET,
        configType: { case: "typedConfig", value: typedConfig(RawBufferSchema, create(RawBufferSchema, {})) },
      }),
    }),
  ];
}

/**
 * Sets each host's transport and identities (see the module notes). Hosts that are not one of
 * the plan's endpoints (a network's gateway) keep the `tlsMode` they were given and carry the
 * service port's identities.
 */
function decorateAssignment(cla: ClusterLoadAssignment, plan: OutboundClusterPlan, push: PushContext): void {
  const byAddress = new Map(plan.endpoints.map((e) => [`${e.address}|${e.port}`, e]));
  for (const group of cla.endpoints) {
    for (const lb of group.lbEndpoints) {
      if (lb.hostIdentifier.case !== "endpoint") continue;
      const sa = lb.hostIdentifier.value.address?.address;
      const key = sa?.case === "socketAddress"
        ? `${sa.value.address}|${
          sa.value.portSpecifier.case === "portValue" ? sa.value.portSpecifier.value : 0
        }`
        : "";
      const e = byAddress.get(key);
      const before = lb.metadata?.filterMetadata[TRANSPORT_SOCKET_MATCH_KEY]?.tlsMode;
      const transport = e ? endpointTransport(plan, e, push) : before === "istio" ? "mtls" : "plaintext";
      lb.metadata = create(MetadataSchema, {
        filterMetadata: {
          [TRANSPORT_SOCKET_MATCH_KEY]: {
            tlsMode: transport === "plaintext" ? "disabled" : "istio",
            ...(transport === "hbone" ? { tunnel: TUNNEL_HTTP } : {}),
          },
          [ISTIO_METADATA_KEY]: {
            identities: endpointIdentities(plan, e, push),
            ...(e ? workloadMetadata(e) : {}),
          },
        },
      });
    }
  }
}

/** One outbound cluster of a node proxy (see the module notes). */
export function nodeProxyCluster(
  plan: OutboundClusterPlan,
  push: PushContext,
  proxy: Proxy,
  locality: string | undefined,
): Cluster {
  const cluster = outboundCluster(plan, { push, proxy, ...(locality ? { locality } : {}) });
  if (cluster.lbPolicy === Cluster_LbPolicy.RING_HASH || cluster.lbPolicy === Cluster_LbPolicy.MAGLEV) {
    cluster.lbPolicy = Cluster_LbPolicy.LEAST_REQUEST;
    cluster.lbConfig = { case: undefined };
  }
  applyTransportSocketMatches(cluster, plan, push);
  if (cluster.loadAssignment) decorateAssignment(cluster.loadAssignment, plan, push);
  cluster.metadata = create(MetadataSchema, {
    filterMetadata: { [ISTIO_METADATA_KEY]: clusterMetadata(plan, push) },
  });
  return cluster;
}

/** The ORIGINAL_DST cluster of the inbound passthrough chain. */
export function inboundPassthroughCluster(push: PushContext): Cluster {
  return create(ClusterSchema, {
    name: INBOUND_PASSTHROUGH_CLUSTER,
    clusterDiscoveryType: { case: "type", value: Cluster_DiscoveryType.ORIGINAL_DST },
    lbPolicy: Cluster_LbPolicy.CLUSTER_PROVIDED,
    connectTimeout: durationFromString(push.mesh.connectTimeout),
  });
}

/**
 * A node proxy's clusters, sorted by name: one per service port and subset it can reach
 * ({@link nodeProxyPlans}), `inbound|PORT||` per port its machine's workload serves, and
 * {@link INBOUND_PASSTHROUGH_CLUSTER}.
 */
export function buildNodeProxyClusters(push: PushContext, proxy: Proxy): Cluster[] {
  const locality = proxyLocality(push, proxy);
  return [
    ...nodeProxyPlans(push, proxy).map((plan) => nodeProxyCluster(plan, push, proxy, locality)),
    ...inboundClusters(push, proxy),
    inboundPassthroughCluster(push),
  ].sort((a, b) => byString(a.name, b.name));
}

/** One ClusterLoadAssignment per EDS cluster of {@link buildNodeProxyClusters}, in the same order. */
export function buildNodeProxyEndpoints(push: PushContext, proxy: Proxy): ClusterLoadAssignment[] {
  const locality = proxyLocality(push, proxy);
  const view = networkView(push, proxy);
  return nodeProxyPlans(push, proxy)
    .filter((p) => p.discovery === "EDS")
    .map((p) => {
      const cla = planLoadAssignment(p, locality, view);
      decorateAssignment(cla, p, push);
      return cla;
    });
}
