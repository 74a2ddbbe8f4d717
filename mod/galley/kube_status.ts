/**
 * What galley writes back into the status of the Istio objects it reads from the Kubernetes API,
 * in Istio's shape (`istio.meta.v1alpha1.IstioStatus`):
 *
 * ```yaml
 * status:
 *   observedGeneration: 3
 *   validationMessages:
 *   - type: { code: IST0101, name: ReferencedResourceNotFound }
 *     level: ERROR
 *     description: "spec.http[0].route[0].destination.host: ..."
 *     documentationUrl: https://istio.io/latest/docs/reference/config/analysis/ist0101/
 * ```
 *
 * The messages of an object are its validation findings (errors reject the object; they carry
 * Istio's IST0106 SchemaValidationError) and the cross-resource analysis findings about it
 * (istioctl's IST code where one means the same, else meshd's MSH code with the analyzer's name).
 * Everything here is pure: the writer (kube_status_writer.ts) decides when to compute and patch.
 *
 * @module
 */
import type { Diagnostic } from "../api/resource.ts";
import type { AnalysisDiagnostic } from "./analyzers/_context.ts";
import { ANALYZERS, INTERNAL_ERROR, ISTIO_MESSAGES } from "./analyze.ts";
import { parseConfig } from "./parse.ts";
import { validateResource } from "./validate.ts";

/** Istio's message levels, as its status JSON spells them. */
export type MessageLevel = "ERROR" | "WARNING" | "INFO";

/** One entry of `status.validationMessages`. */
export interface ValidationMessage {
  readonly type: { readonly code: string; readonly name: string };
  readonly level: MessageLevel;
  readonly description: string;
  /** Istio's page for an IST code; absent for meshd's own codes. */
  readonly documentationUrl?: string;
}

/** The part of an object's status galley owns. */
export interface IstioStatus {
  /** The object's `metadata.generation` the messages are about. */
  readonly observedGeneration: number;
  /** Sorted by level, code and description; empty when there is nothing to say. */
  readonly validationMessages: readonly ValidationMessage[];
}

/** Istio's code for a schema validation failure. */
export const SCHEMA_VALIDATION = { code: "IST0106", name: "SchemaValidationError" } as const;

const LEVELS: Readonly<Record<Diagnostic["severity"], MessageLevel>> = {
  error: "ERROR",
  warning: "WARNING",
  info: "INFO",
};
const LEVEL_ORDER: readonly MessageLevel[] = ["ERROR", "WARNING", "INFO"];

const istioNames = new Map(ISTIO_MESSAGES.map((m) => [m.code, m.name]));
const meshdNames = new Map<string, string>([
  [INTERNAL_ERROR.code, INTERNAL_ERROR.name],
  ...ANALYZERS.map((a) => [a.code, a.name] as [string, string]),
]);

/** Istio's documentation page for an IST code. */
export function istioDocumentationUrl(code: string): string {
  return `https://istio.io/latest/docs/reference/config/analysis/${code.toLowerCase()}/`;
}

/** The text of a diagnostic without its place in a file: `field: message`. */
function describe(d: Diagnostic): string {
  return d.field === undefined || d.field === "" ? d.message : `${d.field}: ${d.message}`;
}

/** The status message for a validation or parse diagnostic. */
export function validationMessage(d: Diagnostic): ValidationMessage {
  return {
    type: SCHEMA_VALIDATION,
    level: LEVELS[d.severity],
    description: describe(d),
    documentationUrl: istioDocumentationUrl(SCHEMA_VALIDATION.code),
  };
}

/** The status message for an analysis finding: Istio's code when it has one, else meshd's. */
export function analysisMessage(d: AnalysisDiagnostic): ValidationMessage {
  const level = LEVELS[d.severity];
  const description = describe(d);
  const istioName = d.istio === undefined ? undefined : istioNames.get(d.istio);
  if (d.istio !== undefined && istioName !== undefined) {
    return {
      type: { code: d.istio, name: istioName },
      level,
      description,
      documentationUrl: istioDocumentationUrl(d.istio),
    };
  }
  const code = d.code ?? INTERNAL_ERROR.code;
  return { type: { code, name: meshdNames.get(code) ?? code }, level, description };
}

