/**
 * A workload's canonical service and revision, as Istio derives them from its labels for
 * telemetry and endpoint metadata. Pilot puts them on endpoints; a node proxy reports them for
 * itself; both follow this one rule.
 *
 * @module
 */

/** Istio's label naming a workload's canonical service. */
export const CANONICAL_NAME_LABEL = "service.istio.io/canonical-name";
/** Istio's label naming a workload's canonical revision. */
export const CANONICAL_REVISION_LABEL = "service.istio.io/canonical-revision";

/**
 * The canonical-name label, else `app.kubernetes.io/name`, else `app`, else the workload name; the
 * canonical-revision label, else `app.kubernetes.io/version`, else `version`, else "latest".
 */
export function canonicalLabels(
  labels: Readonly<Record<string, string>>,
  workload: string,
): { service: string; revision: string } {
  return {
    service: labels[CANONICAL_NAME_LABEL] ?? labels["app.kubernetes.io/name"] ?? labels["app"] ?? workload,
    revision: labels[CANONICAL_REVISION_LABEL] ?? labels["app.kubernetes.io/version"] ?? labels["version"] ??
      "latest",
  };
}
