/**
 * Sidecar resources that compete for the same workloads. A proxy uses exactly one Sidecar: the
 * one whose selector matches it, else the namespace's selector-less one. Two selector-less
 * Sidecars in a namespace, or two selectors matching one workload, leave the choice undefined.
 *
 * @module
 */

import { isEmptySelector, selectorMatches } from "../../api/mod.ts";
import type { SidecarSpec } from "../../api/kinds/networking.ts";
import type { Resource } from "../../api/resource.ts";

import { defineAnalyzer } from "./_define.ts";

function name(r: Resource): string {
  return `${r.metadata.namespace}/${r.metadata.name}`;
}

/** MSH0111: at most one Sidecar without a workloadSelector per namespace. */
export const multipleSidecarsWithoutSelector = defineAnalyzer({
  code: "MSH0111",
  istioCode: "IST0111",
  name: "MultipleSidecarsWithoutWorkloadSelectors",
  severity: "error",
  description:
    "More than one Sidecar in a namespace has no workloadSelector; which one applies is undefined.",
}, (ctx, report) => {
  const byNamespace = new Map<string, Resource<SidecarSpec>[]>();
  for (const sc of ctx.ofKind<SidecarSpec>("Sidecar")) {
    if (!isEmptySelector(sc.spec.workloadSelector?.labels)) continue;
    const list = byNamespace.get(sc.metadata.namespace) ?? [];
    list.push(sc);
    byNamespace.set(sc.metadata.namespace, list);
  }
  for (const [ns, list] of byNamespace) {
    if (list.length < 2) continue;
    for (const sc of list) {
      const others = list.filter((o) => o !== sc).map(name).join(", ");
      report(
        sc,
        "spec",
        `Sidecar ${others} in namespace ${ns} has no workloadSelector either; which one applies is undefined`,
      );
    }
  }
});

/** MSH0110: no workload is selected by two Sidecars. */
export const conflictingSidecarSelectors = defineAnalyzer({
  code: "MSH0110",
  istioCode: "IST0110",
  name: "ConflictingSidecarWorkloadSelectors",
  severity: "error",
  description: "Two Sidecars' workloadSelectors match the same workload; which one applies is undefined.",
}, (ctx, report) => {
  const selecting = ctx.ofKind<SidecarSpec>("Sidecar").filter((sc) =>
    !isEmptySelector(sc.spec.workloadSelector?.labels)
  );
  for (const sc of selecting) {
    const rivals = new Map<Resource, string>();
    for (const w of ctx.workloadsSelected(sc.spec.workloadSelector?.labels, sc.metadata.namespace)) {
      for (const other of selecting) {
        if (other === sc || other.metadata.namespace !== sc.metadata.namespace || rivals.has(other)) continue;
        if (selectorMatches(other.spec.workloadSelector?.labels, w.labels)) rivals.set(other, w.label);
      }
    }
    for (const [other, workload] of rivals) {
      report(
        sc,
        "spec.workloadSelector",
        `selects ${workload}, which Sidecar ${name(other)} also selects; which one applies is undefined`,
      );
    }
  }
});
