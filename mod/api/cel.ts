/**
 * CEL expressions over attribute vocabularies: compile once (parse, type-check, plan), evaluate
 * many times against an attribute bag.
 *
 * Parsing and evaluation use `@bufbuild/cel`. Its type checker is not part of its public API, so
 * this module checks types itself over the parsed AST: it resolves Istio's dotted attribute names
 * (`source.labels["app"]`, `request.auth.claims["sub"]`), checks operator and function overloads,
 * and rewrites each resolved attribute into a single identifier so evaluation does not have to
 * guess how a dotted chain splits into attribute and field accesses.
 *
 * @module
 */

import {
  celEnv,
  celFunc,
  type CelInput,
  CelScalar,
  type CelValue,
  isCelError,
  isCelList,
  isCelMap,
  isCelUint,
  mapType,
  parse,
  plan,
} from "@bufbuild/cel";
import { strings } from "@bufbuild/cel/ext";
import { create } from "@bufbuild/protobuf";
import { DurationSchema, timestampDate, timestampFromDate, timestampFromMs } from "@bufbuild/protobuf/wkt";
import { type AttributeType, type AttributeVocabulary, istioAttributes } from "./attributes.ts";
import { parseDuration } from "../shared/duration.ts";
import { parseIP, suggest } from "./schema.ts";

/** The result type an expression is required to have; "any" accepts every type. */
export type ExpressionType =
  | "bool"
  | "string"
  | "int"
  | "double"
  | "timestamp"
  | "duration"
  | "bytes"
  | "string_map"
  | "any";

/** Options of {@link compileExpression}. */
export interface CompileOptions {
  /** The attributes the expression may read; default {@link istioAttributes}. */
  readonly attributes?: AttributeVocabulary;
  /** Further attributes by name, e.g. outputs of earlier actions; they take precedence. */
  readonly extraAttributes?: Readonly<Record<string, AttributeType>>;
}

const impl: unique symbol = Symbol("meshd.cel.program");

/** A compiled, type-checked CEL program; evaluate it with {@link evaluate}. */
export interface CompiledExpression {
  /** The expression text as written. */
  readonly source: string;
  /** The CEL type of the result, e.g. "bool", "map(string, string)", "dyn". */
  readonly resultType: string;
  /** Attribute names the expression reads, sorted. */
  readonly referenced: readonly string[];
  readonly [impl]: ProgramInternals;
}

interface ProgramInternals {
  readonly run: (bindings: Record<string, CelInput>) => unknown;
  readonly inputs: readonly {
    readonly name: string;
    readonly convert: (raw: unknown) => CelInput | undefined;
  }[];
  readonly presence: readonly string[];
  readonly attributeByExprId: ReadonlyMap<bigint, string>;
}

/** The outcome of {@link compileExpression}. */
export type CompileResult =
  | { readonly ok: true; readonly program: CompiledExpression; readonly referenced: string[] }
  | { readonly ok: false; readonly message: string };

/** The outcome of {@link evaluate}: a plain JS value, or why evaluation failed. */
export type EvalResult =
  | { readonly ok: true; readonly value: unknown }
  | { readonly ok: false; readonly message: string };

const maxExpressionLength = 16 * 1024;
const tooDeep = "expression is nested too deeply";

/**
 * Parses and type-checks `expr` against an attribute vocabulary and plans it for evaluation.
 * When `expectType` is given (and not "any"), the result type must match it (a dynamically typed
 * result is accepted). Error messages name the position inside the expression.
 */
