/**
 * HBONE: TCP connections carried as HTTP/2 CONNECT streams over mutual TLS between node proxies
 * (port 15008). The client keeps one HTTP/2 connection per peer node proxy and opens one CONNECT
 * stream (`:authority` ENDPOINT_IP:PORT) per TCP connection, after checking that the peer's
 * SPIFFE identity is one the endpoint may present. When the certificate changes, pooled
 * connections stop taking new streams and close once their streams end, so new connections use
 * the new certificate and established ones are never cut. The server requires a client
 * certificate signed by the mesh roots, reads the peer's SPIFFE identity, asks the inbound
 * decision, connects to the local target and relays: 200 on success, 403 when refused, 503 when
 * the target cannot be reached.
 *
 * @module
 */
import type { Socket } from "node:net";
import type { Readable, Writable } from "node:stream";
import {
  connect as tlsConnect,
  createServer as createTlsServer,
  type SecureContextOptions,
  type TLSSocket,
} from "node:tls";
import { errorMessage } from "../../shared/errors.ts";
import type { Logger } from "../../shared/logger.ts";
import { BAGGAGE_HEADER, baggageSource, parseBaggage } from "./baggage.ts";
import { H2Connection, type H2Settings, H2Stream, H2StreamError, TUNNEL_SETTINGS } from "./h2/connection.ts";
import { ErrorCode } from "./h2/frames.ts";
import type { HeaderList } from "./h2/hpack.ts";
import type { InboundDecision, InboundRequest } from "./inbound.ts";
import { relay } from "./relay.ts";
import { dial, hostPort, listen, splitHostPort } from "./sockets.ts";
import type { TcpTelemetry } from "./telemetry.ts";
import {
  type PeerCertificateInfo,
  peerCertificateInfo,
  peerIdentity,
  type TlsMaterial,
} from "./tls_material.ts";

/**
 * The HTTP/2 flow-control window of each tunnelled stream (SETTINGS_INITIAL_WINDOW_SIZE), bytes.
 * HTTP/2's 64 KiB default lets a sender put only that much in flight per round trip, which caps
 * a tunnelled TCP stream well below what the machines can carry. It bounds what one stream
 * buffers on the receiving side when its application reads slowly.
 */
export const HBONE_WINDOW_BYTES = 8 * 1024 * 1024;

/** The HTTP/2 settings of both ends of a tunnel. */
export const HBONE_SETTINGS: H2Settings = { ...TUNNEL_SETTINGS, streamWindow: HBONE_WINDOW_BYTES };

/** The most bytes of a downstream connection sent ahead of its tunnel's answer (and kept for a retry). */
export const EARLY_DATA_LIMIT = 64 * 1024;

/**
 * What a downstream connection sends before its upstream is answered. Through a tunnel the bytes
 * go out at once as DATA after the CONNECT (saving the round trip of waiting for the answer when
 * the client speaks first); they are also kept, EARLY_DATA_LIMIT at most (beyond it the downstream
 * pauses), until the answer, so that a stream that fails before it can be asked again elsewhere
 * with the same bytes. Other transports receive the kept bytes once connected (`commitTo`).
 */
export class EarlyData {
  private kept: Buffer[] = [];
  private keptBytes = 0;
  private target: Writable | undefined;
  /** Whether the downstream ended (FIN) while the bytes were kept. */
  private ended = false;
  /** Bytes taken from the downstream so far. */
  bytes = 0;

  /** `first`: bytes already read from the downstream (the rest of an explicit proxy request). */
  constructor(private readonly source: Readable, first?: Buffer) {
    if (first && first.length > 0) this.keep(first);
  }

  /** Sends what was kept to `target`, then what the downstream sends, until `detach`. */
  attach(target: Writable): void {
    this.target = target;
    for (const b of this.kept) target.write(b);
    if (this.ended) {
      target.end();
      return;
    }
    if (this.keptBytes >= EARLY_DATA_LIMIT) return;
    this.source.on("data", this.onData);
    this.source.once("end", this.onEnd);
    this.source.resume();
  }

