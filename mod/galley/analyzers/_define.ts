/**
 * The small frame every analyzer is built with: its metadata plus a function that reports
 * findings by resource and field, from which the diagnostic (code, severity, label, position)
 * is derived in one place.
 *
 * @module
 */

import type { AnalysisContext, Analyzer } from "./_context.ts";
import { type Diagnostic, type Resource, resourceLabel, type Severity } from "../../api/resource.ts";

/** An analyzer's stable code, CamelCase name, severity of its findings and what it checks. */
export interface AnalyzerMeta {
  readonly code: string;
  readonly name: string;
  readonly severity: Severity;
  readonly description: string;
}

/**
 * Reports one finding about `field` (a dotted path such as `spec.http[0].route[0].destination.host`)
 * of `resource`; the position comes from `resource.positionOf(field)`.
 */
export type Report = (resource: Resource, field: string, message: string) => void;

/** Builds an analyzer from its metadata and a check that reports what it finds. */
export function defineAnalyzer(
  meta: AnalyzerMeta,
  check: (ctx: AnalysisContext, report: Report) => void,
): Analyzer {
  return {
    ...meta,
    analyze(ctx: AnalysisContext): Diagnostic[] {
      const out: Diagnostic[] = [];
      check(ctx, (resource, field, message) => {
        out.push({
          severity: meta.severity,
          code: meta.code,
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
