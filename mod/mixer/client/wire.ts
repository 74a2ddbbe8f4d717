/**
 * Attribute bags on the wire: conversion between plain JS bags and `meshd.mixer.v1.Attributes`,
 * and the checks every bag from the network passes before anything reads it.
 *
 * A bag maps Istio attribute names to values: strings, numbers (int and double attributes),
 * booleans, `Uint8Array` (IP addresses), `Date` (timestamps), milliseconds (durations, when the
 * vocabulary says the attribute is a duration) and `Record<string, string>` (labels, headers).
 * This file is shared by the daemon and the client library, so it imports neither.
 *
 * @module
 */
import { create } from "@bufbuild/protobuf";
import { type Duration, DurationSchema, type Timestamp, TimestampSchema } from "@bufbuild/protobuf/wkt";
import {
  type Attributes,
  AttributesSchema,
  type AttributeValue,
  AttributeValueSchema,
  StringMapSchema,
} from "#gen/meshd/mixer/v1/mixer_pb.ts";
import { type AttributeType, istioAttributes } from "../../galley/attributes.ts";

/** A bag of attributes describing one request or connection. */
export type AttributeBag = Record<string, unknown>;

/** Limits applied to bags that arrive from the network. */
export interface BagLimits {
  /** Most attributes in one bag. */
  readonly maxAttributes: number;
  /** Longest attribute name. */
  readonly maxNameLength: number;
  /** Longest string or bytes value, and longest map key or value. */
  readonly maxValueLength: number;
  /** Most entries in one string map. */
  readonly maxMapEntries: number;
}

/** The limits the daemon applies unless told otherwise. */
export const DEFAULT_BAG_LIMITS: BagLimits = {
  maxAttributes: 256,
  maxNameLength: 128,
  maxValueLength: 16 * 1024,
  maxMapEntries: 256,
};

/** Attribute names start with a letter (so `__proto__` and friends cannot be one). */
const NAME = /^[a-zA-Z][a-zA-Z0-9_.-]*$/;

/** The vocabulary type of an attribute, or undefined for a name outside Istio's vocabulary. */
export function attributeType(name: string): AttributeType | undefined {
  return istioAttributes.get(name)?.type;
}

/** Converts milliseconds to a protobuf Duration. */
export function durationFromMs(ms: number): Duration {
  const safe = Number.isFinite(ms) && ms > 0 ? ms : 0;
  const seconds = Math.floor(safe / 1000);
  return create(DurationSchema, {
    seconds: BigInt(seconds),
    nanos: Math.round((safe - seconds * 1000) * 1_000_000),
  });
}

/** Converts a protobuf Duration to milliseconds. */
export function durationToMs(d: Duration | undefined): number {
  if (!d) return 0;
  return Number(d.seconds) * 1000 + d.nanos / 1_000_000;
}

function timestampFrom(ms: number): Timestamp {
  const seconds = Math.floor(ms / 1000);
  return create(TimestampSchema, {
    seconds: BigInt(seconds),
    nanos: Math.round((ms - seconds * 1000) * 1_000_000),
  });
}

function encodeValue(name: string, value: unknown): AttributeValue | undefined {
  const type = attributeType(name);
  let v: AttributeValue["value"];
  if (typeof value === "string") v = { case: "stringValue", value };
  else if (typeof value === "boolean") v = { case: "boolValue", value };
  else if (typeof value === "bigint") v = { case: "int64Value", value };
  else if (typeof value === "number") {
    if (type === "duration") v = { case: "durationValue", value: durationFromMs(value) };
    else if (type === "timestamp") v = { case: "timestampValue", value: timestampFrom(value) };
    else if (type === "double" || !Number.isInteger(value)) v = { case: "doubleValue", value };
    else v = { case: "int64Value", value: BigInt(value) };
  } else if (value instanceof Uint8Array) v = { case: "bytesValue", value };
  else if (value instanceof Date) v = { case: "timestampValue", value: timestampFrom(value.getTime()) };
  else if (value instanceof Map) {
    const entries: Record<string, string> = {};
    for (const [k, x] of value) entries[String(k)] = String(x);
    v = { case: "stringMapValue", value: create(StringMapSchema, { entries }) };
  } else if (typeof value === "object" && value !== null) {
    const entries: Record<string, string> = {};
    for (const [k, x] of Object.entries(value)) entries[k] = String(x);
    v = { case: "stringMapValue", value: create(StringMapSchema, { entries }) };
  } else return undefined;
  return create(AttributeValueSchema, { value: v });
}

