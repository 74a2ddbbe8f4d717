/**
 * protoc-gen-validate's rules for one value, compiled once: `validate.FieldRules` of a string,
 * bytes, number, bool, enum, Duration, Timestamp or Any become one function that reports every
 * rule the value breaks. The walk over messages (field_rules.ts) decides which values a rule
 * applies to (presence, oneofs, repeated items, map keys and values); this file only judges one
 * value. Semantics follow protoc-gen-validate's documentation: a bound pair whose lower bound is
 * above the upper one means "outside the range"; `ignore_empty` skips an empty string; proto2
 * presence of a rule (not its value) says whether it applies.
 *
 * @module
 */
import { type DescEnum, type DescMessage, isFieldSet, type Message } from "@bufbuild/protobuf";
import { RE2JS } from "@bufbuild/re2";
import {
  type BytesRules,
  type DurationRules,
  type EnumRules,
  type FieldRules,
  FieldRulesSchema,
  type StringRules,
  type TimestampRules,
} from "#gen/validate/validate_pb.ts";
import {
  emailProblem,
  headerProblem,
  hostnameProblem,
  isIp,
  isIpv4,
  isIpv6,
  isUuid,
  uriProblem,
  uriRefProblem,
} from "./field_rules_well_known.ts";

/** Where a value check reports: the rule id ("pgv.string.min_len") and the reason in words. */
export interface ValueEnv {
  /** Records one broken rule. */
  report(rule: string, reason: string): void;
  /** The current time in milliseconds, for Timestamp `lt_now`/`gt_now`/`within`; unchecked when absent. */
  readonly nowMs?: number;
}

/**
 * A compiled check of one value. Scalars arrive as protobuf-es values (bigint for 64-bit
 * integers, number for enums, Uint8Array for bytes), wrappers unwrapped; Duration, Timestamp
 * and Any as their messages.
 */
export type ValueCheck = (value: unknown, env: ValueEnv) => void;

type Test = (value: unknown, env: ValueEnv) => void;
type Num = number | bigint;
type RuleMessage = Message & Record<string, unknown>;

/** The schema of the rules message in `FieldRules.type` case `name`. */
function rulesSchema(name: string): DescMessage {
  const field = FieldRulesSchema.fields.find((f) => f.localName === name);
  if (!field?.message) throw new Error(`validate.FieldRules: no message case ${name}`);
  return field.message;
}

/** Whether rule `name` is present in a proto2 rules message (present at zero counts). */
function presence(schema: DescMessage, rules: RuleMessage): (name: string) => boolean {
  return (name) => {
    const field = schema.fields.find((f) => f.localName === name);
    return field !== undefined && isFieldSet(rules as never, field);
  };
}

/** Number of Unicode code points in `s`, as protoc-gen-validate counts string length. */
export function runeCount(s: string): number {
  let n = s.length;
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c >= 0xd800 && c <= 0xdbff && i + 1 < s.length) {
      const d = s.charCodeAt(i + 1);
      if (d >= 0xdc00 && d <= 0xdfff) {
        n--;
        i++;
      }
    }
  }
  return n;
}

/** Length of `s` in UTF-8 bytes. */
export function utf8Length(s: string): number {
  let n = 0;
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c < 0x80) n += 1;
    else if (c < 0x800) n += 2;
    else if (c >= 0xd800 && c <= 0xdbff && i + 1 < s.length) {
      n += 4;
      i++;
    } else n += 3;
  }
  return n;
}

interface Bound {
  readonly value: Num;
  readonly inclusive: boolean;
  readonly key: string;
}

/**
 * The const/lt/lte/gt/gte/in/not_in tests shared by numbers, Durations and Timestamps, over
 * values made comparable by `toNum` and printed by `show`.
 */
