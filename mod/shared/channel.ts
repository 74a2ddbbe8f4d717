/**
 * An unbounded async queue: producers push, one consumer iterates. Closing ends iteration after
 * the queued items; failing ends it with an error.
 */

/** A queue that one `for await` loop drains. */
export interface Channel<T> extends AsyncIterable<T> {
  push(item: T): void;
  close(): void;
  fail(err: unknown): void;
  readonly closed: boolean;
}

/** Creates an empty channel. */
export function createChannel<T>(): Channel<T> {
  const items: T[] = [];
  let done = false;
  let error: unknown;
  let wake: (() => void) | undefined;
  const signal = () => {
    const w = wake;
    wake = undefined;
    w?.();
  };
  return {
    push(item) {
      if (done) return;
      items.push(item);
      signal();
    },
    close() {
      done = true;
      signal();
    },
    fail(err) {
      if (done) return;
      error = err ?? new Error("channel failed");
      done = true;
      signal();
    },
    get closed() {
      return done;
    },
    async *[Symbol.asyncIterator]() {
      for (;;) {
        if (items.length > 0) {
          yield items.shift()!;
          continue;
        }
        if (done) {
          if (error !== undefined) throw error;
          return;
        }
        await new Promise<void>((resolve) => (wake = resolve));
      }
    },
  };
}
