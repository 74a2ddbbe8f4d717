/**
 * What memquota and redisquota share: finding the limit that applies to a quota instance (its
 * quota by name, then the first override whose dimensions all match) and the key that counts it.
 *
 * @module
 */
import type { QuotaOverride } from "../../api/mixer/mod.ts";
import { parseDuration } from "../../shared/duration.ts";
import {
  Codes,
  dimensionText,
  instanceNameMatches,
  type InstanceValue,
  type QuotaOutcome,
} from "./adapter.ts";

/** A quota as configured in a handler's params. */
export interface QuotaSpec {
  readonly name: string;
  readonly maxAmount?: number;
  readonly validDuration?: string;
  readonly overrides?: readonly QuotaOverride[];
}

/** The limit that applies to one allocation. */
export interface ResolvedLimit {
  /** The configured quota's name. */
  readonly quota: string;
  readonly maxAmount: number;
  /** Window length in milliseconds; 0 for a quota that never expires. */
  readonly windowMs: number;
  /** Identifies the counter: the quota name and the instance's dimensions, sorted. */
  readonly key: string;
  /** Index of the override used, or -1 for the quota's own limit. */
  readonly override: number;
}

/** The instance's dimensions as text, by name. */
export function dimensionsOf(inst: InstanceValue): Record<string, string> {
  const raw = inst.fields.dimensions;
  const out: Record<string, string> = {};
  if (typeof raw === "object" && raw !== null) {
    for (const [k, v] of Object.entries(raw)) out[k] = dimensionText(v);
  }
  return out;
}

/**
 * Resolves the limit for `inst` among `quotas`, or undefined when no quota is configured for the
 * instance's name.
 */
export function resolveLimit(
  quotas: readonly QuotaSpec[],
  inst: InstanceValue,
  handlerNamespace: string,
): ResolvedLimit | undefined {
  const q = quotas.find((x) => instanceNameMatches(x.name, inst.name, handlerNamespace));
  if (!q) return undefined;
  const dims = dimensionsOf(inst);
  const override = (q.overrides ?? []).findIndex((o) =>
    Object.entries(o.dimensions).every(([k, v]) => dims[k] === v)
  );
  const o = override >= 0 ? q.overrides![override]! : undefined;
  const duration = o?.validDuration ?? q.validDuration;
  const keys = Object.keys(dims).sort();
  let key = q.name;
  for (const k of keys) key += `;${k}=${dims[k]}`;
  return {
    quota: q.name,
    maxAmount: o?.maxAmount ?? q.maxAmount ?? 0,
    windowMs: duration === undefined ? 0 : parseDuration(duration) ?? 0,
    key,
    override,
  };
}

/** The outcome for an instance no quota of the handler is named after (a config error). */
export function unknownQuota(handler: string, instance: string): QuotaOutcome {
  return {
    status: { code: Codes.INTERNAL, message: `handler ${handler} has no quota named ${instance}` },
    granted: 0,
    validDurationMs: 0,
  };
}
