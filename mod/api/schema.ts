/**
 * A small declarative schema language for resource specs, and the walker that checks plain JSON
 * data against it.
 *
 * A schema describes the shape (objects with known fields, strings, numbers, booleans, enums,
 * arrays, maps, mutually exclusive field groups) and carries optional `check` functions for the
 * semantic rules of a kind. The walker reports unknown fields (with a did-you-mean), wrong types,
 * missing required fields and enum violations as {@link Diagnostic}s whose `field` is the dotted
 * path and whose `pos` comes from `resource.positionOf(field)`.
 *
 * A node's `check` runs only when the node and everything below it had no errors, so checks can
 * trust the types the schema promised.
 *
 * A schema is also the single source of its data's static type: `Infer<typeof schema>` is the
 * type of a value that passed the walk, so a kind declares its schema once and exports the
 * inferred type instead of a hand-written interface that could drift from it.
 *
 * The file also holds the string formats the schemas share (durations, IP addresses, CIDR blocks,
 * DNS names, Kubernetes label syntax) and the did-you-mean helper.
 *
 * @module
 */

import { parseDuration } from "../shared/duration.ts";
import { suggest as suggestByDistance } from "../shared/suggest.ts";
import { type Diagnostic, type Resource, resourceLabel, type Severity } from "./resource.ts";

/** Receives the problems a schema walk or a semantic check finds. */
export interface Reporter {
  /** The resource being checked; positions of fields come from it. */
  readonly resource: Resource;
  /** Reports an error about the field at `path` (a dotted path such as `spec.http[0].route`). */
  error(path: string, message: string): void;
  /** Reports a warning about the field at `path`; warnings never reject a resource. */
  warning(path: string, message: string): void;
}

/** A semantic check on a value that already matched its schema. */
export type Check<T> = (value: T, path: string, report: Reporter) => void;

interface SchemaBase<T> {
  /** The field must be present and not null (strings must also be non-empty). */
  readonly required?: boolean;
  /** Runs after the value and all its children matched their schemas. */
  readonly check?: Check<T>;
}

/** A string, optionally limited to an enum. */
export interface StringSchema extends SchemaBase<string> {
  readonly type: "string";
  readonly enum?: readonly string[];
  /** Rejects "" with "must not be empty". */
  readonly nonEmpty?: boolean;
}

/** A string limited to the values `E` (what {@link t.enum} makes). */
export interface EnumSchema<E extends string = string> extends StringSchema {
  readonly enum: readonly E[];
}

/** A number, optionally an integer, optionally with bounds. */
export interface NumberSchema extends SchemaBase<number> {
  readonly type: "number";
  readonly integer?: boolean;
  readonly min?: number;
  readonly max?: number;
}

/** A boolean. */
export interface BoolSchema extends SchemaBase<boolean> {
  readonly type: "bool";
}

/** A list whose items all match `items`. */
export interface ArraySchema<I extends Schema = Schema> extends SchemaBase<unknown[]> {
  readonly type: "array";
  readonly items: I;
  /** Rejects lists shorter than this with "must have at least N entries". */
  readonly minItems?: number;
}

/** A map with string keys whose values all match `values`. */
export interface MapSchema<V extends Schema = Schema> extends SchemaBase<Record<string, unknown>> {
  readonly type: "map";
  readonly values: V;
  /** Checks each key; the path it receives is the path of the entry. */
  readonly key?: Check<string>;
  /** Rejects maps with fewer entries than this. */
  readonly minEntries?: number;
}

/** The fields of an object schema, by name. */
export type Fields = Readonly<Record<string, Schema>>;

/** An object with a fixed set of known fields. */
export interface ObjectSchema<F extends Fields = Fields> extends SchemaBase<Record<string, unknown>> {
  readonly type: "object";
  readonly fields: F;
  /** Groups of fields of which at most one may be set (protobuf `oneof`). */
  readonly oneOf?: readonly (readonly string[])[];
  /** Groups of fields of which exactly one must be set. */
  readonly exactlyOneOf?: readonly (readonly string[])[];
  /** Accept fields not listed in `fields` without complaint. */
  readonly openFields?: boolean;
}

