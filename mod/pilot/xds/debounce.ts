/**
 * Debounce for pushes: after the first change, wait until changes have stopped for `quietMs`,
 * but never longer than `maxMs` in all, then fire once for everything gathered.
 *
 * {@link debouncePushes} feeds it pilot's triggers (each config snapshot's change set, each
 * registry change) and hands the push one {@link PushRequest} merged from all it coalesced.
 */
import type { ConfigStore } from "../../galley/mod.ts";
import type { Clock, Timer } from "../../shared/clock.ts";
import type { ServiceRegistry } from "../model/registry.ts";
import { configPushRequest, fullPushRequest, mergePushRequests, type PushRequest } from "./push_request.ts";

/** A debouncer gathering reasons for one push. */
export interface Debouncer<R> {
  /** Records a change. */
  trigger(reason: R): void;
  /** Fires now if anything is pending. */
  flush(): void;
  /** Returns what is pending, in order, and forgets it (and its timers) without firing. */
  take(): R[];
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

  function take(): R[] {
    timer?.cancel();
    timer = undefined;
    const gathered = reasons;
    reasons = [];
    firstAt = undefined;
    return gathered;
  }

  function fire(): void {
    const at = firstAt;
    const gathered = take();
    if (at !== undefined) opts.fire(gathered, at);
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
    take,
    stop() {
      take();
    },
  };
}

/** Pilot's debounced pushes. */
export interface PushDebouncer {
  /**
   * Pushes at once with a full request, `reason` merged with whatever was pending, the push's
   * first change being now (the first push once config is in sync).
   */
  pushNow(reason: string): void;
  /** Unsubscribes from the store and the registries and drops what is pending. */
  stop(): void;
}

/** Options for debouncePushes. */
export interface PushDebounceOptions {
  clock: Clock;
  quietMs: number;
  maxMs: number;
  store: Pick<ConfigStore, "subscribe">;
  registries: readonly Pick<ServiceRegistry, "name" | "watch">[];
  /**
   * Builds and installs a push. `request` names every config change since the previous call
   * (possibly more); `firstAt` is the time of its first change.
   */
  push(request: PushRequest, firstAt: number): void;
}

/**
 * Subscribes to the store's snapshots and the registries' changes and calls `push` once per
 * debounced burst. A snapshot contributes its change set; a registry change makes the request full.
 */
export function debouncePushes(opts: PushDebounceOptions): PushDebouncer {
  const debouncer = createDebouncer<PushRequest>({
    clock: opts.clock,
    quietMs: opts.quietMs,
    maxMs: opts.maxMs,
    fire: (requests, firstAt) => opts.push(mergePushRequests(requests), firstAt),
  });
  const unsubscribers = [
    opts.store.subscribe((change) => debouncer.trigger(configPushRequest(change))),
    ...opts.registries.map((r) => r.watch(() => debouncer.trigger(fullPushRequest(`registry:${r.name}`)))),
  ];
  return {
    pushNow(reason) {
      const pending = debouncer.take();
      opts.push(mergePushRequests([...pending, fullPushRequest(reason)]), opts.clock.now());
    },
    stop() {
      for (const u of unsubscribers) u();
      debouncer.stop();
    },
  };
}
