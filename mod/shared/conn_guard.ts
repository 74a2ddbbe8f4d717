/**
 * The connection guard every listener sits behind: a plain TCP (or Unix socket) server that
 * admits connections under a total and a per-source cap before any TLS or HTTP work is done,
 * closes connections whose protocol handshake does not complete in time or that stay idle, and
 * counts and logs (once per source a minute) every limit a peer hits. Admitted sockets are
 * handed to the protocol server (`server.emit("connection", socket)`).
 *
 * Protocol layers report on the connections they serve through {@link GuardedConnection}: when
 * the handshake completed (TLS and the HTTP/2 preface, or the first HTTP/1 request) and when a
 * stream or request starts and ends, which is what "idle" means.
 */
import { readFileSync } from "node:fs";
import { type AddressInfo, createServer, type Server, type Socket } from "node:net";
import { Counter, Gauge } from "prom-client";
import type { Logger } from "./logger.ts";
import type { MetricsRegistry } from "./metrics.ts";
import { createRateLimiter } from "./rate_limit.ts";

/** Connection limits of one listener. */
export interface ConnectionLimits {
  /** Most connections open at once on the listener; more are closed as they arrive. */
  readonly maxConnections: number;
  /** Most connections open at once from one source address. */
  readonly maxConnectionsPerSource: number;
  /** Time a connection has to complete its protocol handshake; 0 disables. */
  readonly handshakeTimeoutMs: number;
  /** Time a connection may stay without streams or requests before it is closed; 0 disables. */
  readonly idleTimeoutMs: number;
}

/** Limits of a listener when none are given. */
export const DEFAULT_CONNECTION_LIMITS: ConnectionLimits = {
  maxConnections: 4096,
  maxConnectionsPerSource: 1024,
  handshakeTimeoutMs: 10_000,
  idleTimeoutMs: 5 * 60_000,
};

/** Why a connection, stream or ping was refused or closed. */
export type LimitReason =
  | "connections"
  | "connections_per_source"
  | "handshake_timeout"
  | "idle_timeout"
  | "streams"
  | "unread_output"
  | "too_many_pings"
  | "keepalive_timeout";

/** Reasons that are normal housekeeping rather than a peer misbehaving: counted, logged at debug. */
const QUIET: ReadonlySet<LimitReason> = new Set(["idle_timeout"]);

/** One admitted connection, as the protocol layer reports on it. */
export interface GuardedConnection {
  /** The peer's address ("local" for Unix sockets). */
  readonly source: string;
  /** The protocol handshake completed; the handshake timeout no longer applies. */
  established(): void;
  /** A stream or request started (+1) or ended (-1). A connection with none is idle. */
  busy(delta: 1 | -1): void;
  /**
   * How the connection is closed when idle (an HTTP/2 GOAWAY, say); by default the socket is
   * destroyed.
   */
  onIdle(close: () => void): void;
}

/** Where a guard listens: HOST:PORT parts, or a Unix socket path. */
export type ListenTarget = { readonly host: string; readonly port: number } | { readonly path: string };

/** A listener's guard. */
export interface ConnectionGuard {
  /** The listener's name in logs and metrics ("grpc", "admin", ...). */
  readonly name: string;
  /**
   * Listens on `target` and hands each admitted socket to `accept`. Resolves with the bound
   * address (a path for Unix sockets); rejects when it cannot listen.
   */
  listen(target: ListenTarget, accept: (socket: Socket) => void): Promise<AddressInfo | string>;
  /** The guard's record of a socket: the raw one, a TLS socket over it, or a session's view of it. */
  of(socket: unknown): GuardedConnection | undefined;
  /** Counts a limit hit and logs it, at most once a minute per source and reason. */
  hit(reason: LimitReason, source: string, fields?: Record<string, unknown>): void;
  /** Connections open now. */
  open(): number;
  /**
   * Stops accepting. Resolves once every admitted connection has closed (closing them is the
   * protocol layer's job, so it can say goodbye first).
   */
  close(): Promise<void>;
  /** Destroys every admitted connection at once. */
  destroyAll(): void;
}