/** Any JSON value (used for free-form data such as adapter parameters). */
export interface AnySchema extends SchemaBase<unknown> {
  readonly type: "any";
}

/** A node of the schema language. */
export type Schema =
  | StringSchema
  | NumberSchema
  | BoolSchema
  | ArraySchema
  | MapSchema
  | ObjectSchema
  | AnySchema;

// ---------------------------------------------------------------------------------------------
// Static types from schemas
// ---------------------------------------------------------------------------------------------

/** A schema node marked `required: true`: a field that must be present. */
export interface RequiredMark {
  readonly required: true;
}

/** `RequiredMark` when `R` is exactly `true`, otherwise nothing (the field stays optional). */
type Req<R extends boolean> = [R] extends [true] ? RequiredMark : unknown;

/** Flattens an intersection of object types into one object type (for readable types). */
type Simplify<T> = { [K in keyof T]: T[K] };

/**
 * The static type of a value that matched the object fields `F`: fields marked required are
 * non-optional, the others optional; every field is readonly.
 */
export type InferFields<F> = Simplify<
  & { readonly [K in keyof F as F[K] extends RequiredMark ? K : never]: Infer<F[K]> }
  & { readonly [K in keyof F as F[K] extends RequiredMark ? never : K]?: Infer<F[K]> }
>;

/**
 * The static type of a value that matched schema `S`: objects become readonly records of their
 * fields (optional unless required), enums unions of their values, arrays readonly arrays, maps
 * readonly records with string keys, `t.any()` unknown. Use it as `Infer<typeof someSchema>`.
 */
export type Infer<S> = Schema extends S ? unknown : InferNode<S>;

/** {@link Infer} of one node that is narrower than any schema. */
type InferNode<S> = S extends ObjectSchema<infer F> ? InferFields<F>
  : S extends ArraySchema<infer I> ? readonly Infer<I>[]
  : S extends MapSchema<infer V> ? Readonly<Record<string, Infer<V>>>
  : S extends EnumSchema<infer E> ? E
  : S extends StringSchema ? string
  : S extends NumberSchema ? number
  : S extends BoolSchema ? boolean
  : unknown;

// ---------------------------------------------------------------------------------------------
// Constructors
// ---------------------------------------------------------------------------------------------

/** The options of a schema node `S` besides its type, its children and `required`. */
type Opts<S, Children extends string = never> = Omit<S, "type" | "required" | "check" | Children> & {
  /** The field must be present and not null (strings must also be non-empty). */
  readonly required?: boolean;
};

/** Options whose `required` is captured as `R`, so a `required: true` node is typed as required. */
type TypedOpts<S, T, R extends boolean, Children extends string = never> =
  & Omit<S, "type" | "required" | "check" | Children>
  & {
    /** The field must be present and not null (strings must also be non-empty). */
    readonly required?: R;
    /** Runs after the value and all its children matched their schemas. */
    readonly check?: Check<T>;
  };

/** Legacy options of `t.array`, `t.map` and `t.object` called with an explicit model type `T`. */
type ModelOpts<S, T, Children extends string> = Opts<S, Children> & { readonly check?: Check<T> };

/**
 * Types a freshly built node as its constructor's precise type. The walker reads only the runtime
 * fields, which are the ones given; the precise type adds what they already say (`required: true`,
 * the enum values, the children's types).
 */
function node<S>(value: unknown): S {
  return value as S;
}

function arrayNode<I extends Schema, R extends boolean>(
  items: I,
  opts?: TypedOpts<ArraySchema, readonly Infer<I>[], R, "items">,
): ArraySchema<I> & Req<R>;
function arrayNode<T>(items: Schema, opts?: ModelOpts<ArraySchema, T[], "items">): ArraySchema;
function arrayNode(items: Schema, opts: object = {}): ArraySchema {
  return node({ type: "array", items, ...opts });
}

function mapNode<V extends Schema, R extends boolean>(
  values: V,
  opts?: TypedOpts<MapSchema, Readonly<Record<string, Infer<V>>>, R, "values">,
): MapSchema<V> & Req<R>;
function mapNode<T>(values: Schema, opts?: ModelOpts<MapSchema, Record<string, T>, "values">): MapSchema;
function mapNode(values: Schema, opts: object = {}): MapSchema {
  return node({ type: "map", values, ...opts });
}

