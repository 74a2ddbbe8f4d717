/**
 * Carries bytes both ways between two streams of one proxied connection (a TCP socket, a TLS
 * socket or an HTTP/2 CONNECT stream), counting them. The end of one direction ends the other
 * side's writing (TCP half-close carries through); an error or reset on either side destroys
 * both. Resolves once both sides have closed.
 *
 * @module
 */
import type { Duplex } from "node:stream";

/** What crossed a relay. */
export interface RelayResult {
  /** Bytes read from `a` and written to `b`. */
  readonly aToB: number;
  readonly bToA: number;
  /** The first error on either side, if any. */
  readonly error?: string;
}

/** A relay in progress: counts so far, and its end. */
export interface Relay {
  readonly done: Promise<RelayResult>;
  /** Bytes moved so far in each direction. */
  counts(): { aToB: number; bToA: number };
}

/** Starts relaying between `a` and `b`. Both must be open (connected) already. */
export function relay(a: Duplex, b: Duplex): Relay {
  let aToB = 0;
  let bToA = 0;
  let error: string | undefined;
  const closed = (s: Duplex) =>
    s.destroyed && (s as { closed?: boolean }).closed !== false
      ? Promise.resolve()
      : new Promise<void>((resolve) => s.once("close", () => resolve()));
  const fail = (err: Error) => {
    error ??= err.message;
    a.destroy();
    b.destroy();
  };
  a.on("error", fail);
  b.on("error", fail);
  a.on("data", (c: Buffer) => (aToB += c.length));
  b.on("data", (c: Buffer) => (bToA += c.length));
  // A side that closes takes the other down once what was written to it is flushed.
  a.once("close", () => closeAfterFlush(b));
  b.once("close", () => closeAfterFlush(a));
  a.pipe(b);
  b.pipe(a);
  const done = Promise.all([closed(a), closed(b)]).then(() => ({
    aToB,
    bToA,
    ...(error !== undefined ? { error } : {}),
  }));
  return { done, counts: () => ({ aToB, bToA }) };
}

/** Destroys `s` now, or once its pending writes are flushed when its writing has ended. */
function closeAfterFlush(s: Duplex): void {
  if (s.destroyed) return;
  if (s.writableEnded && !s.writableFinished) s.once("finish", () => s.destroy());
  else s.destroy();
}