/** Options for createConnectionGuard. */
export interface ConnectionGuardOptions {
  readonly limits: ConnectionLimits;
  readonly logger: Logger;
  readonly metrics?: MetricsRegistry;
  /** Clock for the timeouts and the log rate limit. */
  readonly now?: () => number;
}

interface Conn extends GuardedConnection {
  readonly socket: Socket;
  readonly acceptedAt: number;
  done: boolean;
  active: number;
  idleSince: number;
  closeIdle: () => void;
}

const TAG = Symbol("meshd.connection");

interface GuardMetrics {
  readonly hits: Counter<"listener" | "reason">;
  readonly guards: Set<ConnectionGuard>;
}
const metricsByRegistry = new WeakMap<MetricsRegistry, GuardMetrics>();

/** The registry's guard metrics, created on first use (several guards share them). */
function guardMetrics(registry: MetricsRegistry): GuardMetrics {
  let m = metricsByRegistry.get(registry);
  if (m) return m;
  const guards = new Set<ConnectionGuard>();
  m = {
    guards,
    hits: new Counter({
      name: "meshd_listener_limit_hits_total",
      help: "connections, streams and pings refused or closed by a listener's limits, by reason",
      labelNames: ["listener", "reason"],
      registers: [registry],
    }),
  };
  new Gauge({
    name: "meshd_listener_connections",
    help: "connections open on each listener",
    labelNames: ["listener"],
    registers: [registry],
    collect() {
      this.reset();
      for (const g of guards) this.set({ listener: g.name }, g.open());
    },
  });
  metricsByRegistry.set(registry, m);
  return m;
}

/** The source a socket counts against: its address, without an IPv4-mapped prefix. */
function sourceOf(socket: Socket): string {
  const a = socket.remoteAddress;
  if (!a) return "local";
  return a.startsWith("::ffff:") ? a.slice(7) : a;
}

