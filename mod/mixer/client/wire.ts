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
import { create, toBinary } from "@bufbuild/protobuf";
import { type Duration, DurationSchema, type Timestamp, TimestampSchema } from "@bufbuild/protobuf/wkt";
import {
  type Attributes,
  AttributesSchema,
  type AttributeValue,
  AttributeValueSchema,
  StringMapSchema,
} from "#gen/meshd/mixer/v1/mixer_pb.ts";
import { type AttributeType, istioAttributes } from "../../api/attributes.ts";
import { type AttributeBag, type BagLimits, DEFAULT_BAG_LIMITS } from "./bag.ts";
import { BadBagError, readBag } from "./bag_codec.ts";

export { type AttributeBag, BadBagError, type BagLimits, DEFAULT_BAG_LIMITS };

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

/**
 * Decodes and checks a bag from the wire. Throws {@link BadBagError} naming the attribute when a
 * limit is broken, a name is malformed, or a value's type differs from the vocabulary's.
 */
export function decodeBag(
  attrs: Attributes | undefined,
  limits: BagLimits = DEFAULT_BAG_LIMITS,
): AttributeBag {
  return attrs ? readBag(toBinary(AttributesSchema, attrs), limits) : {};
}
