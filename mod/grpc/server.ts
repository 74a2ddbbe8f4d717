/**
 * The shared gRPC server: one Connect router over node:http2 that every module registers its
 * services into, with graceful shutdown.
 */
import type { DescService } from "@bufbuild/protobuf";
import type { ConnectRouter, ServiceImpl } from "@connectrpc/connect";
import { connectNodeAdapter } from "@connectrpc/connect-node";
import http2 from "node:http2";
import type { AddressInfo } from "node:net";
import { splitHostPort } from "../cli/setting.ts";
import type { Logger } from "../shared/logger.ts";

/** Options for createGrpcServer. */
export interface GrpcServerOptions {
  logger: Logger;
  /** Largest accepted request message; larger ones get RESOURCE_EXHAUSTED. */
  readMaxBytes?: number;
}

/** A gRPC server under construction, then running. */
export interface GrpcServer {
  /** Adds a service. Only before listen(). */
  service<S extends DescService>(service: S, impl: Partial<ServiceImpl<S>>): void;
  /** Binds and serves. Resolves with the bound address (useful with port 0). */
  listen(addr: string): Promise<{ host: string; port: number }>;
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
  let server: http2.Http2Server | undefined;
  const log = opts.logger;

  return {
    service(service, impl) {
      if (server) throw new Error(`gRPC service ${service.typeName} registered after listen`);
      registrations.push((router) => router.service(service, impl));
    },

    listen(addr) {
      const hp = splitHostPort(addr);
      if (hp === undefined) return Promise.reject(new Error(`bad gRPC address ${addr}`));
      const handler = connectNodeAdapter({
        routes: (router) => registrations.forEach((r) => r(router)),
        grpc: true,
        grpcWeb: false,
        connect: false,
        readMaxBytes: opts.readMaxBytes ?? 4 * 1024 * 1024,
        shutdownSignal: shutdownController.signal,
      });
      const srv = http2.createServer({ unknownProtocolTimeout: 2000 }, handler);
      server = srv;
      srv.on("session", (s) => {
        sessions.add(s);
        s.on("close", () => sessions.delete(s));
        s.on("error", (err) => log.debug("gRPC session error", { err }));
      });
      srv.on("sessionError", (err) => log.warn("gRPC session error", { err }));
      return new Promise((resolve, reject) => {
        srv.once("error", reject);
        srv.listen(hp.port, hp.host || undefined, () => {
          srv.off("error", reject);
          srv.on("error", (err) => log.error("gRPC server error", { err }));
          const a = srv.address() as AddressInfo;
          resolve({ host: a.address, port: a.port });
        });
      });
    },

    async shutdown(graceMs) {
      const srv = server;
      if (srv === undefined) return;
      const closed = new Promise<void>((resolve) => srv.close(() => resolve()));
      shutdownController.abort();
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