export function compileExpression(
  expr: string,
  expectType: ExpressionType = "any",
  opts: CompileOptions = {},
): CompileResult {
  if (expr.trim() === "") return { ok: false, message: "expression is empty" };
  if (expr.length > maxExpressionLength) {
    return {
      ok: false,
      message: `expression is ${expr.length} characters long; the limit is ${maxExpressionLength}`,
    };
  }
  let parsed: ReturnType<typeof parse>;
  try {
    parsed = parse(expr);
  } catch (e) {
    if (e instanceof RangeError) return { ok: false, message: tooDeep };
    return { ok: false, message: syntaxMessage(expr, e instanceof Error ? e.message : String(e)) };
  }
  const vocabulary = attributeTypes(opts);
  const checker = new TypeChecker(vocabulary, expr, parsed.sourceInfo?.positions ?? {});
  let resultType: CelT;
  try {
    resultType = checker.check(parsed.expr);
  } catch (e) {
    if (e instanceof CheckError) return { ok: false, message: e.message };
    if (e instanceof RangeError) return { ok: false, message: tooDeep };
    throw e;
  }
  const wanted = expectedType(expectType);
  if (wanted && resultType.k !== "dyn" && !sameType(wanted, resultType)) {
    return {
      ok: false,
      message: `expression must produce ${article(typeName(wanted))}, ` +
        `but it produces ${article(typeName(resultType))}`,
    };
  }
  const run = plan(runtimeEnv(), parsed) as (bindings: Record<string, CelInput>) => unknown;
  const referenced = [...checker.referenced].sort();
  const program: CompiledExpression = {
    source: expr,
    resultType: typeName(resultType),
    referenced,
    [impl]: {
      run,
      inputs: referenced.map((name) => ({ name, convert: converterFor(vocabulary.get(name)!) })),
      presence: [...checker.presence].sort(),
      attributeByExprId: checker.attributeByExprId,
    },
  };
  return { ok: true, program, referenced: [...referenced] };
}

/**
 * Evaluates a compiled expression against an attribute bag (attribute name to value). Values are
 * converted to the attribute's CEL type: int attributes accept numbers or bigints, `bytes` (IP)
 * attributes accept strings such as "10.0.0.1", timestamps accept Dates or epoch milliseconds,
 * durations accept milliseconds or duration strings. Only the attributes the expression
 * references are read. Never throws; a missing attribute is an evaluation error.
 */
export function evaluate(
  program: CompiledExpression,
  attributes: Readonly<Record<string, unknown>>,
): EvalResult {
  const p = program[impl];
  const bindings: Record<string, CelInput> = {};
  for (const input of p.inputs) {
    const raw = attributes[input.name];
    if (raw === undefined || raw === null) continue;
    const value = input.convert(raw);
    if (value !== undefined) bindings[input.name] = value;
  }
  for (const name of p.presence) {
    bindings[presenceName(name)] = attributes[name] !== undefined && attributes[name] !== null;
  }
  let result: unknown;
  try {
    result = p.run(bindings);
  } catch (e) {
    return { ok: false, message: e instanceof Error ? e.message : String(e) };
  }
  if (isCelError(result)) {
    const attribute = result.exprId === undefined ? undefined : p.attributeByExprId.get(result.exprId);
    if (attribute !== undefined && result.message === "unresolved attribute") {
      return { ok: false, message: `attribute ${attribute} is not present (or has the wrong type)` };
    }
    return { ok: false, message: result.message };
  }
  return { ok: true, value: toJs(result as CelValue) };
}

let re2Program: ((bindings: { re: string }) => unknown) | undefined;

/**
 * Compiles `pattern` with the RE2 engine CEL's `matches()` uses (Go and Envoy also use RE2) and
 * returns the compile error, or undefined when the pattern is valid RE2.
 */
export function re2Error(pattern: string): string | undefined {
  re2Program ??= plan(celEnv(), parse("''.matches(re)")) as (bindings: { re: string }) => unknown;
  const result = re2Program({ re: pattern });
  if (isCelError(result)) return result.message;
  return undefined;
}

// ---------------------------------------------------------------------------------------------
// Types
// ---------------------------------------------------------------------------------------------

type ScalarKind =
  | "int"
  | "uint"
  | "double"
  | "string"
  | "bool"
  | "bytes"
  | "null"
  | "dyn"
  | "timestamp"
  | "duration"
  | "type";
type CelT =
  | { readonly k: ScalarKind }
  | { readonly k: "list"; readonly elem: CelT }
  | { readonly k: "map"; readonly key: CelT; readonly val: CelT }
  | { readonly k: "param"; readonly name: string };

