/**
 * Istio 1.x Mixer's expression language (CEXL: a subset of Go expressions over attributes)
 * compiled to CEL source, which `../cel.ts` then type-checks and runs. CEL stays the only runtime;
 * this file is a parser for the 1.x syntax and a translation of its meaning.
 *
 * What is translated and how:
 * - `a | b` (Mixer's default operator) becomes `D(a) ? a : b`, where `D(a)` says whether `a` has a
 *   value: an attribute is present (`has(x.y)`), a map has the key (`k in m`), or a nested `|` or
 *   `conditional()` has one. Other operators and functions never fall through in Mixer (they
 *   fail), so they count as having a value, as in Mixer's compiler.
 * - A string literal that is a Go duration (`"10s"`, `"0"`) is a duration in 1.x; it becomes
 *   `duration("…")`.
 * - `"regex".matches(s)` takes the pattern as receiver in 1.x; CEL's `matches` takes it as the
 *   argument, so receiver and argument swap.
 * - `conditional(c, a, b)` / `conditionalString(...)` become CEL's `c ? a : b`; `ip`,
 *   `timestamp`, `match`, `toLower`, `reverse`, `size`, `email`, `dnsName`, `uri`,
 *   `emptyStringMap`, `.startsWith`, `.endsWith` keep their names (the CEL environment declares
 *   them); `true`/`false` are case-insensitive, as Mixer read them.
 * - `==` and `!=` on `dnsName()` values ignore case and a trailing dot, and on `email()` values
 *   compare the local part exactly and the domain as a DNS name, as Mixer's typed equality did;
 *   the other side of such a comparison is read as a value of the same type.
 * - Dotted names (`request.headers`) are one attribute each, map access is `m["key"]`; integer
 *   literals are decimal, as Mixer parsed them. Attributes Istio 1.0 had and later renamed
 *   (`destination.service`, `source.user`) read their current names.
 *
 * @module
 */

/** A node of a parsed 1.x expression. */
export type Node1x =
  | { readonly k: "string"; readonly value: string }
  | { readonly k: "duration"; readonly text: string; readonly nanos: bigint }
  | { readonly k: "int"; readonly text: string }
  | { readonly k: "double"; readonly text: string }
  | { readonly k: "bool"; readonly value: boolean }
  | { readonly k: "attr"; readonly name: string }
  | { readonly k: "index"; readonly map: Node1x; readonly key: Node1x }
  | { readonly k: "unary"; readonly op: "!" | "-"; readonly x: Node1x }
  | { readonly k: "binary"; readonly op: string; readonly l: Node1x; readonly r: Node1x }
  | { readonly k: "call"; readonly fn: string; readonly target?: Node1x; readonly args: readonly Node1x[] };

/** The outcome of {@link translate1x}. */
export type Translation =
  | {
    readonly ok: true;
    /** The expression as CEL source. */
    readonly cel: string;
    /**
     * The constructs that mean something else when the same text is read as CEL (a duration
     * literal, `.matches` with the pattern as receiver); empty when both readings agree.
     */
    readonly divergent: readonly string[];
    /**
     * Comparisons of `dnsName()` / `email()` values, which only Mixer config writes (meshd's CEL
     * has these functions for Mixer's sake): text with one is read as 1.x unless annotated.
     */
    readonly typed: readonly string[];
  }
  | { readonly ok: false; readonly message: string };

class SyntaxError1x extends Error {}

// ---------------------------------------------------------------------------------------------
// Tokens
// ---------------------------------------------------------------------------------------------

type Token =
  | { readonly t: "ident"; readonly v: string; readonly at: number }
  | { readonly t: "string"; readonly v: string; readonly at: number }
  | { readonly t: "number"; readonly v: string; readonly at: number }
  | { readonly t: "op"; readonly v: string; readonly at: number }
  | { readonly t: "end"; readonly v: ""; readonly at: number };

const OPERATORS = [
  "||",
  "&&",
  "==",
  "!=",
  "<=",
  ">=",
  "<",
  ">",
  "!",
  "|",
  "+",
  "-",
  "(",
  ")",
  "[",
  "]",
  ",",
  ".",
];
const FOREIGN = ["&^", "<<", ">>", "*", "/", "%", "^", "&", "?", ":", "="];

