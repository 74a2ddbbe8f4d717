/**
 * Retry policies for Envoy, rendered from route_plan.ts's retry decision: a VirtualService's
 * `retries`, or Istio's default (2 retries on connection failures, refused streams, gRPC
 * `unavailable` and `cancelled`, and 503).
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
import type { HTTPRetry } from "../../api/kinds/networking.ts";
import { durationFromString, typedConfig } from "./conversion.ts";
import { decideRetry, type RetryDecision } from "./route_plan.ts";

/** Istio's default `retry_on`, as Envoy spells it (with retriable status code 503). */
export const DEFAULT_RETRY_ON = "connect-failure,refused-stream,unavailable,cancelled,retriable-status-codes";
export { DEFAULT_RETRY_ATTEMPTS } from "./route_plan.ts";

function previousHosts() {
  return create(RetryPolicy_RetryHostPredicateSchema, {
    name: "envoy.retry_host_predicates.previous_hosts",
    configType: {
      case: "typedConfig",
      value: typedConfig(PreviousHostsPredicateSchema, create(PreviousHostsPredicateSchema, {})),
    },
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
 * Envoy's retry policy for a retry decision (route_plan.ts): numbers in `retryOn` become
 * retriable status codes, gRPC codes such as `unavailable` pass through; Envoy retries on
 * another host unless the route hashes consistently or the rule says otherwise, and tries at
 * most five hosts per retry.
 */
export function renderRetryPolicy(
  decision: RetryDecision | undefined,
  consistentHash: boolean,
): RetryPolicy | undefined {
  if (!decision) return undefined;
  const out = create(RetryPolicySchema, {
    numRetries: decision.attempts,
    hostSelectionRetryMaxAttempts: 5n,
    // With consistent hashing a retry must go to the same host, so no "previous hosts" predicate.
    retryHostPredicate: consistentHash ? [] : [previousHosts()],
  });
  const { retryOn, codes } = parseRetryOn(decision.retryOn);
  out.retryOn = retryOn;
  out.retriableStatusCodes = codes;
  if (decision.perTryTimeout) out.perTryTimeout = durationFromString(decision.perTryTimeout);
  if (decision.retryIgnorePreviousHosts !== undefined) {
    out.retryHostPredicate = decision.retryIgnorePreviousHosts ? [previousHosts()] : [];
  }
  if (decision.retryRemoteLocalities) {
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
  if (decision.backoff) {
    out.retryBackOff = create(RetryPolicy_RetryBackOffSchema, {
      baseInterval: durationFromString(decision.backoff),
    });
  }
  return out;
}

/**
 * The route's retry policy: Istio's default when `retries` is unset, none when it sets
 * `attempts: 0`, else the default overridden by what it sets (see {@link decideRetry}).
 */
export function retryPolicy(
  retries: HTTPRetry | undefined,
  consistentHash: boolean,
): RetryPolicy | undefined {
  return renderRetryPolicy(decideRetry(retries), consistentHash);
}
