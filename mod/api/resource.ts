/**
 * The shape of one configuration resource as galley holds it, and of the diagnostics that
 * parsing, validation and analysis produce about resources.
 */

/** A position in a source file; lines and columns count from 1. */
export interface SourcePos {
  readonly file: string;
  readonly line: number;
  readonly col: number;
}

/** Kubernetes-style object metadata, the subset meshd reads. */
export interface ObjectMeta {
  readonly name: string;
  /** Defaults to "default" when the document leaves it out (kubectl's habit). */
  readonly namespace: string;
  readonly labels?: Readonly<Record<string, string>>;
  readonly annotations?: Readonly<Record<string, string>>;
  /** Set by watch-based sources (etcd revision, Kubernetes resourceVersion). */
  readonly resourceVersion?: string;
}

/**
 * One parsed resource. `spec` is the document's spec as plain JSON data; after validation it
 * conforms to the typed model of its kind.
 */
export interface Resource<Spec = unknown> {
  /** API group, e.g. "networking.istio.io"; "" for none. */
  readonly group: string;
  /** API version as written, e.g. "v1beta1". */
  readonly version: string;
  readonly kind: string;
  readonly metadata: ObjectMeta;
  readonly spec: Spec;
  /** Where the document starts. */
  readonly source: SourcePos;
  /**
   * Position of a field inside the document, by its dotted path ("spec.http[0].route[1].weight").
   * Falls back to the nearest enclosing field that has a position, then to `source`.
   */
  readonly positionOf: (field: string) => SourcePos;
}

/** How serious a diagnostic is. Errors reject a resource; warnings and infos never do. */
export type Severity = "error" | "warning" | "info";

/** Something wrong (or worth saying) about a place in the configuration. */
export interface Diagnostic {
  readonly severity: Severity;
  /** Stable analyzer code (e.g. "MSH0101"); absent for plain validation errors. */
  readonly code?: string;
  readonly message: string;
  readonly pos?: SourcePos;
  /** "Kind namespace/name" of the resource concerned, when there is one. */
  readonly resource?: string;
  /** Dotted field path inside the resource, when the diagnostic is about one field. */
  readonly field?: string;
}

/** Identity of a resource across versions: group, kind, namespace and name (not the version). */
export function resourceKey(r: Pick<Resource, "group" | "kind" | "metadata">): string {
  return `${r.group}/${r.kind}/${r.metadata.namespace}/${r.metadata.name}`;
}

/** "Kind namespace/name", as diagnostics name a resource. */
export function resourceLabel(r: Pick<Resource, "kind" | "metadata">): string {
  return `${r.kind} ${r.metadata.namespace}/${r.metadata.name}`;
}

/**
 * Formats a diagnostic the way compilers do:
 * `file:line:col: Kind ns/name: spec.field: message` (parts that are unknown are left out).
 */
export function formatDiagnostic(d: Diagnostic): string {
  const parts: string[] = [];
  if (d.pos) parts.push(`${d.pos.file}:${d.pos.line}:${d.pos.col}`);
  if (d.code) {
    parts.push(
      `${d.severity === "error" ? "Error" : d.severity === "warning" ? "Warning" : "Info"} [${d.code}]`,
    );
  }
  if (d.resource) parts.push(d.resource);
  if (d.field) parts.push(d.field);
  parts.push(d.message);
  return parts.join(": ");
}
