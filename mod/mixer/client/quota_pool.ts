/**
 * Quota prefetch: the client asks the server for several units at once and spends them locally,
 * one per call, until the grant is spent or its validity ends. Grants are kept under the
 * attributes the server said the quota depended on (its dimensions), so a grant for one caller is
 * never spent by another.
 *
 * @module
 */
import { type Ref, refsSignature, refValueKey } from "./referenced.ts";
import type { AttributeBag } from "./wire.ts";

interface Grant {
  remaining: number;
  readonly expiresAt: number;
}

/** Locally held quota grants. */
export interface QuotaPool {
  /** Spends `amount` units of `quota` held for `bag`; false when not enough are held. */
  take(quota: string, bag: Readonly<AttributeBag>, amount: number): boolean;
  /** Holds `units` of `quota` for bags like `bag` (under `refs`) for `validDurationMs`. */
  put(
    quota: string,
    bag: Readonly<AttributeBag>,
    refs: readonly Ref[],
    units: number,
    validDurationMs: number,
  ): void;
  /** Units held of `quota` for `bag` (0 when none). */
  held(quota: string, bag: Readonly<AttributeBag>): number;
  /** Remembers for `forMs` that meshd found `quota` exhausted for bags like `bag`. */
  markExhausted(quota: string, bag: Readonly<AttributeBag>, refs: readonly Ref[], forMs: number): void;
  /** Whether `quota` was found exhausted for `bag` within the marked time. */
  exhausted(quota: string, bag: Readonly<AttributeBag>): boolean;
}

/** Creates an empty pool of at most `maxGrants` grants. */
export function createQuotaPool(opts: { maxGrants?: number; now?: () => number } = {}): QuotaPool {
  const max = opts.maxGrants ?? 10_000;
  const now = opts.now ?? Date.now;
  /** quota -> refs signature -> (refs, value key -> grant) */
  const byQuota = new Map<string, Map<string, { refs: readonly Ref[]; grants: Map<string, Grant> }>>();
  let count = 0;
  const exhaustedBy = new Map<string, Map<string, { refs: readonly Ref[]; until: Map<string, number> }>>();

  const find = (quota: string, bag: Readonly<AttributeBag>): Grant | undefined => {
    const groups = byQuota.get(quota);
    if (!groups) return undefined;
    const t = now();
    for (const g of groups.values()) {
      const key = refValueKey(bag, g.refs);
      const grant = g.grants.get(key);
      if (!grant) continue;
      if (grant.expiresAt <= t || grant.remaining <= 0) {
        g.grants.delete(key);
        count--;
        continue;
      }
      return grant;
    }
    return undefined;
  };

  return {
    take(quota, bag, amount) {
      const g = find(quota, bag);
      if (!g || g.remaining < amount) return false;
      g.remaining -= amount;
      return true;
    },
    put(quota, bag, refs, units, validDurationMs) {
      if (units <= 0 || validDurationMs <= 0) return;
      let groups = byQuota.get(quota);
      if (!groups) byQuota.set(quota, groups = new Map());
      const sig = refsSignature(refs);
      let g = groups.get(sig.signature);
      if (!g) groups.set(sig.signature, g = { refs: sig.refs, grants: new Map() });
      const key = refValueKey(bag, g.refs);
      const existing = g.grants.get(key);
      if (!existing) {
        if (count >= max) return;
        count++;
      }
      const expiresAt = now() + validDurationMs;
      // Units of an older grant stay spendable only until the earlier expiry; keep the sooner one.
      g.grants.set(key, {
        remaining: units + (existing && existing.expiresAt > now() ? existing.remaining : 0),
        expiresAt: existing && existing.expiresAt > now()
          ? Math.min(existing.expiresAt, expiresAt)
          : expiresAt,
      });
    },
    held: (quota, bag) => find(quota, bag)?.remaining ?? 0,
    markExhausted(quota, bag, refs, forMs) {
      const sig = refsSignature(refs);
      let groups = exhaustedBy.get(quota);
      if (!groups) exhaustedBy.set(quota, groups = new Map());
      let g = groups.get(sig.signature);
      if (!g) groups.set(sig.signature, g = { refs: sig.refs, until: new Map() });
      if (g.until.size >= max) g.until.clear();
      g.until.set(refValueKey(bag, g.refs), now() + forMs);
    },
    exhausted(quota, bag) {
      const t = now();
      for (const g of exhaustedBy.get(quota)?.values() ?? []) {
        const key = refValueKey(bag, g.refs);
        const until = g.until.get(key);
        if (until === undefined) continue;
        if (until > t) return true;
        g.until.delete(key);
      }
      return false;
    },
  };
}