/**
 * The validation messages of one object's document (JSON or YAML text, as the source delivers
 * it): what parsing and validation say about it, errors and warnings alike. Notes that a
 * document was skipped are not messages.
 */
export function documentMessages(content: string, origin: string): ValidationMessage[] {
  const parsed = parseConfig(content, origin);
  const out: Diagnostic[] = parsed.diagnostics.filter((d) => d.severity !== "info");
  for (const r of parsed.resources) out.push(...validateResource(r).filter((d) => d.severity !== "info"));
  return out.map(validationMessage);
}

/**
 * Analysis findings by the origin (file, key or object) of the resource they are about; a
 * finding without a position is not attributed.
 */
export function findingsByOrigin(findings: readonly AnalysisDiagnostic[]): Map<string, AnalysisDiagnostic[]> {
  const out = new Map<string, AnalysisDiagnostic[]>();
  for (const d of findings) {
    const file = d.pos?.file;
    if (file === undefined) continue;
    const list = out.get(file);
    if (list) list.push(d);
    else out.set(file, [d]);
  }
  return out;
}

function compareMessages(a: ValidationMessage, b: ValidationMessage): number {
  const byLevel = LEVEL_ORDER.indexOf(a.level) - LEVEL_ORDER.indexOf(b.level);
  if (byLevel !== 0) return byLevel;
  if (a.type.code !== b.type.code) return a.type.code < b.type.code ? -1 : 1;
  return a.description < b.description ? -1 : a.description > b.description ? 1 : 0;
}

/** The status for an object: its messages, sorted and without repeats, at its generation. */
export function istioStatus(generation: number, messages: readonly ValidationMessage[]): IstioStatus {
  const seen = new Set<string>();
  const unique: ValidationMessage[] = [];
  for (const m of [...messages].sort(compareMessages)) {
    const id = JSON.stringify(m);
    if (seen.has(id)) continue;
    seen.add(id);
    unique.push(m);
  }
  return { observedGeneration: generation, validationMessages: unique };
}

/** The messages of a status as the server holds it (any shape), in a comparable form. */
function currentMessages(status: unknown): string {
  const list = typeof status === "object" && status !== null
    ? (status as { validationMessages?: unknown }).validationMessages
    : undefined;
  if (!Array.isArray(list) || list.length === 0) return "[]";
  return JSON.stringify(list.map((m) => {
    const x = (typeof m === "object" && m !== null ? m : {}) as Record<string, unknown>;
    const t = (typeof x.type === "object" && x.type !== null ? x.type : {}) as Record<string, unknown>;
    return {
      type: { code: t.code, name: t.name },
      level: x.level,
      description: x.description,
      ...(x.documentationUrl === undefined ? {} : { documentationUrl: x.documentationUrl }),
    };
  }));
}

/** The messages galley would write, in the same comparable form. */
function wantedMessages(s: IstioStatus): string {
  return JSON.stringify(s.validationMessages.map((m) => ({
    type: { code: m.type.code, name: m.type.name },
    level: m.level,
    description: m.description,
    ...(m.documentationUrl === undefined ? {} : { documentationUrl: m.documentationUrl }),
  })));
}

/**
 * Whether `wanted` must be written over the object's `current` status: when the messages differ,
 * or when there are messages and they were observed at another generation. An object with no
 * messages and none written is left alone, so a clean config causes no status writes at all.
 */
export function statusNeedsWrite(current: unknown, wanted: IstioStatus): boolean {
  if (currentMessages(current) !== wantedMessages(wanted)) return true;
  if (wanted.validationMessages.length === 0) return false;
  const observed = typeof current === "object" && current !== null
    ? Number((current as { observedGeneration?: unknown }).observedGeneration)
    : Number.NaN;
  return observed !== wanted.observedGeneration;
}

/**
 * The JSON merge patch (RFC 7386) of the `/status` subresource that puts `wanted` in place and
 * leaves other status fields (conditions written by others) untouched; no messages removes the
 * field.
 */
export function statusPatch(wanted: IstioStatus): { status: Record<string, unknown> } {
  return {
    status: {
      observedGeneration: wanted.observedGeneration,
      validationMessages: wanted.validationMessages.length === 0 ? null : wanted.validationMessages,
    },
  };
}