function tokenize(src: string): Token[] {
  const out: Token[] = [];
  let i = 0;
  while (i < src.length) {
    const c = src[i]!;
    if (/\s/.test(c)) {
      i++;
      continue;
    }
    if (/[A-Za-z_]/.test(c)) {
      const m = /^[A-Za-z_][A-Za-z0-9_]*/.exec(src.slice(i))!;
      out.push({ t: "ident", v: m[0], at: i });
      i += m[0].length;
      continue;
    }
    if (/[0-9]/.test(c) || (c === "." && /[0-9]/.test(src[i + 1] ?? ""))) {
      const m = /^(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]+)?/.exec(src.slice(i))!;
      if (/^[A-Za-z_]/.test(src.slice(i + m[0].length))) {
        throw new SyntaxError1x(`malformed number at column ${i + 1}`);
      }
      out.push({ t: "number", v: m[0], at: i });
      i += m[0].length;
      continue;
    }
    if (c === '"' || c === "'" || c === "`") {
      const [value, end] = readString(src, i);
      out.push({ t: "string", v: value, at: i });
      i = end;
      continue;
    }
    const op = OPERATORS.find((o) => src.startsWith(o, i));
    const foreign = FOREIGN.find((o) => src.startsWith(o, i));
    if (op && !(foreign && foreign.length > op.length)) {
      out.push({ t: "op", v: op, at: i });
      i += op.length;
      continue;
    }
    throw new SyntaxError1x(
      foreign
        ? `operator ${foreign} at column ${i + 1} is not part of Mixer's expression language`
        : `unexpected character ${JSON.stringify(c)} at column ${i + 1}`,
    );
  }
  out.push({ t: "end", v: "", at: src.length });
  return out;
}

const SIMPLE_ESCAPES: Readonly<Record<string, string>> = {
  a: "\x07",
  b: "\b",
  f: "\f",
  n: "\n",
  r: "\r",
  t: "\t",
  v: "\v",
  "\\": "\\",
  '"': '"',
  "'": "'",
};

/** Reads a Go string, raw string or rune literal starting at `start`; returns its value and end. */
function readString(src: string, start: number): [string, number] {
  const quote = src[start]!;
  let i = start + 1;
  let value = "";
  for (;;) {
    if (i >= src.length) throw new SyntaxError1x(`string starting at column ${start + 1} is not closed`);
    const c = src[i]!;
    if (c === quote) return [value, i + 1];
    if (quote !== "`" && c === "\n") {
      throw new SyntaxError1x(`string starting at column ${start + 1} is not closed`);
    }
    if (quote === "`" || c !== "\\") {
      value += c;
      i++;
      continue;
    }
    const e = src[i + 1] ?? "";
    if (e in SIMPLE_ESCAPES) {
      value += SIMPLE_ESCAPES[e];
      i += 2;
      continue;
    }
    const hex = e === "x" ? 2 : e === "u" ? 4 : e === "U" ? 8 : 0;
    const digits = hex > 0 ? src.slice(i + 2, i + 2 + hex) : src.slice(i + 1, i + 4);
    const ok = hex > 0 ? new RegExp(`^[0-9a-fA-F]{${hex}}$`).test(digits) : /^[0-7]{3}$/.test(digits);
    if (!ok) throw new SyntaxError1x(`invalid escape \\${e} at column ${i + 1}`);
    value += String.fromCodePoint(parseInt(digits, hex > 0 ? 16 : 8));
    i += hex > 0 ? 2 + hex : 4;
  }
}

// ---------------------------------------------------------------------------------------------
// Parser (Go's precedence: || < && < comparisons < + - |)
// ---------------------------------------------------------------------------------------------

const PRECEDENCE: Readonly<Record<string, number>> = {
  "||": 1,
  "&&": 2,
  "==": 3,
  "!=": 3,
  "<": 3,
  "<=": 3,
  ">": 3,
  ">=": 3,
  "+": 4,
  "-": 4,
  "|": 4,
};

