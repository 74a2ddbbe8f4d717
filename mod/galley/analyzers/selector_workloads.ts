/**
 * Workload selectors of policies and Sidecars that select nothing: such a resource has no
 * effect, which is rarely what its author meant (often a label typo). A selector in the root
 * namespace is looked up in every namespace (AuthorizationPolicy, RequestAuthentication and
 * Telemetry apply mesh-wide from there), anywhere else in its own namespace.
 *
 * @module
 */

import { isEmptySelector, type Labels } from "../../api/mod.ts";
import type { MatchLabelsSelector, SidecarSpec } from "../../api/kinds/networking.ts";
import type { AnalysisContext } from "./_context.ts";
import type { Resource } from "../../api/resource.ts";
import { formatLabels } from "./_labels.ts";
import { defineAnalyzer, type Report } from "./_define.ts";

/** Kinds with `spec.selector.matchLabels`. */
const MATCH_LABEL_KINDS = ["PeerAuthentication", "RequestAuthentication", "AuthorizationPolicy", "Telemetry"];

/** Kinds whose empty selection istioctl reports as ReferencedResourceNotFound (selector). */
const REFERENCE_NOT_FOUND_KINDS = new Set(["Sidecar", "Telemetry"]);

function check(
  ctx: AnalysisContext,
  report: Report,
  r: Resource,
  selector: Labels | undefined,
  field: string,
  meshWide: boolean,
): void {
  if (isEmptySelector(selector)) return;
  const ns = r.metadata.namespace;
  const scope = meshWide && ns === ctx.mesh.rootNamespace ? undefined : ns;
  if (ctx.workloadsSelected(selector, scope).length > 0) return;
  const where = scope === undefined ? "in any namespace" : `in namespace ${ns}`;
  report(
    r,
    field,
    `selector ${formatLabels(selector)} matches no workload ${where}; this ${r.kind} has no effect`,
    REFERENCE_NOT_FOUND_KINDS.has(r.kind) ? "IST0101" : undefined,
  );
}

/** MSH0127: selectors of policies and Sidecars select at least one workload. */
export const noMatchingWorkloads = defineAnalyzer({
  code: "MSH0127",
  istioCode: "IST0127",
  istioNote: "Sidecar and Telemetry findings carry IST0101, as istioctl reports those selectors.",
  name: "NoMatchingWorkloads",
  severity: "warning",
  description:
    "The workload selector of a Sidecar, PeerAuthentication, RequestAuthentication, AuthorizationPolicy " +
    "or Telemetry selects no workload.",
}, (ctx, report) => {
  for (const sc of ctx.ofKind<SidecarSpec>("Sidecar")) {
    check(ctx, report, sc, sc.spec.workloadSelector?.labels, "spec.workloadSelector.labels", false);
  }
  for (const kind of MATCH_LABEL_KINDS) {
    for (const r of ctx.ofKind<{ readonly selector?: MatchLabelsSelector }>(kind)) {
      check(
        ctx,
        report,
        r,
        r.spec.selector?.matchLabels,
        "spec.selector.matchLabels",
        kind !== "PeerAuthentication",
      );
    }
  }
});