  /** Stops sending and pauses the downstream; the kept bytes stay for another attempt. */
  detach(): void {
    this.source.off("data", this.onData);
    this.source.off("end", this.onEnd);
    this.source.pause();
    this.target = undefined;
  }

  /** The attached stream was answered: it has the kept bytes, which are dropped. */
  commit(): void {
    this.detach();
    this.kept = [];
    this.keptBytes = 0;
    this.ended = false;
  }

  /** Hands the kept bytes (and the downstream's end, if it came) to a connected upstream. */
  commitTo(target: Writable): void {
    for (const b of this.kept) target.write(b);
    if (this.ended) target.end();
    this.commit();
  }

  private keep(b: Buffer): void {
    this.kept.push(b);
    this.keptBytes += b.length;
    this.bytes += b.length;
  }

  private readonly onData = (b: Buffer): void => {
    this.keep(b);
    this.target?.write(b);
    if (this.keptBytes >= EARLY_DATA_LIMIT) this.source.pause();
  };

  private readonly onEnd = (): void => {
    this.ended = true;
    this.target?.end();
  };
}

/** Why an HBONE connect failed. */
export class HboneError extends Error {
  /**
   * `connect`: the peer or target could not be reached (try another endpoint); `refused`: policy
   * said no; `identity`: the peer is not who the endpoint may be; `reset`: a pooled connection
   * reset the stream before an answer (retried on a fresh connection).
   */
  readonly kind: "connect" | "refused" | "identity" | "reset";
  constructor(kind: HboneError["kind"], message: string) {
    super(message);
    this.kind = kind;
  }
}

/** One CONNECT stream opened. */
export interface HboneStream {
  readonly stream: H2Stream;
  /** The peer node proxy's SPIFFE identity. */
  readonly peerIdentity: string;
}

/** Options of one HBONE connect. */
export interface HboneConnect {
  /** The peer node proxy's address (the endpoint's IP). */
  readonly peer: string;
  readonly peerPort: number;
  /** The endpoint, `IP:PORT`, sent as `:authority`. */
  readonly authority: string;
  /** The identities the peer may present; empty accepts any identity the roots trust. */
  readonly identities: readonly string[];
  readonly timeoutMs: number;
  /** The client workload, sent in the baggage header. */
  readonly baggage?: string;
  /** The downstream's bytes to send right after the CONNECT, before the answer. */
  readonly early?: EarlyData;
}

/** The client side: pooled HTTP/2 connections to peer node proxies. */
export interface HbonePool {
  /** Opens a CONNECT stream; rejects with an HboneError. */
  connect(o: HboneConnect): Promise<HboneStream>;
  /** Pooled connections open now (peer HOST:PORT). */
  peers(): string[];
  /** Makes pooled connections take no new streams and close when their streams end. */
  drain(): void;
  /** Closes every connection at once. */
  close(): void;
}

/** A pooled tunnel: the TLS connection, its HTTP/2 connection and the peer's identity once up. */
interface Pooled {
  readonly key: string;
  readonly socket: TLSSocket;
  readonly ready: Promise<{ conn: H2Connection; identity: string }>;
  conn?: H2Connection;
  /** Streams opened on it so far. */
  opened: number;
}

