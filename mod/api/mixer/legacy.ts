/**
 * Istio 1.x Mixer config as written, mapped onto meshd's three Mixer-model kinds:
 *
 * - per-adapter kinds (`kind: denier`, `prometheus`, …) become a `handler` with that
 *   `compiledAdapter` and the spec as `params`; per-template kinds (`kind: metric`,
 *   `checknothing`, …) become an `instance` with that `compiledTemplate` and the spec as `params`.
 *   Istio adapters and templates meshd does not compile in (`stackdriver`, `kubernetes`, …) are
 *   accepted with a warning and never run.
 * - snake_case field names (`instance_name`, `label_names`, …) become the camelCase names of the
 *   schema; keys of maps (dimensions, labels) are data and stay as written.
 * - expressions are read in one language per resource, by this rule:
 *   1. the `policy.istio.io/lang` annotation, as Istio reads it: `CEL` is CEL, `CEXL` and
 *      `COMPAT` are the 1.x syntax;
 *   2. otherwise 1.x when the resource is written the 1.x way: a per-adapter or per-template kind,
 *      or a snake_case field name;
 *   3. otherwise each expression is tried as CEL and as 1.x: when one is valid CEL, the resource
 *      is CEL, unless the 1.x reading of it is also valid and means something else (a duration
 *      literal, `.matches()`), which is an error asking for the annotation; when some expression
 *      is valid only as 1.x, the whole resource is 1.x.
 *   So a valid expression is never read in the language its author did not mean: where both
 *   readings are valid and differ, nothing is guessed.
 *
 * @module
 */
import { compileExpression } from "../cel.ts";
import type { Resource } from "../resource.ts";
import { fieldPath, type Schema } from "../schema.ts";
import { adapterDescriptor, adapterNames } from "./table.ts";
import { templateDescriptor, templateNames } from "./templates.ts";
import { translate1x } from "./lang1x.ts";

/** Istio's annotation choosing a resource's expression language. */
export const LANG_ANNOTATION = "policy.istio.io/lang";

/** Istio 1.x adapters meshd does not run: their handlers are accepted with a warning. */
export const FOREIGN_ADAPTER_KINDS: readonly string[] = [
  "apigee",
  "bypass",
  "circonus",
  "cloudwatch",
  "dogstatsd",
  "fluentd",
  "kubernetesenv",
  "list",
  "noop",
  "opa",
  "rbac",
  "servicecontrol",
  "signalfx",
  "solarwinds",
  "stackdriver",
  "statsd",
];

/** Istio 1.x templates meshd does not run: their instances are accepted with a warning. */
export const FOREIGN_TEMPLATE_KINDS: readonly string[] = ["analytics", "apikey", "edge", "kubernetes"];

/** Every per-adapter and per-template kind of Istio 1.x meshd reads. */
export const LEGACY_KINDS: readonly string[] = [
  ...adapterNames,
  ...FOREIGN_ADAPTER_KINDS,
  ...templateNames,
  ...FOREIGN_TEMPLATE_KINDS,
];

/** A Mixer resource in meshd's form, and what mapping it said. */
export interface Normalized {
  /** The resource as a `handler`, `instance` or `rule`; spec in camelCase, expressions in CEL. */
  readonly resource: Resource;
  /** Problems found while mapping (field paths of the resource as written). */
  readonly problems: readonly { field: string; message: string; severity: "error" | "warning" }[];
  /** Expression language the resource was read in. */
  readonly language: "cel" | "mixer1x";
  /** The adapter or template the resource names that meshd does not run, if any. */
  readonly foreign?: string;
  /** The field path as written for a path of the mapped resource. */
  readonly origin: (field: string) => string;
}

const SNAKE = /^[a-z][a-z0-9]*(_[a-z0-9]+)+$/;
const camel = (s: string) => s.replace(/_([a-z0-9])/g, (_, c: string) => c.toUpperCase());

/**
 * Renames snake_case object fields to the schema's camelCase names; map keys stay. `moved`
 * records new path → written path for every renamed field.
 */
