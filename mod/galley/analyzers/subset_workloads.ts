/**
 * DestinationRule subsets against the workloads of their host's service: a subset whose labels
 * no workload carries receives no endpoints, and traffic routed to it fails with "no healthy
 * upstream".
 *
 * @module
 */

import { isEmptySelector, type Labels, selectorMatches } from "../../api/mod.ts";
import type { DestinationRuleSpec } from "../../api/kinds/networking.ts";
import type { Workload } from "./_context.ts";
import { formatLabels } from "./_labels.ts";
import { defineAnalyzer } from "./_define.ts";

/** For the first label of `selector` no workload matches on, the values the workloads carry. */
function mismatch(selector: Labels, workloads: readonly Workload[]): string {
  for (const [k, v] of Object.entries(selector)) {
    if (workloads.some((w) => w.labels[k] === v)) continue;
    const values = [...new Set(workloads.map((w) => w.labels[k]).filter((x): x is string => x !== undefined))]
      .sort();
    return values.length > 0
      ? `; its workloads have ${k}=${values.join(", ")}`
      : `; none of its workloads has a label ${k}`;
  }
  return "; no single workload has all of these labels";
}

/** MSH0129: every subset selects at least one workload of its service. */
export const subsetMatchesNoWorkload = defineAnalyzer({
  code: "MSH0129",
  istioCode: "IST0173",
  name: "SubsetMatchesNoWorkload",
  severity: "warning",
  description: "A DestinationRule subset's labels select none of the workloads behind its host.",
}, (ctx, report) => {
  for (const dr of ctx.ofKind<DestinationRuleSpec>("DestinationRule")) {
    const ns = dr.metadata.namespace;
    const services = ctx.servicesFor(dr.spec.host, ns);
    if (services.length === 0 || services.some((s) => s.workloads === undefined)) continue;
    const workloads = services.flatMap((s) => s.workloads ?? []);
    const host = ctx.resolveHost(dr.spec.host, ns);
    (dr.spec.subsets ?? []).forEach((subset, i) => {
      if (isEmptySelector(subset.labels)) return;
      if (workloads.some((w) => selectorMatches(subset.labels, w.labels))) return;
      const entries = [...new Set(services.map((s) => `${s.namespace}/${s.entry.metadata.name}`))].join(", ");
      const why = workloads.length === 0
        ? `ServiceEntry ${entries} has no workloads at all`
        : `no workload of ServiceEntry ${entries} has labels ${formatLabels(subset.labels)}${
          mismatch(subset.labels, workloads)
        }`;
      report(
        dr,
        `spec.subsets[${i}].labels`,
        `subset "${subset.name}" selects no workload of ${host}: ${why}`,
      );
    });
  }
});