/** Parses a 1.x expression; throws a message naming the column on a syntax error. */
export function parse1x(src: string): Node1x {
  const tokens = tokenize(src);
  let pos = 0;
  const peek = () => tokens[pos]!;
  const next = () => tokens[pos++]!;
  const expectOp = (v: string) => {
    const tok = next();
    if (tok.t !== "op" || tok.v !== v) throw new SyntaxError1x(`expected ${v} at column ${tok.at + 1}`);
  };
  const where = (tok: Token) => tok.t === "end" ? "at the end" : `at column ${tok.at + 1}`;

  const binary = (min: number): Node1x => {
    let left = unary();
    for (;;) {
      const tok = peek();
      const prec = tok.t === "op" ? PRECEDENCE[tok.v] : undefined;
      if (prec === undefined || prec < min) return left;
      next();
      if (tok.v === "-") {
        throw new SyntaxError1x(
          `operator - at column ${tok.at + 1} is not part of Mixer's expression language`,
        );
      }
      left = { k: "binary", op: tok.v, l: left, r: binary(prec + 1) };
    }
  };
  const unary = (): Node1x => {
    const tok = peek();
    if (tok.t === "op" && tok.v === "!") {
      next();
      return { k: "unary", op: "!", x: unary() };
    }
    if (tok.t === "op" && tok.v === "-") {
      next();
      const x = unary();
      if (x.k !== "int" && x.k !== "double") {
        throw new SyntaxError1x(`unary - at column ${tok.at + 1} applies only to number literals`);
      }
      return { k: x.k, text: `-${x.text}` };
    }
    return postfix(primary());
  };
  const args = (): Node1x[] => {
    expectOp("(");
    const out: Node1x[] = [];
    if (peek().t === "op" && peek().v === ")") {
      next();
      return out;
    }
    for (;;) {
      out.push(binary(1));
      const tok = next();
      if (tok.t === "op" && tok.v === ")") return out;
      if (tok.t !== "op" || tok.v !== ",") throw new SyntaxError1x(`expected , or ) ${where(tok)}`);
    }
  };
  const isOp = (v: string) => peek().t === "op" && peek().v === v;
  const primary = (): Node1x => {
    const tok = next();
    if (tok.t === "string") return stringLiteral(tok.v);
    if (tok.t === "number") {
      return /[.eE]/.test(tok.v)
        ? { k: "double", text: tok.v }
        : { k: "int", text: tok.v.replace(/^0+(?=\d)/, "") };
    }
    if (tok.t === "op" && tok.v === "(") {
      const inner = binary(1);
      expectOp(")");
      return inner;
    }
    if (tok.t !== "ident") throw new SyntaxError1x(`expected an operand ${where(tok)}`);
    const names = [tok.v];
    while (isOp(".") && tokens[pos + 1]?.t === "ident") {
      next();
      names.push(next().v);
    }
    if (isOp("(")) {
      const fn = names.pop()!;
      const target: Node1x | undefined = names.length > 0 ? { k: "attr", name: names.join(".") } : undefined;
      return { k: "call", fn, target, args: args() };
    }
    const lower = tok.v.toLowerCase();
    if (names.length === 1 && (lower === "true" || lower === "false")) {
      return { k: "bool", value: lower === "true" };
    }
    return { k: "attr", name: names.join(".") };
  };
  const postfix = (x: Node1x): Node1x => {
    for (;;) {
      if (isOp("[")) {
        next();
        const key = binary(1);
        expectOp("]");
        x = { k: "index", map: x, key };
      } else if (isOp(".")) {
        const dot = next();
        const name = next();
        if (name.t !== "ident" || !isOp("(")) {
          throw new SyntaxError1x(`expected a method call after . at column ${dot.at + 1}`);
        }
        x = { k: "call", fn: name.v, target: x, args: args() };
      } else return x;
    }
  };

  const root = binary(1);
  const rest = peek();
  if (rest.t !== "end") throw new SyntaxError1x(`unexpected ${rest.v || rest.t} at column ${rest.at + 1}`);
  return root;
}

function stringLiteral(value: string): Node1x {
  const nanos = goDurationNanos(value);
  return nanos === undefined ? { k: "string", value } : { k: "duration", text: value, nanos };
}

const UNIT_NANOS: Readonly<Record<string, bigint>> = {
  ns: 1n,
  us: 1_000n,
  "µs": 1_000n,
  "μs": 1_000n,
  ms: 1_000_000n,
  s: 1_000_000_000n,
  m: 60_000_000_000n,
  h: 3_600_000_000_000n,
};