const scalar = (k: ScalarKind): CelT => ({ k });
const INT = scalar("int");
const UINT = scalar("uint");
const DOUBLE = scalar("double");
const STRING = scalar("string");
const BOOL = scalar("bool");
const BYTES = scalar("bytes");
const NULL = scalar("null");
const DYN = scalar("dyn");
const TIMESTAMP = scalar("timestamp");
const DURATION = scalar("duration");
const TYPE = scalar("type");
const listOf = (elem: CelT): CelT => ({ k: "list", elem });
const mapOf = (key: CelT, val: CelT): CelT => ({ k: "map", key, val });
const A: CelT = { k: "param", name: "A" };
const K: CelT = { k: "param", name: "K" };
const V: CelT = { k: "param", name: "V" };
const STRING_MAP = mapOf(STRING, STRING);

function typeName(t: CelT): string {
  switch (t.k) {
    case "list":
      return `list(${typeName(t.elem)})`;
    case "map":
      return `map(${typeName(t.key)}, ${typeName(t.val)})`;
    case "param":
      return t.name;
    case "null":
      return "null_type";
    default:
      return t.k;
  }
}

function article(name: string): string {
  return /^[aeiou]/.test(name) ? `an ${name}` : `a ${name}`;
}

function sameType(a: CelT, b: CelT): boolean {
  if (a.k === "dyn" || b.k === "dyn") return true;
  if (a.k === "list") return b.k === "list" && sameType(a.elem, b.elem);
  if (a.k === "map") return b.k === "map" && sameType(a.key, b.key) && sameType(a.val, b.val);
  return a.k === b.k;
}

function expectedType(t: ExpressionType): CelT | undefined {
  switch (t) {
    case "any":
      return undefined;
    case "string_map":
      return STRING_MAP;
    default:
      return scalar(t);
  }
}

function attributeCelType(t: AttributeType): CelT {
  return t === "string_map" ? STRING_MAP : scalar(t);
}

function attributeTypes(opts: CompileOptions): Map<string, AttributeType> {
  const out = new Map<string, AttributeType>();
  for (const [name, info] of opts.attributes ?? istioAttributes) out.set(name, info.type);
  for (const [name, type] of Object.entries(opts.extraAttributes ?? {})) out.set(name, type);
  return out;
}

/** Binds type parameters in `p` so that it accepts `a`; false when it cannot. */
function unify(p: CelT, a: CelT, bindings: Map<string, CelT>): boolean {
  if (p.k === "param") {
    const bound = bindings.get(p.name);
    if (!bound || bound.k === "dyn" || bound.k === "null") {
      bindings.set(p.name, a);
      return true;
    }
    return unify(bound, a, bindings);
  }
  if (a.k === "dyn" || p.k === "dyn" || a.k === "null") return true;
  if (p.k === "list") return a.k === "list" && unify(p.elem, a.elem, bindings);
  if (p.k === "map") return a.k === "map" && unify(p.key, a.key, bindings) && unify(p.val, a.val, bindings);
  return p.k === a.k;
}

function substitute(t: CelT, bindings: Map<string, CelT>): CelT {
  switch (t.k) {
    case "param":
      return bindings.get(t.name) ?? DYN;
    case "list":
      return listOf(substitute(t.elem, bindings));
    case "map":
      return mapOf(substitute(t.key, bindings), substitute(t.val, bindings));
    default:
      return t;
  }
}

// ---------------------------------------------------------------------------------------------
// Overloads
// ---------------------------------------------------------------------------------------------

interface Overload {
  readonly receiver?: CelT;
  readonly params: readonly CelT[];
  readonly result: CelT;
}

const overloads = new Map<string, Overload[]>();
const declare = (name: string, params: readonly CelT[], result: CelT, receiver?: CelT) => {
  const list = overloads.get(name) ?? [];
  list.push({ params, result, receiver });
  overloads.set(name, list);
};

