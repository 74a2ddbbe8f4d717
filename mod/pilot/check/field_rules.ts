/**
 * Envoy's field rules: every field of a generated resource checked against the
 * protoc-gen-validate annotations (`validate.rules`, oneof `validate.required`, message
 * `validate.disabled`/`ignored`) that Envoy's own protos carry, recursively, through Anys
 * (unpacked with the translation's type registry). Envoy runs the same rules (the C++
 * validators protoc-gen-validate generates) on every resource and NACKs a whole response when
 * one resource breaks one; this reports each broken rule with the field path.
 *
 * What protoc-gen-validate says, and this follows: scalar rules apply to zero values too
 * (unless `ignore_empty`, or the field has explicit presence and is unset); rules of a oneof
 * member apply only when that member is set; message rules apply only to set messages, except
 * `required`. Beyond protoc-gen-validate, two checks Envoy makes on every resource: an Any whose
 * type Envoy does not know is refused (Envoy looks every typed_config up in its extension
 * registry: "Didn't find a registered implementation for type"), and every Duration is in range.
 *
 * The checks are compiled once per message type (rules read from the descriptors, regexes
 * compiled) and reused on every push.
 *
 * @module
 */
import {
  type DescField,
  type DescMessage,
  type DescOneof,
  getExtension,
  hasExtension,
  type Message,
  type Registry,
} from "@bufbuild/protobuf";
import { reflect, type ReflectList, type ReflectMap, type ReflectMessage } from "@bufbuild/protobuf/reflect";
import { anyUnpack, FeatureSet_FieldPresence, isWrapperDesc } from "@bufbuild/protobuf/wkt";
import { disabled, type FieldRules, required, rules as rulesExtension } from "#gen/validate/validate_pb.ts";
import { TRANSLATE_REGISTRY } from "../translate/type_registry.ts";
import {
  compileValueRules,
  durationProblem,
  isScalarRules,
  requiresPresence,
  skipsMessage,
  type ValueCheck,
  type ValueEnv,
} from "./field_rules_values.ts";
import type { Violation } from "./violation.ts";

/** Which resource a check is about, and how to read Anys inside it. */
export interface FieldRulesContext {
  /** Type URL of the top-level resource. */
  readonly typeUrl: string;
  /** Name of the top-level resource. */
  readonly resource: string;
  /** Types Anys are unpacked with; translation's registry unless given. */
  readonly registry?: Registry;
  /** Current time (ms) for Timestamp rules relative to now; those rules are skipped without it. */
  readonly nowMs?: number;
}

/** A field path, built only when a violation needs it. */
interface PathNode {
  readonly up: PathNode | undefined;
  readonly seg: string;
}

function pathText(at: PathNode | undefined): string {
  const segs: string[] = [];
  for (let n = at; n; n = n.up) segs.push(n.seg);
  let out = "";
  for (let i = segs.length - 1; i >= 0; i--) {
    const s = segs[i]!;
    out += s.startsWith("[") || out === "" ? s : `.${s}`;
  }
  return out;
}

/** What one walk carries: the context, the output, and the report helper. */
interface Walk {
  readonly ctx: FieldRulesContext;
  readonly registry: Registry;
  readonly out: Violation[];
}

function pascal(name: string): string {
  return name.split("_").map((p) => p.charAt(0).toUpperCase() + p.slice(1)).join("");
}

function push(walk: Walk, at: PathNode | undefined, owner: string, rule: string, reason: string): void {
  walk.out.push({
    rule,
    typeUrl: walk.ctx.typeUrl,
    resource: walk.ctx.resource,
    path: pathText(at),
    message: `${owner}: ${reason}`,
  });
}

/** The environment a value check reports into: the violation's place and its owner's name. */
function envAt(walk: Walk, at: PathNode, owner: string): ValueEnv {
  return { report: (rule, reason) => push(walk, at, owner, rule, reason), nowMs: walk.ctx.nowMs };
}

/** One compiled step of a message's check: reads its field(s) from `r` and reports. */
type Step = (r: ReflectMessage, at: PathNode | undefined, walk: Walk) => void;

interface Compiled {
  readonly steps: readonly Step[];
}

const compiled = new Map<DescMessage, Compiled>();
const relevantMemo = new Map<DescMessage, boolean>();

function fieldRules(field: DescField): FieldRules | undefined {
  const options = field.proto.options;
  return options && hasExtension(options, rulesExtension) ? getExtension(options, rulesExtension) : undefined;
}

/** Whether protoc-gen-validate skips this message type entirely (`disabled`, or `ignored` = 1072). */
function messageDisabled(desc: DescMessage): boolean {
  const options = desc.proto.options;
  if (!options) return false;
  if (hasExtension(options, disabled) && getExtension(options, disabled)) return true;
  // `validate.ignored` (MessageOptions 1072) is newer than the validate.proto generated here.
  return (options.$unknown ?? []).some((u) => u.no === 1072 && u.data.length > 0 && u.data[0] !== 0);
}