function rangeTests(
  prefix: string,
  rules: RuleMessage,
  has: (name: string) => boolean,
  toNum: (v: unknown) => Num,
  show: (n: Num) => string,
): Test[] {
  const tests: Test[] = [];
  const num = (name: string) => toNum(rules[name]);
  if (has("const")) {
    const c = num("const");
    tests.push((v, env) => {
      if (toNum(v) !== c) env.report(`${prefix}.const`, `value must equal ${show(c)}`);
    });
  }
  const lower: Bound | undefined = has("gt")
    ? { value: num("gt"), inclusive: false, key: "gt" }
    : has("gte")
    ? { value: num("gte"), inclusive: true, key: "gte" }
    : undefined;
  const upper: Bound | undefined = has("lt")
    ? { value: num("lt"), inclusive: false, key: "lt" }
    : has("lte")
    ? { value: num("lte"), inclusive: true, key: "lte" }
    : undefined;
  const aboveLower = (n: Num, b: Bound) => (b.inclusive ? n >= b.value : n > b.value);
  const belowUpper = (n: Num, b: Bound) => (b.inclusive ? n <= b.value : n < b.value);
  if (lower && upper) {
    const inside = upper.value > lower.value;
    const range = inside
      ? `inside range ${lower.inclusive ? "[" : "("}${show(lower.value)}, ${show(upper.value)}${
        upper.inclusive ? "]" : ")"
      }`
      : `outside range ${upper.inclusive ? "(" : "["}${show(upper.value)}, ${show(lower.value)}${
        lower.inclusive ? ")" : "]"
      }`;
    const rule = `${prefix}.${lower.key}_${upper.key}`;
    tests.push((v, env) => {
      const n = toNum(v);
      const ok = inside
        ? aboveLower(n, lower) && belowUpper(n, upper)
        : aboveLower(n, lower) || belowUpper(n, upper);
      if (!ok) env.report(rule, `value must be ${range}`);
    });
  } else if (lower) {
    tests.push((v, env) => {
      if (!aboveLower(toNum(v), lower)) {
        env.report(
          `${prefix}.${lower.key}`,
          `value must be greater than ${lower.inclusive ? "or equal to " : ""}${show(lower.value)}`,
        );
      }
    });
  } else if (upper) {
    tests.push((v, env) => {
      if (!belowUpper(toNum(v), upper)) {
        env.report(
          `${prefix}.${upper.key}`,
          `value must be less than ${upper.inclusive ? "or equal to " : ""}${show(upper.value)}`,
        );
      }
    });
  }
  const list = (name: string) => ((rules[name] ?? []) as unknown[]).map(toNum);
  const allowed = list("in");
  if (allowed.length > 0) {
    tests.push((v, env) => {
      if (!allowed.includes(toNum(v))) {
        env.report(`${prefix}.in`, `value must be in list [${allowed.map(show).join(", ")}]`);
      }
    });
  }
  const denied = list("notIn");
  if (denied.length > 0) {
    tests.push((v, env) => {
      if (denied.includes(toNum(v))) {
        env.report(`${prefix}.not_in`, `value must not be in list [${denied.map(show).join(", ")}]`);
      }
    });
  }
  return tests;
}

/** A Duration or Timestamp as nanoseconds. */
function nanos(v: unknown): bigint {
  const m = v as { seconds?: bigint; nanos?: number } | undefined;
  return (m?.seconds ?? 0n) * 1_000_000_000n + BigInt(m?.nanos ?? 0);
}

function showDuration(n: Num): string {
  const b = BigInt(n);
  const sign = b < 0n ? "-" : "";
  const abs = b < 0n ? -b : b;
  const s = abs / 1_000_000_000n;
  const frac = abs % 1_000_000_000n;
  return `${sign}${s}${frac === 0n ? "" : "." + frac.toString().padStart(9, "0").replace(/0+$/, "")}s`;
}

