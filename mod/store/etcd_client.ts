/**
 * A client of etcd's v3 API over gRPC (Connect on `node:http2`, types generated from etcd's own
 * protos by scripts/gen_proto.ts): reads, transactions and watches, with failover across the
 * cluster's endpoints, username/password authentication and TLS.
 *
 * Failover: calls go to one endpoint at a time. A call that fails because the endpoint cannot be
 * reached or has lost its cluster's leader moves on to the next endpoint; every request carries
 * etcd's `hasleader` metadata, so a member cut off from the majority refuses at once instead of
 * waiting. Reads are retried on every endpoint; a write is retried only when the error proves it
 * was not applied (connection refused, no leader), so a transaction is never applied twice. When
 * every endpoint failed, the call rejects with a {@link StoreUnavailableError} that names each
 * endpoint and why.
 *
 * A TLS handshake that fails because the member's certificate is not trusted, or because the
 * member refused the client certificate (or its absence), fails the call at once with a reason
 * that says which. With authentication, a token etcd no longer knows (expired after etcd's
 * `--auth-token-ttl`, or dropped when auth was disabled) is replaced by authenticating once more,
 * and the call is retried.
 *
 * @module
 */
import { create } from "@bufbuild/protobuf";
import { Code, ConnectError, createClient, type Interceptor } from "@connectrpc/connect";
import { createGrpcTransport, Http2SessionManager } from "@connectrpc/connect-node";
import {
  Auth,
  Compare_CompareResult,
  Compare_CompareTarget,
  KV,
  Lease,
  type RequestOpSchema,
  Watch,
  type WatchRequest,
  WatchRequestSchema,
} from "#gen/etcd/api/etcdserverpb/rpc_pb.ts";
import { Event_EventType, type KeyValue as PbKeyValue } from "#gen/etcd/api/mvccpb/kv_pb.ts";
import type { MessageInitShape } from "@bufbuild/protobuf";
import { type Clock, systemClock } from "../shared/clock.ts";
import type { Logger } from "../shared/logger.ts";
import { EtcdCompactedError, StoreUnavailableError } from "./errors.ts";
import { type Channel, createChannel } from "../shared/channel.ts";

/** PEM material for TLS to etcd. */
export interface EtcdTls {
  /** CA certificates that sign the members' serving certificates (default: the system's). */
  readonly ca?: string;
  /** Client certificate and key, for members that require client certificates. */
  readonly cert?: string;
  readonly key?: string;
}

/** etcd username and password authentication. */
export interface EtcdAuth {
  readonly user: string;
  readonly password: string;
}

/** Options for createEtcdClient. */
export interface EtcdClientOptions {
  /** "host:port" of each member's client API. */
  readonly endpoints: readonly string[];
  readonly tls?: EtcdTls;
  readonly auth?: EtcdAuth;
  /** Deadline of each request (default 5 s). */
  readonly timeoutMs?: number;
  readonly logger: Logger;
  readonly clock?: Clock;
  /** Called after each request (`op`: list, get, transaction, lease grant...) with its duration. */
  readonly onRequest?: (op: string, seconds: number, ok: boolean) => void;
}

/** One key as etcd holds it. Revisions are etcd's int64 revisions, as numbers. */
export interface KeyValue {
  readonly key: string;
  readonly value: Uint8Array;
  readonly createRevision: number;
  readonly modRevision: number;
  readonly version: number;
}

/** One change a watch reports. */
export interface WatchEvent {
  readonly type: "put" | "delete";
  /** For a delete: the key with an empty value, at the revision of the delete. */
  readonly kv: KeyValue;
}

/** A batch of changes at one revision, or a progress report with no events. */
export interface WatchBatch {
  /** The store's revision when the batch was sent. */
  readonly revision: number;
  readonly events: readonly WatchEvent[];
}

/** A condition of a transaction: the key's modification revision equals this one (0: absent). */
export interface TxnCompare {
  readonly key: string;
  readonly modRevision: number;
}

/** A write in a transaction; a put with `lease` is deleted when the lease expires. */
export type TxnOp =
  | { readonly put: string; readonly value: Uint8Array; readonly lease?: bigint }
  | { readonly delete: string };

/** What a transaction did. */
export interface TxnResult {
  /** True when every comparison held and the writes were applied. */
  readonly succeeded: boolean;
  readonly revision: number;
  /** When it did not succeed: the compared keys as they are now (absent keys left out). */
  readonly current: readonly KeyValue[];
}

/** A list of keys at one revision. */
export interface ListResult {
  readonly kvs: readonly KeyValue[];
  readonly revision: number;
}

