/**
 * The client's check cache: decisions stored under the attributes the server said they depended
 * on, reused while their valid duration and use count last.
 *
 * Decisions are grouped by their referenced-attribute set (usually a handful of distinct sets);
 * a lookup computes, for each set, the bag's values in those places and looks the result up.
 * A hit costs a few string concatenations and map lookups.
 *
 * @module
 */
import { type Ref, refsSignature, refValueKey } from "./referenced.ts";
import type { AttributeBag } from "./wire.ts";

/** A decision as cached. */
export interface CachedDecision {
  readonly code: number;
  readonly message: string;
}

interface Entry {
  readonly decision: CachedDecision;
  readonly expiresAt: number;
  usesLeft: number;
}

interface Group {
  readonly refs: readonly Ref[];
  readonly entries: Map<string, Entry>;
}

/** A bounded cache of check decisions. */
export interface CheckCache {
  /** The decision for `bag`, spending one use; undefined on a miss. */
  lookup(bag: Readonly<AttributeBag>): CachedDecision | undefined;
  /** Stores a decision; ignored when it may not be reused (no duration or no uses left after this one). */
  store(
    bag: Readonly<AttributeBag>,
    refs: readonly Ref[],
    decision: CachedDecision,
    validDurationMs: number,
    validUseCount: number,
  ): void;
  /** Number of cached decisions. */
  size(): number;
  /** Drops everything. */
  clear(): void;
}

/** Creates a cache of at most `maxEntries` decisions (the oldest go first). */
export function createCheckCache(opts: { maxEntries?: number; now?: () => number } = {}): CheckCache {
  const max = opts.maxEntries ?? 10_000;
  const now = opts.now ?? Date.now;
  const groups = new Map<string, Group>();
  let count = 0;

  const evictOne = () => {
    for (const g of groups.values()) {
      const first = g.entries.keys().next();
      if (!first.done) {
        g.entries.delete(first.value);
        count--;
        return;
      }
    }
  };

  return {
    lookup(bag) {
      if (count === 0) return undefined;
      const t = now();
      for (const g of groups.values()) {
        const key = refValueKey(bag, g.refs);
        const e = g.entries.get(key);
        if (!e) continue;
        if (e.expiresAt <= t || e.usesLeft <= 0) {
          g.entries.delete(key);
          count--;
          continue;
        }
        e.usesLeft--;
        return e.decision;
      }
      return undefined;
    },
    store(bag, refs, decision, validDurationMs, validUseCount) {
      if (validDurationMs <= 0 || validUseCount <= 1) return;
      const sig = refsSignature(refs);
      let g = groups.get(sig.signature);
      if (!g) groups.set(sig.signature, g = { refs: sig.refs, entries: new Map() });
      const key = refValueKey(bag, g.refs);
      if (!g.entries.has(key)) {
        if (count >= max) evictOne();
        count++;
      } else g.entries.delete(key);
      // This request used the decision once already.
      g.entries.set(key, { decision, expiresAt: now() + validDurationMs, usesLeft: validUseCount - 1 });
    },
    size: () => count,
    clear() {
      groups.clear();
      count = 0;
    },
  };
}
