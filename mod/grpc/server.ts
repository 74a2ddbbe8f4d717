/**
 * The shared gRPC server: one Connect router over node:http2 that every module registers its
 * services into, served in plaintext (`listen`) and, once a module has a certificate for it,
 * over TLS (`listenTls`), with graceful shutdown of both. Each listener sits behind a connection
 * guard (caps, handshake and idle timeouts) with HTTP/2 stream and keepalive limits.
 */
import type {
  DescMessage,
  DescMethod,
  DescMethodUnary,
  DescService,
  MessageInitShape,
} from "@bufbuild/protobuf";
import {
  type ConnectRouter,
  createContextKey,
  createContextValues,
  type ServiceImpl,
} from "@connectrpc/connect";
import http2 from "node:http2";
import type { AddressInfo } from "node:net";
import { splitHostPort } from "../cli/setting.ts";
import { linkKey } from "../runtime/links.ts";
import {
  type ConnectionGuard,
  type ConnectionLimits,
  createConnectionGuard,
  DEFAULT_CONNECTION_LIMITS,
} from "../shared/conn_guard.ts";
import type { MetricsRegistry } from "../shared/metrics.ts";
import { type ConnectHandler, createConnectHandler } from "./connect_handler.ts";
import { applyHttp2Limits, type Http2Limits, http2Settings } from "./h2_limits.ts";
import {
  type GrpcStream,
  type GrpcStreamHandler,
  methodPath,
  type PeerCertificate,
  peerCertificateOf,
  serveGrpcStreams,
  unaryHandler,
} from "./raw.ts";
import type { Logger } from "../shared/logger.ts";

export type { PeerCertificate };

/** Handlers read the caller's certificate with `ctx.values.get(PEER_CERTIFICATE)`. */
export const PEER_CERTIFICATE = createContextKey<PeerCertificate | undefined>(undefined, {
  description: "client certificate of the TLS connection",
});

/** Certificate material for the TLS listener, PEM. */
export interface TlsMaterial {
  /** Server certificate chain. */
  readonly cert: string;
  readonly key: string;
  /** CA certificates trusted for client certificates. */
  readonly ca: string;
}

/** How a service is served. */
export interface ServiceOptions<S extends DescService> {
  /**
   * Unary methods served straight on HTTP/2 (mod/grpc/raw.ts) rather than through Connect: for
   * hot paths whose handlers read nothing but the request (they get no context).
   */
  readonly direct?: ReadonlyArray<keyof S["method"] & string>;
}

/** Every limit of a gRPC listener. */
export interface GrpcListenerLimits extends ConnectionLimits, Http2Limits {
  /** Response bytes a connection's clients may leave unread before the sending call is reset. */
  readonly maxUnreadOutputPerConnection: number;
}

/** Limits of a listener when none are given: generous, for tests and embedded servers. */
export const DEFAULT_GRPC_LIMITS: GrpcListenerLimits = {
  ...DEFAULT_CONNECTION_LIMITS,
  maxConcurrentStreams: 1000,
  maxUnreadOutputPerConnection: 64 * 1024 * 1024,
  // 15 s as Istio's control plane enforces: xDS clients keep one quiet stream open for hours and
  // some ping it every 30 s.
  keepaliveMinTimeMs: 15_000,
  keepalivePermitWithoutCalls: false,
  keepaliveTimeMs: 2 * 60 * 60_000,
  keepaliveTimeoutMs: 20_000,
};

/** Options for createGrpcServer. */
export interface GrpcServerOptions {
  logger: Logger;
  /** Largest accepted request message; larger ones get RESOURCE_EXHAUSTED. */
  readMaxBytes?: number;
  /** Connection, stream and keepalive limits of every listener. */
  limits?: GrpcListenerLimits;
  /** Where limit hits and open connections are counted. */
  metrics?: MetricsRegistry;
}

/** A gRPC server under construction, then running. */
export interface GrpcServer {
  /** Adds a service. Only before the first listen. */
  service<S extends DescService>(service: S, impl: Partial<ServiceImpl<S>>, opts?: ServiceOptions<S>): void;
  /**
   * Serves one method, by path ("/package.Service/Method"), straight on HTTP/2 streams (see
   * raw.ts). Only before the first listen.
   */
  stream(path: string, handler: GrpcStreamHandler): void;
  /** Binds the plaintext listener. Resolves with the bound address (useful with port 0). */
  listen(addr: string): Promise<{ host: string; port: number }>;
  /**
   * Binds a TLS listener serving the same services. Client certificates are requested but not
   * required (callers may authenticate by token instead); handlers see them as PEER_CERTIFICATE.
   */
  listenTls(addr: string, tls: TlsMaterial): Promise<{ host: string; port: number }>;
  /** Replaces the TLS listener's certificate and trust (rotation); new connections use it. */
  updateTls(tls: TlsMaterial): void;
  /** Paths ("/package.Service/Method") of every method served, once listening. */
  methods(): string[];
  /**
   * Stops accepting connections, aborts every handler's signal (so streams end), sends GOAWAY
   * and waits for streams to finish; whatever is left when `graceMs` passes is destroyed.
   */
  shutdown(graceMs: number): Promise<void>;
}