const numeric = [INT, UINT, DOUBLE];
const ordered = [INT, UINT, DOUBLE, STRING, BYTES, BOOL, TIMESTAMP, DURATION];
for (const op of ["_==_", "_!=_"]) {
  declare(op, [A, A], BOOL);
  for (const x of numeric) for (const y of numeric) if (x !== y) declare(op, [x, y], BOOL);
}
for (const op of ["_<_", "_<=_", "_>_", "_>=_"]) {
  for (const x of ordered) declare(op, [x, x], BOOL);
  for (const x of numeric) for (const y of numeric) if (x !== y) declare(op, [x, y], BOOL);
}
for (const x of [INT, UINT, DOUBLE, STRING, BYTES]) declare("_+_", [x, x], x);
declare("_+_", [listOf(A), listOf(A)], listOf(A));
declare("_+_", [TIMESTAMP, DURATION], TIMESTAMP);
declare("_+_", [DURATION, TIMESTAMP], TIMESTAMP);
declare("_+_", [DURATION, DURATION], DURATION);
for (const x of numeric) {
  declare("_-_", [x, x], x);
  declare("_*_", [x, x], x);
  declare("_/_", [x, x], x);
}
declare("_-_", [TIMESTAMP, TIMESTAMP], DURATION);
declare("_-_", [TIMESTAMP, DURATION], TIMESTAMP);
declare("_-_", [DURATION, DURATION], DURATION);
declare("_%_", [INT, INT], INT);
declare("_%_", [UINT, UINT], UINT);
declare("-_", [INT], INT);
declare("-_", [DOUBLE], DOUBLE);
declare("!_", [BOOL], BOOL);
declare("_&&_", [BOOL, BOOL], BOOL);
declare("_||_", [BOOL, BOOL], BOOL);
declare("_?_:_", [BOOL, A, A], A);
declare("@not_strictly_false", [BOOL], BOOL);
declare("_[_]", [listOf(A), INT], A);
declare("_[_]", [listOf(A), UINT], A);
declare("_[_]", [mapOf(K, V), K], V);
declare("@in", [A, listOf(A)], BOOL);
declare("@in", [K, mapOf(K, V)], BOOL);
for (const x of [STRING, BYTES, listOf(A), mapOf(K, V)]) {
  declare("size", [x], INT);
  declare("size", [], INT, x);
}
for (const m of ["contains", "startsWith", "endsWith", "matches"]) declare(m, [STRING], BOOL, STRING);
declare("matches", [STRING, STRING], BOOL);
for (const x of [INT, UINT, DOUBLE, STRING, TIMESTAMP]) declare("int", [x], INT);
for (const x of [INT, UINT, DOUBLE, STRING]) declare("uint", [x], UINT);
for (const x of [INT, UINT, DOUBLE, STRING]) declare("double", [x], DOUBLE);
for (const x of [INT, UINT, DOUBLE, BOOL, STRING, BYTES, TIMESTAMP, DURATION]) declare("string", [x], STRING);
for (const x of [STRING, BYTES]) declare("bytes", [x], BYTES);
for (const x of [BOOL, STRING]) declare("bool", [x], BOOL);
for (const x of [STRING, INT, TIMESTAMP]) declare("timestamp", [x], TIMESTAMP);
for (const x of [STRING, DURATION]) declare("duration", [x], DURATION);
declare("dyn", [A], DYN);
declare("type", [A], TYPE);
for (const m of ["getFullYear", "getMonth", "getDayOfYear", "getDayOfMonth", "getDate", "getDayOfWeek"]) {
  declare(m, [], INT, TIMESTAMP);
  declare(m, [STRING], INT, TIMESTAMP);
}
for (const m of ["getHours", "getMinutes", "getSeconds", "getMilliseconds"]) {
  declare(m, [], INT, TIMESTAMP);
  declare(m, [STRING], INT, TIMESTAMP);
  declare(m, [], INT, DURATION);
}
// The strings extension of @bufbuild/cel.
declare("charAt", [INT], STRING, STRING);
for (const m of ["indexOf", "lastIndexOf"]) {
  declare(m, [STRING], INT, STRING);
  declare(m, [STRING, INT], INT, STRING);
}
for (const m of ["lowerAscii", "upperAscii", "trim"]) declare(m, [], STRING, STRING);
declare("replace", [STRING, STRING], STRING, STRING);
declare("replace", [STRING, STRING, INT], STRING, STRING);
declare("split", [STRING], listOf(STRING), STRING);
declare("split", [STRING, INT], listOf(STRING), STRING);
declare("substring", [INT], STRING, STRING);
declare("substring", [INT, INT], STRING, STRING);
declare("join", [], STRING, listOf(STRING));
declare("join", [STRING], STRING, listOf(STRING));
// Istio's Mixer-era extensions.
declare("ip", [STRING], BYTES);
declare("match", [STRING, STRING], BOOL);
declare("toLower", [STRING], STRING);
declare("emptyStringMap", [], STRING_MAP);
declare("conditional", [BOOL, A, A], A);
// Mixer 1.x's string functions (`email`, `dnsName`, `uri` check their argument's form).
for (const f of ["reverse", "email", "dnsName", "uri"]) declare(f, [STRING], STRING);