function oneofRequired(oneof: DescOneof): boolean {
  const options = oneof.proto.options;
  return options !== undefined && hasExtension(options, required) && getExtension(options, required);
}

/**
 * Whether a value of this message type can hold anything to check: rules on its fields (or
 * deeper), an Any, or a Duration. Recursive types count as relevant while being decided.
 */
function relevant(desc: DescMessage): boolean {
  const known = relevantMemo.get(desc);
  if (known !== undefined) return known;
  if (desc.typeName === "google.protobuf.Any" || desc.typeName === "google.protobuf.Duration") return true;
  if (desc.typeName.startsWith("google.protobuf.") || messageDisabled(desc)) {
    relevantMemo.set(desc, false);
    return false;
  }
  relevantMemo.set(desc, true);
  const result = desc.oneofs.some(oneofRequired) ||
    desc.fields.some((f) => fieldRules(f) !== undefined || (f.message !== undefined && relevant(f.message)));
  relevantMemo.set(desc, result);
  return result;
}

/** Checks a message value of type `desc` (unpacking Anys, checking Durations) at `at`. */
function visitMessage(desc: DescMessage, value: ReflectMessage, at: PathNode | undefined, walk: Walk): void {
  if (desc.typeName === "google.protobuf.Any") {
    visitAny(value.message as never, at, walk);
    return;
  }
  if (desc.typeName === "google.protobuf.Duration") {
    const why = durationProblem(value.message);
    if (why) push(walk, at, "Duration", "envoy.duration.range", why);
    return;
  }
  if (!relevant(desc)) return;
  for (const step of compile(desc).steps) step(value, at, walk);
}

function visitAny(any: { typeUrl: string; value: Uint8Array }, at: PathNode | undefined, walk: Walk): void {
  const unpacked = anyUnpack(any as never, walk.registry);
  if (!unpacked) {
    push(
      walk,
      at,
      "Any",
      "envoy.any.unknown_type",
      `Didn't find a registered implementation for type: ${JSON.stringify(any.typeUrl)}`,
    );
    return;
  }
  const desc = walk.registry.getMessage(unpacked.$typeName);
  if (desc) visitMessage(desc, reflect(desc, unpacked), at, walk);
}

/** The scalar inside a singular wrapper field's value, or the value itself. */
function unwrapped(value: unknown, wrapped: boolean): unknown {
  if (!wrapped) return value;
  const m = value as ReflectMessage;
  return m.get(m.desc.fields[0]!);
}

/** A check of one element (a field's value, a list item, a map key or value). */
type ElementCheck = (value: unknown, at: PathNode, walk: Walk) => void;

/**
 * The check of one element of `kind` under `rules`: value rules, then, for messages, the
 * recursion into the message (unless `skip`).
 */
function elementCheck(
  rules: FieldRules | undefined,
  message: DescMessage | undefined,
  field: DescField,
  owner: string,
  enumDesc = field.enum,
): ElementCheck | undefined {
  const wrapped = message !== undefined && isWrapperDesc(message) && isScalarRules(rules);
  const valueCheck: ValueCheck | undefined = compileValueRules(rules, enumDesc);
  const recurse = message !== undefined && !skipsMessage(rules) && relevant(message);
  if (!valueCheck && !recurse) return undefined;
  return (value, at, walk) => {
    if (valueCheck) {
      const v = message === undefined
        ? value
        : wrapped
        ? unwrapped(value, true)
        : (value as ReflectMessage).message;
      valueCheck(v, envAt(walk, at, owner));
    }
    if (recurse) visitMessage(message, value as ReflectMessage, at, walk);
  };
}

function listStep(field: DescField, rules: FieldRules | undefined, owner: string): Step | undefined {
  const rep = rules?.type.case === "repeated" ? rules.type.value : undefined;
  if (field.fieldKind !== "list") return undefined;
  const message = field.listKind === "message" ? field.message : undefined;
  const item = elementCheck(rep?.items, message, field, owner);
  const min = rep?.minItems ?? 0n;
  const max = rep?.maxItems;
  const hasMax = max !== undefined && rep !== undefined && Object.hasOwn(rep, "maxItems");
  const unique = rep?.unique === true && message === undefined;
  if (!item && min === 0n && !hasMax && !unique) return undefined;
  return (r, at, walk) => {
    const list = r.get(field) as ReflectList;
    const here: PathNode = { up: at, seg: field.name };
    if (list.size < Number(min)) {
      push(walk, here, owner, "pgv.repeated.min_items", `value must contain at least ${min} item(s)`);
    }
    if (hasMax && list.size > Number(max)) {
      push(walk, here, owner, "pgv.repeated.max_items", `value must contain no more than ${max} item(s)`);
    }
    if (unique) {
      const seen = new Set<unknown>();
      for (const v of list) {
        const key = v instanceof Uint8Array ? Array.from(v).join(",") : v;
        if (seen.has(key)) {
          push(
            walk,
            here,
            owner,
            "pgv.repeated.unique",
            `repeated value must contain unique items, ${String(v)} repeats`,
          );
          break;
        }
        seen.add(key);
      }
    }
    if (item) {
      let i = 0;
      for (const v of list) item(v, { up: at, seg: `${field.name}[${i++}]` }, walk);
    }
  };
}

