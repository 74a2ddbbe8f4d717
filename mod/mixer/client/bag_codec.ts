/**
 * Attribute bags read straight from protobuf wire bytes (`meshd.mixer.v1.Attributes`, and the
 * Check and Report requests that carry them), without building the generated message objects
 * first: Mixer decodes one bag per check, and the intermediate messages cost more than the
 * decision itself. Every limit and type rule of the vocabulary is applied while reading.
 *
 * Field numbers follow proto/api/meshd/mixer/v1/mixer.proto.
 *
 * @module
 */
import { BinaryReader, WireType } from "@bufbuild/protobuf/wire";
import { type AttributeType, istioAttributes } from "../../api/attributes.ts";
import type { AttributeBag, BagLimits } from "./bag.ts";

/** Thrown for a bag that breaks the limits or the vocabulary's types (the caller's fault, by name). */
export class BadBagError extends Error {
  override readonly name = "BadBagError";
}

/** Thrown for bytes that are not a well-formed message of the expected shape. */
export class MalformedMessageError extends Error {
  override readonly name = "MalformedMessageError";
}

/** Thrown for a Report request with more entries than allowed. */
export class TooManyEntriesError extends Error {
  override readonly name = "TooManyEntriesError";
}

/** Attribute names start with a letter (so `__proto__` and friends cannot be one). */
const NAME = /^[a-zA-Z][a-zA-Z0-9_.-]*$/;

/** AttributeValue's oneof fields, by field number. */
const VALUE_TYPES: readonly (AttributeType | undefined)[] = [
  undefined,
  "string",
  "int",
  "double",
  "bool",
  "bytes",
  "timestamp",
  "duration",
  "string_map",
];

/** The wire type each AttributeValue field must arrive with. */
const VALUE_WIRE: readonly number[] = [
  -1,
  WireType.LengthDelimited,
  WireType.Varint,
  WireType.Bit64,
  WireType.Varint,
  WireType.LengthDelimited,
  WireType.LengthDelimited,
  WireType.LengthDelimited,
  WireType.LengthDelimited,
];

/**
 * A BinaryReader whose strings are decoded natively from a Buffer view of the same bytes (the
 * generic reader builds an array per string). Invalid UTF-8 becomes U+FFFD, as with the generic
 * reader.
 */
class WireReader extends BinaryReader {
  private readonly text: Buffer;

  constructor(bytes: Uint8Array) {
    super(bytes);
    this.text = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  }

  override string(): string {
    const len = this.uint32();
    const start = this.pos;
    const end = start + len;
    if (end > this.len) throw new MalformedMessageError("premature end of message");
    this.pos = end;
    return this.text.toString("utf8", start, end);
  }
}

/** Reads a tag; returns field number × 8 + wire type after checking both are legal. */
function readTag(r: BinaryReader): number {
  const start = r.pos;
  const tag = r.uint32();
  if (r.pos - start > 5 || tag >>> 3 === 0 || (tag & 7) > 5) {
    throw new MalformedMessageError(`illegal tag at byte ${start}`);
  }
  return tag;
}

/** Reads a length prefix and returns where the delimited part ends. */
function delimitedEnd(r: BinaryReader): number {
  const len = r.uint32();
  const end = r.pos + len;
  if (end > r.len) throw new MalformedMessageError("premature end of message");
  return end;
}

function skip(r: BinaryReader, tag: number, end: number): void {
  r.skip(tag & 7, tag >>> 3);
  if (r.pos > end) throw new MalformedMessageError("premature end of message");
}

function expectWire(tag: number, wire: number, what: string): void {
  if ((tag & 7) !== wire) throw new MalformedMessageError(`${what} has wire type ${tag & 7}`);
}

/** The two fields of the last message read by {@link readVarintPair}. */
const pair = { first: 0n, second: 0 };

/**
 * Reads a message of two varint fields, 1 (an int64) and 2 (an int32; a bool is its being non-zero),
 * into {@link pair}: Timestamp and Duration (seconds, nanos), and a Check's QuotaParams (amount,
 * best_effort).
 */
function readVarintPair(r: BinaryReader, end: number): typeof pair {
  pair.first = 0n;
  pair.second = 0;
  while (r.pos < end) {
    const tag = readTag(r);
    if (tag === ((1 << 3) | WireType.Varint)) pair.first = BigInt(r.int64());
    else if (tag === ((2 << 3) | WireType.Varint)) pair.second = r.int32();
    else skip(r, tag, end);
  }
  if (r.pos !== end) throw new MalformedMessageError("premature end of message");
  return pair;
}

/** Reads a Timestamp or Duration (seconds, nanos) as milliseconds. */
function readSecondsNanos(r: BinaryReader, end: number): number {
  const { first, second } = readVarintPair(r, end);
  return Number(first) * 1000 + second / 1_000_000;
}