function objectNode<F extends Fields, R extends boolean>(
  fields: F,
  opts?: TypedOpts<ObjectSchema, InferFields<F>, R, "fields">,
): ObjectSchema<F> & Req<R>;
function objectNode<T = Record<string, unknown>>(
  fields: Fields,
  opts?: ModelOpts<ObjectSchema, T, "fields">,
): ObjectSchema;
function objectNode(fields: Fields, opts: object = {}): ObjectSchema {
  return node({ type: "object", fields, ...opts });
}

/**
 * Constructors for schema nodes, e.g.
 * `t.object({ hosts: t.array(t.string(), { required: true }), weight: t.int({ min: 0, max: 100 }) })`.
 *
 * Each returns a node typed precisely enough for {@link Infer}: `required: true` makes the field
 * non-optional, `t.enum` keeps its values as a union, and the `check` of `t.object`, `t.array`
 * and `t.map` receives the inferred type. `t.object<T>(...)`, `t.array<T>(...)` and
 * `t.map<T>(...)` with an explicit `T` give `check` that type instead and infer nothing.
 */
export const t = {
  /** A string; `opts.enum` limits it to a set of values (prefer {@link t.enum} for a typed one). */
  string: <R extends boolean = false>(
    opts: TypedOpts<StringSchema, string, R> = {},
  ): StringSchema & Req<R> => node({ type: "string", ...opts }),
  /** One of the given strings (a protobuf enum in its JSON form); inferred as their union. */
  enum: <const V extends readonly string[], R extends boolean = false>(
    values: V,
    opts: TypedOpts<StringSchema, V[number], R, "enum"> = {},
  ): EnumSchema<V[number]> & Req<R> => node({ type: "string", enum: values, ...opts }),
  /** Any number. */
  number: <R extends boolean = false>(
    opts: TypedOpts<NumberSchema, number, R, "integer"> = {},
  ): NumberSchema & Req<R> => node({ type: "number", ...opts }),
  /** An integer. */
  int: <R extends boolean = false>(
    opts: TypedOpts<NumberSchema, number, R, "integer"> = {},
  ): NumberSchema & Req<R> => node({ type: "number", integer: true, ...opts }),
  /** A boolean. */
  bool: <R extends boolean = false>(
    opts: TypedOpts<BoolSchema, boolean, R> = {},
  ): BoolSchema & Req<R> => node({ type: "bool", ...opts }),
  /** A list of `items`; `opts.check` receives the list as inferred from `items`. */
  array: arrayNode,
  /** A map from strings to `values`; `opts.check` receives the map as inferred from `values`. */
  map: mapNode,
  /**
   * An object with known fields; anything else is reported as an unknown field. `opts.check`
   * receives the object as inferred from `fields`.
   */
  object: objectNode,
  /** Any JSON value. */
  any: <R extends boolean = false>(opts: TypedOpts<AnySchema, unknown, R> = {}): AnySchema & Req<R> =>
    node({ type: "any", ...opts }),
  /** The same node with `required: true`: a field that must be present. */
  required: <S extends Schema>(schema: S): S & RequiredMark => ({ ...schema, required: true }),
  /**
   * A duration string in Go/protobuf syntax ("1.5s", "100ms", "1h2m"). By default it must be at
   * least 1ms and use at most millisecond precision, as Istio requires of its durations.
   */
  duration: <R extends boolean = false>(
    opts: DurationOptions & TypedOpts<StringSchema, string, R, "enum"> = {},
  ): StringSchema & Req<R> => {
    const { min = "1ms", max, precision = "ms", required, check } = opts;
    return node({
      type: "string",
      required,
      check: (value: string, path: string, report: Reporter) => {
        const message = durationProblem(value, { min, max, precision });
        if (message) report.error(path, message);
        else check?.(value, path, report);
      },
    });
  },
};

