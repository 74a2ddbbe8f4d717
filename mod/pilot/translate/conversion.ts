/**
 * Conversions from Istio's config values to Envoy's: durations, percentages, string matchers,
 * addresses and typed extension configs. Every translator file builds on these, so the same
 * Istio value always becomes the same Envoy value.
 *
 * @module
 */
import { create, type DescMessage, type MessageShape } from "@bufbuild/protobuf";
import { type Any, anyPack, type Duration, DurationSchema } from "@bufbuild/protobuf/wkt";
import {
  ApiVersion,
  type ConfigSource,
  ConfigSourceSchema,
} from "#gen/envoy/config/core/v3/config_source_pb.ts";
import {
  type Address,
  AddressSchema,
  type CidrRange,
  CidrRangeSchema,
} from "#gen/envoy/config/core/v3/address_pb.ts";
import { type StringMatcher, StringMatcherSchema } from "#gen/envoy/type/matcher/v3/string_pb.ts";
import {
  type FractionalPercent,
  FractionalPercent_DenominatorType,
  FractionalPercentSchema,
} from "#gen/envoy/type/v3/percent_pb.ts";
import type { StringMatch } from "../../api/kinds/networking.ts";
import { parseDuration } from "../../shared/duration.ts";

/**
 * An Istio duration string ("5s", "1.5s", "250ms", "1h") as a protobuf Duration. Validation has
 * already accepted the string; an unreadable one is a programming error and throws.
 */
export function durationFromString(text: string): Duration {
  const ms = parseDuration(text);
  if (ms === undefined) throw new Error(`translate: ${JSON.stringify(text)} is not a duration`);
  return durationFromNanos(BigInt(Math.round(ms * 1e6)));
}

function durationFromNanos(nanos: bigint): Duration {
  const seconds = nanos / 1_000_000_000n;
  return create(DurationSchema, { seconds, nanos: Number(nanos - seconds * 1_000_000_000n) });
}

/** The zero Duration, which Envoy reads as "disabled" for route timeouts. */
export function zeroDuration(): Duration {
  return create(DurationSchema, { seconds: 0n, nanos: 0 });
}

/** Whole seconds of an Istio duration string, rounded down (for fields Envoy keeps in seconds). */
export function secondsFromString(text: string): number {
  return Math.floor((parseDuration(text) ?? 0) / 1000);
}

/**
 * A percentage (0..100, decimals allowed) as a FractionalPercent over a million, so that
 * 0.1% stays exact (1000 / 1,000,000).
 */
export function fractionalPercent(value: number): FractionalPercent {
  return create(FractionalPercentSchema, {
    numerator: Math.round(value * 10_000),
    denominator: FractionalPercent_DenominatorType.MILLION,
  });
}

/** A whole-number percentage as a FractionalPercent over a hundred. */
export function wholePercent(value: number): FractionalPercent {
  return create(FractionalPercentSchema, {
    numerator: Math.round(value),
    denominator: FractionalPercent_DenominatorType.HUNDRED,
  });
}

/**
 * An Istio StringMatch (exact, prefix or regex) as an Envoy StringMatcher; undefined for an
 * empty match, which callers turn into a presence match.
 */
export function stringMatcher(m: StringMatch, ignoreCase = false): StringMatcher | undefined {
  if (m.exact !== undefined) {
    return create(StringMatcherSchema, { matchPattern: { case: "exact", value: m.exact }, ignoreCase });
  }
  if (m.prefix !== undefined) {
    return create(StringMatcherSchema, { matchPattern: { case: "prefix", value: m.prefix }, ignoreCase });
  }
  if (m.regex !== undefined) {
    return create(StringMatcherSchema, {
      matchPattern: { case: "safeRegex", value: { regex: m.regex } },
      ignoreCase,
    });
  }
  return undefined;
}

/** An exact StringMatcher. */
export function exactMatcher(value: string): StringMatcher {
  return create(StringMatcherSchema, { matchPattern: { case: "exact", value } });
}

/**
 * Whether an Istio StringMatch means "the header or parameter is present": no match type, or
 * the regex "*" (not RE2, but what Istio users write for "anything").
 */
export function isPresenceMatch(m: StringMatch | undefined): boolean {
  return m === undefined || (m.exact === undefined && m.prefix === undefined && m.regex === undefined) ||
    m.regex === "*";
}

/**
 * An endpoint or listener address: "unix:///path" becomes a pipe, anything else a TCP socket
 * address with the given port.
 */
export function socketAddress(address: string, port: number): Address {
  if (address.startsWith("unix://")) {
    return create(AddressSchema, {
      address: { case: "pipe", value: { path: address.slice("unix://".length) } },
    });
  }
  return create(AddressSchema, {
    address: { case: "socketAddress", value: { address, portSpecifier: { case: "portValue", value: port } } },
  });
}

/** "10.0.0.0/16" or "10.0.0.1" as a CidrRange (a bare address is a /32 or /128). */
export function cidrRange(text: string): CidrRange {
  const slash = text.indexOf("/");
  const ip = slash < 0 ? text : text.slice(0, slash);
  const len = slash < 0 ? (ip.includes(":") ? 128 : 32) : Number(text.slice(slash + 1));
  return create(CidrRangeSchema, { addressPrefix: ip, prefixLen: len });
}

/** True for "10.0.0.0/16" with a prefix shorter than a single address. */
export function isCidrBlock(text: string): boolean {
  const slash = text.indexOf("/");
  if (slash < 0) return false;
  const len = Number(text.slice(slash + 1));
  return len < (text.includes(":") ? 128 : 32);
}

/** Packs an extension's config message into an Any (the `typed_config` of a filter or socket). */
export function typedConfig<Desc extends DescMessage>(schema: Desc, message: MessageShape<Desc>): Any {
  return anyPack(schema, message);
}

/** Compares strings by UTF-16 code units, the order every translator sorts names in. */
export function byString(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}

/** The ADS config source: the resource comes over the same stream as the one naming it. */
export function adsConfigSource(): ConfigSource {
  return create(ConfigSourceSchema, {
    configSourceSpecifier: { case: "ads", value: {} },
    resourceApiVersion: ApiVersion.V3,
  });
}