const operatorNames: Readonly<Record<string, string>> = {
  "_==_": "==",
  "_!=_": "!=",
  "_<_": "<",
  "_<=_": "<=",
  "_>_": ">",
  "_>=_": ">=",
  "_+_": "+",
  "_-_": "-",
  "_*_": "*",
  "_/_": "/",
  "_%_": "%",
  "-_": "unary -",
  "!_": "!",
  "_&&_": "&&",
  "_||_": "||",
  "_?_:_": "?:",
  "_[_]": "[]",
  "@in": "in",
};

// ---------------------------------------------------------------------------------------------
// The checker
// ---------------------------------------------------------------------------------------------

type Expr = ReturnType<typeof parse>["expr"];
type IdentValue = Extract<Expr["exprKind"], { case: "identExpr" }>["value"];

class CheckError extends Error {}

const presenceName = (attribute: string) => `@has:${attribute}`;

/** Type-checks one expression, collecting the attributes it reads and rewriting their chains. */
class TypeChecker {
  readonly referenced = new Set<string>();
  readonly presence = new Set<string>();
  readonly attributeByExprId = new Map<bigint, string>();
  private readonly scopes: Map<string, CelT>[] = [];

  constructor(
    private readonly attributes: ReadonlyMap<string, AttributeType>,
    private readonly source: string,
    private readonly positions: Readonly<Record<string, number>>,
  ) {}

  check(e: Expr | undefined): CelT {
    if (!e) throw new CheckError("incomplete expression");
    const kind = e.exprKind;
    switch (kind.case) {
      case "constExpr":
        return this.constant(kind.value.constantKind.case);
      case "identExpr":
        return this.ident(e, kind.value.name);
      case "selectExpr":
        return this.select(e, kind.value.operand, kind.value.field, kind.value.testOnly);
      case "callExpr":
        return this.call(e, kind.value.function, kind.value.target, kind.value.args);
      case "listExpr": {
        const elems = kind.value.elements.map((el) => this.check(el));
        return listOf(commonType(elems));
      }
      case "structExpr": {
        if (kind.value.messageName !== "") {
          this.fail(e, `message construction (${kind.value.messageName}{...}) is not supported`);
        }
        const keys: CelT[] = [];
        const values: CelT[] = [];
        for (const entry of kind.value.entries) {
          if (entry.keyKind.case !== "mapKey") {
            this.fail(e, "field initializers are only allowed in message construction");
          }
          keys.push(this.check(entry.keyKind.value));
          values.push(this.check(entry.value));
        }
        return mapOf(commonType(keys), commonType(values));
      }
      case "comprehensionExpr":
        return this.comprehension(kind.value);
      default:
        this.fail(e, "unsupported expression");
    }
  }

  private constant(kind: string | undefined): CelT {
    switch (kind) {
      case "int64Value":
        return INT;
      case "uint64Value":
        return UINT;
      case "doubleValue":
        return DOUBLE;
      case "stringValue":
        return STRING;
      case "boolValue":
        return BOOL;
      case "bytesValue":
        return BYTES;
      case "nullValue":
        return NULL;
      case "durationValue":
        return DURATION;
      case "timestampValue":
        return TIMESTAMP;
      default:
        return DYN;
    }
  }

  private local(name: string): CelT | undefined {
    for (let i = this.scopes.length - 1; i >= 0; i--) {
      const t = this.scopes[i]!.get(name);
      if (t) return t;
    }
    return undefined;
  }

  private ident(e: Expr, name: string): CelT {
    const local = this.local(name);
    if (local) return local;
    const type = this.attributes.get(name);
    if (type) return this.useAttribute(e, name, type);
    this.unknownName(e, name);
  }