/** Limits for {@link t.duration}. */
export interface DurationOptions {
  /** Smallest accepted duration ("0" allows zero); default "1ms". */
  readonly min?: string;
  /** Largest accepted duration; default unlimited. */
  readonly max?: string;
  /** Finest accepted unit; default "ms". */
  readonly precision?: "s" | "ms" | "ns";
}

/**
 * Explains what is wrong with a duration string, or returns undefined when it is a valid duration
 * of at least `opts.min` (default "1ms"), at most `opts.max`, and no finer than `opts.precision`
 * (default "ms").
 */
export function durationProblem(value: string, opts: DurationOptions = {}): string | undefined {
  const { min = "1ms", max, precision = "ms" } = opts;
  const ms = parseDuration(value);
  if (ms === undefined) {
    const quoted = JSON.stringify(value);
    return `invalid duration ${quoted}: use a number with a unit, like "1.5s", "100ms" or "1h2m"`;
  }
  if (ms < 0) return `duration must be positive, got ${JSON.stringify(value)}`;
  if (ms < parseDuration(min)!) return `duration must be at least ${min}`;
  if (max !== undefined && ms > parseDuration(max)!) return `duration must be at most ${max}`;
  const unit = precision === "s" ? 1000 : precision === "ms" ? 1 : 0;
  if (unit > 0 && Math.abs(ms / unit - Math.round(ms / unit)) > 1e-6) {
    return precision === "s"
      ? "only whole seconds are supported for this duration"
      : "only durations to millisecond precision are supported";
  }
  return undefined;
}

// ---------------------------------------------------------------------------------------------
// Walking data against a schema
// ---------------------------------------------------------------------------------------------

/**
 * Checks data of `resource` against `schema` and returns the diagnostics. The data is
 * `opts.value` (default the resource's spec) found at `opts.path` (default "spec").
 */
export function checkSchema(
  resource: Resource,
  schema: Schema,
  opts: { readonly value?: unknown; readonly path?: string } = {},
): Diagnostic[] {
  const report = createReporter(resource);
  walk("value" in opts ? opts.value : resource.spec, schema, opts.path ?? "spec", report);
  return report.diagnostics;
}

/** A {@link Reporter} that collects diagnostics in an array. */
export interface CollectingReporter extends Reporter {
  readonly diagnostics: Diagnostic[];
  /** Number of errors reported so far. */
  readonly errorCount: number;
}

/** Creates a reporter whose diagnostics carry the resource's label and field positions. */
export function createReporter(resource: Resource): CollectingReporter {
  const diagnostics: Diagnostic[] = [];
  let errorCount = 0;
  const label = resourceLabel(resource);
  const push = (severity: Severity, field: string, message: string) => {
    diagnostics.push({ severity, message, pos: resource.positionOf(field), resource: label, field });
  };
  return {
    resource,
    diagnostics,
    get errorCount() {
      return errorCount;
    },
    error(path, message) {
      errorCount++;
      push("error", path, message);
    },
    warning(path, message) {
      push("warning", path, message);
    },
  };
}

/**
 * Checks `value`, found at `at.path`, against `schema`, reporting through `at.report` (use it
 * inside a check to validate a part whose schema depends on other fields). Returns true when no
 * error was found in this subtree. Absent values (undefined or null) are the caller's business:
 * pass only present ones.
 */
export function walkSchema(
  schema: Schema,
  value: unknown,
  at: { readonly path: string; readonly report: Reporter },
): boolean {
  return walk(value, schema, at.path, at.report);
}

function walk(value: unknown, schema: Schema, path: string, report: Reporter): boolean {
  const counter = errorCounter(report);
  switch (schema.type) {
    case "string":
      walkString(value, schema, path, counter);
      break;
    case "number":
      walkNumber(value, schema, path, counter);
      break;
    case "bool":
      if (typeof value !== "boolean") counter.error(path, typeMessage("a boolean (true or false)", value));
      break;
    case "array":
      walkArray(value, schema, path, counter);
      break;
    case "map":
      walkMap(value, schema, path, counter);
      break;
    case "object":
      walkObject(value, schema, path, counter);
      break;
    case "any":
      break;
  }
  if (counter.errors === 0 && schema.check) (schema.check as Check<unknown>)(value, path, counter);
  return counter.errors === 0;
}