/** Creates the shared gRPC server. */
export function createGrpcServer(opts: GrpcServerOptions): GrpcServer {
  const registrations: Array<(router: ConnectRouter) => void> = [];
  const shutdownController = new AbortController();
  const sessions = new Set<http2.ServerHttp2Session>();
  const servers: Array<http2.Http2Server | http2.Http2SecureServer> = [];
  let tlsServer: http2.Http2SecureServer | undefined;
  let handler: ConnectHandler | undefined;
  const streamRoutes = new Map<string, GrpcStreamHandler>();
  const calls = new Set<GrpcStream>();
  const guards: ConnectionGuard[] = [];
  const readMaxBytes = opts.readMaxBytes ?? 4 * 1024 * 1024;
  const limits = opts.limits ?? DEFAULT_GRPC_LIMITS;
  const log = opts.logger;

  function getHandler() {
    handler ??= createConnectHandler({
      routes: (router) => registrations.forEach((r) => r(router)),
      grpc: true,
      grpcWeb: false,
      connect: false,
      readMaxBytes,
      shutdownSignal: shutdownController.signal,
      contextValues(req) {
        const values = createContextValues();
        const peer = peerCertificateOf(req.socket);
        if (peer) values.set(PEER_CERTIFICATE, peer);
        return values;
      },
    }, log);
    return handler.handle;
  }

  function serve(srv: http2.Http2Server | http2.Http2SecureServer, addr: string, secure: boolean) {
    const hp = splitHostPort(addr);
    if (hp === undefined) return Promise.reject(new Error(`bad gRPC address ${addr}`));
    const guard = createConnectionGuard(secure ? "grpc-tls" : "grpc", {
      limits,
      logger: log,
      metrics: opts.metrics,
    });
    servers.push(srv);
    guards.push(guard);
    applyHttp2Limits(srv, guard, { limits });
    serveGrpcStreams(srv, streamRoutes, {
      readMaxBytes,
      calls,
      maxQueuedBytesPerConnection: limits.maxUnreadOutputPerConnection,
      onUnreadLimit(session, queued) {
        const conn = guard.of(session?.socket);
        guard.hit("unread_output", conn?.source ?? "unknown", {
          unreadBytes: queued,
          limit: limits.maxUnreadOutputPerConnection,
        });
      },
    });
    srv.on("session", (s: http2.ServerHttp2Session) => {
      sessions.add(s);
      s.on("close", () => sessions.delete(s));
      s.on("error", (err) => log.debug("gRPC session error", { err }));
    });
    srv.on("sessionError", (err) => log.warn("gRPC session error", { err }));
    if (secure) srv.on("tlsClientError", (err) => log.debug("TLS handshake failed", { err: err.message }));
    srv.on("error", (err) => log.error("gRPC server error", { err }));
    return guard.listen(hp, (socket) => srv.emit("connection", socket)).then((a) => {
      const info = a as AddressInfo;
      return { host: info.address, port: info.port };
    });
  }

  return {
    service(service, impl, serviceOpts) {
      if (handler) throw new Error(`gRPC service ${service.typeName} registered after listen`);
      const viaConnect: Record<string, unknown> = { ...impl };
      for (const name of serviceOpts?.direct ?? []) {
        const method = service.method[name] as DescMethod;
        const fn = viaConnect[name] as ((req: unknown, ctx: never) => unknown) | undefined;
        if (method.methodKind !== "unary" || !fn) {
          throw new Error(`gRPC method ${service.typeName}.${name} cannot be served directly`);
        }
        delete viaConnect[name];
        const path = methodPath(method);
        if (streamRoutes.has(path)) throw new Error(`gRPC method ${path} is registered twice`);
        streamRoutes.set(
          path,
          unaryHandler(
            method as DescMethodUnary<DescMessage, DescMessage>,
            (req) => fn.call(impl, req, undefined as never) as MessageInitShape<DescMessage>,
          ),
        );
      }
      registrations.push((router) =>
        router.service(service, viaConnect as Partial<ServiceImpl<typeof service>>)
      );
    },

    stream(path, h) {
      if (handler) throw new Error(`gRPC method ${path} registered after listen`);
      if (streamRoutes.has(path)) throw new Error(`gRPC method ${path} is registered twice`);
      streamRoutes.set(path, h);
    },

    listen(addr) {
      return serve(
        http2.createServer({ unknownProtocolTimeout: 2000, settings: http2Settings(limits) }, getHandler()),
        addr,
        false,
      );
    },

    listenTls(addr, tls) {
      if (tlsServer) return Promise.reject(new Error("the TLS listener is already open"));
      tlsServer = http2.createSecureServer(
        {
          cert: tls.cert,
          key: tls.key,
          ca: tls.ca,
          requestCert: true,
          rejectUnauthorized: false,
          allowHTTP1: false,
          minVersion: "TLSv1.2",
          ALPNProtocols: ["h2"],
          settings: http2Settings(limits),
        },
        getHandler(),
      );
      return serve(tlsServer, addr, true);
    },

    updateTls(tls) {
      tlsServer?.setSecureContext({ cert: tls.cert, key: tls.key, ca: tls.ca });
    },

    methods() {
      return [...new Set([...(handler?.paths ?? []), ...streamRoutes.keys()])].sort();
    },

    async shutdown(graceMs) {
      if (servers.length === 0) return;
      const closed = Promise.all(guards.map((g) => g.close()));
      shutdownController.abort();
      for (const c of calls) c.end(0);
      for (const s of sessions) if (!s.closed) s.close();
      let timer: ReturnType<typeof setTimeout> | undefined;
      const graceOver = new Promise<"timeout">((resolve) => {
        timer = setTimeout(() => resolve("timeout"), graceMs);
      });
      const outcome = await Promise.race([closed.then(() => "closed" as const), graceOver]);
      clearTimeout(timer);
      if (outcome === "timeout") {
        log.warn("gRPC grace period over; closing remaining connections", { connections: sessions.size });
        for (const s of sessions) s.destroy();
        for (const g of guards) g.destroyAll();
        await closed;
      }
    },
  };
}

/** The daemon's shared gRPC server, offered to modules that open the TLS listener. */
export const GRPC_SERVER = linkKey<GrpcServer>("grpc.server");
