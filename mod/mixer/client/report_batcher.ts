/**
 * Report batching: telemetry entries are sent together once `maxEntries` are waiting or the
 * oldest has waited `maxDelayMs`. At most `maxPending` entries wait (more are dropped and
 * counted), and a batch that cannot be sent is dropped rather than retried, so a slow or absent
 * server never makes an app hold telemetry without bound.
 *
 * @module
 */
import type { AttributeBag } from "./wire.ts";

/** Options of {@link createReportBatcher}. */
export interface ReportBatcherOptions {
  /** Sends one batch; rejects when it could not be sent. */
  send(entries: readonly AttributeBag[]): Promise<void>;
  /** Entries per batch (default 100). */
  readonly maxEntries?: number;
  /** Longest an entry waits (default 1000 ms). */
  readonly maxDelayMs?: number;
  /** Most entries waiting (default 10,000). */
  readonly maxPending?: number;
  /** Told about every dropped batch. */
  onError?(err: unknown, dropped: number): void;
}

/** Batches reports. */
export interface ReportBatcher {
  /** Queues one entry. */
  add(entry: AttributeBag): void;
  /** Sends what is waiting; resolves when every batch sent so far has finished. */
  flush(): Promise<void>;
  /** Entries sent, and dropped (queue full or send failed). */
  stats(): { sent: number; dropped: number; pending: number };
}

/** Creates a batcher. */
export function createReportBatcher(opts: ReportBatcherOptions): ReportBatcher {
  const maxEntries = Math.max(1, opts.maxEntries ?? 100);
  const maxDelayMs = Math.max(0, opts.maxDelayMs ?? 1000);
  const maxPending = Math.max(maxEntries, opts.maxPending ?? 10_000);
  let pending: AttributeBag[] = [];
  let timer: ReturnType<typeof setTimeout> | undefined;
  const inFlight = new Set<Promise<void>>();
  let sent = 0;
  let dropped = 0;

  const sendBatch = () => {
    if (timer !== undefined) {
      clearTimeout(timer);
      timer = undefined;
    }
    while (pending.length > 0) {
      const batch = pending.slice(0, maxEntries);
      pending = pending.slice(maxEntries);
      const p = opts.send(batch).then(
        () => {
          sent += batch.length;
        },
        (err) => {
          dropped += batch.length;
          opts.onError?.(err, batch.length);
        },
      ).finally(() => inFlight.delete(p));
      inFlight.add(p);
    }
  };

  return {
    add(entry) {
      if (pending.length >= maxPending) {
        dropped++;
        return;
      }
      pending.push(entry);
      if (pending.length >= maxEntries) sendBatch();
      else if (timer === undefined) {
        timer = setTimeout(sendBatch, maxDelayMs);
        (timer as { unref?: () => void }).unref?.();
      }
    },
    async flush() {
      sendBatch();
      await Promise.all([...inFlight]);
    },
    stats: () => ({ sent, dropped, pending: pending.length }),
  };
}
