/**
 * Telemetry resources that compete for the same workloads. Within a namespace a workload takes
 * one Telemetry: the one whose selector matches it, else the namespace's selector-less one. Two
 * selector-less Telemetries in a namespace, or two selectors matching one workload, leave the
 * choice undefined. Telemetries attached with targetRef(s) are not counted.
 *
 * @module
 */

import { isEmptySelector, type Labels, selectorMatches } from "../../api/mod.ts";
import type { TelemetrySpec } from "../../api/kinds/telemetry.ts";
import type { Resource } from "../../api/resource.ts";
import { defineAnalyzer } from "./_define.ts";

function name(r: Resource): string {
  return `${r.metadata.namespace}/${r.metadata.name}`;
}

function labelsOf(t: Resource<TelemetrySpec>): Labels | undefined {
  return t.spec.selector?.matchLabels as Labels | undefined;
}

function targeted(t: Resource<TelemetrySpec>): boolean {
  return t.spec.targetRef !== undefined || (t.spec.targetRefs ?? []).length > 0;
}

/** MSH0185: at most one Telemetry without a selector per namespace. */
export const multipleTelemetriesWithoutSelector = defineAnalyzer({
  code: "MSH0185",
  istioCode: "IST0160",
  name: "MultipleTelemetriesWithoutWorkloadSelectors",
  severity: "error",
  description: "More than one Telemetry in a namespace has no selector; which one applies is undefined.",
}, (ctx, report) => {
  const byNamespace = new Map<string, Resource<TelemetrySpec>[]>();
  for (const t of ctx.ofKind<TelemetrySpec>("Telemetry")) {
    if (targeted(t) || !isEmptySelector(labelsOf(t))) continue;
    const list = byNamespace.get(t.metadata.namespace) ?? [];
    list.push(t);
    byNamespace.set(t.metadata.namespace, list);
  }
  for (const [ns, list] of byNamespace) {
    if (list.length < 2) continue;
    for (const t of list) {
      const others = list.filter((o) => o !== t).map(name).join(", ");
      report(
        t,
        "spec",
        `Telemetry ${others} in namespace ${ns} has no selector either; which one applies is undefined`,
      );
    }
  }
});

/** MSH0159: no workload is selected by two Telemetries of its namespace. */
export const conflictingTelemetrySelectors = defineAnalyzer({
  code: "MSH0159",
  istioCode: "IST0159",
  name: "ConflictingTelemetryWorkloadSelectors",
  severity: "error",
  description: "Two Telemetries' selectors match the same workload; which one applies is undefined.",
}, (ctx, report) => {
  const selecting = ctx.ofKind<TelemetrySpec>("Telemetry").filter((t) =>
    !targeted(t) && !isEmptySelector(labelsOf(t))
  );
  for (const t of selecting) {
    const rivals = new Map<Resource, string>();
    for (const w of ctx.workloadsSelected(labelsOf(t), t.metadata.namespace)) {
      for (const other of selecting) {
        if (other === t || other.metadata.namespace !== t.metadata.namespace || rivals.has(other)) continue;
        if (selectorMatches(labelsOf(other), w.labels)) rivals.set(other, w.label);
      }
    }
    for (const [other, workload] of rivals) {
      report(
        t,
        "spec.selector",
        `selects ${workload}, which Telemetry ${name(other)} also selects; which one applies is undefined`,
      );
    }
  }
});
