/**
 * Locality-aware load balancing on a ClusterLoadAssignment, as a DestinationRule's
 * `localityLbSetting` asks: `distribute` sets each locality's weight (seen from the proxy's
 * locality), `failover` orders localities into priorities (same zone, same region, the named
 * failover region, the rest) so Envoy spills over only when outlier detection ejects hosts.
 *
 * @module
 */
import type { ClusterLoadAssignment } from "#gen/envoy/config/endpoint/v3/endpoint_pb.ts";
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
  const used = [...new Set(raw)].sort((a, b) => a - b);
  cla.endpoints.forEach((group, i) => {
    group.priority = used.indexOf(raw[i]!);
  });
}

/**
 * Applies the locality settings to the assignment, seen from `proxyLocality`. Does nothing
 * without settings, when they are disabled, or when the proxy's locality is unknown; failover
 * needs outlier detection on the cluster.
 */
export function applyLocalityLoadBalancing(
  cla: ClusterLoadAssignment,
  proxyLocality: string | undefined,
  setting: LocalityLoadBalancerSetting | undefined,
  outlierDetection: boolean,
): void {
  if (!setting || setting.enabled === false || !proxyLocality) return;
  const proxy = splitLocality(proxyLocality);
  if (setting.distribute && setting.distribute.length > 0) applyWeights(cla, proxy, setting.distribute);
  else if (outlierDetection) applyFailover(cla, proxy, setting.failover ?? []);
}
