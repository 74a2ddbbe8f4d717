/**
 * Serves a fetch-style handler (`(Request) => Response`, as Hono's `app.fetch`) over HTTP/1.1,
 * plain or TLS, behind a connection guard (conn_guard.ts). `Bun.serve` has no hook to refuse a
 * connection before serving it, so these listeners run on node:http over the guard's sockets:
 * the guard caps connections before any TLS or HTTP work, the first request completes the
 * handshake, and a connection between requests is idle.
 *
 * Bodies: a body that is complete at once (a string, bytes, JSON) is sent with its
 * `content-length`, as before. A `text/event-stream` body, a body larger than
 * {@link STREAM_AFTER_BYTES}, and a body whose next chunk is not ready within
 * {@link STREAM_AFTER_MS} are streamed (chunked): each chunk is written when the last one has
 * drained (backpressure), and when the client goes away the body is cancelled and the request's
 * `signal` aborts, so the handler can clean up.
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
/** A response body larger than this is streamed rather than sent with a content-length. */
export const STREAM_AFTER_BYTES = 1024 * 1024;
/** A response body whose next chunk takes longer than this is streamed from then on. */
export const STREAM_AFTER_MS = 20;

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
    // Aborted when the client goes away before the response is complete.
    const gone = new AbortController();
    res.once("close", () => {
      if (!res.writableFinished) gone.abort();
    });
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
        signal: gone.signal,
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
    await send(req, res, response, gone);
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

/** The response's headers for node:http (set-cookie kept as a list). */
function headersOf(response: Response): Record<string, string | string[]> {
  const head: Record<string, string | string[]> = {};
  response.headers.forEach((v, k) => {
    head[k] = k === "set-cookie" ? response.headers.getSetCookie() : v;
  });
  return head;
}

/** One read of a response body. */
type Chunk = { done: true; value?: undefined } | { done: false; value: Uint8Array };

/** `read` settled within `ms`: its result; else "slow" (the read stays in flight). */
async function within(read: Promise<Chunk>, ms: number): Promise<Chunk | "slow"> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const slow = new Promise<"slow">((resolve) => {
    timer = setTimeout(() => resolve("slow"), ms);
  });
  try {
    return await Promise.race([read, slow]);
  } finally {
    clearTimeout(timer);
  }
}

/** Writes `chunk` and waits until it drained or the response closed. */
function write(res: http.ServerResponse, chunk: Uint8Array): Promise<void> {
  if (res.write(chunk) || res.destroyed) return Promise.resolve();
  return new Promise((resolve) => {
    const done = () => {
      res.off("drain", done);
      res.off("close", done);
      resolve();
    };
    res.on("drain", done);
    res.on("close", done);
  });
}

/**
 * Sends `response` on `res`: whole with a content-length when its body is complete at once,
 * else streamed with backpressure (see the module comment). `gone` aborts when the client left.
 */
async function send(
  req: http.IncomingMessage,
  res: http.ServerResponse,
  response: Response,
  gone: AbortController,
): Promise<void> {
  const head = headersOf(response);
  const eventStream = (response.headers.get("content-type") ?? "").startsWith("text/event-stream");
  if (response.body === null || (req.method === "HEAD" && !eventStream)) {
    const out = response.body === null ? 0 : (await response.arrayBuffer()).byteLength;
    head["content-length"] = String(out);
    res.writeHead(response.status, head);
    res.end();
    return;
  }
  const reader = response.body.getReader();
  const cancel = () => void reader.cancel().catch(() => {});
  gone.signal.addEventListener("abort", cancel, { once: true });
  try {
    if (req.method === "HEAD") {
      cancel();
      res.writeHead(response.status, head);
      res.end();
      return;
    }
    // Gather a body that is complete at once; stop at the first slow chunk or past the size cap.
    const chunks: Uint8Array[] = [];
    let size = 0;
    let pending = reader.read() as Promise<Chunk>;
    let got: Chunk | "slow" = eventStream ? "slow" : await pending;
    while (got !== "slow" && !got.done && size <= STREAM_AFTER_BYTES) {
      chunks.push(got.value);
      size += got.value.length;
      pending = reader.read() as Promise<Chunk>;
      got = await within(pending, STREAM_AFTER_MS);
    }
    if (got !== "slow" && got.done) {
      head["content-length"] = String(size);
      res.writeHead(response.status, head);
      res.end(Buffer.concat(chunks));
      return;
    }
    // Streamed: headers now (no content-length: chunked), then each chunk once the last drained.
    delete head["content-length"];
    res.writeHead(response.status, head);
    res.flushHeaders();
    for (const c of chunks) await write(res, c);
    if (got !== "slow") await write(res, got.value);
    else {
      const first = await pending;
      if (first.done) {
        res.end();
        return;
      }
      await write(res, first.value);
    }
    while (!res.destroyed) {
      const r = await reader.read();
      if (r.done) break;
      await write(res, r.value);
    }
    res.end();
  } finally {
    gone.signal.removeEventListener("abort", cancel);
    if (!res.writableFinished) cancel();
  }
}