function stringTests(r: StringRules & RuleMessage): Test[] {
  const has = presence(rulesSchema("string"), r);
  const t: Test[] = [];
  const p = "pgv.string";
  const add = (rule: string, bad: (s: string) => string | undefined) =>
    t.push((v, env) => {
      const why = bad(v as string);
      if (why) env.report(`${p}.${rule}`, why);
    });
  if (has("const")) {
    add("const", (s) => (s === r.const ? undefined : `value must equal ${JSON.stringify(r.const)}`));
  }
  const counted = (name: string, key: keyof StringRules, measure: (s: string) => number, cmp: string) => {
    if (!has(key as string)) return;
    const n = Number(r[key] as bigint);
    const test = cmp === "="
      ? (x: number) => x === n
      : cmp === ">="
      ? (x: number) => x >= n
      : (x: number) => x <= n;
    const unit = name.endsWith("bytes") ? "bytes" : "characters";
    const words = cmp === "=" ? "must be" : cmp === ">=" ? "must be at least" : "must be at most";
    add(name, (s) => (test(measure(s)) ? undefined : `value length ${words} ${n} ${unit}`));
  };
  counted("len", "len", runeCount, "=");
  counted("min_len", "minLen", runeCount, ">=");
  counted("max_len", "maxLen", runeCount, "<=");
  counted("len_bytes", "lenBytes", utf8Length, "=");
  counted("min_bytes", "minBytes", utf8Length, ">=");
  counted("max_bytes", "maxBytes", utf8Length, "<=");
  if (has("pattern")) {
    const re = new RE2JS(r.pattern);
    add(
      "pattern",
      (s) => (re.test(s) ? undefined : `value does not match regex pattern ${JSON.stringify(r.pattern)}`),
    );
  }
  if (has("prefix")) {
    add(
      "prefix",
      (s) => (s.startsWith(r.prefix) ? undefined : `value does not have prefix ${JSON.stringify(r.prefix)}`),
    );
  }
  if (has("suffix")) {
    add(
      "suffix",
      (s) => (s.endsWith(r.suffix) ? undefined : `value does not have suffix ${JSON.stringify(r.suffix)}`),
    );
  }
  if (has("contains")) {
    add(
      "contains",
      (
        s,
      ) => (s.includes(r.contains)
        ? undefined
        : `value does not contain substring ${JSON.stringify(r.contains)}`),
    );
  }
  if (has("notContains")) {
    add(
      "not_contains",
      (
        s,
      ) => (s.includes(r.notContains)
        ? `value contains substring ${JSON.stringify(r.notContains)}`
        : undefined),
    );
  }
  if (r.in.length > 0) {
    const set = new Set(r.in);
    add("in", (s) => (set.has(s) ? undefined : `value must be in list ${JSON.stringify(r.in)}`));
  }
  if (r.notIn.length > 0) {
    const set = new Set(r.notIn);
    add("not_in", (s) => (set.has(s) ? `value must not be in list ${JSON.stringify(r.notIn)}` : undefined));
  }
  const wk = r.wellKnown;
  if (wk.case === "wellKnownRegex") {
    const kind = wk.value as number;
    const strict = r.strict;
    add("well_known_regex", (s) => headerProblem(kind, strict, s));
  } else if (wk.case !== undefined && wk.value === true) {
    const checks: Record<string, (s: string) => string | undefined> = {
      email: emailProblem,
      hostname: hostnameProblem,
      ip: (s) => (isIp(s) ? undefined : "value must be a valid IP address"),
      ipv4: (s) => (isIpv4(s) ? undefined : "value must be a valid IPv4 address"),
      ipv6: (s) => (isIpv6(s) ? undefined : "value must be a valid IPv6 address"),
      uri: uriProblem,
      uriRef: uriRefProblem,
      address: (
        s,
      ) => (isIp(s) || !hostnameProblem(s) ? undefined : "value must be a valid hostname, or ip address"),
      uuid: (s) => (isUuid(s) ? undefined : "value must be a valid UUID"),
    };
    const check = checks[wk.case];
    const rule = wk.case === "uriRef" ? "uri_ref" : wk.case;
    if (check) add(rule, check);
  }
  if (r.ignoreEmpty) {
    return t.map((test) => (v, env) => {
      if (v !== "") test(v, env);
    });
  }
  return t;
}

function bytesEqual(a: Uint8Array, b: Uint8Array): boolean {
  return a.length === b.length && a.every((x, i) => x === b[i]);
}

function indexOfBytes(hay: Uint8Array, needle: Uint8Array): number {
  outer: for (let i = 0; i + needle.length <= hay.length; i++) {
    for (let j = 0; j < needle.length; j++) if (hay[i + j] !== needle[j]) continue outer;
    return i;
  }
  return -1;
}

