/**
 * A small DER reader and writer: just what certificates and CSRs need (TLVs with definite
 * lengths, OIDs, integers, times, strings). The reader never recurses and checks every length
 * against its container, so hostile input ends in a DerError, never in a crash or a hang.
 *
 * @module
 */

/** Input that is not the DER the reader expected; the message says what and where. */
export class DerError extends Error {
  override readonly name = "DerError";
}

/** One tag-length-value: offsets into the buffer it was read from. */
export interface Tlv {
  /** The identifier octet (class, constructed bit, tag number < 31). */
  readonly tag: number;
  /** Offset of the identifier octet. */
  readonly start: number;
  /** Offset of the first content octet. */
  readonly valueStart: number;
  /** Offset just past the last content octet. */
  readonly end: number;
}

/** Tags used by X.509 and PKCS#10. */
export const TAG = {
  BOOLEAN: 0x01,
  INTEGER: 0x02,
  BIT_STRING: 0x03,
  OCTET_STRING: 0x04,
  NULL: 0x05,
  OID: 0x06,
  UTF8_STRING: 0x0c,
  PRINTABLE_STRING: 0x13,
  IA5_STRING: 0x16,
  UTC_TIME: 0x17,
  GENERALIZED_TIME: 0x18,
  SEQUENCE: 0x30,
  SET: 0x31,
} as const;

/**
 * Reads the TLV at `pos`, which must end at or before `limit`. Only definite lengths of up to
 * four octets and low tag numbers are accepted (everything certificates use).
 */
export function readTlv(buf: Uint8Array, pos: number, limit: number = buf.length): Tlv {
  if (pos + 2 > limit) throw new DerError(`truncated DER at offset ${pos}`);
  const tag = buf[pos]!;
  if ((tag & 0x1f) === 0x1f) throw new DerError(`unsupported high tag number at offset ${pos}`);
  let len = buf[pos + 1]!;
  let valueStart = pos + 2;
  if (len & 0x80) {
    const n = len & 0x7f;
    if (n === 0) throw new DerError(`indefinite length at offset ${pos} is not DER`);
    if (n > 4) throw new DerError(`length of ${n} octets at offset ${pos} is too long`);
    if (valueStart + n > limit) throw new DerError(`truncated length at offset ${pos}`);
    len = 0;
    for (let i = 0; i < n; i++) len = len * 256 + buf[valueStart + i]!;
    if (len < 0x80 || (n > 1 && buf[valueStart] === 0)) {
      throw new DerError(`non-minimal length at offset ${pos} is not DER`);
    }
    valueStart += n;
  }
  const end = valueStart + len;
  if (end > limit) throw new DerError(`value at offset ${pos} runs past its container (${len} octets)`);
  return { tag, start: pos, valueStart, end };
}

/** Reads the TLV at `pos` and checks its tag; `what` names it in the error. */
export function expectTlv(buf: Uint8Array, pos: number, limit: number, tag: number, what: string): Tlv {
  const t = readTlv(buf, pos, limit);
  if (t.tag !== tag) {
    throw new DerError(`${what}: want tag 0x${hex2(tag)}, found 0x${hex2(t.tag)} at offset ${pos}`);
  }
  return t;
}

/** The TLVs directly inside a constructed TLV, in order. */
export function childrenOf(buf: Uint8Array, parent: Tlv, max = 10_000): Tlv[] {
  const out: Tlv[] = [];
  let p = parent.valueStart;
  while (p < parent.end) {
    if (out.length >= max) throw new DerError(`more than ${max} elements at offset ${parent.start}`);
    const t = readTlv(buf, p, parent.end);
    out.push(t);
    p = t.end;
  }
  return out;
}

/** The whole encoding of a TLV (header and content), without copying. */
export function tlvBytes(buf: Uint8Array, t: Tlv): Uint8Array {
  return buf.subarray(t.start, t.end);
}

/** The content octets of a TLV, without copying. */
export function tlvValue(buf: Uint8Array, t: Tlv): Uint8Array {
  return buf.subarray(t.valueStart, t.end);
}

/** Whether the whole encoding of `t` equals `expected` (e.g. a known OID), without decoding it. */
export function tlvEquals(buf: Uint8Array, t: Tlv, expected: Uint8Array): boolean {
  if (t.end - t.start !== expected.length) return false;
  for (let i = 0; i < expected.length; i++) if (buf[t.start + i] !== expected[i]) return false;
  return true;
}

