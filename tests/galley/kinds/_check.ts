/**
 * Helpers for kind validation tests: parse a YAML text, validate its resources, and assert on the
 * diagnostics by field path, line and message.
 */
import { expect } from "bun:test";
import { parseConfig } from "../../../mod/galley/parse.ts";
import { type Diagnostic, formatDiagnostic } from "../../../mod/api/resource.ts";
import { validateResource } from "../../../mod/galley/validate.ts";

/** Parses and validates `yaml`; returns every diagnostic (parse first, then validation). */
export function diagnose(yaml: string, file = "test.yaml"): Diagnostic[] {
  const parsed = parseConfig(yaml, file);
  return [...parsed.diagnostics, ...parsed.resources.flatMap((r) => validateResource(r))];
}

/** The error diagnostics of `yaml`. */
export function errorsOf(yaml: string): Diagnostic[] {
  return diagnose(yaml).filter((d) => d.severity === "error");
}

/** Asserts that `yaml` parses and validates without errors. */
export function expectValid(yaml: string): void {
  expect(errorsOf(yaml).map(formatDiagnostic)).toEqual([]);
}

/**
 * Asserts that `yaml` has exactly one error, on `field` at `line`, whose message contains
 * `message`; returns it.
 */
export function expectOneError(yaml: string, field: string, line: number, message: string): Diagnostic {
  const errors = errorsOf(yaml);
  expect(errors.map(formatDiagnostic)).toHaveLength(1);
  const d = errors[0]!;
  expect(d.field).toBe(field);
  expect(d.pos?.line).toBe(line);
  expect(d.message).toContain(message);
  return d;
}

/** Asserts that among the errors of `yaml` there is one on `field` whose message contains `message`. */
export function expectErrorOn(yaml: string, field: string, message: string): Diagnostic {
  const errors = errorsOf(yaml);
  const match = errors.find((d) => d.field === field && d.message.includes(message));
  if (!match) expect(errors.map(formatDiagnostic)).toContain(`<error on ${field} containing "${message}">`);
  return match!;
}

/** The identity of a test resource; name defaults to "example", namespace to "default". */
export interface ResourceType {
  readonly apiVersion: string;
  readonly kind: string;
  readonly name?: string;
  readonly namespace?: string;
}

/** Wraps a spec (YAML text indented by two spaces; its first line is line 7) into a full resource. */
export function resource(type: ResourceType, spec: string): string {
  const { apiVersion, kind, name = "example", namespace = "default" } = type;
  return `apiVersion: ${apiVersion}\nkind: ${kind}\nmetadata:\n  name: ${name}\n  namespace: ${namespace}\nspec:\n${spec}`;
}