function bytesTests(r: BytesRules & RuleMessage): Test[] {
  const has = presence(rulesSchema("bytes"), r);
  const t: Test[] = [];
  const add = (rule: string, bad: (b: Uint8Array) => string | undefined) =>
    t.push((v, env) => {
      const why = bad(v as Uint8Array);
      if (why) env.report(`pgv.bytes.${rule}`, why);
    });
  if (has("const")) {
    add("const", (b) => (bytesEqual(b, r.const) ? undefined : "value must equal the constant"));
  }
  if (has("len")) {
    add("len", (b) => (b.length === Number(r.len) ? undefined : `value length must be ${r.len} bytes`));
  }
  if (has("minLen")) {
    add(
      "min_len",
      (b) => (b.length >= Number(r.minLen) ? undefined : `value length must be at least ${r.minLen} bytes`),
    );
  }
  if (has("maxLen")) {
    add(
      "max_len",
      (b) => (b.length <= Number(r.maxLen) ? undefined : `value length must be at most ${r.maxLen} bytes`),
    );
  }
  if (has("pattern")) {
    const re = new RE2JS(r.pattern);
    const decoder = new TextDecoder();
    add(
      "pattern",
      (
        b,
      ) => (re.test(decoder.decode(b))
        ? undefined
        : `value does not match regex pattern ${JSON.stringify(r.pattern)}`),
    );
  }
  if (has("prefix")) {
    add(
      "prefix",
      (
        b,
      ) => (indexOfBytes(b.subarray(0, r.prefix.length), r.prefix) === 0
        ? undefined
        : "value does not have the prefix"),
    );
  }
  if (has("suffix")) {
    add(
      "suffix",
      (
        b,
      ) => (b.length >= r.suffix.length && bytesEqual(b.subarray(b.length - r.suffix.length), r.suffix)
        ? undefined
        : "value does not have the suffix"),
    );
  }
  if (has("contains")) {
    add(
      "contains",
      (b) => (indexOfBytes(b, r.contains) >= 0 ? undefined : "value does not contain the bytes"),
    );
  }
  if (r.in.length > 0) {
    add("in", (b) => (r.in.some((x) => bytesEqual(x, b)) ? undefined : "value must be in the list"));
  }
  if (r.notIn.length > 0) {
    add(
      "not_in",
      (b) => (r.notIn.some((x) => bytesEqual(x, b)) ? "value must not be in the list" : undefined),
    );
  }
  const wk = r.wellKnown;
  if (wk.case === "ip" && wk.value) {
    add("ip", (b) => (b.length === 4 || b.length === 16 ? undefined : "value must be a valid IP address"));
  }
  if (wk.case === "ipv4" && wk.value) {
    add("ipv4", (b) => (b.length === 4 ? undefined : "value must be a valid IPv4 address"));
  }
  if (wk.case === "ipv6" && wk.value) {
    add("ipv6", (b) => (b.length === 16 ? undefined : "value must be a valid IPv6 address"));
  }
  return t;
}

function enumTests(r: EnumRules & RuleMessage, desc: DescEnum | undefined): Test[] {
  const has = presence(rulesSchema("enum"), r);
  const t: Test[] = [];
  if (has("const")) {
    t.push((v, env) => {
      if (v !== r.const) env.report("pgv.enum.const", `value must equal ${r.const}`);
    });
  }
  if (r.definedOnly && desc) {
    const defined = new Set(desc.values.map((e) => e.number));
    t.push((v, env) => {
      if (!defined.has(v as number)) {
        env.report(
          "pgv.enum.defined_only",
          `value must be one of the defined enum values (${desc.typeName}), got ${v}`,
        );
      }
    });
  }
  if (r.in.length > 0) {
    t.push((v, env) => {
      if (!r.in.includes(v as number)) {
        env.report("pgv.enum.in", `value must be in list [${r.in.join(", ")}]`);
      }
    });
  }
  if (r.notIn.length > 0) {
    t.push((v, env) => {
      if (r.notIn.includes(v as number)) {
        env.report("pgv.enum.not_in", `value must not be in list [${r.notIn.join(", ")}]`);
      }
    });
  }
  return t;
}

function timestampTests(r: TimestampRules & RuleMessage): Test[] {
  const has = presence(rulesSchema("timestamp"), r);
  const t = rangeTests("pgv.timestamp", r, (n) => has(n) && r[n] !== undefined, nanos, (n) => `${n}ns`);
  const ms = (v: unknown) => Number(nanos(v) / 1_000_000n);
  if (r.ltNow) {
    t.push((v, env) => {
      if (env.nowMs !== undefined && ms(v) >= env.nowMs) {
        env.report("pgv.timestamp.lt_now", "value must be less than now");
      }
    });
  }
  if (r.gtNow) {
    t.push((v, env) => {
      if (env.nowMs !== undefined && ms(v) <= env.nowMs) {
        env.report("pgv.timestamp.gt_now", "value must be greater than now");
      }
    });
  }
  if (r.within) {
    const within = Number(nanos(r.within) / 1_000_000n);
    t.push((v, env) => {
      if (env.nowMs !== undefined && Math.abs(ms(v) - env.nowMs) > within) {
        env.report("pgv.timestamp.within", `value must be within ${showDuration(nanos(r.within))} of now`);
      }
    });
  }
  return t;
}