interface CountingReporter extends Reporter {
  readonly errors: number;
}

function errorCounter(inner: Reporter): CountingReporter {
  let errors = 0;
  return {
    resource: inner.resource,
    get errors() {
      return errors;
    },
    error(path, message) {
      errors++;
      inner.error(path, message);
    },
    warning: (path, message) => inner.warning(path, message),
  };
}

function walkString(value: unknown, schema: StringSchema, path: string, report: Reporter): void {
  if (typeof value !== "string") {
    const hint = typeof value === "number" || typeof value === "boolean"
      ? `; quote it: "${String(value)}"`
      : "";
    report.error(path, typeMessage("a string", value) + hint);
    return;
  }
  if (schema.enum && !schema.enum.includes(value)) {
    report.error(path, enumMessage(value, schema.enum));
    return;
  }
  if ((schema.nonEmpty || schema.required) && value === "") report.error(path, "must not be empty");
}

function walkNumber(value: unknown, schema: NumberSchema, path: string, report: Reporter): void {
  if (typeof value !== "number" || !Number.isFinite(value)) {
    report.error(path, typeMessage(schema.integer ? "an integer" : "a number", value));
    return;
  }
  if (schema.integer && !Number.isInteger(value)) {
    report.error(path, `must be an integer, got ${value}`);
    return;
  }
  const problem = rangeProblem(value, schema.min, schema.max);
  if (problem) report.error(path, problem);
}

/**
 * Explains why `value` is outside `min`..`max` (either bound optional), naming the value first:
 * `70000: must be 1–65535`, `-1: must not be negative`; undefined when it is inside.
 */
export function rangeProblem(value: number, min?: number, max?: number): string | undefined {
  if ((min === undefined || value >= min) && (max === undefined || value <= max)) return undefined;
  if (min !== undefined && max !== undefined) return `${value}: must be ${min}–${max}`;
  if (min !== undefined) return `${value}: ${min === 0 ? "must not be negative" : `must be at least ${min}`}`;
  return `${value}: must be at most ${max}`;
}

function walkArray(value: unknown, schema: ArraySchema, path: string, report: Reporter): void {
  if (!Array.isArray(value)) {
    report.error(path, typeMessage("a list", value));
    return;
  }
  if (schema.minItems !== undefined && value.length < schema.minItems) {
    report.error(
      path,
      schema.minItems === 1
        ? "must have at least one entry"
        : `must have at least ${schema.minItems} entries`,
    );
  }
  value.forEach((item, i) => {
    const itemPath = indexPath(path, i);
    if (item === null || item === undefined) report.error(itemPath, "list entries must not be null");
    else walk(item, schema.items, itemPath, report);
  });
}

function walkMap(value: unknown, schema: MapSchema, path: string, report: Reporter): void {
  if (!isPlainObject(value)) {
    report.error(path, typeMessage("a map", value));
    return;
  }
  const keys = Object.keys(value);
  if (schema.minEntries !== undefined && keys.length < schema.minEntries) {
    report.error(
      path,
      schema.minEntries === 1
        ? "must have at least one entry"
        : `must have at least ${schema.minEntries} entries`,
    );
  }
  for (const key of keys) {
    const entryPath = fieldPath(path, key);
    schema.key?.(key, entryPath, report);
    const entry = value[key];
    if (entry === null || entry === undefined) {
      if (schema.values.type === "string") report.error(entryPath, "must be a string, got null");
      else if (schema.values.required) report.error(entryPath, "must not be null");
      continue;
    }
    walk(entry, schema.values, entryPath, report);
  }
}

