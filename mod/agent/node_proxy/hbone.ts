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
import {
  type ClientHttp2Session,
  type ClientHttp2Stream,
  connect as h2connect,
  constants,
  createSecureServer,
  type Http2SecureServer,
  type ServerHttp2Stream,
} from "node:http2";
import type { Socket } from "node:net";
import { connect as tlsConnect, type SecureContextOptions, type TLSSocket } from "node:tls";
import { errorMessage } from "../../shared/errors.ts";
import type { Logger } from "../../shared/logger.ts";
import { BAGGAGE_HEADER, parseBaggage } from "./baggage.ts";
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
 * The HTTP/2 flow-control window of a tunnel, bytes: each stream's (SETTINGS_INITIAL_WINDOW_SIZE)
 * and the connection's. HTTP/2's 64 KiB default lets a sender put only that much in flight per
 * round trip, which caps a tunnelled TCP stream well below what the machines can carry.
 */
export const HBONE_WINDOW_BYTES = 8 * 1024 * 1024;

/** The SETTINGS both ends of a tunnel send. */
const HBONE_SETTINGS = { initialWindowSize: HBONE_WINDOW_BYTES } as const;

/**
 * Opens the connection-level receive window of a tunnel to HBONE_WINDOW_BYTES. It must not exceed
 * the streams' window announced in HBONE_SETTINGS: Bun's HTTP/2 raises its own record of the
 * streams' initial window to the size given here without telling the peer, and a stream whose
 * peer believes in a smaller window than ours stalls, waiting for a WINDOW_UPDATE we send only
 * after half of our larger window has arrived.
 */
function openConnectionWindow(session: { setLocalWindowSize(size: number): void }): void {
  session.setLocalWindowSize(HBONE_WINDOW_BYTES);
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
  readonly stream: ClientHttp2Stream;
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

interface PooledSession {
  readonly session: ClientHttp2Session;
  readonly ready: Promise<string>;
}

/** Creates the client pool over the node proxy's TLS material. */
export function createHbonePool(o: { tls: TlsMaterial; logger: Logger }): HbonePool {
  const pool = new Map<string, PooledSession>();
  const all = new Set<ClientHttp2Session>();
  const streamsOpened = new WeakMap<ClientHttp2Session, number>();

  const open = (peer: string, port: number, timeoutMs: number): PooledSession => {
    const key = hostPort(peer, port);
    const existing = pool.get(key);
    if (existing && !existing.session.closed && !existing.session.destroyed) return existing;
    const snap = o.tls.current();
    const session = h2connect(`https://${key}`, {
      settings: HBONE_SETTINGS,
      createConnection: () =>
        tlsConnect({
          host: peer,
          port,
          secureContext: snap.context,
          ALPNProtocols: ["h2"],
          // The peer is checked by its SPIFFE identity per stream, not by a host name.
          checkServerIdentity: () => undefined,
        }),
    });
    all.add(session);
    const forget = () => {
      all.delete(session);
      if (pool.get(key)?.session === session) pool.delete(key);
    };
    session.on("close", forget);
    session.on("goaway", forget);
    session.on("error", (err) => {
      forget();
      o.logger.debug("HBONE connection failed", { peer: key, err: errorMessage(err) });
    });
    const ready = new Promise<string>((resolve, reject) => {
      const timer = setTimeout(() => {
        session.destroy();
        reject(new HboneError("connect", `HBONE to ${key}: no TLS connection within ${timeoutMs} ms`));
      }, timeoutMs);
      session.once("connect", () => {
        clearTimeout(timer);
        openConnectionWindow(session);
        const id = peerIdentity(session.socket as TLSSocket);
        if (id === undefined) {
          session.destroy();
          reject(
            new HboneError("identity", `HBONE to ${key}: the peer's certificate has no SPIFFE identity`),
          );
        } else resolve(id);
      });
      session.once("error", (err) => {
        clearTimeout(timer);
        reject(new HboneError("connect", `HBONE to ${key}: ${errorMessage(err)}`));
      });
    });
    ready.catch(() => {});
    const pooled = { session, ready };
    pool.set(key, pooled);
    return pooled;
  };

  /** Retires a pooled connection: no new streams, closed once its streams end. */
  const retire = (key: string, session: ClientHttp2Session) => {
    if (pool.get(key)?.session === session) pool.delete(key);
    session.close();
  };

  /** One CONNECT on the pooled connection to the peer (a new one with `fresh`). */
  const request = async (c: HboneConnect, fresh: boolean): Promise<HboneStream> => {
    const key = hostPort(c.peer, c.peerPort);
    if (fresh) {
      const old = pool.get(key);
      if (old) retire(key, old.session);
    }
    const { session, ready } = open(c.peer, c.peerPort, c.timeoutMs);
    const id = await ready;
    if (c.identities.length > 0 && !c.identities.includes(id)) {
      throw new HboneError(
        "identity",
        `HBONE to ${key}: the peer is ${id}, not one of ${c.identities.join(", ")}`,
      );
    }
    const reused = streamsOpened.get(session) ?? 0;
    streamsOpened.set(session, reused + 1);
    const stream = session.request({
      ":method": "CONNECT",
      ":authority": c.authority,
      ...(c.baggage ? { [BAGGAGE_HEADER]: c.baggage } : {}),
    });
    stream.on("error", () => {});
    const status = await new Promise<number>((resolve, reject) => {
      const fail = (e: HboneError) => {
        clearTimeout(timer);
        reject(e);
      };
      const timer = setTimeout(() => {
        stream.close(constants.NGHTTP2_CANCEL);
        fail(new HboneError("connect", `HBONE CONNECT ${c.authority}: no answer within ${c.timeoutMs} ms`));
      }, c.timeoutMs);
      const early = (what: string) => () => {
        if (reused > 0) retire(key, session);
        fail(
          new HboneError(
            reused > 0 && !fresh ? "reset" : "connect",
            `HBONE CONNECT ${c.authority}: stream ${what} before an answer`,
          ),
        );
      };
      const onAborted = early("reset");
      const onClose = early("closed");
      stream.once("aborted", onAborted);
      stream.once("close", onClose);
      stream.once("response", (h) => {
        clearTimeout(timer);
        stream.off("aborted", onAborted);
        stream.off("close", onClose);
        resolve(Number(h[":status"]));
      });
    });
    if (status === 200) return { stream, peerIdentity: id };
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
        // A stream reset before any answer on a connection that carried earlier streams: the
        // connection is suspect (Bun's HTTP/2 client can misattribute a late reset of a closed
        // stream to a newer one). Retire it and ask once more on a fresh connection.
        if (!(err instanceof HboneError) || err.kind !== "reset") throw err;
        return await request(c, true);
      }
    },
    peers: () => [...pool.keys()],
    drain() {
      for (const { session } of pool.values()) session.close();
      pool.clear();
    },
    close() {
      for (const s of all) s.destroy();
      all.clear();
      pool.clear();
    },
  };
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
  const server: Http2SecureServer = createSecureServer({
    ...snap.options,
    requestCert: true,
    rejectUnauthorized: true,
    ALPNProtocols: ["h2"],
    settings: HBONE_SETTINGS,
  });
  server.on("session", openConnectionWindow);
  const unsubscribe = o.tls.onChange((s) => {
    // Bun reads the server's client-certificate settings from the new options too.
    server.setSecureContext(
      { ...s.options, requestCert: true, rejectUnauthorized: true } as SecureContextOptions,
    );
    o.logger.info("HBONE server certificate updated", { identity: s.bundle.identity });
  });
  const sockets = new Set<Socket>();
  server.on("secureConnection", (s: Socket) => {
    sockets.add(s);
    s.once("close", () => sockets.delete(s));
  });
  server.on("stream", (stream, headers) => {
    stream.on("error", () => {});
    void serveStream(o, stream, headers).catch((err) => {
      o.logger.warn("HBONE stream failed", { err: errorMessage(err) });
      stream.destroy();
    });
  });
  server.on("sessionError", () => {});
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