  private select(e: Expr, operand: Expr | undefined, field: string, testOnly: boolean): CelT {
    const chain = this.chainOf(operand);
    if (chain) {
      const full = [...chain.names, field].join(".");
      const exact = this.attributes.get(full);
      if (exact) {
        if (testOnly) {
          this.referencedPresence(e, full);
          return BOOL;
        }
        return this.useAttribute(e, full, exact);
      }
      if (!this.resolvesToAttribute(chain.names)) this.unknownName(e, full);
    }
    const operandType = this.check(operand);
    const fieldType = this.fieldOf(e, operandType, field);
    return testOnly ? BOOL : fieldType;
  }

  /** True when some prefix of the chain names an attribute (so the rest are field accesses). */
  private resolvesToAttribute(names: readonly string[]): boolean {
    for (let i = names.length; i > 0; i--) if (this.attributes.has(names.slice(0, i).join("."))) return true;
    return false;
  }

  /** The identifier names of an `a.b.c` chain, unless its root is a comprehension variable. */
  private chainOf(e: Expr | undefined): { names: string[] } | undefined {
    const names: string[] = [];
    let node = e;
    while (node) {
      const kind = node.exprKind;
      if (kind.case === "identExpr") {
        if (this.local(kind.value.name)) return undefined;
        names.unshift(kind.value.name);
        return { names };
      }
      if (kind.case !== "selectExpr" || kind.value.testOnly) return undefined;
      names.unshift(kind.value.field);
      node = kind.value.operand;
    }
    return undefined;
  }

  private fieldOf(e: Expr, t: CelT, field: string): CelT {
    if (t.k === "dyn") return DYN;
    if (t.k === "map" && (t.key.k === "string" || t.key.k === "dyn")) return t.val;
    this.fail(e, `${typeName(t)} has no field ${JSON.stringify(field)}`);
  }

  private useAttribute(e: Expr, name: string, type: AttributeType): CelT {
    this.referenced.add(name);
    this.attributeByExprId.set(e.id, name);
    e.exprKind = { case: "identExpr", value: { $typeName: "cel.expr.Expr.Ident", name } as IdentValue };
    return attributeCelType(type);
  }

  private referencedPresence(e: Expr, name: string): void {
    this.presence.add(name);
    this.referenced.add(name);
    e.exprKind = {
      case: "identExpr",
      value: { $typeName: "cel.expr.Expr.Ident", name: presenceName(name) } as IdentValue,
    };
  }

  private unknownName(e: Expr, name: string): never {
    const prefix = `${name}.`;
    const below = [...this.attributes.keys()].filter((n) => n.startsWith(prefix));
    if (below.length > 0) {
      const shown = below.slice(0, 6).join(", ") + (below.length > 6 ? ", …" : "");
      this.fail(e, `${JSON.stringify(name)} is not an attribute; attributes under it are ${shown}`);
    }
    const guess = suggest(name, this.attributes.keys());
    this.fail(
      e,
      `undeclared reference to ${JSON.stringify(name)}` +
        (guess ? ` (did you mean ${JSON.stringify(guess)}?)` : ""),
    );
  }

  private call(e: Expr, fn: string, target: Expr | undefined, args: readonly Expr[]): CelT {
    const candidates = overloads.get(fn);
    if (!candidates) {
      const guess = suggest(fn, overloads.keys());
      this.fail(
        e,
        `undeclared function ${JSON.stringify(fn)}` +
          (guess ? ` (did you mean ${JSON.stringify(guess)}?)` : ""),
      );
    }
    const receiver = target ? this.check(target) : undefined;
    const argTypes = args.map((a) => this.check(a));
    for (const o of candidates) {
      if ((o.receiver === undefined) !== (receiver === undefined) || o.params.length !== argTypes.length) {
        continue;
      }
      const bindings = new Map<string, CelT>();
      if (o.receiver && !unify(o.receiver, receiver!, bindings)) continue;
      if (o.params.every((p, i) => unify(p, argTypes[i]!, bindings))) return substitute(o.result, bindings);
    }
    const shown = argTypes.map(typeName).join(", ");
    const op = operatorNames[fn];
    if (op) {
      const operands = receiver ? [typeName(receiver), ...argTypes.map(typeName)].join(", ") : shown;
      this.fail(e, `operator ${op} cannot be applied to (${operands})`);
    }
    if (receiver) this.fail(e, `no method ${fn}(${shown}) on ${typeName(receiver)}`);
    this.fail(e, `no overload of ${fn}(${shown})`);
  }