function walkObject(value: unknown, schema: ObjectSchema, path: string, report: Reporter): void {
  if (!isPlainObject(value)) {
    report.error(path, typeMessage("an object", value));
    return;
  }
  const known = Object.keys(schema.fields);
  if (!schema.openFields) {
    for (const key of Object.keys(value)) {
      if (Object.hasOwn(schema.fields, key)) continue;
      const guess = suggest(key, known);
      report.error(
        fieldPath(path, key),
        `unknown field ${JSON.stringify(key)}` + (guess ? ` (did you mean ${JSON.stringify(guess)}?)` : ""),
      );
    }
  }
  for (const [name, fieldSchema] of Object.entries(schema.fields)) {
    const child = value[name];
    const childPath = fieldPath(path, name);
    if (child === undefined || child === null) {
      if (fieldSchema.required) report.error(childPath, "is required");
      continue;
    }
    walk(child, fieldSchema, childPath, report);
  }
  for (const group of schema.oneOf ?? []) {
    const present = group.filter((name) => isSet(value[name]));
    if (present.length > 1) {
      report.error(
        fieldPath(path, present[1]!),
        `only one of ${listWords(group, "or")} may be set; found ${listWords(present, "and")}`,
      );
    }
  }
  for (const group of schema.exactlyOneOf ?? []) {
    const present = group.filter((name) => isSet(value[name]));
    if (present.length === 0) report.error(path, `exactly one of ${listWords(group, "or")} must be set`);
    else if (present.length > 1) {
      report.error(
        fieldPath(path, present[1]!),
        `only one of ${listWords(group, "or")} may be set; found ${listWords(present, "and")}`,
      );
    }
  }
}

function isSet(v: unknown): boolean {
  return v !== undefined && v !== null;
}

function listWords(words: readonly string[], conj: string): string {
  if (words.length <= 1) return words.join("");
  return `${words.slice(0, -1).join(", ")} ${conj} ${words[words.length - 1]}`;
}

function typeMessage(expected: string, value: unknown): string {
  return `must be ${expected}, got ${describeValue(value)}`;
}

/** Describes a JSON value for an error message: `a list`, `the number 42`, `the string "x"`. */
export function describeValue(value: unknown): string {
  if (value === null || value === undefined) return "null";
  if (Array.isArray(value)) return "a list";
  switch (typeof value) {
    case "string":
      return `the string ${JSON.stringify(value.length > 40 ? value.slice(0, 40) + "…" : value)}`;
    case "number":
      return `the number ${value}`;
    case "boolean":
      return `the boolean ${value}`;
    case "object":
      return "a map";
    default:
      return typeof value;
  }
}

function enumMessage(value: string, values: readonly string[]): string {
  const guess = suggest(value, values);
  return `must be one of ${values.join(", ")}; got ${JSON.stringify(value)}` +
    (guess ? ` (did you mean ${guess}?)` : "");
}

/** True for a non-null, non-array object (a JSON map). */
export function isPlainObject(v: unknown): v is Record<string, unknown> {
  return typeof v === "object" && v !== null && !Array.isArray(v) && !(v instanceof Uint8Array);
}

// ---------------------------------------------------------------------------------------------
// Field paths
// ---------------------------------------------------------------------------------------------

const plainKey = /^[A-Za-z_][A-Za-z0-9_]*$/;

/**
 * The path of field `key` under `parent`: `parent.key`, or `parent["key"]` when the key is not a
 * plain identifier (header names, label keys, port numbers).
 */
export function fieldPath(parent: string, key: string): string {
  if (plainKey.test(key)) return parent === "" ? key : `${parent}.${key}`;
  return `${parent}[${JSON.stringify(key)}]`;
}

/** The path of list item `index` under `parent`: `parent[index]`. */
export function indexPath(parent: string, index: number): string {
  return `${parent}[${index}]`;
}

/** One step of a field path: a map key or a list index. */
export type PathSegment = string | number;

/**
 * Splits a dotted field path (`spec.http[0].route[1].weight`, `spec.selector["app.kubernetes.io/name"]`)
 * into segments. Returns undefined for a malformed path.
 */
