/**
 * The graph's live updates for every watching browser, computed once per tick whoever watches:
 * while someone waits, the feed reads the graph every `tickMs` and, when the update differs from
 * the last one, numbers it and hands it to every waiter.
 *
 * Each server-sent-events response carries one update and ends with a short `retry`, and the
 * browser's EventSource reconnects with `Last-Event-ID`: a response is answered at once when a
 * newer update exists, else when the next one comes (or after `maxWaitMs`, with a comment). The
 * admin server's listener sends a response once it is complete, so a response that stayed open
 * would never reach the browser; this way every event does.
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
   * The first update newer than `after` (-1: the current one at once), or undefined when none
   * came within `maxWaitMs` or `signal` aborted.
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
  /** Longest a response waits for a change (default 20 s). */
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
      if (after < 0 || last === undefined || last.seq > after) {
        // A new watcher gets the graph as it is now.
        if (after < 0 || last === undefined) await refresh();
        if (last !== undefined && last.seq > after) return last;
      }
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

/** The body of one server-sent-events response: the update (or a comment) and the retry delay. */
export function sseBody(item: FeedItem | undefined, after: number, retryMs: number): string {
  const head = `retry: ${retryMs}\n`;
  if (item === undefined) return `${head}id: ${Math.max(0, after)}\n: no change\n\n`;
  return `${head}id: ${item.seq}\nevent: graph\ndata: ${item.data}\n\n`;
}
