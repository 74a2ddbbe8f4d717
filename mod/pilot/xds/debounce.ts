/**
 * Debounce for pushes: after the first change, wait until changes have stopped for `quietMs`,
 * but never longer than `maxMs` in all, then fire once for everything gathered.
 */
import type { Clock, Timer } from "../../shared/clock.ts";

/** A debouncer gathering reasons for one push. */
export interface Debouncer<R> {
  /** Records a change. */
  trigger(reason: R): void;
  /** Fires now if anything is pending. */
  flush(): void;
  /** Drops what is pending and stops the timers. */
  stop(): void;
}

/** Options for createDebouncer. */
export interface DebounceOptions<R> {
  clock: Clock;
  quietMs: number;
  maxMs: number;
  /** Called with every reason gathered and the time of the first one. */
  fire(reasons: R[], firstAt: number): void;
}

/** Creates a debouncer. */
export function createDebouncer<R>(opts: DebounceOptions<R>): Debouncer<R> {
  let reasons: R[] = [];
  let firstAt: number | undefined;
  let timer: Timer | undefined;

  function fire(): void {
    timer?.cancel();
    timer = undefined;
    if (firstAt === undefined) return;
    const gathered = reasons;
    const at = firstAt;
    reasons = [];
    firstAt = undefined;
    opts.fire(gathered, at);
  }

  return {
    trigger(reason) {
      const now = opts.clock.now();
      firstAt ??= now;
      reasons.push(reason);
      timer?.cancel();
      const wait = Math.max(0, Math.min(opts.quietMs, firstAt + opts.maxMs - now));
      timer = opts.clock.setTimer(wait, fire);
    },
    flush: fire,
    stop() {
      timer?.cancel();
      timer = undefined;
      reasons = [];
      firstAt = undefined;
    },
  };
}