  private comprehension(c: Extract<Expr["exprKind"], { case: "comprehensionExpr" }>["value"]): CelT {
    const range = this.check(c.iterRange);
    let iterType: CelT = DYN;
    let iterType2: CelT = DYN;
    if (range.k === "list") {
      iterType = c.iterVar2 ? INT : range.elem;
      iterType2 = range.elem;
    } else if (range.k === "map") {
      iterType = range.key;
      iterType2 = range.val;
    } else if (range.k !== "dyn") {
      this.fail(c.iterRange!, `cannot iterate over ${article(typeName(range))}`);
    }
    const accuType = this.check(c.accuInit);
    const scope = new Map<string, CelT>([[c.iterVar, iterType], [c.accuVar, accuType]]);
    if (c.iterVar2) scope.set(c.iterVar2, iterType2);
    this.scopes.push(scope);
    try {
      this.check(c.loopCondition);
      const step = this.check(c.loopStep);
      if (accuType.k === "list" && step.k === "list") scope.set(c.accuVar, step);
      return this.check(c.result);
    } finally {
      this.scopes.pop();
    }
  }

  private fail(e: Expr, message: string): never {
    const offset = this.positions[String(e.id)];
    throw new CheckError(offset === undefined ? message : `${message} (at ${locate(this.source, offset)})`);
  }
}

function commonType(types: readonly CelT[]): CelT {
  if (types.length === 0) return DYN;
  const first = types[0]!;
  return types.every((t) => sameType(t, first) && t.k !== "dyn") ? first : DYN;
}

function locate(source: string, offset: number): string {
  const before = source.slice(0, offset);
  const line = before.split("\n").length;
  const col = offset - before.lastIndexOf("\n");
  return source.includes("\n") ? `line ${line}, column ${col}` : `column ${col}`;
}

function syntaxMessage(source: string, raw: string): string {
  const m = /^<input>:(\d+):(\d+): (.*)$/s.exec(raw);
  if (!m) return `syntax error: ${raw}`;
  const where = source.includes("\n") ? `line ${m[1]}, column ${m[2]}` : `column ${m[2]}`;
  const hint = /(^|[^|])\|([^|]|$)/.test(source)
    ? ` (the "a | b" default operator is Mixer's old expression language, not CEL; use has(a) ? a : b)`
    : "";
  return `syntax error at ${where}: ${m[3]}${hint}`;
}

// ---------------------------------------------------------------------------------------------
// Runtime
// ---------------------------------------------------------------------------------------------

let env: ReturnType<typeof celEnv> | undefined;

function runtimeEnv(): ReturnType<typeof celEnv> {
  env ??= celEnv({
    funcs: [
      ...strings,
      celFunc("ip", [CelScalar.STRING], CelScalar.BYTES, (text: string) => {
        const bytes = parseIP(text);
        if (!bytes) throw new Error(`ip(): ${JSON.stringify(text)} is not an IP address`);
        return bytes;
      }),
      celFunc("match", [CelScalar.STRING, CelScalar.STRING], CelScalar.BOOL, globMatch),
      celFunc("toLower", [CelScalar.STRING], CelScalar.STRING, (s: string) => s.toLowerCase()),
      celFunc(
        "emptyStringMap",
        [],
        mapType(CelScalar.STRING, CelScalar.STRING),
        () => new Map<string, string>(),
      ),
      celFunc(
        "conditional",
        [CelScalar.BOOL, CelScalar.DYN, CelScalar.DYN],
        CelScalar.DYN,
        (cond: boolean, a: CelValue, b: CelValue) => (cond ? a : b) as CelInput,
      ),
      celFunc("reverse", [CelScalar.STRING], CelScalar.STRING, (s: string) => [...s].reverse().join("")),
      ...(["email", "dnsName", "uri"] as const).map((name) =>
        celFunc(name, [CelScalar.STRING], CelScalar.STRING, (s: string) => checkedForm(name, s))
      ),
    ],
  });
  return env;
}