function mapStep(field: DescField, rules: FieldRules | undefined, owner: string): Step | undefined {
  if (field.fieldKind !== "map") return undefined;
  const m = rules?.type.case === "map" ? rules.type.value : undefined;
  const message = field.mapKind === "message" ? field.message : undefined;
  const keyCheck = compileValueRules(m?.keys);
  const valueCheck = elementCheck(
    m?.values,
    message,
    field,
    owner,
    field.mapKind === "enum" ? field.enum : undefined,
  );
  const min = m?.minPairs ?? 0n;
  const hasMax = m !== undefined && Object.hasOwn(m, "maxPairs");
  if (!keyCheck && !valueCheck && min === 0n && !hasMax) return undefined;
  // `no_sparse`: a map entry without a value; protobuf-es always holds a value, so never sparse.
  return (r, at, walk) => {
    const map = r.get(field) as ReflectMap;
    const here: PathNode = { up: at, seg: field.name };
    if (map.size < Number(min)) {
      push(walk, here, owner, "pgv.map.min_pairs", `value must contain at least ${min} pair(s)`);
    }
    if (hasMax && map.size > Number(m!.maxPairs)) {
      push(walk, here, owner, "pgv.map.max_pairs", `value must contain no more than ${m!.maxPairs} pair(s)`);
    }
    for (const [k, v] of map) {
      const entry: PathNode = { up: at, seg: `${field.name}[${JSON.stringify(String(k))}]` };
      if (keyCheck) keyCheck(k, envAt(walk, entry, owner));
      if (valueCheck) valueCheck(v, entry, walk);
    }
  };
}

function singularStep(field: DescField, rules: FieldRules | undefined, owner: string): Step | undefined {
  const message = field.fieldKind === "message" ? field.message : undefined;
  const check = elementCheck(rules, message, field, owner);
  // `required` on a oneof member holds whenever the member is the one set, so only outside oneofs.
  const mustBeSet = message !== undefined && field.oneof === undefined && requiresPresence(rules);
  // Scalars are checked at their zero value too, unless they have explicit presence or sit in a
  // oneof; messages only when set.
  const onlyWhenSet = message !== undefined || field.oneof !== undefined ||
    field.presence === FeatureSet_FieldPresence.EXPLICIT;
  if (!check && !mustBeSet) return undefined;
  return (r, at, walk) => {
    if (onlyWhenSet && !r.isSet(field)) {
      if (mustBeSet) {
        push(walk, { up: at, seg: field.name }, owner, "pgv.message.required", "value is required");
      }
      return;
    }
    if (check) check(r.get(field), { up: at, seg: field.name }, walk);
  };
}

function fieldStep(desc: DescMessage, field: DescField): Step | undefined {
  const rules = fieldRules(field);
  const owner = `${desc.name}ValidationError.${pascal(field.name)}`;
  switch (field.fieldKind) {
    case "list":
      return listStep(field, rules, owner);
    case "map":
      return mapStep(field, rules, owner);
    default:
      return singularStep(field, rules, owner);
  }
}

function oneofStep(desc: DescMessage, oneof: DescOneof): Step | undefined {
  if (!oneofRequired(oneof)) return undefined;
  const owner = `${desc.name}ValidationError.${pascal(oneof.name)}`;
  return (r, at, walk) => {
    if (r.oneofCase(oneof) === undefined) {
      push(walk, { up: at, seg: oneof.name }, owner, "pgv.oneof.required", "value is required");
    }
  };
}

/** The compiled steps of a message type, made on first use and kept. */
function compile(desc: DescMessage): Compiled {
  let c = compiled.get(desc);
  if (c) return c;
  c = { steps: [] };
  compiled.set(desc, c); // a recursive type sees its own (filled below) entry
  if (!messageDisabled(desc)) {
    const steps = c.steps as Step[];
    for (const oneof of desc.oneofs) {
      const s = oneofStep(desc, oneof);
      if (s) steps.push(s);
    }
    for (const field of desc.fields) {
      const s = fieldStep(desc, field);
      if (s) steps.push(s);
    }
  }
  return c;
}

/**
 * Every protoc-gen-validate rule `msg` (of type `schema`) breaks, recursively through its
 * messages, lists, maps and Anys, each with its field path ("filter_chains[0].filters[1]
 * .typed_config.http_filters[2].name"); empty when Envoy would accept every field.
 */
export function checkFieldRules(schema: DescMessage, msg: Message, ctx: FieldRulesContext): Violation[] {
  const walk: Walk = { ctx, registry: ctx.registry ?? TRANSLATE_REGISTRY, out: [] };
  visitMessage(schema, reflect(schema, msg as never), undefined, walk);
  return walk.out;
}
