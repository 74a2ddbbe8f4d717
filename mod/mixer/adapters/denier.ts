/**
 * The denier adapter: answers every check it gets with the configured status (by default
 * FAILED_PRECONDITION), reusable for `validDuration` and `validUseCount`.
 *
 * @module
 */
import type { DenierParams } from "../../api/mixer/mod.ts";
import { parseDuration } from "../../shared/duration.ts";
import { type AdapterFactory, type CheckOutcome, Codes } from "./adapter.ts";

/** Istio's denier defaults. */
const DEFAULT_VALID_DURATION_MS = 5_000;
const DEFAULT_VALID_USE_COUNT = 1_000;

/** Builds a denier handler. */
export const createDenier: AdapterFactory = (params) => {
  const p = (params ?? {}) as DenierParams;
  const outcome: CheckOutcome = {
    status: p.status === undefined
      ? { code: Codes.FAILED_PRECONDITION, message: "denied by policy" }
      : { code: p.status.code ?? Codes.OK, message: p.status.message ?? "" },
    validDurationMs: p.validDuration === undefined
      ? DEFAULT_VALID_DURATION_MS
      : parseDuration(p.validDuration) ?? DEFAULT_VALID_DURATION_MS,
    validUseCount: p.validUseCount ?? DEFAULT_VALID_USE_COUNT,
  };
  return {
    check: () => outcome,
    close() {},
  };
};