export function splitFieldPath(path: string): PathSegment[] | undefined {
  const segments: PathSegment[] = [];
  let i = 0;
  while (i < path.length) {
    const ch = path[i];
    if (ch === ".") {
      i++;
      continue;
    }
    if (ch === "[") {
      const close = path[i + 1] === '"' ? closingQuote(path, i + 1) : path.indexOf("]", i);
      if (close < 0) return undefined;
      if (path[i + 1] === '"') {
        try {
          segments.push(JSON.parse(path.slice(i + 1, close + 1)) as string);
        } catch {
          return undefined;
        }
        if (path[close + 1] !== "]") return undefined;
        i = close + 2;
      } else {
        const n = Number(path.slice(i + 1, close));
        if (!Number.isInteger(n) || n < 0) return undefined;
        segments.push(n);
        i = close + 1;
      }
      continue;
    }
    let end = i;
    while (end < path.length && path[end] !== "." && path[end] !== "[") end++;
    segments.push(path.slice(i, end));
    i = end;
  }
  return segments;
}

function closingQuote(s: string, open: number): number {
  for (let i = open + 1; i < s.length; i++) {
    if (s[i] === "\\") i++;
    else if (s[i] === '"') return i;
  }
  return -1;
}

// ---------------------------------------------------------------------------------------------
// Did you mean
// ---------------------------------------------------------------------------------------------

/**
 * The candidate `word` was probably meant to be: the shared edit-distance suggestion, or else a
 * candidate that differs from `word` by swapping two adjacent letters ("sepc" for "spec"), the
 * commonest typo, which plain edit distance counts as two edits.
 */
export function suggest(word: string, candidates: Iterable<string>): string | undefined {
  const list = [...candidates];
  return suggestByDistance(word, list) ??
    list.find((c) => isTransposition(word.toLowerCase(), c.toLowerCase()));
}

function isTransposition(a: string, b: string): boolean {
  if (a.length !== b.length || a === b) return false;
  let i = 0;
  while (a[i] === b[i]) i++;
  return a[i] === b[i + 1] && a[i + 1] === b[i] && a.slice(i + 2) === b.slice(i + 2);
}

// ---------------------------------------------------------------------------------------------
// String formats
// ---------------------------------------------------------------------------------------------

/**
 * Parses an IPv4 or IPv6 address (no zone, no CIDR suffix) into its 4 or 16 bytes; undefined when
 * the text is not an address. IPv4 parts with leading zeros are rejected, as Go's netip does.
 */
export function parseIP(text: string): Uint8Array | undefined {
  if (text.includes(":")) return parseIPv6(text);
  return parseIPv4(text);
}

function parseIPv4(text: string): Uint8Array | undefined {
  const parts = text.split(".");
  if (parts.length !== 4) return undefined;
  const out = new Uint8Array(4);
  for (let i = 0; i < 4; i++) {
    const p = parts[i]!;
    if (!/^\d{1,3}$/.test(p) || (p.length > 1 && p[0] === "0")) return undefined;
    const n = Number(p);
    if (n > 255) return undefined;
    out[i] = n;
  }
  return out;
}

function parseIPv6(text: string): Uint8Array | undefined {
  const halves = text.split("::");
  if (halves.length > 2) return undefined;
  const groups = (s: string): number[] | undefined => {
    if (s === "") return [];
    const out: number[] = [];
    const parts = s.split(":");
    for (let i = 0; i < parts.length; i++) {
      const p = parts[i]!;
      if (i === parts.length - 1 && p.includes(".")) {
        const v4 = parseIPv4(p);
        if (!v4) return undefined;
        out.push((v4[0]! << 8) | v4[1]!, (v4[2]! << 8) | v4[3]!);
      } else {
        if (!/^[0-9a-fA-F]{1,4}$/.test(p)) return undefined;
        out.push(parseInt(p, 16));
      }
    }
    return out;
  };
  const head = groups(halves[0]!);
  const tail = halves.length === 2 ? groups(halves[1]!) : [];
  if (!head || !tail) return undefined;
  const count = head.length + tail.length;
  if (halves.length === 2 ? count > 7 : count !== 8) return undefined;
  const all = [...head, ...new Array<number>(8 - count).fill(0), ...tail];
  const out = new Uint8Array(16);
  all.forEach((g, i) => {
    out[i * 2] = g >> 8;
    out[i * 2 + 1] = g & 0xff;
  });
  return out;
}

/** True when `text` is an IPv4 or IPv6 address. */
export function isIP(text: string): boolean {
  return parseIP(text) !== undefined;
}

