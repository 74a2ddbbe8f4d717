/**
 * Locality-aware load balancing on a ClusterLoadAssignment, as a DestinationRule's
 * `localityLbSetting` asks: `distribute` sets each locality's weight (seen from the proxy's
 * locality), `failover` orders localities into priorities (same zone, same region, the named
 * failover region, the rest) so Envoy spills over only when outlier detection ejects hosts.
 * `failoverPriority` orders endpoints by how many of the listed labels they share with the
 * proxy, in list order, splitting a locality's endpoints over priorities; with `failover` as
 * well, the locality order refines each of those priorities (Istio's rules).
 *
 * @module
 */
import { create } from "@bufbuild/protobuf";
import type { ClusterLoadAssignment } from "#gen/envoy/config/endpoint/v3/endpoint_pb.ts";
import {
  type LocalityLbEndpoints,
  LocalityLbEndpointsSchema,
} from "#gen/envoy/config/endpoint/v3/endpoint_components_pb.ts";
import type { Locality } from "#gen/envoy/config/core/v3/base_pb.ts";
import type { LocalityLoadBalancerSetting } from "../../api/kinds/networking.ts";
import { byString } from "./conversion.ts";

/** Splits "region/zone/subzone" (any part may be missing). */
export function splitLocality(text: string | undefined): LocalityParts {
  const [region = "", zone = "", subZone = ""] = (text ?? "").split("/");
  return { region, zone, subZone };
}

/** The three parts of a locality, as Envoy's Locality message holds them. */
export type LocalityParts = Pick<Locality, "region" | "zone" | "subZone">;

function parts(l: LocalityParts | undefined): string[] {
  return [l?.region ?? "", l?.zone ?? "", l?.subZone ?? ""];
}

/**
 * Whether a locality matches a pattern such as "us-east", "us-east/zone-a" or "us-east/*":
 * each given part must be equal, and "*" matches everything from there on.
 */
export function localityMatches(locality: LocalityParts | undefined, pattern: string): boolean {
  const have = parts(locality);
  const want = pattern.split("/");
  for (let i = 0; i < want.length && i < 3; i++) {
    if (want[i] === "*") return true;
    if (want[i] !== have[i]) return false;
  }
  return true;
}

/** Istio's topology label names, which endpoints and proxies carry for their locality and network. */
export const TOPOLOGY_LABELS = {
  region: "topology.kubernetes.io/region",
  zone: "topology.kubernetes.io/zone",
  subZone: "topology.istio.io/subzone",
  network: "topology.istio.io/network",
} as const;

/** The topology labels of a locality ("region/zone/subzone") and network; only the parts known. */
export function topologyLabels(
  locality: string | undefined,
  network: string | undefined,
): Record<string, string> {
  const { region, zone, subZone } = splitLocality(locality);
  const out: Record<string, string> = {};
  if (region) out[TOPOLOGY_LABELS.region] = region;
  if (zone) out[TOPOLOGY_LABELS.zone] = zone;
  if (subZone) out[TOPOLOGY_LABELS.subZone] = subZone;
  if (network) out[TOPOLOGY_LABELS.network] = network;
  return out;
}

type Labels = Readonly<Record<string, string>>;

/** What `failoverPriority` compares: the proxy's labels and, per locality group and host, the endpoint's. */
export interface PriorityLabels {
  readonly proxy: Labels;
  /** Parallel to `cla.endpoints[i].lbEndpoints`. */
  readonly endpoints: readonly (readonly Labels[])[];
}

/**
 * The failover priority of one endpoint: 0 when it shares every listed label with the proxy,
 * else `n - j` for the first label `j` it differs in. An entry `label=value` compares with that
 * value instead of the proxy's. A network label listed first never stops the comparison; a
 * different network adds `n` (every endpoint of the proxy's network comes first).
 */
export function failoverPriorityOf(
  proxy: Labels,
  endpoint: Labels,
  failoverPriority: readonly string[],
): number {
  const n = failoverPriority.length;
  const withNetwork = failoverPriority[0] === TOPOLOGY_LABELS.network;
  let adjust = 0;
  for (let j = 0; j < n; j++) {
    const entry = failoverPriority[j]!;
    const eq = entry.indexOf("=");
    const label = eq < 0 ? entry : entry.slice(0, eq);
    const want = eq < 0 ? proxy[label] : entry.slice(eq + 1);
    if (want === endpoint[label]) continue;
    if (j === 0 && withNetwork) {
      adjust = n;
      continue;
    }
    return n - j + adjust;
  }
  return adjust;
}

/** Renumbers the groups' priorities to 0..N in order, without gaps. */
function compactPriorities(groups: readonly LocalityLbEndpoints[]): void {
  const used = [...new Set(groups.map((g) => g.priority))].sort((a, b) => a - b);
  for (const g of groups) g.priority = used.indexOf(g.priority);
}