/** `s` when it has the form Mixer 1.x's `email()`, `dnsName()` or `uri()` requires; throws otherwise. */
function checkedForm(name: "email" | "dnsName" | "uri", s: string): string {
  const dns =
    /^(?=.{1,253}\.?$)([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)(\.[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)*\.?$/i;
  const ok = name === "dnsName"
    ? dns.test(s)
    : name === "email"
    ? /^[^\s@<>()",;:]+@[^\s@]+$/.test(s) && dns.test(s.slice(s.lastIndexOf("@") + 1))
    : URL.canParse(s);
  if (!ok) {
    throw new Error(
      `${name}(): ${JSON.stringify(s)} is not ${
        name === "email" ? "an e-mail address" : name === "uri" ? "a URI" : "a DNS name"
      }`,
    );
  }
  return s;
}

/** Mixer's `match(value, pattern)`: a trailing `*` matches a prefix, a leading `*` a suffix. */
function globMatch(value: string, pattern: string): boolean {
  if (pattern.endsWith("*")) return value.startsWith(pattern.slice(0, -1));
  if (pattern.startsWith("*")) return value.endsWith(pattern.slice(1));
  return value === pattern;
}

function converterFor(type: AttributeType): (raw: unknown) => CelInput | undefined {
  switch (type) {
    case "string":
      return (raw) => (typeof raw === "string" ? raw : undefined);
    case "int":
      return (raw) =>
        typeof raw === "bigint"
          ? raw
          : typeof raw === "number" && Number.isFinite(raw)
          ? BigInt(Math.trunc(raw))
          : undefined;
    case "double":
      return (raw) => (typeof raw === "number" ? raw : typeof raw === "bigint" ? Number(raw) : undefined);
    case "bool":
      return (raw) => (typeof raw === "boolean" ? raw : undefined);
    case "bytes":
      return (raw) => (raw instanceof Uint8Array ? raw : typeof raw === "string" ? parseIP(raw) : undefined);
    case "timestamp":
      return (raw) => {
        if (raw instanceof Date) return timestampFromDate(raw);
        if (typeof raw === "number") return timestampFromMs(raw);
        if (typeof raw === "string") {
          const ms = Date.parse(raw);
          return Number.isNaN(ms) ? undefined : timestampFromMs(ms);
        }
        return undefined;
      };
    case "duration":
      return (raw) => {
        const ms = typeof raw === "number" ? raw : typeof raw === "string" ? parseDuration(raw) : undefined;
        if (ms === undefined || !Number.isFinite(ms)) return undefined;
        const ns = BigInt(Math.round(ms * 1_000_000));
        return create(DurationSchema, { seconds: ns / 1_000_000_000n, nanos: Number(ns % 1_000_000_000n) });
      };
    case "string_map":
      return (
        raw,
      ) => (raw instanceof Map || (typeof raw === "object" && raw !== null) ? raw as CelInput : undefined);
    case "dyn":
      return (raw) => raw as CelInput;
  }
}

interface ReflectLike {
  readonly desc: { readonly typeName: string };
  readonly message: object;
}

function isReflectMessage(v: unknown): v is ReflectLike {
  return typeof v === "object" && v !== null && "desc" in v && "message" in v;
}

/** Converts a CEL value to plain JS: numbers, strings, arrays, objects, Dates (timestamps), ms (durations). */
function toJs(v: CelValue): unknown {
  if (typeof v === "bigint") return Number.isSafeInteger(Number(v)) ? Number(v) : v;
  if (isCelUint(v)) return Number(v.value);
  if (isCelList(v)) return [...v].map(toJs);
  if (isCelMap(v)) {
    const out: Record<string, unknown> = {};
    for (const [key, value] of v) out[String(isCelUint(key) ? key.value : key)] = toJs(value);
    return out;
  }
  if (isReflectMessage(v)) {
    const m = v.message;
    if (v.desc.typeName === "google.protobuf.Timestamp") {
      return timestampDate(m as unknown as Parameters<typeof timestampDate>[0]);
    }
    if (v.desc.typeName === "google.protobuf.Duration") {
      const d = m as unknown as { seconds: bigint; nanos: number };
      return Number(d.seconds) * 1000 + d.nanos / 1_000_000;
    }
    return m;
  }
  return v;
}