/** Creates the client pool over the node proxy's TLS material. */
export function createHbonePool(o: { tls: TlsMaterial; logger: Logger }): HbonePool {
  const pool = new Map<string, Pooled>();
  const all = new Set<Pooled>();

  const forget = (p: Pooled) => {
    if (pool.get(p.key) === p) pool.delete(p.key);
  };

  const dialPeer = (peer: string, port: number, timeoutMs: number): Pooled => {
    const key = hostPort(peer, port);
    const socket = tlsConnect({
      host: peer,
      port,
      secureContext: o.tls.current().context,
      ALPNProtocols: ["h2"],
      // The peer is checked by its SPIFFE identity per stream, not by a host name.
      checkServerIdentity: () => undefined,
    });
    socket.setNoDelay(true);
    const ready = new Promise<{ conn: H2Connection; identity: string }>((resolve, reject) => {
      const timer = setTimeout(() => {
        socket.destroy();
        reject(new HboneError("connect", `HBONE to ${key}: no TLS connection within ${timeoutMs} ms`));
      }, timeoutMs);
      const onError = (err: Error) => {
        clearTimeout(timer);
        reject(new HboneError("connect", `HBONE to ${key}: ${errorMessage(err)}`));
      };
      socket.once("error", onError);
      socket.once("close", () => onError(new Error("the connection closed during the TLS handshake")));
      socket.once("secureConnect", () => {
        clearTimeout(timer);
        socket.off("error", onError);
        const identity = peerIdentity(socket);
        if (identity === undefined) {
          socket.destroy();
          reject(
            new HboneError("identity", `HBONE to ${key}: the peer's certificate has no SPIFFE identity`),
          );
          return;
        }
        const conn = new H2Connection({
          role: "client",
          socket,
          logger: o.logger,
          settings: HBONE_SETTINGS,
          onGoaway: () => forget(p),
          onClose: (err) => {
            forget(p);
            all.delete(p);
            if (err) o.logger.debug("HBONE connection failed", { peer: key, err: errorMessage(err) });
          },
        });
        p.conn = conn;
        resolve({ conn, identity });
      });
    });
    ready.catch(() => {
      forget(p);
      all.delete(p);
    });
    const p: Pooled = { key, socket, ready, opened: 0 };
    all.add(p);
    pool.set(key, p);
    return p;
  };

  /** The pooled tunnel to the peer, or a new one when there is none that takes streams. */
  const open = (peer: string, port: number, timeoutMs: number): Pooled => {
    const existing = pool.get(hostPort(peer, port));
    if (existing && (!existing.conn || existing.conn.canOpen())) return existing;
    if (existing) retire(existing);
    return dialPeer(peer, port, timeoutMs);
  };

  /** Retires a pooled tunnel: no new streams, closed once its streams end. */
  const retire = (p: Pooled) => {
    forget(p);
    if (p.conn) p.conn.drain();
    else void p.ready.then(({ conn }) => conn.drain(), () => {});
  };

  /** One CONNECT on the pooled tunnel to the peer (a new one with `fresh`). */
  const request = async (c: HboneConnect, fresh: boolean): Promise<HboneStream> => {
    const key = hostPort(c.peer, c.peerPort);
    if (fresh) {
      const old = pool.get(key);
      if (old) retire(old);
    }
    let p = open(c.peer, c.peerPort, c.timeoutMs);
    let { conn, identity } = await p.ready;
    if (!conn.canOpen()) {
      // Full, or draining since: one more, new tunnel.
      retire(p);
      p = dialPeer(c.peer, c.peerPort, c.timeoutMs);
      ({ conn, identity } = await p.ready);
    }
    if (c.identities.length > 0 && !c.identities.includes(identity)) {
      throw new HboneError(
        "identity",
        `HBONE to ${key}: the peer is ${identity}, not one of ${c.identities.join(", ")}`,
      );
    }
    const reused = p.opened++ > 0;
    const headers: HeaderList = [[":method", "CONNECT"], [":authority", c.authority]];
    if (c.baggage) headers.push([BAGGAGE_HEADER, c.baggage]);
    const stream = conn.request(headers);
    c.early?.attach(stream);
    let status: number;
    try {
      status = await answer(stream, c, (err) => {
        const retryable = !fresh && (reused || (err instanceof H2StreamError && err.refused));
        if (reused) retire(p);
        return new HboneError(
          retryable ? "reset" : "connect",
          `HBONE CONNECT ${c.authority}: stream ${err ? errorMessage(err) : "closed"} before an answer`,
        );
      });
    } finally {
      c.early?.detach();
    }
    if (status === 200) {
      c.early?.commit();
      return { stream, peerIdentity: identity };
    }
    // The peer ended its side with the answer; end ours so the stream closes without a reset.
    stream.resume();
    stream.end();
    throw status === 403
      ? new HboneError("refused", `HBONE CONNECT ${c.authority}: refused by the destination's policy (403)`)
      : new HboneError("connect", `HBONE CONNECT ${c.authority}: status ${status}`);
  };

  return {
    async connect(c) {
      try {
        return await request(c, false);
      } catch (err) {
        // A stream reset before any answer on a tunnel that carried earlier streams, or one the
        // peer did not process: the tunnel is suspect. Retire it and ask once more on a fresh one.
        if (!(err instanceof HboneError) || err.kind !== "reset") throw err;
        return await request(c, true);
      }
    },
    peers: () => [...pool.keys()],
    drain() {
      for (const p of [...pool.values()]) retire(p);
      pool.clear();
    },
    close() {
      for (const p of all) {
        p.conn?.destroy();
        p.socket.destroy();
      }
      all.clear();
      pool.clear();
    },
  };
}