function applyFailoverPriority(
  cla: ClusterLoadAssignment,
  labels: PriorityLabels,
  failoverPriority: readonly string[],
): void {
  cla.endpoints = cla.endpoints.flatMap((group, i) => {
    const byPriority = new Map<number, number[]>();
    group.lbEndpoints.forEach((_, k) => {
      const p = failoverPriorityOf(labels.proxy, labels.endpoints[i]?.[k] ?? {}, failoverPriority);
      byPriority.set(p, [...(byPriority.get(p) ?? []), k]);
    });
    return [...byPriority.keys()].sort((a, b) => a - b).map((p) => {
      const members = byPriority.get(p)!.map((k) => group.lbEndpoints[k]!);
      return create(LocalityLbEndpointsSchema, {
        ...(group.locality ? { locality: group.locality } : {}),
        lbEndpoints: members,
        loadBalancingWeight: members.reduce((sum, e) => sum + (e.loadBalancingWeight ?? 1), 0),
        priority: p,
      });
    });
  });
  compactPriorities(cla.endpoints);
}

function priorityFor(proxy: LocalityParts, ep: LocalityParts | undefined): number {
  const e = parts(ep);
  if (proxy.region !== e[0]) return 3;
  if (proxy.zone !== e[1]) return 2;
  if (proxy.subZone !== e[2]) return 1;
  return 0;
}

function applyWeights(
  cla: ClusterLoadAssignment,
  proxy: LocalityParts,
  distribute: NonNullable<LocalityLoadBalancerSetting["distribute"]>,
): void {
  const rule = distribute.find((d) => localityMatches(proxy, d.from ?? "*"));
  if (!rule) return;
  const unassigned = new Set(cla.endpoints.map((_, i) => i));
  const weights = new Map<number, number>();
  for (const pattern of Object.keys(rule.to ?? {}).sort(byString)) {
    const weight = rule.to![pattern]!;
    const matched = [...unassigned].filter((i) => localityMatches(cla.endpoints[i]!.locality, pattern));
    const total = matched.reduce((sum, i) => sum + (cla.endpoints[i]!.loadBalancingWeight ?? 1), 0);
    for (const i of matched) {
      unassigned.delete(i);
      const share = ((cla.endpoints[i]!.loadBalancingWeight ?? 1) * weight) / total;
      if (share > 0) weights.set(i, Math.ceil(share));
    }
  }
  cla.endpoints = cla.endpoints.flatMap((group, i) => {
    const w = weights.get(i);
    if (w === undefined) return [];
    group.loadBalancingWeight = w;
    return [group];
  });
}

function applyFailover(
  cla: ClusterLoadAssignment,
  proxy: LocalityParts,
  failover: NonNullable<LocalityLoadBalancerSetting["failover"]>,
): void {
  const raw = cla.endpoints.map((group) => {
    let p = priorityFor(proxy, group.locality);
    if (p === 3) {
      const rule = failover.find((f) => f.from === proxy.region);
      if (rule && group.locality?.region !== rule.to) p = 4;
    }
    return p;
  });
  // Priorities already set by failoverPriority stay the major order.
  cla.endpoints.forEach((group, i) => {
    group.priority = group.priority * 5 + raw[i]!;
  });
  compactPriorities(cla.endpoints);
}

/**
 * Applies the locality settings to the assignment, seen from `proxyLocality`: `distribute`
 * weights, or, with outlier detection on the cluster (else Envoy never fails over), the
 * `failoverPriority` label order (needs `labels`) and then the locality order (`failover`
 * names the region to spill to). Without `failoverPriority` the locality order always applies;
 * with it, only when `failover` is set too. Does nothing without settings or when they are
 * disabled; the locality parts need the proxy's locality.
 */
export function applyLocalityLoadBalancing(
  cla: ClusterLoadAssignment,
  proxyLocality: string | undefined,
  setting: LocalityLoadBalancerSetting | undefined,
  outlierDetection: boolean,
  labels?: PriorityLabels,
): void {
  if (!setting || setting.enabled === false) return;
  const proxy = proxyLocality ? splitLocality(proxyLocality) : undefined;
  if (setting.distribute && setting.distribute.length > 0) {
    if (proxy) applyWeights(cla, proxy, setting.distribute);
    return;
  }
  if (!outlierDetection) return;
  const priority = setting.failoverPriority ?? [];
  const byLabels = priority.length > 0 && labels !== undefined && Object.keys(labels.proxy).length > 0;
  if (byLabels) applyFailoverPriority(cla, labels, priority);
  if (proxy && (priority.length === 0 || (setting.failover?.length ?? 0) > 0)) {
    applyFailover(cla, proxy, setting.failover ?? []);
  }
}
