/**
 * Endpoints (EDS): one ClusterLoadAssignment per EDS cluster, its hosts grouped by locality,
 * each host tagged with its `tlsMode` for transport socket matching, and the DestinationRule's
 * locality weights and failover priorities (by locality and by `failoverPriority` labels) applied. Proxyless gRPC's assignments are rendered
 * from these (grpc/endpoint.ts).
 *
 * In a multi-network mesh the hosts are split as Istio's "split horizon EDS" splits them
 * ({@link splitHorizon}): endpoints in the proxy's own network (or without a network, or in a
 * network without gateways) are sent as they are; those in another network are replaced by that
 * network's gateways, each weighted by the endpoints behind it, in the endpoints' locality, so
 * the proxy's mTLS connection (SNI `outbound_.PORT_.SUBSET_.HOST`) crosses the gateway's
 * AUTO_PASSTHROUGH server to them. Endpoints of another network without mTLS (`tlsMode`
 * disabled) cannot be routed by SNI and are left out, as Istio leaves them out; so are
 * endpoints without an address (a WorkloadEntry with only a `network`) that no gateway reaches.
 *
 * @module
 */
import { create } from "@bufbuild/protobuf";
import {
  type ClusterLoadAssignment,
  ClusterLoadAssignmentSchema,
} from "#gen/envoy/config/endpoint/v3/endpoint_pb.ts";
import {
  LbEndpointSchema,
  LocalityLbEndpointsSchema,
} from "#gen/envoy/config/endpoint/v3/endpoint_components_pb.ts";
import type { PushContext } from "../model/push_context.ts";
import type { Proxy } from "../model/proxy.ts";
import type { Endpoint } from "../model/service.ts";
import type { NetworkGateway } from "../model/network.ts";
import { type OutboundClusterPlan, outboundClusterPlans } from "./cluster_plan.ts";
import { byString, socketAddress } from "./conversion.ts";
import { applyLocalityLoadBalancing, splitLocality, topologyLabels } from "./locality_lb.ts";
import { proxyLocality } from "./proxy_scope.ts";

/** What a proxy's network decides about the endpoints it is sent. */
export interface NetworkView {
  /** The proxy's network; undefined: every endpoint is reached directly. */
  readonly network?: string;
  /** The gateways of every network (the PushContext's). */
  readonly gateways: readonly NetworkGateway[];
}

/** A view in which every endpoint is reached directly (a single-network mesh). */
export const DIRECT_VIEW: NetworkView = { gateways: [] };

/**
 * The network view of a proxy: its network is its node metadata NETWORK, else the network of
 * its own workload entries.
 */
export function networkView(push: PushContext, proxy: Proxy): NetworkView {
  const network = proxy.network ?? push.instancesOf(proxy).find((e) => e.network)?.network;
  return { ...(network ? { network } : {}), gateways: push.networkGateways };
}

function gcd(a: number, b: number): number {
  return b === 0 ? a : gcd(b, a % b);
}

/**
 * Istio's split horizon EDS (see the module notes). Weights are scaled by the least common
 * multiple of the networks' gateway counts, so that an endpoint's weight divides evenly among
 * its network's gateways. Gateway hosts follow the direct ones of their locality, sorted by
 * network, address and port; they are `tlsMode: istio` and carry their network.
 */
export function splitHorizon(endpoints: readonly Endpoint[], view: NetworkView): Endpoint[] {
  if (!view.network || view.gateways.length === 0) return endpoints.filter((e) => e.address !== "");
  const byNetwork = new Map<string, NetworkGateway[]>();
  for (const g of view.gateways) byNetwork.set(g.network, [...(byNetwork.get(g.network) ?? []), g]);
  const scale = [...byNetwork.values()].reduce((l, gws) => (l * gws.length) / gcd(l, gws.length), 1);
  const direct: Endpoint[] = [];
  const remote = new Map<string, { first: Endpoint; gateway: NetworkGateway; weight: number }>();
  for (const e of endpoints) {
    const weight = e.weight * scale;
    const gateways = e.network && e.network !== view.network ? byNetwork.get(e.network) : undefined;
    if (!gateways) {
      // A workload without an address (WorkloadEntry with only a network) is reachable only
      // through its network's gateway.
      if (e.address !== "") direct.push(scale === 1 ? e : { ...e, weight });
      continue;
    }
    if (e.tlsMode !== "istio") continue;
    for (const gateway of gateways) {
      const key = `${e.locality ?? ""}|${gateway.network}|${gateway.address}|${gateway.port}`;
      const entry = remote.get(key);
      if (entry) entry.weight += weight / gateways.length;
      else remote.set(key, { first: e, gateway, weight: weight / gateways.length });
    }
  }
  const viaGateways = [...remote.entries()].sort(([a], [b]) => byString(a, b)).map((
    [, { first, gateway, weight }],
  ): Endpoint => ({
    hostname: first.hostname,
    namespace: first.namespace,
    servicePort: first.servicePort,
    address: gateway.address,
    port: gateway.port,
    labels: {},
    ...(first.locality ? { locality: first.locality } : {}),
    network: gateway.network,
    weight: Math.max(1, weight),
    healthy: true,
    tlsMode: "istio",
    source: `network gateway ${gateway.network}`,
  }));
  return [...direct, ...viaGateways];
}