/** How one endpoint has been doing, for /debug/storez. */
export interface EndpointStatus {
  readonly endpoint: string;
  /** The endpoint calls go to now. */
  readonly current: boolean;
  readonly lastOkAt?: string;
  readonly lastError?: string;
  readonly lastErrorAt?: string;
}

/** The client's view of the cluster, for /debug/storez. */
export interface EtcdClientStatus {
  /** False after a call found no endpoint that answered, until one answers again. */
  readonly available: boolean;
  /** Why the store is unavailable, when it is. */
  readonly reason?: string;
  readonly since: string;
  readonly endpoints: readonly EndpointStatus[];
}

/** A client of one etcd cluster. Calls may run concurrently. */
export interface EtcdClient {
  readonly endpoints: readonly string[];
  /** Every key under `prefix` at one revision (the latest unless given), paged, sorted by key. */
  list(
    prefix: string,
    opts?: { revision?: number; pageSize?: number; signal?: AbortSignal },
  ): Promise<ListResult>;
  /** One key, or undefined when absent. */
  get(key: string): Promise<KeyValue | undefined>;
  /** Applies `ops` atomically if every comparison holds. */
  txn(compares: readonly TxnCompare[], ops: readonly TxnOp[]): Promise<TxnResult>;
  /**
   * Grants a lease of `ttlSeconds` (not kept alive: keys put with it go when it expires); its ID
   * (an int64 that often exceeds a double's exact range, hence a bigint).
   */
  grantLease(ttlSeconds: number): Promise<bigint>;
  /** Renews a lease once; resolves with its new TTL in seconds, 0 when etcd no longer has it. */
  keepLeaseAlive(id: bigint): Promise<number>;
  /** Revokes a lease (its keys go at once); a lease etcd no longer has is not an error. */
  revokeLease(id: bigint): Promise<void>;
  /** The store's current revision. */
  revision(): Promise<number>;
  /**
   * Drops the history before `revision` (keys' current values stay). Resolves false when etcd
   * had already compacted at or past it.
   */
  compact(revision: number): Promise<boolean>;
  /**
   * Watches every key under `prefix` from `fromRevision`, with progress reports while nothing
   * changes. The iteration ends with an {@link EtcdCompactedError} when `fromRevision` is older
   * than the store keeps, and with another error when the stream fails; it ends quietly when
   * `signal` aborts.
   */
  watch(prefix: string, fromRevision: number, signal: AbortSignal): AsyncIterable<WatchBatch>;
  status(): EtcdClientStatus;
  /** Closes the connections; later calls reject. */
  close(): void;
}

const encoder = new TextEncoder();
const decoder = new TextDecoder();

/** The end of the key range of every key that starts with `prefix` (etcd's prefix range end). */
function prefixEnd(prefix: string): Uint8Array {
  const end = encoder.encode(prefix);
  for (let i = end.length - 1; i >= 0; i--) {
    if (end[i]! < 0xff) {
      end[i]!++;
      return end.slice(0, i + 1);
    }
  }
  return new Uint8Array([0]);
}

function toKv(kv: PbKeyValue): KeyValue {
  return {
    key: decoder.decode(kv.key),
    value: kv.value,
    createRevision: Number(kv.createRevision),
    modRevision: Number(kv.modRevision),
    version: Number(kv.version),
  };
}

/** Certificate checks of the member's serving certificate that failed on this side. */
const UNTRUSTED_SERVER =
  /unable to verify|self[- ]signed|UNABLE_TO_(VERIFY|GET_ISSUER)|CERT_HAS_EXPIRED|CERT_NOT_YET_VALID|ALTNAME|certificate has expired|does not match certificate's altnames/i;
/** TLS alerts a member sends when it refuses the client's certificate (or its absence). */
const REFUSED_CLIENT =
  /ALERT_(BAD_CERTIFICATE|CERTIFICATE_REQUIRED|UNKNOWN_CA|CERTIFICATE_UNKNOWN|HANDSHAKE_FAILURE)/i;

/**
 * What a TLS handshake failure means, in words that say which side refused and why, or undefined
 * when `msg` is not one.
 */
function tlsFailure(msg: string, tls: EtcdTls | undefined): string | undefined {
  if (tls === undefined) return undefined;
  if (UNTRUSTED_SERVER.test(msg)) {
    return `TLS: the member's serving certificate is not trusted (${msg}); ` +
      (tls.ca === undefined
        ? "no CA was given, the system's CAs were used"
        : "it is not signed by the CA given");
  }
  if (REFUSED_CLIENT.test(msg)) {
    return `TLS: the member refused the connection (${msg}); ` +
      (tls.cert === undefined
        ? "no client certificate was given and the member requires one"
        : "it does not accept the client certificate given");
  }
  return undefined;
}