/** Decodes an OBJECT IDENTIFIER's content octets into dotted form. */
export function decodeOid(v: Uint8Array): string {
  if (v.length === 0) throw new DerError("empty OBJECT IDENTIFIER");
  if (v.length > 64) throw new DerError("OBJECT IDENTIFIER longer than 64 octets");
  const parts: number[] = [];
  let n = 0;
  for (let i = 0; i < v.length; i++) {
    const b = v[i]!;
    if (n === 0 && b === 0x80) throw new DerError("non-minimal OBJECT IDENTIFIER arc");
    n = n * 128 + (b & 0x7f);
    if (n > Number.MAX_SAFE_INTEGER / 128) throw new DerError("OBJECT IDENTIFIER arc too large");
    if ((b & 0x80) === 0) {
      if (parts.length === 0) {
        const first = n < 40 ? 0 : n < 80 ? 1 : 2;
        parts.push(first, n - first * 40);
      } else parts.push(n);
      n = 0;
    } else if (i === v.length - 1) throw new DerError("truncated OBJECT IDENTIFIER");
  }
  return parts.join(".");
}

/** Reads an OID TLV at `pos`. */
export function readOid(
  buf: Uint8Array,
  pos: number,
  limit: number,
  what: string,
): { oid: string; tlv: Tlv } {
  const t = expectTlv(buf, pos, limit, TAG.OID, what);
  return { oid: decodeOid(tlvValue(buf, t)), tlv: t };
}

/** Decodes an IA5String of printable ASCII; throws on any other octet. */
export function decodeIa5(v: Uint8Array): string {
  let s = "";
  for (let i = 0; i < v.length; i++) {
    const b = v[i]!;
    if (b > 0x7e || b < 0x20) throw new DerError("IA5String holds a non-printable octet");
    s += String.fromCharCode(b);
  }
  return s;
}

/** Decodes a UTCTime or GeneralizedTime TLV (Z form, seconds precision) to epoch milliseconds. */
export function decodeTime(buf: Uint8Array, t: Tlv): number {
  const s = String.fromCharCode(...tlvValue(buf, t));
  const m = t.tag === TAG.UTC_TIME
    ? /^(\d{2})(\d{2})(\d{2})(\d{2})(\d{2})(\d{2})Z$/.exec(s)
    : t.tag === TAG.GENERALIZED_TIME
    ? /^(\d{4})(\d{2})(\d{2})(\d{2})(\d{2})(\d{2})Z$/.exec(s)
    : null;
  if (m === null) throw new DerError(`bad time ${JSON.stringify(s)} at offset ${t.start}`);
  let year = Number(m[1]);
  if (t.tag === TAG.UTC_TIME) year += year < 50 ? 2000 : 1900;
  return Date.UTC(year, Number(m[2]) - 1, Number(m[3]), Number(m[4]), Number(m[5]), Number(m[6]));
}

// ---------------------------------------------------------------------------------------------
// Writer

function lengthOctets(n: number): number {
  return n < 0x80 ? 1 : n < 0x100 ? 2 : n < 0x10000 ? 3 : n < 0x1000000 ? 4 : 5;
}

function writeLength(out: Uint8Array, pos: number, n: number): number {
  const k = lengthOctets(n);
  if (k === 1) {
    out[pos] = n;
    return pos + 1;
  }
  out[pos] = 0x80 | (k - 1);
  for (let i = k - 1; i >= 1; i--) {
    out[pos + i] = n & 0xff;
    n = Math.floor(n / 256);
  }
  return pos + k;
}

/**
 * Encodes a TLV whose content is the concatenation of `parts`. The result is a Buffer (a
 * Uint8Array), so node:crypto and base64 encoding take it without a copy.
 */
export function der(tag: number, ...parts: readonly Uint8Array[]): Uint8Array {
  let len = 0;
  for (const p of parts) len += p.length;
  const out = Buffer.allocUnsafe(1 + lengthOctets(len) + len);
  out[0] = tag;
  let pos = writeLength(out, 1, len);
  for (const p of parts) {
    out.set(p, pos);
    pos += p.length;
  }
  return out;
}

/**
 * A TLV to encode later: its children are encoded bytes or further nodes. Encoding a tree with
 * {@link encodeTree} sizes it first and writes it into one buffer, where nested der() calls
 * would copy every inner value once per level.
 */
export interface DerTree {
  readonly tag: number;
  readonly children: readonly (Uint8Array | DerTree)[];
}

function treeContentLength(t: DerTree, lengths: Map<DerTree, number>): number {
  let len = 0;
  for (const c of t.children) {
    if (c instanceof Uint8Array) len += c.length;
    else {
      const inner = treeContentLength(c, lengths);
      len += 1 + lengthOctets(inner) + inner;
    }
  }
  lengths.set(t, len);
  return len;
}

function writeTree(t: DerTree, out: Uint8Array, pos: number, lengths: Map<DerTree, number>): number {
  out[pos] = t.tag;
  pos = writeLength(out, pos + 1, lengths.get(t)!);
  for (const c of t.children) {
    if (c instanceof Uint8Array) {
      out.set(c, pos);
      pos += c.length;
    } else pos = writeTree(c, out, pos, lengths);
  }
  return pos;
}