/** The metadata key Envoy's transport socket matches read. */
export const TRANSPORT_SOCKET_MATCH_KEY = "envoy.transport_socket_match";

/** Endpoints grouped by locality, sorted by locality, each group in the order given. */
function localityGroups(endpoints: readonly Endpoint[]): [string, Endpoint[]][] {
  const groups = new Map<string, Endpoint[]>();
  for (const e of endpoints) {
    const key = e.locality ?? "";
    const list = groups.get(key);
    if (list) list.push(e);
    else groups.set(key, [e]);
  }
  return [...groups.entries()].sort(([a], [b]) => byString(a, b));
}

/**
 * The hosts of one cluster as a ClusterLoadAssignment: grouped by locality (sorted), each
 * group weighted by the sum of its hosts' weights (gRPC clients need the group weight), hosts
 * in the order given.
 */
export function loadAssignment(clusterName: string, endpoints: readonly Endpoint[]): ClusterLoadAssignment {
  return groupedAssignment(clusterName, localityGroups(endpoints));
}

function groupedAssignment(clusterName: string, groups: [string, Endpoint[]][]): ClusterLoadAssignment {
  return create(ClusterLoadAssignmentSchema, {
    clusterName,
    endpoints: groups.map(([key, members]) => {
      return create(LocalityLbEndpointsSchema, {
        ...(key ? { locality: splitLocality(key) } : {}),
        lbEndpoints: members.map((e) =>
          create(LbEndpointSchema, {
            hostIdentifier: { case: "endpoint", value: { address: socketAddress(e.address, e.port) } },
            metadata: { filterMetadata: { [TRANSPORT_SOCKET_MATCH_KEY]: { tlsMode: e.tlsMode } } },
            loadBalancingWeight: e.weight,
          })
        ),
        loadBalancingWeight: members.reduce((sum, e) => sum + e.weight, 0),
      });
    }),
  });
}

/**
 * The assignment of one planned cluster as this proxy sees it (its network's view of the hosts,
 * see {@link splitHorizon}, then the locality settings applied). LOGICAL_DNS clusters keep only
 * their first host, as Envoy requires.
 */
export function planLoadAssignment(
  plan: OutboundClusterPlan,
  locality: string | undefined,
  view: NetworkView = DIRECT_VIEW,
): ClusterLoadAssignment {
  const seen = splitHorizon(plan.endpoints, view);
  const endpoints = plan.discovery === "LOGICAL_DNS" ? seen.slice(0, 1) : seen;
  const groups = localityGroups(endpoints);
  const cla = groupedAssignment(plan.name, groups);
  applyLocalityLoadBalancing(
    cla,
    locality,
    plan.policy.loadBalancer?.localityLbSetting,
    plan.policy.outlierDetection !== undefined,
    {
      proxy: plan.proxyLabels,
      endpoints: groups.map(([, members]) =>
        members.map((e) => ({ ...e.labels, ...topologyLabels(e.locality, e.network) }))
      ),
    },
  );
  return cla;
}

/**
 * One ClusterLoadAssignment per EDS cluster that {@link outboundClusterPlans} (and so
 * buildClusters) produces, in the same order; a cluster without healthy hosts gets an empty one.
 */
export function buildEndpoints(push: PushContext, proxy: Proxy): ClusterLoadAssignment[] {
  const locality = proxyLocality(push, proxy);
  const view = networkView(push, proxy);
  return outboundClusterPlans(push, proxy)
    .filter((p) => p.discovery === "EDS")
    .map((p) => planLoadAssignment(p, locality, view));
}