function anyTests(r: { in: string[]; notIn: string[] }): Test[] {
  const t: Test[] = [];
  const url = (v: unknown) => (v as { typeUrl: string }).typeUrl;
  if (r.in.length > 0) {
    const set = new Set(r.in);
    t.push((v, env) => {
      if (!set.has(url(v))) env.report("pgv.any.in", `type URL must be in list ${JSON.stringify(r.in)}`);
    });
  }
  if (r.notIn.length > 0) {
    const set = new Set(r.notIn);
    t.push((v, env) => {
      if (set.has(url(v))) {
        env.report("pgv.any.not_in", `type URL must not be in list ${JSON.stringify(r.notIn)}`);
      }
    });
  }
  return t;
}

/** Numeric rule cases of `validate.FieldRules`. */
const NUMERIC = new Set([
  "float",
  "double",
  "int32",
  "int64",
  "uint32",
  "uint64",
  "sint32",
  "sint64",
  "fixed32",
  "fixed64",
  "sfixed32",
  "sfixed64",
]);

/** The tests of one `validate.FieldRules` value rule (everything but message/repeated/map). */
function valueTests(rules: FieldRules, enumDesc: DescEnum | undefined): Test[] {
  const { case: kind, value } = rules.type;
  if (kind === undefined) return [];
  const r = value as unknown as RuleMessage;
  if (NUMERIC.has(kind)) {
    const has = presence(rulesSchema(kind), r);
    return rangeTests(`pgv.${kind}`, r, has, (v) => v as Num, (n) => String(n));
  }
  switch (kind) {
    case "bool": {
      const has = presence(rulesSchema("bool"), r);
      if (!has("const")) return [];
      const c = r.const as boolean;
      return [(v, env) => {
        if (v !== c) env.report("pgv.bool.const", `value must equal ${c}`);
      }];
    }
    case "string":
      return stringTests(r as StringRules & RuleMessage);
    case "bytes":
      return bytesTests(r as BytesRules & RuleMessage);
    case "enum":
      return enumTests(r as EnumRules & RuleMessage, enumDesc);
    case "duration": {
      const d = r as DurationRules & RuleMessage;
      const has = presence(rulesSchema("duration"), d);
      return rangeTests("pgv.duration", d, (n) => has(n) && d[n] !== undefined, nanos, showDuration);
    }
    case "timestamp":
      return timestampTests(r as TimestampRules & RuleMessage);
    case "any":
      return anyTests(r as unknown as { in: string[]; notIn: string[] });
    default:
      return [];
  }
}

/**
 * One check for a value under `rules` (scalar, bytes, enum, Duration, Timestamp or Any
 * rules), or undefined when the rules test nothing. `required`, `repeated`, `map` and `message`
 * rules are the walk's business, not a value's.
 */
export function compileValueRules(
  rules: FieldRules | undefined,
  enumDesc?: DescEnum,
): ValueCheck | undefined {
  if (!rules) return undefined;
  const tests = valueTests(rules, enumDesc);
  if (tests.length === 0) return undefined;
  if (tests.length === 1) return tests[0];
  return (v, env) => {
    for (const test of tests) test(v, env);
  };
}

/** Whether `rules` require the field to be set (message, Any, Duration or Timestamp `required`). */
export function requiresPresence(rules: FieldRules | undefined): boolean {
  if (!rules) return false;
  if (rules.message?.required) return true;
  const { case: kind, value } = rules.type;
  if (kind === "any" || kind === "duration" || kind === "timestamp") return value.required;
  return false;
}

/** Whether `rules` say not to look inside the message (`message.skip`). */
export function skipsMessage(rules: FieldRules | undefined): boolean {
  return rules?.message?.skip === true;
}

/** Whether the rule case is a scalar one (applied to a wrapper type's value). */
export function isScalarRules(rules: FieldRules | undefined): boolean {
  const kind = rules?.type.case;
  return kind !== undefined &&
    (NUMERIC.has(kind) || kind === "bool" || kind === "string" || kind === "bytes");
}

/**
 * Envoy's own check of every Duration in a config (MessageUtil's duration validation, applied
 * beside protoc-gen-validate): not negative, nanos below one second, seconds within what a
 * Duration may hold. From memory of Envoy's source (source/common/protobuf/utility.cc); the
 * exact upper bound Envoy uses may be lower (it also refuses durations that overflow
 * milliseconds in an int64).
 */
export function durationProblem(v: unknown): string | undefined {
  const d = v as { seconds: bigint; nanos: number };
  if (d.seconds < 0n || d.nanos < 0) return `Expected positive duration: ${showDuration(nanos(d))}`;
  if (d.nanos > 999_999_999 || d.seconds > 315_576_000_000n) return "Duration out-of-range";
  return undefined;
}
