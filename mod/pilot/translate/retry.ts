/**
 * Retry policies: a VirtualService's `retries`, or Istio's default (2 retries on connection
 * failures, refused streams, gRPC `unavailable` and `cancelled`, and 503).
 *
 * @module
 */
import { create } from "@bufbuild/protobuf";
import {
  type RetryPolicy,
  RetryPolicy_RetryBackOffSchema,
  RetryPolicy_RetryHostPredicateSchema,
  RetryPolicy_RetryPrioritySchema,
  RetryPolicySchema,
} from "#gen/envoy/config/route/v3/route_components_pb.ts";
import { PreviousHostsPredicateSchema } from "#gen/envoy/extensions/retry/host/previous_hosts/v3/previous_hosts_pb.ts";
import { PreviousPrioritiesConfigSchema } from "#gen/envoy/extensions/retry/priority/previous_priorities/v3/previous_priorities_config_pb.ts";
import type { HTTPRetry } from "../../galley/kinds/networking.ts";
import { durationFromString, typedConfig } from "./conversion.ts";

/** Istio's default `retry_on`. */
export const DEFAULT_RETRY_ON = "connect-failure,refused-stream,unavailable,cancelled,retriable-status-codes";
/** Istio's default number of retries. */
export const DEFAULT_RETRY_ATTEMPTS = 2;

function previousHosts() {
  return create(RetryPolicy_RetryHostPredicateSchema, {
    name: "envoy.retry_host_predicates.previous_hosts",
    configType: {
      case: "typedConfig",
      value: typedConfig(PreviousHostsPredicateSchema, create(PreviousHostsPredicateSchema, {})),
    },
  });
}

function defaultPolicy(consistentHash: boolean): RetryPolicy {
  return create(RetryPolicySchema, {
    retryOn: DEFAULT_RETRY_ON,
    numRetries: DEFAULT_RETRY_ATTEMPTS,
    hostSelectionRetryMaxAttempts: 5n,
    retriableStatusCodes: [503],
    // With consistent hashing a retry must go to the same host, so no "previous hosts" predicate.
    retryHostPredicate: consistentHash ? [] : [previousHosts()],
  });
}

/** Splits "5xx,503,gateway-error" into Envoy's retry_on conditions and status codes. */
export function parseRetryOn(text: string): { retryOn: string; codes: number[] } {
  const conditions: string[] = [];
  const codes: number[] = [];
  for (const raw of text.split(",")) {
    const part = raw.trim();
    if (part === "") continue;
    if (/^\d+$/.test(part) && Number(part) >= 100 && Number(part) <= 599) codes.push(Number(part));
    else conditions.push(part);
  }
  if (codes.length > 0 && !conditions.includes("retriable-status-codes")) {
    conditions.push("retriable-status-codes");
  }
  return { retryOn: conditions.join(","), codes };
}

/**
 * The route's retry policy: Istio's default when `retries` is unset, none when it sets
 * `attempts: 0`, else the default overridden by attempts, retryOn (numbers become retriable
 * status codes; gRPC codes such as `unavailable` pass through), perTryTimeout,
 * retryRemoteLocalities, retryIgnorePreviousHosts and backoff.
 */
export function retryPolicy(
  retries: HTTPRetry | undefined,
  consistentHash: boolean,
): RetryPolicy | undefined {
  const out = defaultPolicy(consistentHash);
  if (!retries) return out;
  if (!retries.attempts || retries.attempts <= 0) return undefined;
  out.numRetries = retries.attempts;
  if (retries.retryOn) {
    const { retryOn, codes } = parseRetryOn(retries.retryOn);
    out.retryOn = retryOn;
    out.retriableStatusCodes = codes;
  }
  if (retries.perTryTimeout) out.perTryTimeout = durationFromString(retries.perTryTimeout);
  if (retries.retryIgnorePreviousHosts !== undefined) {
    out.retryHostPredicate = retries.retryIgnorePreviousHosts ? [previousHosts()] : [];
  }
  if (retries.retryRemoteLocalities) {
    out.retryPriority = create(RetryPolicy_RetryPrioritySchema, {
      name: "envoy.retry_priorities.previous_priorities",
      configType: {
        case: "typedConfig",
        value: typedConfig(
          PreviousPrioritiesConfigSchema,
          create(PreviousPrioritiesConfigSchema, { updateFrequency: 2 }),
        ),
      },
    });
  }
  if (retries.backoff) {
    out.retryBackOff = create(RetryPolicy_RetryBackOffSchema, {
      baseInterval: durationFromString(retries.backoff),
    });
  }
  return out;
}
