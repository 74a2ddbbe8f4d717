/**
 * The small frame every analyzer is built with: its metadata plus a function that reports
 * findings by resource and field, from which the diagnostic (code, Istio code, severity, label,
 * position) is derived in one place.
 *
 * @module
 */

import type { AnalysisContext, AnalysisDiagnostic, Analyzer } from "./_context.ts";
import { type Resource, resourceLabel, type Severity } from "../../api/resource.ts";

/**
 * An analyzer's stable code, CamelCase name, severity of its findings and what it checks, and the
 * istioctl code its findings carry where Istio reports the same thing.
 */
export interface AnalyzerMeta {
  readonly code: string;
  readonly name: string;
  readonly severity: Severity;
  readonly description: string;
  /** The IST code with the same meaning ("IST0101"); absent when Istio has no such check. */
  readonly istioCode?: string;
  /** When only some findings carry {@link istioCode}, or Istio's check differs: which, and how. */
  readonly istioNote?: string;
}

/**
 * Reports one finding about `field` (a dotted path such as `spec.http[0].route[0].destination.host`)
 * of `resource`; the position comes from `resource.positionOf(field)`. `istio` overrides the
 * analyzer's Istio code for this finding: another IST code, or null when Istio has no equivalent.
 */
export type Report = (resource: Resource, field: string, message: string, istio?: string | null) => void;

/** Builds an analyzer from its metadata and a check that reports what it finds. */
export function defineAnalyzer(
  meta: AnalyzerMeta,
  check: (ctx: AnalysisContext, report: Report) => void,
): Analyzer {
  return {
    ...meta,
    analyze(ctx: AnalysisContext): AnalysisDiagnostic[] {
      const out: AnalysisDiagnostic[] = [];
      check(ctx, (resource, field, message, istio) => {
        const ist = istio === undefined ? meta.istioCode : istio ?? undefined;
        out.push({
          severity: meta.severity,
          code: meta.code,
          ...(ist ? { istio: ist } : {}),
          message,
          resource: resourceLabel(resource),
          field,
          pos: resource.positionOf(field),
        });
      });
      return out;
    },
  };
}