/** Nanoseconds of a Go `time.ParseDuration` string, or undefined when it is not one. */
export function goDurationNanos(text: string): bigint | undefined {
  let s = text;
  let sign = 1n;
  if (s.startsWith("-") || s.startsWith("+")) {
    if (s[0] === "-") sign = -1n;
    s = s.slice(1);
  }
  if (s === "0") return 0n;
  if (s === "") return undefined;
  let total = 0n;
  const part = /^([0-9]*)(?:\.([0-9]*))?(ns|us|µs|μs|ms|s|m|h)/;
  while (s !== "") {
    const m = part.exec(s);
    if (!m || (m[1] === "" && (m[2] ?? "") === "")) return undefined;
    const unit = UNIT_NANOS[m[3]!]!;
    const frac = m[2] ?? "";
    total += BigInt(m[1] || "0") * unit +
      (frac === "" ? 0n : BigInt(frac) * unit / 10n ** BigInt(frac.length));
    s = s.slice(m[0].length);
  }
  return sign * total;
}

// ---------------------------------------------------------------------------------------------
// Translation to CEL
// ---------------------------------------------------------------------------------------------

/** Istio 1.0 attribute names and the names their values have now. */
const RENAMED_ATTRIBUTES: Readonly<Record<string, string>> = {
  "destination.service": "destination.service.host",
  "source.user": "source.principal",
};

const attributeName = (name: string) => RENAMED_ATTRIBUTES[name] ?? name;

const PLAIN_FUNCTIONS: Readonly<Record<string, number>> = {
  ip: 1,
  timestamp: 1,
  match: 2,
  toLower: 1,
  reverse: 1,
  size: 1,
  email: 1,
  dnsName: 1,
  uri: 1,
  emptyStringMap: 0,
};
const METHODS = ["startsWith", "endsWith", "matches", "reverse"];
const KNOWN = [...Object.keys(PLAIN_FUNCTIONS), "conditional", "conditionalString", ...METHODS];

function arity(n: Extract<Node1x, { k: "call" }>, want: number): void {
  if (n.args.length !== want) {
    throw new SyntaxError1x(`${n.fn}() takes ${want} argument${want === 1 ? "" : "s"}, got ${n.args.length}`);
  }
}

/** What a translation noticed: see {@link Translation}. */
interface Notes {
  readonly divergent: string[];
  readonly typed: string[];
}

/** Translates one node to CEL; records constructs whose CEL reading of the same text differs. */
function toCel(n: Node1x, notes: Notes): string {
  const cel = (x: Node1x) => toCel(x, notes);
  switch (n.k) {
    case "string":
      return JSON.stringify(n.value);
    case "duration":
      notes.divergent.push(`${JSON.stringify(n.text)} is a duration in Mixer 1.x and a string in CEL`);
      return `duration(${JSON.stringify(`${n.nanos}ns`)})`;
    case "int":
    case "double":
      return n.text;
    case "bool":
      return String(n.value);
    case "attr":
      return attributeName(n.name);
    case "index":
      return `${cel(n.map)}[${cel(n.key)}]`;
    case "unary":
      return `!(${cel(n.x)})`;
    case "binary": {
      const typed = n.op === "==" || n.op === "!=" ? comparedType(n.l, n.r) : undefined;
      if (typed) {
        notes.typed.push(
          `${typed}() values compare as ${typed === "email" ? "e-mail addresses" : "DNS names"}`,
        );
        return `(${canonical(typed, n.l, notes)} ${n.op} ${canonical(typed, n.r, notes)})`;
      }
      if (n.op !== "|") return `(${cel(n.l)} ${n.op} ${cel(n.r)})`;
      const defined = definedness(n.l, notes);
      return defined === "true" ? cel(n.l) : `(${defined} ? ${cel(n.l)} : ${cel(n.r)})`;
    }
    case "call": {
      if (n.fn === "conditional" || n.fn === "conditionalString") {
        if (n.target) throw new SyntaxError1x(`${n.fn}() is a function, not a method`);
        arity(n, 3);
        return `(${cel(n.args[0]!)} ? ${cel(n.args[1]!)} : ${cel(n.args[2]!)})`;
      }
      if (n.target) {
        if (!METHODS.includes(n.fn)) {
          throw new SyntaxError1x(`unknown method .${n.fn}(); Mixer 1.x methods are ${METHODS.join(", ")}`);
        }
        if (n.fn === "reverse") {
          arity(n, 0);
          return `reverse(${cel(n.target)})`;
        }
        arity(n, 1);
        if (n.fn === "matches") {
          notes.divergent.push(
            `.matches() takes the pattern as receiver in Mixer 1.x and as argument in CEL`,
          );
          return `${cel(n.args[0]!)}.matches(${cel(n.target)})`;
        }
        return `${cel(n.target)}.${n.fn}(${cel(n.args[0]!)})`;
      }
      const want = PLAIN_FUNCTIONS[n.fn];
      if (want === undefined) {
        throw new SyntaxError1x(`unknown function ${n.fn}(); Mixer 1.x functions are ${KNOWN.join(", ")}`);
      }
      arity(n, want);
      return `${n.fn}(${n.args.map(cel).join(", ")})`;
    }
  }
}

