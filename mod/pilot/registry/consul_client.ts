/**
 * Consul's HTTP API as the registry reads it: one blocking query (`?index=N&wait=W`, the answer's
 * `X-Consul-Index`), the index rules Consul's blocking-query documentation asks clients to follow,
 * and a limit on how many requests one registry has in flight.
 *
 * @module
 */
import type { Clock } from "../../shared/clock.ts";
import { formatDuration } from "../../shared/duration.ts";

/** One request. */
export interface ConsulRequest {
  readonly fetch: typeof fetch;
  readonly clock: Clock;
  /** e.g. "http://127.0.0.1:8500". */
  readonly base: string;
  /** e.g. "/v1/catalog/services". */
  readonly path: string;
  readonly dc?: string;
  readonly token?: string;
  /** The index of the last answer; 0 asks at once without blocking. */
  readonly index: number;
  /** How long Consul may hold the request waiting for a change past `index`. */
  readonly waitMs: number;
  /** Allowance beyond the wait (and Consul's jitter of up to wait/16). */
  readonly timeoutMs: number;
  /** Aborts the request (the registry stopping, or a watcher removed). */
  readonly signal: AbortSignal;
  /**
   * The body of the previous answer to the same query: an answer with the very same body is not
   * parsed again (its `body` is undefined and `same` true).
   */
  readonly previousText?: string;
}

/** A successful answer. */
export interface ConsulAnswer {
  /** The parsed body; undefined when `same`. */
  readonly body: unknown;
  /** `X-Consul-Index`. */
  readonly index: number;
  /** The body as sent. */
  readonly text: string;
  /** Whether the body equals the request's `previousText` (and so was not parsed). */
  readonly same: boolean;
}

/** The URL of a request (without the token, which goes in a header). */
export function requestUrl(req: Pick<ConsulRequest, "base" | "path" | "dc" | "index" | "waitMs">): string {
  const q = new URLSearchParams();
  if (req.dc !== undefined) q.set("dc", req.dc);
  if (req.index > 0) {
    q.set("index", String(req.index));
    q.set("wait", formatDuration(req.waitMs));
  }
  const qs = q.toString();
  return `${req.base}${req.path}${qs ? `?${qs}` : ""}`;
}

/** How long a request may take before it counts as failed. */
export function requestDeadlineMs(req: Pick<ConsulRequest, "index" | "waitMs" | "timeoutMs">): number {
  return req.index > 0 ? req.waitMs + Math.ceil(req.waitMs / 16) + req.timeoutMs : req.timeoutMs;
}

/**
 * Sends one GET. Throws an Error naming the path on a transport failure, a timeout, a non-2xx
 * status (with Consul's message, e.g. "403 ACL not found"), a body that is not JSON, or a missing
 * `X-Consul-Index`.
 */
export async function consulGet(req: ConsulRequest): Promise<ConsulAnswer> {
  const deadline = requestDeadlineMs(req);
  const timeout = new AbortController();
  const timer = req.clock.setTimer(deadline, () => timeout.abort());
  const signal = AbortSignal.any([req.signal, timeout.signal]);
  const headers: Record<string, string> = { accept: "application/json" };
  if (req.token !== undefined) headers["x-consul-token"] = req.token;
  try {
    const res = await req.fetch(requestUrl(req), { headers, signal });
    const text = await res.text();
    if (!res.ok) {
      throw new Error(`GET ${req.path}: ${res.status} ${text.trim().slice(0, 200) || res.statusText}`);
    }
    const header = res.headers.get("x-consul-index");
    const index = header === null ? NaN : Number(header);
    if (!Number.isSafeInteger(index) || index < 0) {
      throw new Error(`GET ${req.path}: no valid X-Consul-Index header (got ${JSON.stringify(header)})`);
    }
    if (req.previousText !== undefined && text === req.previousText) {
      return { body: undefined, index, text, same: true };
    }
    let body: unknown;
    try {
      body = JSON.parse(text);
    } catch {
      throw new Error(`GET ${req.path}: the body is not JSON`);
    }
    return { body, index, text, same: false };
  } catch (e) {
    if (timeout.signal.aborted && !req.signal.aborted) {
      throw new Error(`GET ${req.path}: no answer within ${formatDuration(deadline)}`);
    }
    if (e instanceof Error && e.message.startsWith(`GET ${req.path}:`)) throw e;
    throw new Error(`GET ${req.path}: ${e instanceof Error ? e.message : String(e)}`);
  } finally {
    timer.cancel();
  }
}

/** The index to send next, and whether the answer moved it. */
export interface NextIndex {
  readonly index: number;
  readonly changed: boolean;
}

/**
 * Consul's rules for the index of the next blocking query, from the index sent and the one
 * answered: an answer index of 0 is a server bug and is treated as 1 (0 would not block and the
 * client would loop); an index that went backwards (a restored snapshot, a new cluster) starts
 * over from 0; otherwise the answer's index is sent next. `changed` is false when the answer's
 * index is the one sent (the wait ended or a wake-up changed nothing), and the caller then waits
 * before asking again.
 */
export function nextIndex(sent: number, answered: number): NextIndex {
  const got = answered > 0 ? answered : 1;
  if (got < sent) return { index: 0, changed: true };
  return { index: got, changed: got !== sent };
}

/** A bound on requests in flight, granted first come, first served. */
export interface RequestLimit {
  /**
   * Waits for a slot; resolves to a release function, or to undefined when `signal` aborted
   * first (no slot is held then).
   */
  acquire(signal: AbortSignal): Promise<(() => void) | undefined>;
  /** Callers waiting for a slot. */
  readonly waiting: number;
}

/** Creates a RequestLimit of `slots` concurrent holders. */
export function createRequestLimit(slots: number): RequestLimit {
  let free = slots;
  const queue: Array<(release: (() => void) | undefined) => void> = [];
  const release = () => {
    const next = queue.shift();
    if (next) next(once());
    else free++;
  };
  const once = () => {
    let done = false;
    return () => {
      if (!done) {
        done = true;
        release();
      }
    };
  };
  return {
    acquire(signal) {
      if (signal.aborted) return Promise.resolve(undefined);
      if (free > 0) {
        free--;
        return Promise.resolve(once());
      }
      return new Promise((resolve) => {
        const grant = (r: (() => void) | undefined) => {
          signal.removeEventListener("abort", abort);
          resolve(r);
        };
        const abort = () => {
          const i = queue.indexOf(grant);
          if (i >= 0) queue.splice(i, 1);
          resolve(undefined);
        };
        queue.push(grant);
        signal.addEventListener("abort", abort, { once: true });
      });
    },
    get waiting() {
      return queue.length;
    },
  };
}
