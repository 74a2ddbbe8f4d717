/**
 * The push queue: pending pushes merged per stream (a stream waiting for CDS and then LDS gets
 * one turn with both), drained in batches so ACKs and new streams are served between batches.
 */

/** A queue of (key, type URLs) to push. */
export interface PushQueue<K> {
  /** Adds type URLs for `key`, merging with what is pending for it. */
  enqueue(key: K, typeUrls: Iterable<string>): void;
  /** Drops anything pending for `key` (the stream closed). */
  remove(key: K): void;
  /** Number of keys waiting. */
  readonly size: number;
}

/** Options for createPushQueue. */
export interface PushQueueOptions<K> {
  /** Pushes one key's merged type URLs, in the order given by `order`. */
  push(key: K, typeUrls: readonly string[]): void;
  /** Keys handled per turn of the event loop. */
  batchSize?: number;
  /** Sort key of a type URL (lower goes first); unknown types go last. */
  order?: (typeUrl: string) => number;
  /** Called when `push` throws. */
  onError?: (key: K, err: unknown) => void;
}

/** Creates an empty push queue. */
export function createPushQueue<K>(opts: PushQueueOptions<K>): PushQueue<K> {
  const pending = new Map<K, Set<string>>();
  const batch = opts.batchSize ?? 256;
  const order = opts.order ?? (() => 0);
  let scheduled = false;

  function drain(): void {
    scheduled = false;
    let n = 0;
    for (const [key, types] of pending) {
      pending.delete(key);
      try {
        opts.push(key, [...types].sort((a, b) => order(a) - order(b)));
      } catch (err) {
        opts.onError?.(key, err);
      }
      if (++n >= batch) break;
    }
    if (pending.size > 0) schedule();
  }

  function schedule(): void {
    if (scheduled) return;
    scheduled = true;
    setImmediate(drain);
  }

  return {
    enqueue(key, typeUrls) {
      let set = pending.get(key);
      if (!set) {
        set = new Set();
        pending.set(key, set);
      }
      for (const t of typeUrls) set.add(t);
      schedule();
    },
    remove(key) {
      pending.delete(key);
    },
    get size() {
      return pending.size;
    },
  };
}
