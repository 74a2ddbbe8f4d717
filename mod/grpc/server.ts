/**
 * The shared gRPC server: one Connect router over node:http2 that every module registers its
 * services into, served in plaintext (`listen`) and, once a module has a certificate for it,
 * over TLS (`listenTls`), with graceful shutdown of both.
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
import { connectNodeAdapter } from "@connectrpc/connect-node";
import http2 from "node:http2";
import type { AddressInfo } from "node:net";
import { splitHostPort } from "../cli/setting.ts";
import { linkKey } from "../runtime/links.ts";
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

/** Options for createGrpcServer. */
export interface GrpcServerOptions {
  logger: Logger;
  /** Largest accepted request message; larger ones get RESOURCE_EXHAUSTED. */
  readMaxBytes?: number;
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
  let handler: ReturnType<typeof connectNodeAdapter> | undefined;
  const streamRoutes = new Map<string, GrpcStreamHandler>();
  const calls = new Set<GrpcStream>();
  const readMaxBytes = opts.readMaxBytes ?? 4 * 1024 * 1024;
  const log = opts.logger;

  function getHandler() {
    handler ??= connectNodeAdapter({
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
    });
    return handler;
  }

  function serve(srv: http2.Http2Server | http2.Http2SecureServer, addr: string, secure: boolean) {
    const hp = splitHostPort(addr);
    if (hp === undefined) return Promise.reject(new Error(`bad gRPC address ${addr}`));
    servers.push(srv);
    serveGrpcStreams(srv, streamRoutes, { readMaxBytes, calls });
    srv.on("session", (s: http2.ServerHttp2Session) => {
      sessions.add(s);
      s.on("close", () => sessions.delete(s));
      s.on("error", (err) => log.debug("gRPC session error", { err }));
    });
    srv.on("sessionError", (err) => log.warn("gRPC session error", { err }));
    if (secure) srv.on("tlsClientError", (err) => log.debug("TLS handshake failed", { err: err.message }));
    return new Promise<{ host: string; port: number }>((resolve, reject) => {
      srv.once("error", reject);
      srv.listen(hp.port, hp.host || undefined, () => {
        srv.off("error", reject);
        srv.on("error", (err) => log.error("gRPC server error", { err }));
        const a = srv.address() as AddressInfo;
        resolve({ host: a.address, port: a.port });
      });
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
      return serve(http2.createServer({ unknownProtocolTimeout: 2000 }, getHandler()), addr, false);
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
        },
        getHandler(),
      );
      return serve(tlsServer, addr, true);
    },

    updateTls(tls) {
      tlsServer?.setSecureContext({ cert: tls.cert, key: tls.key, ca: tls.ca });
    },

    async shutdown(graceMs) {
      if (servers.length === 0) return;
      const closed = Promise.all(
        servers.map((srv) => new Promise<void>((resolve) => srv.close(() => resolve()))),
      );
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
        await closed;
      }
    },
  };
}

/** The daemon's shared gRPC server, offered to modules that open the TLS listener. */
export const GRPC_SERVER = linkKey<GrpcServer>("grpc.server");