/**
 * Moves to the next occurrence of field 1 (a map entry, or a repeated message) of a message that
 * ends at `end`, skipping other fields; returns where it ends, or -1 at the end of the message.
 */
function nextField1(r: BinaryReader, end: number): number {
  while (r.pos < end) {
    const tag = readTag(r);
    if (tag === ((1 << 3) | WireType.LengthDelimited)) return delimitedEnd(r);
    skip(r, tag, end);
  }
  if (r.pos !== end) throw new MalformedMessageError("premature end of message");
  return -1;
}

/** Sets `key` on a string-map object as an own property, whatever the key is. */
function setEntry(map: Record<string, string>, key: string, value: string): void {
  if (key === "__proto__") Object.defineProperty(map, key, { value, enumerable: true, writable: true });
  else map[key] = value;
}

function readStringMap(
  r: BinaryReader,
  end: number,
  name: string,
  limits: BagLimits,
): Record<string, string> {
  const map: Record<string, string> = {};
  let n = 0;
  for (let entryEnd = nextField1(r, end); entryEnd >= 0; entryEnd = nextField1(r, end)) {
    let key = "";
    let value = "";
    while (r.pos < entryEnd) {
      const t = readTag(r);
      if (t === ((1 << 3) | WireType.LengthDelimited)) key = r.string();
      else if (t === ((2 << 3) | WireType.LengthDelimited)) value = r.string();
      else skip(r, t, entryEnd);
    }
    if (r.pos !== entryEnd) throw new MalformedMessageError("premature end of message");
    if (++n > limits.maxMapEntries) throw new BadBagError(`attribute ${name} has too many entries`);
    if (key.length > limits.maxValueLength || value.length > limits.maxValueLength) {
      throw new BadBagError(`attribute ${name} has an entry that is too long`);
    }
    setEntry(map, key, value);
  }
  return map;
}

/** Running state of one bag being read (an Attributes field may occur more than once: merged). */
interface BagReading {
  readonly bag: AttributeBag;
  entries: number;
}

/** Reads one AttributeValue for `name` and stores it in the bag (or nothing, when unset). */
function readValue(r: BinaryReader, end: number, name: string, into: BagReading, limits: BagLimits): void {
  const want = istioAttributes.get(name)?.type;
  let value: unknown;
  let field = 0;
  while (r.pos < end) {
    const tag = readTag(r);
    const no = tag >>> 3;
    if (no > 8) {
      skip(r, tag, end);
      continue;
    }
    expectWire(tag, VALUE_WIRE[no]!, `attribute ${name}`);
    const got = VALUE_TYPES[no]!;
    if (want !== undefined && want !== "dyn" && want !== got && !(want === "double" && got === "int")) {
      throw new BadBagError(`attribute ${name} must be of type ${want}, got ${got}`);
    }
    field = no;
    switch (no) {
      case 1:
        value = r.string();
        if ((value as string).length > limits.maxValueLength) {
          throw new BadBagError(`attribute ${name} is too long`);
        }
        break;
      case 2: {
        const v = r.int64();
        value = want === "double" || Number.isSafeInteger(Number(v)) ? Number(v) : v;
        break;
      }
      case 3:
        value = r.double();
        if (!Number.isFinite(value)) throw new BadBagError(`attribute ${name} is not a finite number`);
        break;
      case 4:
        value = r.bool();
        break;
      case 5:
        value = r.bytes();
        if ((value as Uint8Array).length > limits.maxValueLength) {
          throw new BadBagError(`attribute ${name} is too long`);
        }
        break;
      case 6:
        value = new Date(readSecondsNanos(r, delimitedEnd(r)));
        break;
      case 7:
        value = readSecondsNanos(r, delimitedEnd(r));
        break;
      case 8:
        value = readStringMap(r, delimitedEnd(r), name, limits);
        break;
    }
    if (r.pos > end) throw new MalformedMessageError("premature end of message");
  }
  if (r.pos !== end) throw new MalformedMessageError("premature end of message");
  if (field !== 0) into.bag[name] = value;
}

/** Reads the fields of an Attributes message up to `end` into `into`. */
function readAttributes(r: BinaryReader, end: number, into: BagReading, limits: BagLimits): void {
  for (let entryEnd = nextField1(r, end); entryEnd >= 0; entryEnd = nextField1(r, end)) {
    if (++into.entries > limits.maxAttributes) {
      throw new BadBagError(`more than ${limits.maxAttributes} attributes`);
    }
    // A map entry: key (1) then value (2), in either order.
    let name = "";
    let valueStart = -1;
    let valueEnd = -1;
    while (r.pos < entryEnd) {
      const t = readTag(r);
      if (t === ((1 << 3) | WireType.LengthDelimited)) name = r.string();
      else if (t === ((2 << 3) | WireType.LengthDelimited)) {
        valueEnd = delimitedEnd(r);
        valueStart = r.pos;
        r.pos = valueEnd;
      } else skip(r, t, entryEnd);
    }
    if (r.pos !== entryEnd) throw new MalformedMessageError("premature end of message");
    if (name.length > limits.maxNameLength || !NAME.test(name)) {
      throw new BadBagError(`malformed attribute name ${JSON.stringify(name.slice(0, 64))}`);
    }
    if (valueStart < 0) continue;
    r.pos = valueStart;
    readValue(r, valueEnd, name, into, limits);
    r.pos = entryEnd;
  }
}

