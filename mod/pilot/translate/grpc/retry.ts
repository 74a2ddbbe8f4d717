/**
 * Retries for gRPC clients (gRFC A44), rendered from route_plan.ts's retry decision (Istio's
 * default when a rule sets none). gRPC retries only on the gRPC status codes named in retry_on
 * ("cancelled", "deadline-exceeded", "internal", "resource-exhausted", "unavailable"); Envoy
 * conditions whose failures a gRPC client sees as UNAVAILABLE (connection failures, resets,
 * refused streams, 5xx, gateway errors, 503) become "unavailable", others are left out (and
 * reported). gRPC rejects num_retries 0 and a back-off without a base interval, so those are
 * never emitted.
 *
 * @module
 */
import { create } from "@bufbuild/protobuf";
import {
  type RetryPolicy,
  RetryPolicy_RetryBackOffSchema,
  RetryPolicySchema,
} from "#gen/envoy/config/route/v3/route_components_pb.ts";
import { parseDuration } from "../../../shared/duration.ts";
import { durationFromString } from "../conversion.ts";
import type { RetryDecision } from "../route_plan.ts";

/** The gRPC status codes a retry_on list may name. */
export const GRPC_RETRY_CODES: readonly string[] = [
  "cancelled",
  "deadline-exceeded",
  "internal",
  "resource-exhausted",
  "unavailable",
];

/** Envoy conditions whose failures a gRPC client sees as UNAVAILABLE. */
const MEANS_UNAVAILABLE = new Set([
  "5xx",
  "gateway-error",
  "reset",
  "reset-before-request",
  "connect-failure",
  "refused-stream",
  "503",
]);

/** Conditions with no gRPC meaning that change nothing ("retriable-status-codes" only enables the numbers). */
const NEUTRAL = new Set(["retriable-status-codes"]);

/** The gRPC retry_on list for an Istio retryOn value (sorted, no duplicates; may be empty). */
export function grpcRetryOn(retryOn: string): string {
  const codes = new Set<string>();
  for (const raw of retryOn.split(",")) {
    const p = raw.trim();
    if (GRPC_RETRY_CODES.includes(p)) codes.add(p);
    else if (MEANS_UNAVAILABLE.has(p)) codes.add("unavailable");
  }
  return [...codes].sort().join(",");
}

/** The parts of an Istio retryOn value gRPC cannot retry on. */
export function ignoredRetryOn(retryOn: string): string[] {
  return retryOn.split(",").map((p) => p.trim()).filter((p) =>
    p !== "" && !GRPC_RETRY_CODES.includes(p) && !MEANS_UNAVAILABLE.has(p) && !NEUTRAL.has(p)
  );
}

/** The retry policy, or undefined when retries are off or nothing gRPC can retry on is named. */
export function retryPolicy(decision: RetryDecision | undefined): RetryPolicy | undefined {
  if (!decision || decision.attempts <= 0) return undefined;
  const retryOn = grpcRetryOn(decision.retryOn);
  if (retryOn === "") return undefined;
  const base = decision.backoff ? parseDuration(decision.backoff) ?? 0 : 0;
  return create(RetryPolicySchema, {
    retryOn,
    numRetries: decision.attempts,
    ...(decision.perTryTimeout ? { perTryTimeout: durationFromString(decision.perTryTimeout) } : {}),
    ...(base > 0
      ? {
        retryBackOff: create(RetryPolicy_RetryBackOffSchema, {
          baseInterval: durationFromString(decision.backoff!),
          maxInterval: durationFromString(`${base * 10}ms`),
        }),
      }
      : {}),
  });
}