/** Encodes a {@link DerTree} into one buffer. */
export function encodeTree(t: DerTree): Uint8Array {
  const lengths = new Map<DerTree, number>();
  const len = treeContentLength(t, lengths);
  const out = Buffer.allocUnsafe(1 + lengthOctets(len) + len);
  writeTree(t, out, 0, lengths);
  return out;
}

/** A SEQUENCE of `parts`. */
export function derSequence(...parts: readonly Uint8Array[]): Uint8Array {
  return der(TAG.SEQUENCE, ...parts);
}

/** Encodes a dotted OID ("1.2.840.10045.4.3.2") as a complete TLV. */
export function derOid(dotted: string): Uint8Array {
  const arcs = dotted.split(".").map(Number);
  if (arcs.length < 2 || arcs.some((a) => !Number.isSafeInteger(a) || a < 0)) {
    throw new Error(`bad OID ${dotted}`);
  }
  const body: number[] = [];
  const push = (n: number) => {
    const tmp = [n & 0x7f];
    for (n = Math.floor(n / 128); n > 0; n = Math.floor(n / 128)) tmp.unshift(0x80 | (n & 0x7f));
    body.push(...tmp);
  };
  push(arcs[0]! * 40 + arcs[1]!);
  for (const a of arcs.slice(2)) push(a);
  return der(TAG.OID, Uint8Array.from(body));
}

/** A non-negative INTEGER from big-endian magnitude octets (leading zeros trimmed, sign octet added). */
export function derUnsignedInteger(magnitude: Uint8Array): Uint8Array {
  let i = 0;
  while (i < magnitude.length - 1 && magnitude[i] === 0) i++;
  const m = magnitude.subarray(i);
  if (m.length === 0) return der(TAG.INTEGER, Uint8Array.of(0));
  return m[0]! & 0x80 ? der(TAG.INTEGER, Uint8Array.of(0), m) : der(TAG.INTEGER, m);
}

/** A small non-negative INTEGER. */
export function derSmallInteger(n: number): Uint8Array {
  if (!Number.isInteger(n) || n < 0 || n > 0x7fffffff) throw new Error(`bad small integer ${n}`);
  const bytes: number[] = [];
  for (let v = n; v > 0; v = Math.floor(v / 256)) bytes.unshift(v & 0xff);
  return derUnsignedInteger(Uint8Array.from(bytes.length ? bytes : [0]));
}

/** A BIT STRING with `unusedBits` unused bits in its last octet. */
export function derBitString(bytes: Uint8Array, unusedBits = 0): Uint8Array {
  return der(TAG.BIT_STRING, Uint8Array.of(unusedBits), bytes);
}

/** An OCTET STRING. */
export function derOctetString(bytes: Uint8Array): Uint8Array {
  return der(TAG.OCTET_STRING, bytes);
}

/** BOOLEAN TRUE (DER encodes FALSE by leaving a DEFAULT FALSE field out). */
export const DER_TRUE: Uint8Array = Uint8Array.of(TAG.BOOLEAN, 1, 0xff);

/** NULL. */
export const DER_NULL: Uint8Array = Uint8Array.of(TAG.NULL, 0);

const utf8Encoder = new TextEncoder();

/** A string TLV of `tag` (IA5String, UTF8String, or an implicit context tag), UTF-8 encoded. */
export function derString(tag: number, s: string): Uint8Array {
  let ascii = true;
  for (let i = 0; i < s.length && ascii; i++) ascii = s.charCodeAt(i) < 0x80;
  if (!ascii) return der(tag, utf8Encoder.encode(s));
  const out = Buffer.allocUnsafe(1 + lengthOctets(s.length) + s.length);
  out[0] = tag;
  const pos = writeLength(out, 1, s.length);
  for (let i = 0; i < s.length; i++) out[pos + i] = s.charCodeAt(i);
  return out;
}

/**
 * An X.509 Time for epoch milliseconds (seconds precision): UTCTime for the years 1950 to 2049,
 * GeneralizedTime otherwise (RFC 5280 section 4.1.2.5).
 */
export function derTime(ms: number): Uint8Array {
  const d = new Date(Math.floor(ms / 1000) * 1000);
  const y = d.getUTCFullYear();
  const utc = y >= 1950 && y < 2050;
  const fields = [d.getUTCMonth() + 1, d.getUTCDate(), d.getUTCHours(), d.getUTCMinutes(), d.getUTCSeconds()];
  const digits = utc ? 12 : 14;
  const out = Buffer.allocUnsafe(2 + digits + 1);
  out[0] = utc ? TAG.UTC_TIME : TAG.GENERALIZED_TIME;
  out[1] = digits + 1;
  let p = 2;
  const put2 = (n: number) => {
    out[p++] = 0x30 + Math.floor(n / 10);
    out[p++] = 0x30 + (n % 10);
  };
  if (!utc) put2(Math.floor(y / 100) % 100);
  put2(y % 100);
  for (const f of fields) put2(f);
  out[p] = 0x5a;
  return out;
}

function hex2(n: number): string {
  return n.toString(16).padStart(2, "0");
}