/** Why an attempt failed, in a few words, and whether the next endpoint may be tried. */
function classify(
  err: unknown,
  idempotent: boolean,
  tls?: EtcdTls,
): { retry: boolean; reason: string; unavailable: boolean } {
  const ce = ConnectError.from(err);
  const msg = ce.rawMessage;
  const tlsReason = tlsFailure(msg, tls);
  if (tlsReason !== undefined) return { retry: false, reason: tlsReason, unavailable: false };
  const noLeader = /no leader/i.test(msg);
  const refused = /ECONNREFUSED|connection refused|EHOSTUNREACH|ENETUNREACH|ENOTFOUND|EAI_AGAIN/i.test(msg);
  if (noLeader) return { retry: true, reason: "member has no leader (lost its quorum)", unavailable: true };
  if (refused) return { retry: true, reason: `cannot connect (${msg})`, unavailable: true };
  if (ce.code === Code.Unavailable || ce.code === Code.DeadlineExceeded || ce.code === Code.Aborted) {
    const reason = ce.code === Code.DeadlineExceeded ? "no answer before the deadline" : msg;
    return { retry: idempotent, reason, unavailable: true };
  }
  return { retry: false, reason: msg, unavailable: false };
}

/** Creates a client. Connects lazily; never throws for an unreachable cluster. */
export function createEtcdClient(opts: EtcdClientOptions): EtcdClient {
  if (opts.endpoints.length === 0) throw new Error("etcd: no endpoints");
  const clock = opts.clock ?? systemClock;
  const timeoutMs = opts.timeoutMs ?? 5_000;
  const log = opts.logger;
  const scheme = opts.tls ? "https" : "http";
  let token: string | undefined;
  let authenticating: Promise<string> | undefined;
  let closed = false;
  let current = 0;
  let available = true;
  let reason: string | undefined;
  let since = clock.now();
  const health = opts.endpoints.map(() => ({} as { okAt?: number; error?: string; errorAt?: number }));

  const headers: Interceptor = (next) => (req) => {
    req.header.set("hasleader", "true");
    if (token !== undefined) req.header.set("token", token);
    return next(req);
  };
  const conns = opts.endpoints.map((ep) => {
    const baseUrl = `${scheme}://${ep}`;
    // PINGs on open streams notice a member that stopped answering without closing its socket.
    const sessionManager = new Http2SessionManager(
      baseUrl,
      { pingIntervalMs: 10_000, pingTimeoutMs: 5_000 },
      opts.tls ? { ca: opts.tls.ca, cert: opts.tls.cert, key: opts.tls.key } : {},
    );
    const transport = createGrpcTransport({ baseUrl, interceptors: [headers], sessionManager });
    return {
      sessionManager,
      kv: createClient(KV, transport),
      watch: createClient(Watch, transport),
      auth: createClient(Auth, transport),
      lease: createClient(Lease, transport),
    };
  });

  function setAvailable(ok: boolean, why?: string): void {
    if (ok === available && why === reason) return;
    if (ok !== available) {
      since = clock.now();
      if (ok) log.info("etcd is available again", { endpoint: opts.endpoints[current] });
      else log.warn("etcd is unavailable", { reason: why });
    }
    available = ok;
    reason = ok ? undefined : why;
  }

  async function authenticate(i: number): Promise<string> {
    const a = opts.auth!;
    const res = await conns[i]!.auth.authenticate({ name: a.user, password: a.password }, { timeoutMs });
    return res.token;
  }

  /** Runs `op` on the current endpoint, moving on to the others as `classify` allows. */
  async function call<T>(
    what: string,
    idempotent: boolean,
    op: (c: (typeof conns)[number], i: number) => Promise<T>,
  ): Promise<T> {
    if (closed) throw new Error("etcd client is closed");
    const started = clock.now();
    try {
      const result = await attempt(what, idempotent, op);
      opts.onRequest?.(what, (clock.now() - started) / 1000, true);
      return result;
    } catch (err) {
      opts.onRequest?.(what, (clock.now() - started) / 1000, false);
      throw err;
    }
  }

  /** One call: the current endpoint, then the others as `classify` allows. */
  async function attempt<T>(
    what: string,
    idempotent: boolean,
    op: (c: (typeof conns)[number], i: number) => Promise<T>,
  ): Promise<T> {
    const failures: string[] = [];
    const start = current;
    for (let n = 0; n < conns.length; n++) {
      const i = (start + n) % conns.length;
      try {
        if (opts.auth && token === undefined) {
          authenticating ??= authenticate(i).finally(() => (authenticating = undefined));
          token = await authenticating;
        }
        let result: T;
        try {
          result = await op(conns[i]!, i);
        } catch (err) {
          const refused = ConnectError.from(err);
          if (!opts.auth || refused.code !== Code.Unauthenticated) throw err;
          // etcd dropped the token (it expired, or auth was disabled and enabled): authenticate once more.
          log.info("etcd refused the auth token; authenticating again", {
            endpoint: opts.endpoints[i],
            reason: refused.rawMessage,
          });
          token = undefined;
          token = await authenticate(i);
          result = await op(conns[i]!, i);
        }
        current = i;
        health[i]!.okAt = clock.now();
        setAvailable(true);
        return result;
      } catch (err) {
        const c = classify(err, idempotent, opts.tls);
        health[i]!.error = c.reason;
        health[i]!.errorAt = clock.now();
        failures.push(`${opts.endpoints[i]}: ${c.reason}`);
        if (!c.unavailable) throw new Error(`etcd ${what} at ${opts.endpoints[i]}: ${c.reason}`);
        if (!c.retry) {
          setAvailable(false, failures.join("; "));
          throw new StoreUnavailableError(
            `etcd ${what} failed and may or may not have been applied: ${failures.join("; ")}`,
          );
        }
        current = (i + 1) % conns.length;
      }
    }
    const why = failures.join("; ");
    setAvailable(false, why);
    throw new StoreUnavailableError(`etcd is unavailable (${what}): ${why}`);
  }

  async function rangePage(
    c: (typeof conns)[number],
    key: Uint8Array,
    end: Uint8Array,
    revision: number,
    limit: number,
    signal?: AbortSignal,
  ) {
    return await c.kv.range(
      { key, rangeEnd: end, revision: BigInt(revision), limit: BigInt(limit) },
      { timeoutMs, signal },
    );
  }

  return {
    endpoints: opts.endpoints,
    list(prefix, o = {}) {
      const pageSize = o.pageSize ?? 500;
      return call("list", true, async (c) => {
        const end = prefixEnd(prefix);
        let from = encoder.encode(prefix);
        let revision = o.revision ?? 0;
        const kvs: KeyValue[] = [];
        for (;;) {
          const res = await rangePage(c, from, end, revision, pageSize, o.signal);
          if (revision === 0) revision = Number(res.header?.revision ?? 0n);
          for (const kv of res.kvs) kvs.push(toKv(kv));
          if (!res.more || res.kvs.length === 0) break;
          const last = res.kvs[res.kvs.length - 1]!.key;
          from = new Uint8Array(last.length + 1);
          from.set(last);
        }
        return { kvs, revision };
      });
    },
    get(key) {
      return call("get", true, async (c) => {
        const res = await c.kv.range({ key: encoder.encode(key) }, { timeoutMs });
        return res.kvs[0] ? toKv(res.kvs[0]) : undefined;
      });
    },
    txn(compares, ops) {
      const compare = compares.map((cmp) => ({
        result: Compare_CompareResult.Equal,
        target: Compare_CompareTarget.Mod,
        key: encoder.encode(cmp.key),
        targetUnion: { case: "modRevision" as const, value: BigInt(cmp.modRevision) },
      }));
      const success: MessageInitShape<typeof RequestOpSchema>[] = ops.map((op) =>
        "put" in op
          ? {
            request: {
              case: "requestPut",
              value: { key: encoder.encode(op.put), value: op.value, lease: op.lease ?? 0n },
            },
          }
          : { request: { case: "requestDeleteRange", value: { key: encoder.encode(op.delete) } } }
      );
      const failure: MessageInitShape<typeof RequestOpSchema>[] = compares.map((cmp) => ({
        request: { case: "requestRange", value: { key: encoder.encode(cmp.key) } },
      }));
      return call("transaction", false, async (c) => {
        const res = await c.kv.txn({ compare, success, failure }, { timeoutMs });
        const current: KeyValue[] = [];
        if (!res.succeeded) {
          for (const r of res.responses) {
            if (r.response.case === "responseRange") current.push(...r.response.value.kvs.map(toKv));
          }
        }
        return { succeeded: res.succeeded, revision: Number(res.header?.revision ?? 0n), current };
      });
    },
    grantLease(ttlSeconds) {
      // Granting is not idempotent (each grant is a new lease), but an unused lease only expires.
      return call("lease grant", true, async (c) => {
        const res = await c.lease.leaseGrant({ TTL: BigInt(Math.ceil(ttlSeconds)) }, { timeoutMs });
        if (res.error) throw new Error(res.error);
        return res.ID;
      });
    },
    keepLeaseAlive(id) {
      return call("lease keepalive", true, async (c) => {
        // One renewal per stream: the member answers the request, then ends at the half-close.
        const one = (async function* () {
          yield { ID: id };
        })();
        for await (const res of c.lease.leaseKeepAlive(one, { timeoutMs })) return Number(res.TTL);
        throw new Error("the member ended the keep-alive stream without an answer");
      });
    },
    revokeLease(id) {
      return call("lease revoke", true, async (c) => {
        try {
          await c.lease.leaseRevoke({ ID: id }, { timeoutMs });
        } catch (err) {
          if (!/not found/i.test(ConnectError.from(err).rawMessage)) throw err;
        }
      });
    },
    revision() {
      return call("revision", true, async (c) => {
        const res = await c.kv.range({ key: encoder.encode("\0"), countOnly: true }, { timeoutMs });
        return Number(res.header?.revision ?? 0n);
      });
    },
    compact(revision) {
      return call("compact", true, async (c) => {
        try {
          await c.kv.compact({ revision: BigInt(revision) }, { timeoutMs });
          return true;
        } catch (err) {
          if (/has been compacted/.test(ConnectError.from(err).rawMessage)) return false;
          throw err;
        }
      });
    },
    watch(prefix, fromRevision, signal) {
      return watchPrefix(prefix, fromRevision, signal);
    },
    status() {
      const iso = (t: number | undefined) => (t === undefined ? undefined : new Date(t).toISOString());
      return {
        available,
        ...(reason === undefined ? {} : { reason }),
        since: new Date(since).toISOString(),
        endpoints: opts.endpoints.map((endpoint, i) => {
          const h = health[i]!;
          return {
            endpoint,
            current: i === current,
            ...(h.okAt === undefined ? {} : { lastOkAt: iso(h.okAt) }),
            ...(h.error === undefined ? {} : { lastError: h.error, lastErrorAt: iso(h.errorAt) }),
          };
        }),
      };
    },
    close() {
      closed = true;
      for (const c of conns) c.sessionManager.abort();
    },
  };

  async function* watchPrefix(prefix: string, fromRevision: number, signal: AbortSignal) {
    const create_ = create(WatchRequestSchema, {
      requestUnion: {
        case: "createRequest",
        value: {
          key: encoder.encode(prefix),
          rangeEnd: prefixEnd(prefix),
          startRevision: BigInt(fromRevision),
          progressNotify: true,
        },
      },
    });
    const local = new AbortController();
    const abort = () => local.abort();
    signal.addEventListener("abort", abort, { once: true });
    let requests: Channel<WatchRequest> | undefined;
    let index = current;
    try {
      // Opening the stream is a call like any other: it fails over and authenticates. It waits
      // for the first response, which says whether the watch was created.
      const stream = await call("watch", true, async (c, i) => {
        index = i;
        requests?.close();
        requests = createChannel<WatchRequest>();
        requests.push(create_);
        const it = c.watch.watch(requests, { signal: local.signal })[Symbol.asyncIterator]();
        return { it, first: await it.next() };
      });
      let next = stream.first;
      for (;;) {
        if (next.done) throw new Error("the member ended the watch");
        const res = next.value;
        if (res.compactRevision > 0n) throw new EtcdCompactedError(Number(res.compactRevision));
        if (res.canceled) {
          throw new Error(`the member cancelled the watch: ${res.cancelReason || "no reason"}`);
        }
        health[index]!.okAt = clock.now();
        if (!res.created || res.events.length > 0) {
          yield {
            revision: Number(res.header?.revision ?? 0n),
            events: res.events.map((e) => ({
              type: e.type === Event_EventType.Delete ? "delete" as const : "put" as const,
              kv: toKv(e.kv!),
            })),
          };
        }
        next = await stream.it.next();
      }
    } catch (err) {
      if (signal.aborted) return;
      if (err instanceof EtcdCompactedError || err instanceof StoreUnavailableError) throw err;
      const c = classify(err, true, opts.tls);
      health[index]!.error = c.reason;
      health[index]!.errorAt = clock.now();
      current = (index + 1) % conns.length;
      throw new Error(`etcd watch at ${opts.endpoints[index]}: ${c.reason}`);
    } finally {
      signal.removeEventListener("abort", abort);
      local.abort();
      requests?.close();
    }
  }
}
