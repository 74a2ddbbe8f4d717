/**
 * A client of meshd's Mixer API for apps: checks with a cache keyed by the attributes the server
 * referenced, quota prefetch, batched reports, and fail-open or fail-closed behaviour when meshd
 * cannot be reached. It uses @grpc/grpc-js and protobuf-es only, so any grpc-js app can use it.
 *
 * @module
 */
import { create, fromBinary, toBinary } from "@bufbuild/protobuf";
import * as grpc from "@grpc/grpc-js";
import {
  type CheckRequest,
  CheckRequestSchema,
  type CheckResponse,
  CheckResponseSchema,
  type ReportRequest,
  ReportRequestSchema,
  type ReportResponse,
  ReportResponseSchema,
} from "#gen/meshd/mixer/v1/mixer_pb.ts";
import { type CheckCache, createCheckCache } from "./check_cache.ts";
import { createQuotaPool, type QuotaPool } from "./quota_pool.ts";
import type { Ref } from "./referenced.ts";
import { createReportBatcher, type ReportBatcher } from "./report_batcher.ts";
import { type AttributeBag, durationToMs, encodeBag } from "./wire.ts";

/** Options of {@link createMixerClient}. */
export interface MixerClientOptions {
  /** meshd's gRPC address, host:port. */
  readonly address: string;
  /** Channel credentials (default insecure, for the plaintext port). */
  readonly credentials?: grpc.ChannelCredentials;
  /**
   * Allow calls when meshd cannot be reached or fails (true), or refuse them with UNAVAILABLE
   * (false). Unset, the client follows the mesh's `mixer.failOpen`, which every Check answer
   * carries (true until the first answer, the mesh's own default).
   */
  readonly failOpen?: boolean;
  /** Deadline of one Check call (default 1000 ms). */
  readonly checkTimeoutMs?: number;
  /** Cached decisions at most (default 10,000); 0 disables the cache. */
  readonly cacheEntries?: number;
  /** Units of a quota asked for at once (default 10); 1 disables prefetch. */
  readonly quotaPrefetch?: number;
  /** Report batching: entries per batch, longest wait, most waiting. */
  readonly report?: {
    readonly maxEntries?: number;
    readonly maxDelayMs?: number;
    readonly maxPending?: number;
  };
  /** Told about failed Check and Report calls (at most once a second). */
  readonly onError?: (err: unknown) => void;
  /** Clock for tests. */
  readonly now?: () => number;
}

/** The outcome of a check. */
export interface Verdict {
  readonly allowed: boolean;
  /** A gRPC code (0 when allowed) and why. */
  readonly code: number;
  readonly message: string;
  /** Answered from the cache (and the quota pool) without calling meshd. */
  readonly cached: boolean;
  /** meshd could not answer and the client failed open. */
  readonly failedOpen: boolean;
}

/** A Mixer client. */
export interface MixerClient {
  /**
   * Answers from the cache alone, without I/O: a verdict when the decision (and every quota in
   * `quotas`, from prefetched grants) is held; undefined when meshd must be asked.
   */
  tryCached(bag: Readonly<AttributeBag>, quotas?: Readonly<Record<string, number>>): Verdict | undefined;
  /** Checks a request, from the cache when possible. Never rejects. */
  check(bag: Readonly<AttributeBag>, quotas?: Readonly<Record<string, number>>): Promise<Verdict>;
  /** Queues telemetry for the next batch. */
  report(bag: AttributeBag): void;
  /** Sends queued reports and waits for them. */
  flush(): Promise<void>;
  /** Counters for tests and dashboards. */
  stats(): {
    checks: number;
    cacheHits: number;
    failedOpen: number;
    reportsSent: number;
    reportsDropped: number;
  };
  /** Flushes reports and closes the channel. */
  close(): Promise<void>;
}

const UNAVAILABLE = grpc.status.UNAVAILABLE;
/** Errors that mean meshd did not decide, so the fail-open setting applies. */
const NOT_DECIDED = new Set<number>([
  grpc.status.UNAVAILABLE,
  grpc.status.DEADLINE_EXCEEDED,
  grpc.status.CANCELLED,
  grpc.status.UNKNOWN,
  grpc.status.INTERNAL,
  grpc.status.RESOURCE_EXHAUSTED,
  grpc.status.UNIMPLEMENTED,
]);

