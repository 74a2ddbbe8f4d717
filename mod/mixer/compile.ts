/**
 * Compiling Mixer config for dispatch: every CEL expression of an instance or rule is compiled
 * once, when config changes, together with the attributes it references. Compiled forms are
 * memoised by resource object: galley keeps unchanged resources' objects across snapshots, so an
 * unchanged rule is never compiled again.
 *
 * @module
 */
import { type CompiledExpression, compileExpression, evaluate } from "../api/cel.ts";
import type { HeaderOperation, InstanceSpec, RuleSpec } from "../api/kinds/mixer.ts";
import type { Resource } from "../api/resource.ts";
import type { Ref } from "./client/referenced.ts";
import type { AttributeBag } from "./client/wire.ts";
import { attributeType } from "./client/wire.ts";

/** A template's fields, compiled: an expression per leaf. */
export type FieldTree =
  | { readonly kind: "expr"; readonly path: string; readonly program: CompiledExpression }
  | { readonly kind: "const"; readonly value: unknown }
  | { readonly kind: "object"; readonly entries: readonly (readonly [string, FieldTree])[] };

/** An instance ready to evaluate. */
export interface CompiledInstance {
  /** NAME.NAMESPACE. */
  readonly name: string;
  readonly namespace: string;
  readonly template: string;
  readonly tree: FieldTree;
  /** The attributes its expressions read. */
  readonly refs: readonly Ref[];
}

/** A header operation ready to evaluate. */
export interface CompiledHeaderOp {
  readonly name: string;
  readonly operation: "REPLACE" | "REMOVE" | "APPEND";
  readonly values: readonly CompiledExpression[];
}

/** A rule's own expressions, compiled (its actions are resolved by the dispatch table). */
export interface CompiledRule {
  /** undefined: the rule always matches. */
  readonly match?: CompiledExpression;
  readonly matchRefs: readonly Ref[];
  readonly requestHeaderOps: readonly CompiledHeaderOp[];
  readonly responseHeaderOps: readonly CompiledHeaderOp[];
}

/** Evaluation result: a value, or why there is none. */
export type EvalOutcome = { readonly ok: true; readonly value: unknown } | {
  readonly ok: false;
  readonly message: string;
};

const QUOTED_KEY = /^\s*\[\s*(?:"([^"\\]*)"|'([^'\\]*)')\s*\]/;
const FIELD_KEY = /^\.([A-Za-z_][A-Za-z0-9_]*)\b(?!\s*\()/;

/**
 * The attributes `program` reads. A string map read only through literal keys
 * (`request.headers["x-user"]`, `source.labels.app`) is referenced key by key, so a client may
 * reuse a decision for requests that differ elsewhere in the map; any other use references the
 * whole map.
 */
export function refsOf(program: CompiledExpression): Ref[] {
  const out: Ref[] = [];
  const src = program.source;
  for (const name of program.referenced) {
    if (attributeType(name) !== "string_map") {
      out.push({ name });
      continue;
    }
    const keys = new Set<string>();
    let whole = false;
    let from = 0;
    for (;;) {
      const at = src.indexOf(name, from);
      if (at < 0) break;
      from = at + name.length;
      const before = at > 0 ? src[at - 1]! : "";
      const after = src[from] ?? "";
      if (/[\w.]/.test(before) || /\w/.test(after)) continue; // part of a longer name
      const rest = src.slice(from);
      const m = QUOTED_KEY.exec(rest) ?? FIELD_KEY.exec(rest);
      if (!m) {
        whole = true;
        break;
      }
      keys.add(m[1] ?? m[2] ?? "");
    }
    if (whole || keys.size === 0) out.push({ name });
    else for (const k of keys) out.push({ name, mapKey: k });
  }
  return out;
}

function compileOne(expr: string, path: string, extra?: Record<string, "dyn">): CompiledExpression {
  const c = compileExpression(expr, "any", { extraAttributes: extra });
  if (!c.ok) throw new Error(`${path}: ${c.message}`);
  return c.program;
}

function compileTree(value: unknown, path: string, refs: Ref[]): FieldTree {
  if (typeof value === "string") {
    const program = compileOne(value, path);
    refs.push(...refsOf(program));
    return { kind: "expr", path, program };
  }
  if (typeof value === "object" && value !== null && !Array.isArray(value)) {
    return {
      kind: "object",
      entries: Object.entries(value).map(([k, v]) => [k, compileTree(v, `${path}.${k}`, refs)] as const),
    };
  }
  return { kind: "const", value };
}

/** Evaluates a compiled tree against a bag. */
export function evalTree(tree: FieldTree, bag: Readonly<AttributeBag>): EvalOutcome {
  switch (tree.kind) {
    case "const":
      return { ok: true, value: tree.value };
    case "expr": {
      const r = evaluate(tree.program, bag);
      return r.ok ? r : { ok: false, message: `${tree.path}: ${r.message}` };
    }
    case "object": {
      const out: Record<string, unknown> = {};
      for (const [k, t] of tree.entries) {
        const r = evalTree(t, bag);
        if (!r.ok) return r;
        out[k] = r.value;
      }
      return { ok: true, value: out };
    }
  }
}

const instanceMemo = new WeakMap<Resource, CompiledInstance>();
const ruleMemo = new WeakMap<Resource, CompiledRule>();

/** Compiles an instance resource. Throws naming the field whose expression does not compile. */
export function compileInstance(r: Resource<InstanceSpec>): CompiledInstance {
  let c = instanceMemo.get(r);
  if (!c) {
    const refs: Ref[] = [];
    const tree = compileTree(r.spec.params ?? {}, "params", refs);
    c = {
      name: `${r.metadata.name}.${r.metadata.namespace}`,
      namespace: r.metadata.namespace,
      template: r.spec.compiledTemplate,
      tree,
      refs,
    };
    instanceMemo.set(r, c);
  }
  return c;
}

function compileHeaderOps(
  ops: readonly HeaderOperation[] | undefined,
  field: string,
  extra: Record<string, "dyn">,
) {
  return (ops ?? []).map((op, i): CompiledHeaderOp => ({
    name: op.name.toLowerCase(),
    operation: op.operation ?? "REPLACE",
    values: (op.values ?? []).map((v, j) => compileOne(v, `${field}[${i}].values[${j}]`, extra)),
  }));
}

/** Compiles a rule's match and header operations. Throws naming the field that does not compile. */
export function compileRule(r: Resource<RuleSpec>): CompiledRule {
  let c = ruleMemo.get(r);
  if (!c) {
    const spec = r.spec;
    const match = spec.match !== undefined && spec.match.trim() !== ""
      ? compileOne(spec.match, "match")
      : undefined;
    const extra: Record<string, "dyn"> = {};
    for (const a of spec.actions ?? []) if (a.name) extra[`${a.name}.output`] = "dyn";
    c = {
      match,
      matchRefs: match ? refsOf(match) : [],
      requestHeaderOps: compileHeaderOps(spec.requestHeaderOperations, "requestHeaderOperations", extra),
      responseHeaderOps: compileHeaderOps(spec.responseHeaderOperations, "responseHeaderOperations", extra),
    };
    ruleMemo.set(r, c);
  }
  return c;
}