/** Encodes a bag for the wire. Undefined and null values are left out. */
export function encodeBag(bag: Readonly<AttributeBag>): Attributes {
  const attributes: Record<string, AttributeValue> = {};
  for (const name in bag) {
    const enc = encodeValue(name, bag[name]);
    if (enc) attributes[name] = enc;
  }
  return create(AttributesSchema, { attributes });
}

/** Thrown by {@link decodeBag} for a bag that breaks the limits or the vocabulary's types. */
export class BadBagError extends Error {
  override readonly name = "BadBagError";
}

const CASE_TYPES: Readonly<Record<NonNullable<AttributeValue["value"]["case"]>, AttributeType>> = {
  stringValue: "string",
  int64Value: "int",
  doubleValue: "double",
  boolValue: "bool",
  bytesValue: "bytes",
  timestampValue: "timestamp",
  durationValue: "duration",
  stringMapValue: "string_map",
};

/**
 * Decodes and checks a bag from the wire. Throws {@link BadBagError} naming the attribute when a
 * limit is broken, a name is malformed, or a value's type differs from the vocabulary's.
 */
export function decodeBag(
  attrs: Attributes | undefined,
  limits: BagLimits = DEFAULT_BAG_LIMITS,
): AttributeBag {
  const bag: AttributeBag = {};
  if (!attrs) return bag;
  let count = 0;
  for (const name in attrs.attributes) {
    if (++count > limits.maxAttributes) {
      throw new BadBagError(`more than ${limits.maxAttributes} attributes`);
    }
    if (name.length > limits.maxNameLength || !NAME.test(name)) {
      throw new BadBagError(`malformed attribute name ${JSON.stringify(name.slice(0, 64))}`);
    }
    const v = attrs.attributes[name]!.value;
    if (v.case === undefined) continue;
    const want = attributeType(name);
    const got = CASE_TYPES[v.case];
    if (want !== undefined && want !== "dyn" && want !== got && !(want === "double" && got === "int")) {
      throw new BadBagError(`attribute ${name} must be of type ${want}, got ${got}`);
    }
    switch (v.case) {
      case "stringValue":
        if (v.value.length > limits.maxValueLength) throw new BadBagError(`attribute ${name} is too long`);
        bag[name] = v.value;
        break;
      case "int64Value":
        bag[name] = want === "double" || Number.isSafeInteger(Number(v.value)) ? Number(v.value) : v.value;
        break;
      case "doubleValue":
        if (!Number.isFinite(v.value)) throw new BadBagError(`attribute ${name} is not a finite number`);
        bag[name] = v.value;
        break;
      case "boolValue":
        bag[name] = v.value;
        break;
      case "bytesValue":
        if (v.value.length > limits.maxValueLength) throw new BadBagError(`attribute ${name} is too long`);
        bag[name] = v.value;
        break;
      case "timestampValue":
        bag[name] = new Date(Number(v.value.seconds) * 1000 + v.value.nanos / 1_000_000);
        break;
      case "durationValue":
        bag[name] = durationToMs(v.value);
        break;
      case "stringMapValue": {
        const entries = v.value.entries;
        let n = 0;
        for (const k in entries) {
          if (++n > limits.maxMapEntries) throw new BadBagError(`attribute ${name} has too many entries`);
          if (k.length > limits.maxValueLength || entries[k]!.length > limits.maxValueLength) {
            throw new BadBagError(`attribute ${name} has an entry that is too long`);
          }
        }
        bag[name] = entries;
        break;
      }
    }
  }
  return bag;
}