async function serveStream(
  o: HboneServerOptions,
  stream: ServerHttp2Stream,
  headers: Record<string, string | string[] | undefined>,
): Promise<void> {
  if (headers[":method"] !== "CONNECT") {
    stream.respond({ ":status": 405 }, { endStream: true });
    return;
  }
  const target = splitHostPort(String(headers[":authority"] ?? ""));
  if (!target) {
    stream.respond({ ":status": 400 }, { endStream: true });
    return;
  }
  const socket = stream.session?.socket as TLSSocket | undefined;
  const cert: PeerCertificateInfo = socket ? peerCertificateInfo(socket) : {};
  const peer = cert.identity;
  const source = socket?.remoteAddress ?? "";
  const baggage = parseBaggage(headers[BAGGAGE_HEADER] as string | undefined);
  if (peer === undefined) {
    stream.respond({ ":status": 403 }, { endStream: true });
    return;
  }
  const d = o.decide({ port: target.port, destinationAddress: target.host, sourceAddress: source, peer });
  const t = o.telemetry.open({
    reporter: "destination",
    sourceAddress: source,
    sourcePrincipal: peer,
    ...(cert.serial !== undefined ? { sourceCertSerial: cert.serial } : {}),
    ...(baggage.workload !== undefined ? { sourceWorkload: baggage.workload } : {}),
    ...(baggage.namespace !== undefined ? { sourceNamespace: baggage.namespace } : {}),
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
    stream.respond({ ":status": 403 }, { endStream: true });
    t.close({ received: 0, sent: 0 });
    return;
  }
  let upstream: Socket;
  try {
    upstream = await dial(d.target.address, d.target.port, o.connectTimeoutMs ?? 10_000);
  } catch (err) {
    if (!stream.destroyed) stream.respond({ ":status": 503 }, { endStream: true });
    t.update({ responseFlags: "UF" });
    t.close({ received: 0, sent: 0 }, errorMessage(err));
    return;
  }
  if (stream.destroyed) {
    upstream.destroy();
    t.close({ received: 0, sent: 0 }, "the tunnel closed before the target answered");
    return;
  }
  stream.respond({ ":status": 200 });
  const r = await relay(stream, upstream).done;
  t.close({ received: r.aToB, sent: r.bToA }, r.error);
}