/** True when `text` is a CIDR block (`10.0.0.0/8`, `2001:db8::/32`). */
export function isCIDR(text: string): boolean {
  const slash = text.indexOf("/");
  if (slash < 0) return false;
  const ip = parseIP(text.slice(0, slash));
  const bits = text.slice(slash + 1);
  if (!ip || !/^(0|[1-9]\d{0,2})$/.test(bits)) return false;
  return Number(bits) <= ip.length * 8;
}

/** True when `text` is an IP address or a CIDR block. */
export function isIPOrCIDR(text: string): boolean {
  return text.includes("/") ? isCIDR(text) : isIP(text);
}

const dns1123Label = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/;

/** True for a Kubernetes DNS-1123 label: lower-case alphanumerics and '-', at most 63 characters. */
export function isDNS1123Label(text: string): boolean {
  return text.length <= 63 && dns1123Label.test(text);
}

/** True for a Kubernetes DNS-1123 subdomain: dot-separated labels, at most 253 characters. */
export function isDNS1123Subdomain(text: string): boolean {
  return text.length > 0 && text.length <= 253 && text.split(".").every((l) => dns1123Label.test(l));
}

/** Explains why `text` is not a DNS-1123 label, or returns undefined when it is one. */
export function dns1123LabelProblem(text: string): string | undefined {
  if (text === "") return "must not be empty";
  if (text.length > 63) return `must be at most 63 characters, got ${text.length}`;
  if (!dns1123Label.test(text)) {
    return `${JSON.stringify(text)} is not a valid DNS-1123 label: use lower-case letters, digits and '-', ` +
      "starting and ending with a letter or digit";
  }
  return undefined;
}

/** Explains why `text` is not a DNS-1123 subdomain, or returns undefined when it is one. */
export function dns1123SubdomainProblem(text: string): string | undefined {
  if (text === "") return "must not be empty";
  if (text.length > 253) return `must be at most 253 characters, got ${text.length}`;
  if (!isDNS1123Subdomain(text)) {
    return `${JSON.stringify(text)} is not a valid DNS-1123 subdomain: ` +
      "use lower-case letters, digits, '-' and '.', each part starting and ending with a letter or digit";
  }
  return undefined;
}

const labelName = /^[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$/;

/** Explains why `key` is not a valid Kubernetes label key, or returns undefined when it is. */
export function labelKeyProblem(key: string): string | undefined {
  if (key === "") return "label key must not be empty";
  const slash = key.lastIndexOf("/");
  const name = slash < 0 ? key : key.slice(slash + 1);
  if (slash >= 0) {
    const prefix = key.slice(0, slash);
    if (!isDNS1123Subdomain(prefix)) {
      return `label key prefix ${JSON.stringify(prefix)} must be a DNS-1123 subdomain`;
    }
  }
  if (name.length === 0 || name.length > 63 || !labelName.test(name)) {
    return `invalid label key ${JSON.stringify(key)}: ` +
      "the name part must be 1-63 characters of letters, digits, '-', '_' or '.', starting and ending with a letter or digit";
  }
  return undefined;
}

/** Explains why `value` is not a valid Kubernetes label value, or returns undefined when it is. */
export function labelValueProblem(value: string): string | undefined {
  if (value === "") return undefined;
  if (value.length > 63 || !labelName.test(value)) {
    return `invalid label value ${JSON.stringify(value)}: use at most 63 letters, digits, '-', '_' or '.', ` +
      "starting and ending with a letter or digit";
  }
  return undefined;
}

/** A map of Kubernetes labels: keys and values follow the label syntax; no wildcards. */
export function labelsSchema<R extends boolean = false>(
  opts: Omit<TypedOpts<MapSchema, Readonly<Record<string, string>>, R, "values">, "key"> = {},
): MapSchema<StringSchema> & Req<R> {
  return t.map(
    t.string({
      check: (value, path, report) => {
        const problem = labelValueProblem(value);
        if (problem) report.error(path, problem);
      },
    }),
    {
      ...opts,
      key: (key, path, report) => {
        const problem = labelKeyProblem(key);
        if (problem) report.error(path, problem);
      },
    },
  );
}
