/**
 * Durations as protobuf messages, from the Go-style strings Istio config uses ("1.5s").
 */
import { create } from "@bufbuild/protobuf";
import { type Duration, DurationSchema } from "@bufbuild/protobuf/wkt";
import { parseDuration } from "../../../shared/duration.ts";

/** google.protobuf.Duration's largest value, in seconds (10000 years); gRPC rejects more. */
const MAX_SECONDS = 315_576_000_000;

/** A Duration of `ms` milliseconds, clamped to [0, the protobuf maximum]. */
export function durationFromMs(ms: number): Duration {
  const clamped = Math.min(Math.max(0, ms), MAX_SECONDS * 1000);
  const seconds = Math.floor(clamped / 1000);
  const nanos = Math.round((clamped - seconds * 1000) * 1e6);
  return create(DurationSchema, { seconds: BigInt(seconds), nanos: Math.min(nanos, 999_999_999) });
}

/** A Duration from a duration string; undefined when absent or not a duration. */
export function protoDuration(text: string | undefined): Duration | undefined {
  if (text === undefined) return undefined;
  const ms = parseDuration(text);
  return ms === undefined ? undefined : durationFromMs(ms);
}

/** Milliseconds of a duration string; undefined when absent or not a duration. */
export function durationMs(text: string | undefined): number | undefined {
  return text === undefined ? undefined : parseDuration(text);
}
