/**
 * CEL expression leaves for Mixer-model schemas: a template's instance fields and a rule's match
 * and header values are CEL over Istio's attribute vocabulary, compiled while validating so a bad
 * expression is reported at its field.
 *
 * The compiler (`../cel.ts`) and the schema language (`../schema.ts`) are this layer's and know
 * nothing of Mixer, so galley's kinds and mixer's runtime build on this file and never the other
 * way round.
 *
 * @module
 */
import type { AttributeType } from "../attributes.ts";
import { compileExpression, type ExpressionType } from "../cel.ts";
import { type Reporter, type Schema, t } from "../schema.ts";

/**
 * Reports at `path` when `value` is not a CEL expression producing `type`. `extra` adds
 * attributes beyond Istio's vocabulary (a rule's `ACTION.output`).
 */
export function celCheck(
  value: string,
  type: ExpressionType,
  path: string,
  report: Reporter,
  extra?: Record<string, AttributeType>,
): void {
  const compiled = compileExpression(value, type, { extraAttributes: extra });
  if (!compiled.ok) report.error(path, `invalid CEL expression: ${compiled.message}`);
}

/** A CEL expression leaf of a template, required to produce `type`. */
export function expr(type: ExpressionType, opts: { required?: boolean } = {}): Schema {
  return t.string({
    required: opts.required,
    check: (value, path, report) => celCheck(value, type, path, report),
  });
}

/** A map of CEL expressions of any type (dimensions, variables, properties). */
export const exprMap: Schema = t.map(expr("any"));