/** Runs `read`, turning the reader's own errors (truncation, bad varints) into MalformedMessageError. */
function reading<T>(read: () => T): T {
  try {
    return read();
  } catch (err) {
    if (
      err instanceof BadBagError || err instanceof MalformedMessageError || err instanceof TooManyEntriesError
    ) throw err;
    throw new MalformedMessageError(err instanceof Error ? err.message : String(err));
  }
}

/**
 * Reads an encoded `Attributes` message into a bag. Throws {@link BadBagError} naming the
 * attribute when a limit is broken, a name is malformed, or a value's type differs from the
 * vocabulary's; {@link MalformedMessageError} for bytes that are not such a message.
 */
export function readBag(bytes: Uint8Array, limits: BagLimits): AttributeBag {
  return reading(() => {
    const r = new WireReader(bytes);
    const into: BagReading = { bag: {}, entries: 0 };
    readAttributes(r, r.len, into, limits);
    return into.bag;
  });
}

/** A quota asked for in a Check request. */
export interface QuotaAsk {
  readonly amount: bigint;
  readonly bestEffort: boolean;
}

/** A Check request, read. */
export interface CheckRequestRead {
  readonly bag: AttributeBag;
  /** Quotas by name (a name sent twice keeps its last parameters, as protobuf maps do). */
  readonly quotas: ReadonlyMap<string, QuotaAsk>;
  readonly deduplicationId: string;
}

const NO_QUOTAS: ReadonlyMap<string, QuotaAsk> = new Map();

/** Reads an encoded `meshd.mixer.v1.CheckRequest`; throws as {@link readBag} does. */
export function readCheckRequest(bytes: Uint8Array, limits: BagLimits): CheckRequestRead {
  return reading(() => {
    const r = new WireReader(bytes);
    const into: BagReading = { bag: {}, entries: 0 };
    let quotas: Map<string, QuotaAsk> | undefined;
    let deduplicationId = "";
    while (r.pos < r.len) {
      const tag = readTag(r);
      if (tag === ((1 << 3) | WireType.LengthDelimited)) {
        readAttributes(r, delimitedEnd(r), into, limits);
      } else if (tag === ((2 << 3) | WireType.LengthDelimited)) {
        const entryEnd = delimitedEnd(r);
        let name = "";
        let amount = 0n;
        let bestEffort = false;
        while (r.pos < entryEnd) {
          const t = readTag(r);
          if (t === ((1 << 3) | WireType.LengthDelimited)) name = r.string();
          else if (t === ((2 << 3) | WireType.LengthDelimited)) {
            const params = readVarintPair(r, delimitedEnd(r));
            amount = params.first;
            bestEffort = params.second !== 0;
          } else skip(r, t, entryEnd);
        }
        if (r.pos !== entryEnd) throw new MalformedMessageError("premature end of message");
        (quotas ??= new Map()).set(name, { amount, bestEffort });
      } else if (tag === ((3 << 3) | WireType.LengthDelimited)) {
        deduplicationId = r.string();
      } else skip(r, tag, r.len);
    }
    return { bag: into.bag, quotas: quotas ?? NO_QUOTAS, deduplicationId };
  });
}

/**
 * Reads an encoded `meshd.mixer.v1.ReportRequest` into its bags. More than `maxEntries` entries
 * throw {@link TooManyEntriesError}; a bad entry throws as {@link readBag} does, its message starting with
 * `entries[i]: `.
 */
export function readReportRequest(bytes: Uint8Array, limits: BagLimits, maxEntries: number): AttributeBag[] {
  return reading(() => {
    const r = new WireReader(bytes);
    const bags: AttributeBag[] = [];
    for (let end = nextField1(r, r.len); end >= 0; end = nextField1(r, r.len)) {
      if (bags.length === maxEntries) throw new TooManyEntriesError(`more than ${maxEntries} entries`);
      const into: BagReading = { bag: {}, entries: 0 };
      try {
        readAttributes(r, end, into, limits);
      } catch (err) {
        if (err instanceof BadBagError) throw new BadBagError(`entries[${bags.length}]: ${err.message}`);
        throw err;
      }
      bags.push(into.bag);
    }
    return bags;
  });
}
