/**
 * Workloads that belong to no service. A WorkloadEntry receives traffic only as an endpoint of a
 * ServiceEntry whose workloadSelector (in the same namespace) matches its labels; a
 * WorkloadGroup's auto-registered VMs likewise. Gateways and pure clients legitimately belong to
 * none, hence Info.
 *
 * @module
 */

import { isEmptySelector, selectorMatches } from "../../api/mod.ts";
import type { ServiceEntrySpec } from "../../api/kinds/networking.ts";
import type { AnalysisContext, Workload } from "./_context.ts";
import { formatLabels } from "./_labels.ts";
import { defineAnalyzer, type Report } from "./_define.ts";

function inSomeService(ctx: AnalysisContext, w: Workload): boolean {
  return ctx.ofKind<ServiceEntrySpec>("ServiceEntry").some((se) =>
    se.metadata.namespace === w.namespace && se.spec.workloadSelector !== undefined &&
    selectorMatches(se.spec.workloadSelector.labels, w.labels)
  );
}

function check(ctx: AnalysisContext, report: Report, kind: Workload["kind"], what: string): void {
  for (const w of ctx.workloads) {
    if (w.kind !== kind || inSomeService(ctx, w)) continue;
    const labels = isEmptySelector(w.labels) ? "it has no labels" : `its labels ${formatLabels(w.labels)}`;
    report(
      w.resource,
      w.kind === "WorkloadGroup" ? "spec.metadata.labels" : "spec.labels",
      `${what} no service: ${labels} match no ServiceEntry workloadSelector in namespace ${w.namespace}`,
    );
  }
}

/** MSH0181: every WorkloadEntry is an endpoint of some ServiceEntry. */
export const workloadNotInService = defineAnalyzer({
  code: "MSH0181",
  name: "WorkloadNotInService",
  severity: "info",
  description: "A WorkloadEntry's labels match no ServiceEntry workloadSelector in its namespace; " +
    "it receives no service traffic.",
}, (ctx, report) => check(ctx, report, "WorkloadEntry", "this workload belongs to"));

/** MSH0182: every WorkloadGroup's workloads would be endpoints of some ServiceEntry. */
export const workloadGroupNotInService = defineAnalyzer({
  code: "MSH0182",
  name: "WorkloadGroupNotInService",
  severity: "info",
  description: "A WorkloadGroup's labels match no ServiceEntry workloadSelector in its namespace; " +
    "VMs registering with it serve no service.",
}, (ctx, report) => check(ctx, report, "WorkloadGroup", "workloads registering with this group belong to"));