function camelize(
  value: unknown,
  schema: Schema | undefined,
  path: string,
  from: string,
  moved: Map<string, string>,
): unknown {
  if (schema?.type === "string" && schema.enum && typeof value === "number" && Number.isInteger(value)) {
    return schema.enum[value] ?? value; // protobuf's JSON form allows an enum's number
  }
  if (!schema || value === null || typeof value !== "object") return value;
  if (Array.isArray(value)) {
    if (schema.type !== "array") return value;
    return value.map((v, i) => camelize(v, schema.items, `${path}[${i}]`, `${from}[${i}]`, moved));
  }
  const obj = value as Record<string, unknown>;
  if (schema.type === "map") {
    return Object.fromEntries(
      Object.entries(obj).map((
        [k, v],
      ) => [k, camelize(v, schema.values, fieldPath(path, k), fieldPath(from, k), moved)]),
    );
  }
  if (schema.type !== "object") return value;
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(obj)) {
    const name = !(k in schema.fields) && SNAKE.test(k) && camel(k) in schema.fields ? camel(k) : k;
    if (name !== k) moved.set(fieldPath(path, name), fieldPath(from, k));
    out[name] = camelize(v, schema.fields[name], fieldPath(path, name), fieldPath(from, k), moved);
  }
  return out;
}

/** True when some object key of `value` is snake_case. */
function usesSnakeCase(value: unknown): boolean {
  if (value === null || typeof value !== "object") return false;
  if (Array.isArray(value)) return value.some(usesSnakeCase);
  return Object.entries(value).some(([k, v]) => SNAKE.test(k) || usesSnakeCase(v));
}

interface Leaf {
  readonly path: string;
  readonly text: string;
  readonly set: (cel: string) => void;
}

/** The expression leaves of a canonical instance or rule spec (mutable copies). */
function expressionLeaves(kind: string, spec: Record<string, unknown>): Leaf[] {
  const out: Leaf[] = [];
  const walk = (holder: Record<string, unknown> | unknown[], key: string | number, path: string) => {
    const v = (holder as Record<string | number, unknown>)[key];
    if (typeof v === "string") {
      out.push({ path, text: v, set: (cel) => ((holder as Record<string | number, unknown>)[key] = cel) });
    } else if (Array.isArray(v)) {
      v.forEach((_, i) => walk(v, i, `${path}[${i}]`));
    } else if (v !== null && typeof v === "object") {
      for (const k of Object.keys(v)) walk(v as Record<string, unknown>, k, fieldPath(path, k));
    }
  };
  if (kind === "instance") {
    if (spec.params !== null && typeof spec.params === "object") walk(spec, "params", "spec.params");
  } else if (kind === "rule") {
    if (typeof spec.match === "string" && spec.match.trim() !== "") walk(spec, "match", "spec.match");
    for (const field of ["requestHeaderOperations", "responseHeaderOperations"]) {
      const ops = spec[field];
      if (!Array.isArray(ops)) continue;
      ops.forEach((op, i) => {
        if (op && typeof op === "object" && Array.isArray(op.values)) {
          walk(op as Record<string, unknown>, "values", `spec.${field}[${i}].values`);
        }
      });
    }
  }
  return out;
}

const deepCopy = <T>(v: T): T => (v === undefined ? v : JSON.parse(JSON.stringify(v)));

const memo = new WeakMap<Resource, Normalized>();

/**
 * Maps a config.istio.io resource (canonical or Istio 1.x form) to meshd's form. Canonical CEL
 * resources come back as they are (the same object). Memoised per resource object.
 */
export function normalizeMixer(r: Resource, ruleSchema?: Schema): Normalized {
  let n = memo.get(r);
  if (!n) {
    n = normalize(r, ruleSchema);
    memo.set(r, n);
  }
  return n;
}