/**
 * The status of the answer to a CONNECT stream; rejects with `early(err)` when the stream ends
 * before an answer, and after `timeoutMs` without one (the stream is then cancelled).
 */
function answer(
  stream: H2Stream,
  c: HboneConnect,
  early: (err?: Error) => HboneError,
): Promise<number> {
  return new Promise<number>((resolve, reject) => {
    const timer = setTimeout(() => {
      cleanup();
      stream.cancel(ErrorCode.CANCEL);
      reject(new HboneError("connect", `HBONE CONNECT ${c.authority}: no answer within ${c.timeoutMs} ms`));
    }, c.timeoutMs);
    const onError = (err: Error) => {
      cleanup();
      reject(early(err));
    };
    const onClose = () => {
      cleanup();
      reject(early());
    };
    const onResponse = (h: HeaderList) => {
      cleanup();
      resolve(Number(h.find(([n]) => n === ":status")?.[1] ?? 0));
    };
    const cleanup = () => {
      clearTimeout(timer);
      stream.off("error", onError);
      stream.off("close", onClose);
      stream.off("response", onResponse);
    };
    // Errors after the answer are the relay's; never let one go unhandled.
    stream.on("error", () => {});
    stream.once("error", onError);
    stream.once("close", onClose);
    stream.once("response", onResponse);
  });
}

/** Options of startHboneServer. */
export interface HboneServerOptions {
  readonly host: string;
  readonly port: number;
  readonly tls: TlsMaterial;
  /** The inbound decision for a tunnelled connection. */
  readonly decide: (req: InboundRequest) => InboundDecision;
  readonly telemetry: TcpTelemetry;
  readonly logger: Logger;
  /** Connect timeout to the local target (default 10 s). */
  readonly connectTimeoutMs?: number;
}

/** A listening HBONE server. */
export interface HboneServer {
  readonly addr: string;
  readonly port: number;
  /** Stops accepting and closes every tunnel. */
  close(): Promise<void>;
}