/** The Mixer value types whose equality is not string equality. */
type TypedValue = "dnsName" | "email";

const typeOf = (n: Node1x): TypedValue | undefined =>
  n.k === "call" && !n.target && (n.fn === "dnsName" || n.fn === "email") ? n.fn : undefined;

/**
 * The type an `==` / `!=` compares when either side is a `dnsName()` or `email()` value; Mixer's
 * type checker required the other side to have the same type, so comparing the two is refused.
 */
function comparedType(l: Node1x, r: Node1x): TypedValue | undefined {
  const a = typeOf(l);
  const b = typeOf(r);
  if (a && b && a !== b) throw new SyntaxError1x(`cannot compare a ${a}() value with an ${b}() value`);
  return a ?? b;
}

/**
 * CEL for the form of a DNS name that Mixer's equality compares: lower case, with one trailing
 * dot (Mixer drops a trailing dot when only one side has it; a DNS name has no empty label, so
 * adding a dot and folding a doubled one is the same comparison).
 */
const canonicalDns = (cel: string) => `(toLower(${cel}) + ".").replace("..", ".")`;

/**
 * CEL for one side of a comparison of `type` values, as Mixer compared them: DNS names without
 * regard to case or a trailing dot; e-mail addresses by their local part exactly and their domain
 * as a DNS name. A side that is not already such a value is read as one (`email(x)`), as Mixer's
 * types required, so a malformed value fails the expression instead of comparing unequal.
 */
function canonical(type: TypedValue, n: Node1x, notes: Notes): string {
  const value = typeOf(n) === type ? toCel(n, notes) : `${type}(${toCel(n, notes)})`;
  if (type === "dnsName") return canonicalDns(value);
  const at = `${value}.indexOf("@")`;
  return `(${value}.substring(0, ${at} + 1) + ${canonicalDns(`${value}.substring(${at} + 1)`)})`;
}

/** CEL for "this node has a value", as Mixer's `|` decides it; "true" when it always has one. */
function definedness(n: Node1x, notes: Notes): string {
  switch (n.k) {
    case "attr":
      return n.name.includes(".") ? `has(${attributeName(n.name)})` : "true";
    case "index": {
      const map = definedness(n.map, notes);
      const has = `(${toCel(n.key, notes)} in ${toCel(n.map, notes)})`;
      return map === "true" ? has : `(${map} && ${has})`;
    }
    case "binary": {
      if (n.op !== "|") return "true";
      const l = definedness(n.l, notes);
      const r = definedness(n.r, notes);
      return l === "true" || r === "true" ? "true" : `(${l} || ${r})`;
    }
    case "call": {
      if (n.fn !== "conditional" && n.fn !== "conditionalString") return "true";
      const a = definedness(n.args[1]!, notes);
      const b = definedness(n.args[2]!, notes);
      return a === "true" && b === "true" ? "true" : `(${toCel(n.args[0]!, notes)} ? ${a} : ${b})`;
    }
    default:
      return "true";
  }
}

/**
 * Translates a Mixer 1.x expression to CEL source. Fails with a message naming the column on a
 * syntax error, an unknown function or an operator the 1.x language does not have.
 */
export function translate1x(src: string): Translation {
  if (src.trim() === "") return { ok: false, message: "expression is empty" };
  try {
    const notes: Notes = { divergent: [], typed: [] };
    const cel = toCel(parse1x(src), notes);
    return { ok: true, cel, divergent: [...new Set(notes.divergent)], typed: [...new Set(notes.typed)] };
  } catch (e) {
    if (e instanceof SyntaxError1x) return { ok: false, message: e.message };
    if (e instanceof RangeError) return { ok: false, message: "expression is nested too deeply" };
    throw e;
  }
}