/** How long an exhausted answer is shared with callers that waited for it. */
const EXHAUSTED_SHARE_MS = 50;

const CHECK_PATH = "/meshd.mixer.v1.Mixer/Check";
const REPORT_PATH = "/meshd.mixer.v1.Mixer/Report";

const refsOf = (wire: readonly { name: string; mapKey: string }[]): Ref[] =>
  wire.map((r) => (r.mapKey === "" ? { name: r.name } : { name: r.name, mapKey: r.mapKey }));

/** Creates a client; the channel connects on first use. */
export function createMixerClient(opts: MixerClientOptions): MixerClient {
  const now = opts.now ?? Date.now;
  let failOpen = opts.failOpen ?? true;
  const timeoutMs = opts.checkTimeoutMs ?? 1000;
  const prefetch = Math.max(1, opts.quotaPrefetch ?? 10);
  const channel = new grpc.Client(opts.address, opts.credentials ?? grpc.credentials.createInsecure(), {
    "grpc.keepalive_time_ms": 60_000,
  });
  const cache: CheckCache | undefined = opts.cacheEntries === 0
    ? undefined
    : createCheckCache({ maxEntries: opts.cacheEntries, now });
  const pool: QuotaPool = createQuotaPool({ now });
  let lastError = 0;
  const reportError = (err: unknown) => {
    const t = now();
    if (t - lastError < 1000) return;
    lastError = t;
    opts.onError?.(err);
  };
  const counters = { checks: 0, cacheHits: 0, failedOpen: 0 };
  /** One quota fetch at a time per quota name, so concurrent misses share a grant. */
  const fetching = new Map<string, Promise<Verdict>>();

  const unary = <Req, Res>(
    path: string,
    req: Req,
    ser: (r: Req) => Uint8Array,
    de: (b: Uint8Array) => Res,
    deadlineMs: number,
  ) =>
    new Promise<Res>((resolve, reject) => {
      channel.makeUnaryRequest<Req, Res>(
        path,
        (r) => Buffer.from(ser(r)),
        (b) => de(b),
        req,
        new grpc.Metadata(),
        { deadline: Date.now() + deadlineMs },
        (err, res) => (err || !res ? reject(err ?? new Error("empty response")) : resolve(res)),
      );
    });

  const callCheck = (req: CheckRequest) =>
    unary<CheckRequest, CheckResponse>(
      CHECK_PATH,
      req,
      (r) => toBinary(CheckRequestSchema, r),
      (b) => fromBinary(CheckResponseSchema, b),
      timeoutMs,
    );

  const batcher: ReportBatcher = createReportBatcher({
    maxEntries: opts.report?.maxEntries,
    maxDelayMs: opts.report?.maxDelayMs,
    maxPending: opts.report?.maxPending,
    send: async (entries) => {
      await unary<ReportRequest, ReportResponse>(
        REPORT_PATH,
        create(ReportRequestSchema, { entries: entries.map(encodeBag) }),
        (r) => toBinary(ReportRequestSchema, r),
        (b) => fromBinary(ReportResponseSchema, b),
        10_000,
      );
    },
    onError: reportError,
  });

  const verdict = (code: number, message: string, cached: boolean, failedOpenNow = false): Verdict => ({
    allowed: code === 0,
    code,
    message,
    cached,
    failedOpen: failedOpenNow,
  });

  const tryCached = (
    bag: Readonly<AttributeBag>,
    quotas?: Readonly<Record<string, number>>,
  ): Verdict | undefined => {
    if (!cache) return undefined;
    const d = cache.lookup(bag);
    if (!d) return undefined;
    if (d.code !== 0) return verdict(d.code, d.message, true);
    if (quotas) {
      for (const q in quotas) if (pool.held(q, bag) < quotas[q]!) return undefined;
      for (const q in quotas) pool.take(q, bag, quotas[q]!);
    }
    return verdict(0, "", true);
  };

  const remote = async (
    bag: Readonly<AttributeBag>,
    quotas: Readonly<Record<string, number>> | undefined,
  ): Promise<Verdict> => {
    // Spend held grants first; ask only for the quotas not covered.
    const asked: Record<string, number> = {};
    const taken: Array<[string, number]> = [];
    for (const q in quotas ?? {}) {
      const amount = quotas![q]!;
      if (pool.take(q, bag, amount)) taken.push([q, amount]);
      else asked[q] = amount;
    }
    const req = create(CheckRequestSchema, {
      attributes: encodeBag(bag),
      quotas: Object.fromEntries(
        Object.entries(asked).map((
          [q, amount],
        ) => [q, { amount: BigInt(Math.max(amount, prefetch)), bestEffort: true }]),
      ),
    });
    let res: CheckResponse;
    try {
      res = await callCheck(req);
    } catch (err) {
      // Units taken locally for this call are not given back: the call may still go ahead.
      const code = (err as { code?: number }).code ?? UNAVAILABLE;
      reportError(err);
      if (NOT_DECIDED.has(code)) {
        if (failOpen) {
          counters.failedOpen++;
          return verdict(0, "", false, true);
        }
        return verdict(
          UNAVAILABLE,
          `policy check unavailable: ${(err as Error).message ?? String(err)}`,
          false,
        );
      }
      return verdict(code, (err as Error).message ?? String(err), false);
    }
    if (opts.failOpen === undefined) failOpen = res.failOpen;
    const status = res.status ?? { code: 0, message: "" };
    cache?.store(
      bag,
      refsOf(res.referencedAttributes),
      { code: status.code, message: status.message },
      durationToMs(res.validDuration),
      res.validUseCount,
    );
    if (status.code !== 0) return verdict(status.code, status.message, false);
    for (const [q, amount] of Object.entries(asked)) {
      const r = res.quotas[q];
      const granted = r ? Number(r.grantedAmount) : 0;
      if (r?.status && r.status.code !== 0) {
        if (NOT_DECIDED.has(r.status.code) && failOpen) {
          counters.failedOpen++;
          continue;
        }
        return verdict(r.status.code, r.status.message, false);
      }
      if (granted < amount) {
        const refs = refsOf(r!.referencedAttributes);
        if (granted > 0) pool.put(q, bag, refs, granted, durationToMs(r!.validDuration));
        // Callers waiting on this fetch for the same quota and dimensions share the answer.
        else pool.markExhausted(q, bag, refs, EXHAUSTED_SHARE_MS);
        return verdict(grpc.status.RESOURCE_EXHAUSTED, `quota ${q} exhausted`, false);
      }
      pool.put(q, bag, refsOf(r!.referencedAttributes), granted - amount, durationToMs(r!.validDuration));
    }
    return verdict(0, "", false);
  };

  return {
    tryCached(bag, quotas) {
      const v = tryCached(bag, quotas);
      if (v) {
        counters.checks++;
        counters.cacheHits++;
      }
      return v;
    },
    async check(bag, quotas) {
      counters.checks++;
      const hit = tryCached(bag, quotas);
      if (hit) {
        counters.cacheHits++;
        return hit;
      }
      const names = Object.keys(quotas ?? {});
      if (names.length > 0 && prefetch > 1) {
        // One fetch per quota at a time: callers that miss while one is in flight wait for it and
        // spend its grant; a fetch that found the quota exhausted answers its waiters too.
        for (;;) {
          const waits = names.map((n) => fetching.get(n)).filter((p) => p !== undefined);
          if (waits.length === 0) break;
          await Promise.all(waits);
          const again = tryCached(bag, quotas);
          if (again) {
            counters.cacheHits++;
            return again;
          }
          const exhausted = names.find((n) => pool.exhausted(n, bag));
          if (exhausted !== undefined) {
            return verdict(grpc.status.RESOURCE_EXHAUSTED, `quota ${exhausted} exhausted`, true);
          }
        }
        const p = remote(bag, quotas);
        for (const n of names) fetching.set(n, p);
        try {
          return await p;
        } finally {
          for (const n of names) if (fetching.get(n) === p) fetching.delete(n);
        }
      }
      return await remote(bag, quotas);
    },
    report: (bag) => batcher.add(bag),
    flush: () => batcher.flush(),
    stats() {
      const b = batcher.stats();
      return { ...counters, reportsSent: b.sent, reportsDropped: b.dropped };
    },
    async close() {
      await batcher.flush();
      channel.close();
    },
  };
}
