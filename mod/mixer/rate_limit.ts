/**
 * Envoy's rate-limit service (`envoy.service.ratelimit.v3.RateLimitService/ShouldRateLimit`):
 * each descriptor becomes an attribute bag (see `bagFromDescriptor`) and is charged
 * `hits_addend` (default 1) against every quota whose rule matches it, or only the quota
 * instance the request's `domain` names when it names one; for a destination service a
 * QuotaSpecBinding binds, the QuotaSpecs say which quotas and how many units per hit
 * (`quota_spec.ts`). A descriptor is OVER_LIMIT when any
 * of its quotas could not grant the hits; its status carries the tightest limit, what remains of
 * it and when it resets. A quota store that fails (and is configured to fail closed) makes the
 * call fail with UNAVAILABLE, so Envoy's `failure_mode_deny` decides.
 *
 * @module
 */
import { create } from "@bufbuild/protobuf";
import { Code, ConnectError, type ServiceImpl } from "@connectrpc/connect";
import {
  type RateLimitResponse,
  RateLimitResponse_Code,
  type RateLimitResponse_DescriptorStatus,
  RateLimitResponse_DescriptorStatusSchema,
  RateLimitResponse_RateLimit_Unit,
  RateLimitResponseSchema,
  RateLimitService,
} from "#gen/envoy/service/ratelimit/v3/rls_pb.ts";
import { bagFromDescriptor, checkBagLimits } from "./attributes.ts";
import { BadBagError, durationFromMs } from "./client/wire.ts";
import type { MixerCore } from "./core.ts";
import type { QuotaCharge } from "./dispatch.ts";

/** Most descriptors in one request. */
export const MAX_DESCRIPTORS = 64;
/** Largest hits_addend accepted. */
const MAX_HITS = 1_000_000;

const UNITS: ReadonlyArray<readonly [number, RateLimitResponse_RateLimit_Unit]> = [
  [1_000, RateLimitResponse_RateLimit_Unit.SECOND],
  [60_000, RateLimitResponse_RateLimit_Unit.MINUTE],
  [3_600_000, RateLimitResponse_RateLimit_Unit.HOUR],
  [86_400_000, RateLimitResponse_RateLimit_Unit.DAY],
];

/** The RLS unit of a window, when it is exactly one unit long. */
export function unitOf(windowMs: number): RateLimitResponse_RateLimit_Unit {
  return UNITS.find(([ms]) => ms === windowMs)?.[1] ?? RateLimitResponse_RateLimit_Unit.UNKNOWN;
}

function descriptorStatus(outcomes: readonly QuotaCharge[]): RateLimitResponse_DescriptorStatus {
  const over = outcomes.some((o) => o.granted < o.amount);
  const limited = outcomes.filter((o) => o.limit);
  const tightest = limited.sort((a, b) => (a.remaining ?? Infinity) - (b.remaining ?? Infinity))[0];
  return create(RateLimitResponse_DescriptorStatusSchema, {
    code: over ? RateLimitResponse_Code.OVER_LIMIT : RateLimitResponse_Code.OK,
    currentLimit: tightest?.limit
      ? { requestsPerUnit: tightest.limit.maxAmount, unit: unitOf(tightest.limit.windowMs) }
      : undefined,
    limitRemaining: Math.max(0, Math.min(0xffff_ffff, tightest?.remaining ?? 0)),
    durationUntilReset: tightest?.resetInMs !== undefined ? durationFromMs(tightest.resetInMs) : undefined,
  });
}

/** The RateLimitService over `core`. */
export function rateLimitService(core: MixerCore): Partial<ServiceImpl<typeof RateLimitService>> {
  return {
    async shouldRateLimit(req): Promise<RateLimitResponse> {
      const refuse = (message: string, code = Code.InvalidArgument): never => {
        core.refuse("ratelimit", message);
        throw new ConnectError(message, code);
      };
      if (req.descriptors.length > MAX_DESCRIPTORS) {
        refuse(`${req.descriptors.length} descriptors; the limit is ${MAX_DESCRIPTORS}`);
      }
      const hits = req.hitsAddend === 0 ? 1 : req.hitsAddend;
      if (hits > MAX_HITS) refuse(`hits_addend ${hits} is larger than ${MAX_HITS}`);
      const statuses: RateLimitResponse_DescriptorStatus[] = [];
      for (const d of req.descriptors) {
        const { bag } = bagFromDescriptor(d);
        try {
          checkBagLimits(bag);
        } catch (err) {
          if (err instanceof BadBagError) refuse(err.message);
          throw err;
        }
        const outcomes = await core.quotaAll(bag, { amount: hits, bestEffort: false }, req.domain);
        const failed = outcomes.find((o) => o.status.code !== 0);
        if (failed) throw new ConnectError(failed.status.message, Code.Unavailable);
        statuses.push(descriptorStatus(outcomes));
      }
      const over = statuses.some((s) => s.code === RateLimitResponse_Code.OVER_LIMIT);
      return create(RateLimitResponseSchema, {
        overallCode: over ? RateLimitResponse_Code.OVER_LIMIT : RateLimitResponse_Code.OK,
        statuses,
      });
    },
  };
}