function normalize(r: Resource, ruleSchema: Schema | undefined): Normalized {
  const problems: { field: string; message: string; severity: "error" | "warning" }[] = [];
  const written = (r.spec ?? {}) as Record<string, unknown>;
  const moved = new Map<string, string>();
  let kind = r.kind;
  let spec: Record<string, unknown>;
  let foreign: string | undefined;
  const isAdapter = adapterNames.includes(r.kind as never) || FOREIGN_ADAPTER_KINDS.includes(r.kind);
  const isTemplate = templateNames.includes(r.kind as never) || FOREIGN_TEMPLATE_KINDS.includes(r.kind);
  if (isAdapter || isTemplate) {
    kind = isAdapter ? "handler" : "instance";
    const schema = isAdapter ? adapterDescriptor(r.kind)?.params : templateDescriptor(r.kind)?.params;
    if (!schema) {
      foreign = r.kind;
      problems.push({
        field: "kind",
        severity: "warning",
        message: `Istio's ${r.kind} ${isAdapter ? "adapter" : "template"} is not part of meshd; ` +
          `this ${kind} is accepted and never runs`,
      });
    }
    const params = schema ? camelize(written, schema, "spec.params", "spec", moved) : written;
    moved.set("spec.params", "spec");
    spec = isAdapter
      ? (schema ? { compiledAdapter: r.kind, params } : { adapter: r.kind, params })
      : { compiledTemplate: schema ? r.kind : "reportnothing", params: schema ? params : {} };
  } else if (r.kind === "handler") {
    const a = typeof written.compiledAdapter === "string"
      ? adapterDescriptor(written.compiledAdapter)
      : undefined;
    spec = { ...written, params: camelize(written.params, a?.params, "spec.params", "spec.params", moved) };
    if (written.params === undefined) delete spec.params;
  } else if (r.kind === "instance") {
    const tm = typeof written.compiledTemplate === "string"
      ? templateDescriptor(written.compiledTemplate)
      : undefined;
    spec = { ...written, params: camelize(written.params, tm?.params, "spec.params", "spec.params", moved) };
    if (written.params === undefined) delete spec.params;
  } else {
    spec = camelize(written, ruleSchema, "spec", "spec", moved) as Record<string, unknown>;
  }
  const origin = (path: string) => {
    for (let p = path; p !== ""; p = p.replace(/(\.[^.[\]]*|\[\d+\])$/, "")) {
      const m = moved.get(p);
      if (m !== undefined) return m + path.slice(p.length);
      if (!/[.[]/.test(p)) break;
    }
    return path;
  };

  const language = chooseLanguage(r, written, isAdapter || isTemplate, kind, spec, origin, problems);
  if (language === "mixer1x") {
    spec = deepCopy(spec);
    for (const leaf of expressionLeaves(kind, spec)) {
      const t = translate1x(leaf.text);
      if (t.ok) leaf.set(t.cel);
      else {
        problems.push({
          field: origin(leaf.path),
          severity: "error",
          message: `invalid Mixer 1.x expression ${JSON.stringify(leaf.text)}: ${t.message}`,
        });
      }
    }
  }
  if (kind === r.kind && spec === written && moved.size === 0) {
    return { resource: r, problems, language, foreign, origin };
  }
  const resource: Resource = {
    ...r,
    kind,
    spec,
    positionOf: (field: string) => r.positionOf(origin(field)),
  };
  return { resource, problems, language, foreign, origin };
}

/** Renames the snake_case fields of `spec` to the camelCase names of `schema` (Istio 1.x spelling). */
export function camelizeSpec(spec: unknown, schema: Schema): unknown {
  return camelize(spec, schema, "spec", "spec", new Map());
}

function chooseLanguage(
  r: Resource,
  written: Record<string, unknown>,
  legacyKind: boolean,
  kind: string,
  spec: Record<string, unknown>,
  origin: (p: string) => string,
  problems: { field: string; message: string; severity: "error" | "warning" }[],
): "cel" | "mixer1x" {
  const declared = r.metadata.annotations?.[LANG_ANNOTATION];
  if (declared !== undefined) {
    if (declared === "CEL") return "cel";
    if (declared === "CEXL" || declared === "COMPAT") return "mixer1x";
    problems.push({
      field: `metadata.annotations.${LANG_ANNOTATION}`,
      severity: "error",
      message: `${LANG_ANNOTATION} must be CEL, CEXL or COMPAT, not ${JSON.stringify(declared)}`,
    });
    return "cel";
  }
  if (legacyKind || usesSnakeCase(kind === "rule" ? written : written.params)) return "mixer1x";
  const leaves = expressionLeaves(kind, spec);
  const readings = leaves.map((leaf) => ({
    leaf,
    cel: compileExpression(leaf.text).ok,
    x: translate1x(leaf.text),
  }));
  if (
    readings.some((x) =>
      (!x.cel || (x.x.ok && x.x.typed.length > 0)) && x.x.ok && compileExpression(x.x.cel).ok
    )
  ) {
    return "mixer1x";
  }
  for (const { leaf, cel, x } of readings) {
    if (cel && x.ok && x.divergent.length > 0 && compileExpression(x.cel).ok) {
      problems.push({
        field: origin(leaf.path),
        severity: "error",
        message: `${JSON.stringify(leaf.text)} is valid CEL and valid Mixer 1.x with different meanings ` +
          `(${x.divergent.join("; ")}); set the annotation ${LANG_ANNOTATION}: CEL or CEXL`,
      });
    }
  }
  return "cel";
}
