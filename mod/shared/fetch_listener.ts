/**
 * Serves a fetch-style handler (`(Request) => Response`, as Hono's `app.fetch`) over HTTP/1.1,
 * plain or TLS, behind a connection guard (conn_guard.ts). `Bun.serve` has no hook to refuse a
 * connection before serving it, so these listeners run on node:http over the guard's sockets:
 * the guard caps connections before any TLS or HTTP work, the first request completes the
 * handshake, and a connection between requests is idle.
 */
import http from "node:http";
import type { AddressInfo, Socket } from "node:net";
import tls from "node:tls";
import { type ConnectionGuard, type ConnectionLimits, createConnectionGuard } from "./conn_guard.ts";
import { errorMessage } from "./errors.ts";
import type { Logger } from "./logger.ts";
import type { MetricsRegistry } from "./metrics.ts";

/** Options for startFetchListener. */
export interface FetchListenerOptions {
  /** The listener's name in logs and metrics ("admin", "webhook"). */
  readonly name: string;
  readonly host: string;
  readonly port: number;
  /** The handler; its second argument tells the client's address as `Bun.serve`'s server does. */
  readonly fetch: (req: Request, env: RequestPeer) => Response | Promise<Response>;
  /** PEM certificate and key: serve HTTPS. */
  readonly tls?: { readonly cert: string; readonly key: string };
  /** Largest request body read; larger ones get 413. */
  readonly maxBodyBytes?: number;
  readonly limits: ConnectionLimits;
  readonly logger: Logger;
  readonly metrics?: MetricsRegistry;
  /** The answer when `fetch` throws; by default a 500 naming the error. */
  readonly onError?: (err: unknown) => Response;
}

/** What a handler learns of the connection a request came on (`Bun.Server.requestIP`'s shape). */
export interface RequestPeer {
  requestIP(
    req: Request,
  ): { readonly address: string; readonly family: string; readonly port: number } | null;
}

/** A running listener. */
export interface FetchListener {
  readonly host: string;
  readonly port: number;
  readonly guard: ConnectionGuard;
  /** Stops listening and closes open connections. */
  stop(): Promise<void>;
}

const DEFAULT_MAX_BODY = 1024 * 1024;

/** Starts serving `opts.fetch` on HOST:PORT. Rejects, naming the address, when it cannot listen. */
export async function startFetchListener(opts: FetchListenerOptions): Promise<FetchListener> {
  const guard = createConnectionGuard(opts.name, {
    limits: opts.limits,
    logger: opts.logger,
    metrics: opts.metrics,
  });
  const scheme = opts.tls ? "https" : "http";
  const maxBody = opts.maxBodyBytes ?? DEFAULT_MAX_BODY;
  const server = http.createServer((req, res) => {
    const conn = guard.of(req.socket);
    conn?.established();
    conn?.busy(1);
    res.once("close", () => conn?.busy(-1));
    answer(req, res).catch((err) => {
      opts.logger.debug("HTTP response failed", { listener: opts.name, err: errorMessage(err) });
      res.destroy();
    });
  });
  server.on("clientError", (_err, socket: Socket) => socket.destroy());
  const secure = opts.tls ? tls.createSecureContext({ cert: opts.tls.cert, key: opts.tls.key }) : undefined;

  async function answer(req: http.IncomingMessage, res: http.ServerResponse): Promise<void> {
    const body = await readBody(req, maxBody);
    if (body === "too large") {
      res.writeHead(413, { "content-type": "application/json" });
      res.end(JSON.stringify({ error: `request body larger than ${maxBody} bytes` }));
      return;
    }
    const headers = new Headers();
    for (const [k, v] of Object.entries(req.headers)) {
      if (v === undefined) continue;
      for (const one of Array.isArray(v) ? v : [v]) headers.append(k, one);
    }
    const request = new Request(
      `${scheme}://${req.headers.host ?? `${opts.host}:${opts.port}`}${req.url ?? "/"}`,
      {
        method: req.method,
        headers,
        body: body && body.length > 0 ? body : undefined,
      },
    );
    const socket = req.socket;
    const peer: RequestPeer = {
      requestIP: () =>
        socket.remoteAddress
          ? { address: socket.remoteAddress, family: socket.remoteFamily ?? "", port: socket.remotePort ?? 0 }
          : null,
    };
    let response: Response;
    try {
      response = await opts.fetch(request, peer);
    } catch (err) {
      response = opts.onError?.(err) ?? Response.json({ error: errorMessage(err) }, { status: 500 });
    }
    const out = Buffer.from(await response.arrayBuffer());
    const head: Record<string, string | string[]> = {};
    response.headers.forEach((v, k) => {
      head[k] = k === "set-cookie" ? response.headers.getSetCookie() : v;
    });
    head["content-length"] = String(out.length);
    res.writeHead(response.status, head);
    res.end(req.method === "HEAD" ? undefined : out);
  }

  const addr = await guard.listen({ host: opts.host, port: opts.port }, (socket) => {
    server.emit(
      "connection",
      secure ? new tls.TLSSocket(socket, { isServer: true, secureContext: secure }) : socket,
    );
  }).catch((err: Error) => {
    throw new Error(`${opts.name}: cannot listen on ${opts.host}:${opts.port}: ${err.message}`);
  });
  const info = addr as AddressInfo;
  return {
    host: info.address,
    port: info.port,
    guard,
    async stop() {
      const closed = guard.close();
      server.closeAllConnections?.();
      guard.destroyAll();
      await closed;
    },
  };
}

/** The request body (undefined for methods without one), or "too large" past `max` bytes. */
async function readBody(req: http.IncomingMessage, max: number): Promise<Buffer | undefined | "too large"> {
  if (req.method === "GET" || req.method === "HEAD") return undefined;
  const declared = Number(req.headers["content-length"] ?? 0);
  if (declared > max) return "too large";
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of req as AsyncIterable<Buffer>) {
    size += chunk.length;
    if (size > max) return "too large";
    chunks.push(chunk);
  }
  return Buffer.concat(chunks);
}
