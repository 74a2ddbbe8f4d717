/**
 * Retries (gRFC A44): Istio's HTTPRetry as a route's retry_policy. gRPC retries only on gRPC
 * status codes named in retry_on ("cancelled", "deadline-exceeded", "internal",
 * "resource-exhausted", "unavailable") and rejects num_retries 0 and a back-off without a base
 * interval, so those are never emitted.
 */
import { create } from "@bufbuild/protobuf";
import {
  type RetryPolicy,
  RetryPolicy_RetryBackOffSchema,
  RetryPolicySchema,
} from "#gen/envoy/config/route/v3/route_components_pb.ts";
import type { HTTPRetry } from "../../../galley/kinds/networking.ts";
import { durationFromMs, durationMs, protoDuration } from "./durations.ts";

/** The gRPC status codes a retry_on list may name. */
export const GRPC_RETRY_CODES: readonly string[] = [
  "cancelled",
  "deadline-exceeded",
  "internal",
  "resource-exhausted",
  "unavailable",
];

/** Envoy policies whose failures a gRPC client sees as UNAVAILABLE. */
const MEANS_UNAVAILABLE = new Set([
  "5xx",
  "gateway-error",
  "reset",
  "reset-before-request",
  "connect-failure",
  "refused-stream",
]);

/** Istio's retryOn default ("connect-failure,refused-stream,unavailable,cancelled,..."), for gRPC. */
const DEFAULT_RETRY_ON = "unavailable,cancelled";

/** The gRPC retry_on list for an Istio retryOn value (sorted, no duplicates; may be empty). */
export function grpcRetryOn(retryOn: string | undefined): string {
  if (retryOn === undefined || retryOn.trim() === "") return DEFAULT_RETRY_ON;
  const codes = new Set<string>();
  for (const raw of retryOn.split(",")) {
    const p = raw.trim();
    if (GRPC_RETRY_CODES.includes(p)) codes.add(p);
    else if (MEANS_UNAVAILABLE.has(p) || p === "503") codes.add("unavailable");
  }
  return [...codes].sort().join(",");
}

/** The retry policy, or undefined when retries are off or nothing gRPC can retry on is named. */
export function retryPolicy(retries: HTTPRetry | undefined): RetryPolicy | undefined {
  if (!retries || !retries.attempts || retries.attempts <= 0) return undefined;
  const retryOn = grpcRetryOn(retries.retryOn);
  if (retryOn === "") return undefined;
  const base = durationMs(retries.backoff);
  return create(RetryPolicySchema, {
    retryOn,
    numRetries: retries.attempts,
    perTryTimeout: protoDuration(retries.perTryTimeout),
    retryBackOff: base !== undefined && base > 0
      ? create(RetryPolicy_RetryBackOffSchema, {
        baseInterval: durationFromMs(base),
        maxInterval: durationFromMs(base * 10),
      })
      : undefined,
  });
}
