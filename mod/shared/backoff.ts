/**
 * Exponential backoff with jitter, for retrying the CA and the control plane while they are
 * unreachable (the agent, the store). Each delay is drawn from [base/2, base] ("equal jitter"): never zero, so a
 * fleet that lost the control plane at the same moment spreads its retries out.
 *
 * @module
 */

/** Options for createBackoff. */
export interface BackoffOptions {
  /** The first base delay. */
  readonly initialMs: number;
  /** The largest base delay. */
  readonly maxMs: number;
  /** Growth of the base delay per attempt (default 2). */
  readonly factor?: number;
  /** Uniform random numbers in [0, 1); injected for tests (default Math.random). */
  readonly random?: () => number;
}

/** A sequence of growing, jittered delays. Not shared between concurrent retry loops. */
export interface Backoff {
  /** The delay before the next attempt; each call grows the base delay up to maxMs. */
  next(): number;
  /** Starts again from initialMs (after a success). */
  reset(): void;
  /** Failed attempts since the last reset. */
  readonly attempts: number;
}

/** Creates a backoff. Throws when the options are not positive and ordered. */
export function createBackoff(opts: BackoffOptions): Backoff {
  const factor = opts.factor ?? 2;
  const random = opts.random ?? Math.random;
  if (!(opts.initialMs > 0) || !(opts.maxMs >= opts.initialMs) || !(factor >= 1)) {
    throw new Error(
      `backoff: want 0 < initialMs <= maxMs and factor >= 1, got ${opts.initialMs}, ${opts.maxMs}, ${factor}`,
    );
  }
  let attempts = 0;
  return {
    next() {
      const base = Math.min(opts.maxMs, opts.initialMs * factor ** attempts);
      attempts++;
      return Math.round(base / 2 + random() * (base / 2));
    },
    reset() {
      attempts = 0;
    },
    get attempts() {
      return attempts;
    },
  };
}