/** Starts the HBONE server. Rejects when there is no certificate yet or the address cannot be bound. */
export async function startHboneServer(o: HboneServerOptions): Promise<HboneServer> {
  const snap = o.tls.current();
  const sockets = new Set<Socket>();
  const server = createTlsServer({
    ...snap.options,
    requestCert: true,
    rejectUnauthorized: true,
    ALPNProtocols: ["h2"],
  }, (socket: TLSSocket) => {
    sockets.add(socket);
    socket.once("close", () => sockets.delete(socket));
    socket.on("error", () => {});
    new H2Connection({
      role: "server",
      socket,
      logger: o.logger,
      settings: HBONE_SETTINGS,
      onStream: (stream, headers) => {
        stream.on("error", () => {});
        void serveStream(o, socket, stream, headers).catch((err) => {
          o.logger.warn("HBONE stream failed", { err: errorMessage(err) });
          stream.cancel(ErrorCode.INTERNAL_ERROR);
        });
      },
    });
  });
  server.on(
    "tlsClientError",
    (err: Error) => o.logger.debug("HBONE TLS handshake failed", { err: errorMessage(err) }),
  );
  const unsubscribe = o.tls.onChange((s) => {
    // Bun reads the server's client-certificate settings from the new options too.
    server.setSecureContext(
      { ...s.options, requestCert: true, rejectUnauthorized: true } as SecureContextOptions,
    );
    o.logger.info("HBONE server certificate updated", { identity: s.bundle.identity });
  });
  const port = await listen(server as never, o.host, o.port, "HBONE");
  return {
    addr: hostPort(o.host, port),
    port,
    close() {
      unsubscribe();
      const closed = new Promise<void>((resolve) => server.close(() => resolve()));
      for (const s of sockets) s.destroy();
      return closed;
    },
  };
}

/** The value of header `name` (the first one), if present. */
function header(headers: HeaderList, name: string): string | undefined {
  return headers.find(([n]) => n === name)?.[1];
}

/** Answers `status` with END_STREAM and asks the peer to send nothing more (RST_STREAM NO_ERROR). */
function refuse(stream: H2Stream, status: number): void {
  stream.respond(status, true);
  stream.cancel(ErrorCode.NO_ERROR);
}

async function serveStream(
  o: HboneServerOptions,
  socket: TLSSocket,
  stream: H2Stream,
  headers: HeaderList,
): Promise<void> {
  if (header(headers, ":method") !== "CONNECT") return refuse(stream, 405);
  const target = splitHostPort(header(headers, ":authority") ?? "");
  if (!target) return refuse(stream, 400);
  const cert: PeerCertificateInfo = peerCertificateInfo(socket);
  const peer = cert.identity;
  const source = socket.remoteAddress ?? "";
  const baggage = parseBaggage(header(headers, BAGGAGE_HEADER));
  if (peer === undefined) return refuse(stream, 403);
  const d = o.decide({ port: target.port, destinationAddress: target.host, sourceAddress: source, peer });
  const t = o.telemetry.open({
    reporter: "destination",
    sourceAddress: source,
    sourcePrincipal: peer,
    ...(cert.serial !== undefined ? { sourceCertSerial: cert.serial } : {}),
    ...baggageSource(baggage),
    destinationAddress: target.host,
    destinationPort: target.port,
    ...(o.tls.identity() !== undefined ? { destinationPrincipal: o.tls.identity()! } : {}),
    security: "mutual_tls",
    transport: "hbone",
    decision: d.allowed ? "allow" : "deny",
    audit: d.audit,
    ...(d.reason !== undefined ? { reason: d.reason } : {}),
    ...(d.policy !== undefined ? { policy: d.policy } : {}),
    ...(d.allowed ? {} : { responseFlags: "UAEX" }),
  });
  if (!d.allowed) {
    refuse(stream, 403);
    t.close({ received: 0, sent: 0 });
    return;
  }
  let upstream: Socket;
  try {
    upstream = await dial(d.target.address, d.target.port, o.connectTimeoutMs ?? 10_000);
  } catch (err) {
    if (!stream.destroyed) refuse(stream, 503);
    t.update({ responseFlags: "UF" });
    t.close({ received: 0, sent: 0 }, errorMessage(err));
    return;
  }
  if (stream.destroyed) {
    upstream.destroy();
    t.close({ received: 0, sent: 0 }, "the tunnel closed before the target answered");
    return;
  }
  stream.respond(200);
  const r = await relay(stream, upstream).done;
  t.close({ received: r.aToB, sent: r.bToA }, r.error);
}