/** Creates a guard for the listener `name`. */
export function createConnectionGuard(name: string, opts: ConnectionGuardOptions): ConnectionGuard {
  const { limits } = opts;
  const now = opts.now ?? Date.now;
  const log = opts.logger.child({ listener: name });
  const metrics = opts.metrics ? guardMetrics(opts.metrics) : undefined;
  const conns = new Set<Conn>();
  const perSource = new Map<string, number>();
  const logLimit = createRateLimiter({ perMinute: 1, burst: 1, now });
  let server: Server | undefined;
  let sweeper: ReturnType<typeof setInterval> | undefined;
  let closing = false;
  let drained: (() => void) | undefined;

  const guard: ConnectionGuard = {
    name,
    listen(target, accept) {
      server = createServer({ noDelay: true }, (socket) => admit(socket, accept));
      server.on("error", (err) => log.error("listener error", { err: err.message }));
      const srv = server;
      const period = sweepPeriod(limits);
      if (period > 0) {
        sweeper = setInterval(sweep, period);
        sweeper.unref?.();
      }
      return new Promise((resolve, reject) => {
        const fail = (err: Error) => reject(err);
        srv.once("error", fail);
        const done = () => {
          srv.off("error", fail);
          const a = srv.address();
          resolve(typeof a === "string" || a === null ? ("path" in target ? target.path : "") : a);
        };
        if ("path" in target) srv.listen(target.path, done);
        else srv.listen(target.port, target.host || undefined, done);
      });
    },
    of(socket) {
      if (socket === null || typeof socket !== "object") return undefined;
      const s = socket as { [TAG]?: Conn; _parent?: { [TAG]?: Conn } };
      return s[TAG] ?? s._parent?.[TAG];
    },
    hit(reason, source, fields) {
      metrics?.hits.inc({ listener: name, reason });
      if (QUIET.has(reason)) {
        log.debug("connection limit", { reason, source, ...fields });
        return;
      }
      if (!logLimit.take(`${reason}\u0000${source}`)) return;
      log.warn("connection limit reached", { reason, source, ...fields });
    },
    open: () => conns.size,
    close() {
      closing = true;
      if (sweeper) clearInterval(sweeper);
      metrics?.guards.delete(guard);
      const srv = server;
      if (!srv) return Promise.resolve();
      return new Promise<void>((resolve) => {
        let listenerClosed = false;
        const check = () => {
          if (listenerClosed && conns.size === 0) resolve();
        };
        drained = check;
        srv.close(() => {
          listenerClosed = true;
          check();
        });
      });
    },
    destroyAll() {
      for (const c of conns) c.socket.destroy();
    },
  };
  metrics?.guards.add(guard);

  function admit(socket: Socket, accept: (socket: Socket) => void): void {
    socket.on("error", () => {});
    const source = sourceOf(socket);
    if (closing) {
      socket.destroy();
      return;
    }
    if (conns.size >= limits.maxConnections) {
      socket.destroy();
      guard.hit("connections", source, { limit: limits.maxConnections });
      return;
    }
    const fromSource = perSource.get(source) ?? 0;
    if (fromSource >= limits.maxConnectionsPerSource) {
      socket.destroy();
      guard.hit("connections_per_source", source, { limit: limits.maxConnectionsPerSource });
      return;
    }
    perSource.set(source, fromSource + 1);
    const t = now();
    const c: Conn = {
      socket,
      source,
      acceptedAt: t,
      done: false,
      active: 0,
      idleSince: t,
      closeIdle: () => socket.destroy(),
      established() {
        c.done = true;
        c.idleSince = now();
      },
      busy(delta) {
        c.active = Math.max(0, c.active + delta);
        if (c.active === 0) c.idleSince = now();
      },
      onIdle(close) {
        c.closeIdle = close;
      },
    };
    (socket as Socket & { [TAG]?: Conn })[TAG] = c;
    conns.add(c);
    socket.once("close", () => {
      conns.delete(c);
      const n = (perSource.get(source) ?? 1) - 1;
      if (n <= 0) perSource.delete(source);
      else perSource.set(source, n);
      if (closing) drained?.();
    });
    accept(socket);
  }

  function sweep(): void {
    const t = now();
    for (const c of conns) {
      if (!c.done) {
        if (limits.handshakeTimeoutMs > 0 && t - c.acceptedAt >= limits.handshakeTimeoutMs) {
          guard.hit("handshake_timeout", c.source, { timeoutMs: limits.handshakeTimeoutMs });
          c.socket.destroy();
        }
      } else if (c.active === 0 && limits.idleTimeoutMs > 0 && t - c.idleSince >= limits.idleTimeoutMs) {
        guard.hit("idle_timeout", c.source);
        c.idleSince = t;
        try {
          c.closeIdle();
        } catch {
          c.socket.destroy();
        }
      }
    }
  }

  return guard;
}

/** How often timeouts are checked: a quarter of the shortest one, between 100 ms and 5 s. */
function sweepPeriod(limits: ConnectionLimits): number {
  const ts = [limits.handshakeTimeoutMs, limits.idleTimeoutMs].filter((t) => t > 0);
  if (ts.length === 0) return 0;
  return Math.min(5_000, Math.max(100, Math.floor(Math.min(...ts) / 4)));
}

/** The process's soft limit on open files (Linux), or undefined when it cannot be read. */
export function openFileLimit(): number | undefined {
  try {
    const line = readFileSync("/proc/self/limits", "utf8").split("\n").find((l) =>
      l.startsWith("Max open files")
    );
    const soft = line?.slice("Max open files".length).trim().split(/\s+/)[0];
    if (soft === undefined || soft === "unlimited") return undefined;
    const n = Number(soft);
    return Number.isSafeInteger(n) ? n : undefined;
  } catch {
    return undefined;
  }
}
