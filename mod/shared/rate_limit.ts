/**
 * Token buckets per key (per identity for certificate requests, per source and reason for the
 * admin server's refusal logs): `perMinute` tokens flow in each minute up to `burst`; a request
 * takes one or is refused.
 *
 * @module
 */

/** Per-key rate limiting. */
export interface RateLimiter {
  /** Takes a token from `key`'s bucket; false when it is empty. */
  take(key: string): boolean;
  /** Buckets currently tracked. */
  size(): number;
}

/** Options for createRateLimiter. */
export interface RateLimiterOptions {
  /** Refill rate; 0 disables limiting. */
  readonly perMinute: number;
  /** Bucket size; defaults to `perMinute`. */
  readonly burst?: number;
  /** Epoch milliseconds. */
  readonly now: () => number;
  /**
   * Buckets kept before full ones are dropped (they equal a fresh bucket); past that the oldest
   * goes. Default 10,000.
   */
  readonly maxKeys?: number;
}

/** Creates a limiter. */
export function createRateLimiter(opts: RateLimiterOptions): RateLimiter {
  const rate = opts.perMinute / 60_000;
  const burst = Math.max(1, opts.burst ?? opts.perMinute);
  const maxKeys = opts.maxKeys ?? 10_000;
  const buckets = new Map<string, { tokens: number; at: number }>();
  const level = (b: { tokens: number; at: number }, now: number) =>
    Math.min(burst, b.tokens + Math.max(0, now - b.at) * rate);
  return {
    take(key) {
      if (opts.perMinute <= 0) return true;
      const now = opts.now();
      let b = buckets.get(key);
      if (!b) {
        if (buckets.size >= maxKeys) {
          for (const [k, v] of buckets) if (level(v, now) >= burst) buckets.delete(k);
          if (buckets.size >= maxKeys) buckets.delete(buckets.keys().next().value!);
        }
        b = { tokens: burst, at: now };
        buckets.set(key, b);
      }
      b.tokens = level(b, now);
      b.at = now;
      if (b.tokens < 1) return false;
      b.tokens -= 1;
      return true;
    },
    size: () => buckets.size,
  };
}
