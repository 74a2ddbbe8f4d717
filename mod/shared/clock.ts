/**
 * Time, injected. Debounce, rotation and TTL logic take a Clock so tests can drive them
 * without sleeping.
 */

/** A cancellable timer handle. */
export interface Timer {
  /** Stops the timer; calling it after it fired does nothing. */
  cancel(): void;
}

/** The source of time for all time-dependent logic. */
export interface Clock {
  /** Milliseconds since the Unix epoch. */
  now(): number;
  /** Runs `fn` once after `ms` milliseconds. */
  setTimer(ms: number, fn: () => void): Timer;
}

/** The wall clock and the runtime's timers. */
export const systemClock: Clock = {
  now: () => Date.now(),
  setTimer(ms, fn) {
    const t = setTimeout(fn, ms);
    return { cancel: () => clearTimeout(t) };
  },
};

/**
 * Resolves after `ms` milliseconds on `clock`, or as soon as `signal` aborts (at once when it
 * already has). Never rejects: a retry loop checks the signal after waking.
 */
export function sleep(clock: Clock, ms: number, signal?: AbortSignal): Promise<void> {
  if (signal?.aborted) return Promise.resolve();
  return new Promise<void>((resolve) => {
    const wake = () => {
      t.cancel();
      signal?.removeEventListener("abort", wake);
      resolve();
    };
    const t = clock.setTimer(ms, wake);
    signal?.addEventListener("abort", wake, { once: true });
  });
}

/** A clock that moves only when told to; for tests. */
export interface ManualClock extends Clock {
  /** Moves time forward, firing due timers in order of their deadlines. */
  advance(ms: number): void;
  /** Number of timers still pending. */
  pending(): number;
}

/** Creates a ManualClock starting at `start` milliseconds. */
export function createManualClock(start = 0): ManualClock {
  let now = start;
  let seq = 0;
  const timers = new Map<number, { at: number; fn: () => void }>();
  return {
    now: () => now,
    setTimer(ms, fn) {
      const id = seq++;
      timers.set(id, { at: now + Math.max(0, ms), fn });
      return { cancel: () => timers.delete(id) };
    },
    advance(ms) {
      const end = now + ms;
      for (;;) {
        let next: [number, { at: number; fn: () => void }] | undefined;
        for (const entry of timers) {
          if (entry[1].at <= end && (next === undefined || entry[1].at < next[1].at)) next = entry;
        }
        if (next === undefined) break;
        timers.delete(next[0]);
        now = next[1].at;
        next[1].fn();
      }
      now = end;
    },
    pending: () => timers.size,
  };
}
