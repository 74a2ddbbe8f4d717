/**
 * Several DestinationRules for one host in one namespace. Istio merges them only partly: the
 * first rule's traffic policy wins, later subsets are appended and a repeated subset name is
 * dropped, so what applies depends on which rule is older. Keep one rule per host and namespace
 * (rules with a workloadSelector are scoped to their workloads and not counted).
 *
 * @module
 */

import { isEmptySelector, visibilitiesOverlap, visibilityOf } from "../../api/mod.ts";
import type { DestinationRuleSpec } from "../../api/kinds/networking.ts";
import type { Resource } from "../../api/resource.ts";

import { defineAnalyzer } from "./_define.ts";

function where(r: Resource): string {
  return `${r.metadata.namespace}/${r.metadata.name} (${r.source.file}:${r.positionOf("spec.host").line})`;
}

/** MSH0150: at most one DestinationRule per host and namespace. */
export const conflictingDestinationRules = defineAnalyzer({
  code: "MSH0150",
  name: "ConflictingDestinationRules",
  severity: "warning",
  description:
    "More than one DestinationRule in a namespace configures the same host; Istio merges them only partly.",
}, (ctx, report) => {
  const groups = new Map<string, Resource<DestinationRuleSpec>[]>();
  for (const dr of ctx.ofKind<DestinationRuleSpec>("DestinationRule")) {
    if (!isEmptySelector(dr.spec.workloadSelector?.matchLabels)) continue;
    const ns = dr.metadata.namespace;
    const key = `${ns} ${ctx.resolveHost(dr.spec.host, ns)}`;
    let list = groups.get(key);
    if (!list) groups.set(key, list = []);
    list.push(dr);
  }
  for (const [key, list] of groups) {
    const host = key.slice(key.indexOf(" ") + 1);
    list.forEach((dr, i) => {
      if (i === 0) return;
      const v = visibilityOf(dr.spec.exportTo, dr.metadata.namespace);
      const earlier = list.slice(0, i).filter((e) =>
        visibilitiesOverlap(v, visibilityOf(e.spec.exportTo, e.metadata.namespace))
      );
      if (earlier.length === 0) return;
      const subsets = new Set(earlier.flatMap((e) => (e.spec.subsets ?? []).map((s) => s.name)));
      const dropped = (dr.spec.subsets ?? []).map((s) => s.name).filter((n) => subsets.has(n));
      const lost = dr.spec.trafficPolicy ? "its trafficPolicy is ignored" : "only its subsets are merged";
      const dup = dropped.length > 0
        ? ` and its subsets ${dropped.join(", ")} are dropped as duplicates`
        : "";
      report(
        dr,
        "spec.host",
        `host ${host} already has DestinationRule ${
          earlier.map(where).join(", ")
        } in namespace ${dr.metadata.namespace}; ${lost}${dup}. Merge them into one`,
      );
    });
  }
});
