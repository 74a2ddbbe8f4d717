/**
 * The graph's live updates for every watching browser, computed once per tick whoever watches:
 * while someone waits, the feed reads the graph every `tickMs` and, when the update differs from
 * the last one, numbers it and hands it to every waiter.
 *
 * Each browser holds one long-lived server-sent-events stream ({@link sseStream}): the current
 * update at once (or the first newer than its `Last-Event-ID`), then every change, with a
 * comment as heartbeat when nothing changed for a while. The stream is pulled: the next update
 * is awaited only once the last one was handed to the connection, so a slow browser holds at
 * most one update, and a browser that goes away cancels its stream and leaves the waiters.
 *
 * @module
 */

/** One numbered update. */
export interface FeedItem {
  readonly seq: number;
  readonly data: string;
}

/** The feed. */
export interface GraphFeed {
  /**
   * The first update newer than `after` (-1, or an id this feed did not give: the current one at
   * once), or undefined when none came within `maxWaitMs` or `signal` aborted.
   */
  next(after: number, signal?: AbortSignal): Promise<FeedItem | undefined>;
  /** Waiters right now (for tests and the benchmark). */
  waiting(): number;
  /** Stops the timer and answers every waiter with undefined. */
  close(): void;
}

/** Options for createGraphFeed. */
export interface GraphFeedOptions {
  /** The update as the browser receives it (JSON text). */
  read(): Promise<string>;
  /** How often the graph is read while someone waits (default 1000 ms). */
  readonly tickMs?: number;
  /** Longest a wait for a change lasts (default 20 s): the heartbeat interval of a stream. */
  readonly maxWaitMs?: number;
}

/** Creates a feed over `opts.read`. */
export function createGraphFeed(opts: GraphFeedOptions): GraphFeed {
  const tickMs = opts.tickMs ?? 1000;
  const maxWaitMs = opts.maxWaitMs ?? 20_000;
  let last: FeedItem | undefined;
  let timer: ReturnType<typeof setInterval> | undefined;
  let reading: Promise<void> | undefined;
  const waiters = new Set<{ after: number; done: (item: FeedItem | undefined) => void }>();

  const refresh = (): Promise<void> => {
    reading ??= (async () => {
      try {
        const data = await opts.read();
        if (last === undefined || last.data !== data) last = { seq: (last?.seq ?? 0) + 1, data };
        for (const w of [...waiters]) if (last.seq > w.after) w.done(last);
      } finally {
        reading = undefined;
      }
    })();
    return reading;
  };
  const stopIfIdle = () => {
    if (waiters.size === 0 && timer !== undefined) {
      clearInterval(timer);
      timer = undefined;
    }
  };

  return {
    async next(after, signal) {
      // A new watcher gets the graph as it is now; so does one whose id is not this feed's.
      if (after < 0 || last === undefined) await refresh();
      if (last !== undefined && last.seq !== after) return last;
      return await new Promise<FeedItem | undefined>((resolve) => {
        const w = {
          after,
          done: (item: FeedItem | undefined) => {
            waiters.delete(w);
            clearTimeout(t);
            signal?.removeEventListener("abort", onAbort);
            stopIfIdle();
            resolve(item);
          },
        };
        const onAbort = () => w.done(undefined);
        const t = setTimeout(() => w.done(undefined), maxWaitMs);
        signal?.addEventListener("abort", onAbort, { once: true });
        waiters.add(w);
        timer ??= setInterval(() => void refresh().catch(() => {}), tickMs);
      });
    },
    waiting: () => waiters.size,
    close() {
      for (const w of [...waiters]) w.done(undefined);
      if (timer !== undefined) clearInterval(timer);
      timer = undefined;
    },
  };
}

/** One update as a server-sent event. */
export function sseEvent(item: FeedItem): string {
  return `id: ${item.seq}\nevent: graph\ndata: ${item.data}\n\n`;
}

/** The comment sent when nothing changed for a while (keeps proxies and the browser from timing out). */
export const SSE_HEARTBEAT = ": heartbeat\n\n";

/** Options for sseStream. */
export interface SseStreamOptions {
  /** The last update the browser has (its Last-Event-ID), -1 for none. */
  readonly after: number;
  /** The reconnect delay sent first (ms). */
  readonly retryMs: number;
  /** Longest the stream stays open (ms); the browser then reconnects with Last-Event-ID. */
  readonly maxAgeMs: number;
  /** The request's signal: aborts when the browser goes away. */
  readonly signal?: AbortSignal;
  /** Called once when the stream ends, however it ends. */
  onClose?(): void;
}

/**
 * A long-lived server-sent-events body over the feed `feed()` gives at each step (a feed may be
 * replaced while the stream is open): `retry`, then the updates newer than `opts.after` as they
 * come, a heartbeat comment each time the feed's wait ends without one.
 */
export function sseStream(feed: () => GraphFeed, opts: SseStreamOptions): ReadableStream<Uint8Array> {
  const enc = new TextEncoder();
  const stop = new AbortController();
  let after = opts.after;
  let closed = false;
  const finish = () => {
    if (closed) return;
    closed = true;
    clearTimeout(age);
    opts.signal?.removeEventListener("abort", onGone);
    stop.abort();
    opts.onClose?.();
  };
  const onGone = () => finish();
  const age = setTimeout(finish, opts.maxAgeMs);
  opts.signal?.addEventListener("abort", onGone, { once: true });
  if (opts.signal?.aborted) finish();
  let started = false;
  return new ReadableStream<Uint8Array>({
    async pull(controller) {
      if (!started) {
        started = true;
        controller.enqueue(enc.encode(`retry: ${opts.retryMs}\n\n`));
        return;
      }
      if (closed) {
        controller.close();
        return;
      }
      const item = await feed().next(after, stop.signal);
      if (closed) {
        controller.close();
        return;
      }
      if (item === undefined) controller.enqueue(enc.encode(SSE_HEARTBEAT));
      else {
        after = item.seq;
        controller.enqueue(enc.encode(sseEvent(item)));
      }
    },
    cancel: finish,
  }, { highWaterMark: 0 });
}
