/**
 * gRPC streams served straight on node:http2 streams, for the few methods where a general RPC
 * framework's per-stream machinery costs more than the work itself: the xDS streams, which a
 * control plane holds open by the ten thousand and answers with the same bytes many times.
 *
 * A method is registered by path. Its handler gets a GrpcStream: length-prefixed messages in,
 * pre-encoded messages out (callers may share one encoded body between streams and add a
 * per-stream part in front), and a status at the end, as the gRPC-over-HTTP/2 protocol says.
 * This server negotiates no compression: a call naming a grpc-encoding other than identity is
 * refused with UNIMPLEMENTED (and grpc-accept-encoding: identity), and a message whose compressed
 * flag is set anyway is a protocol error, INTERNAL, as the gRPC spec says.
 *
 * Output the client leaves unread is capped per call and per connection: a call over either cap
 * is reset with ENHANCE_YOUR_CALM (RESOURCE_EXHAUSTED to gRPC clients), which frees what it had
 * queued; a status in trailers would queue behind the unread data and never arrive.
 */
import {
  create,
  type DescMessage,
  type DescMethodUnary,
  fromBinary,
  isMessage,
  type MessageInitShape,
  type MessageShape,
  toBinary,
} from "@bufbuild/protobuf";
import { Code, ConnectError } from "@connectrpc/connect";
import http2 from "node:http2";
import type { TLSSocket } from "node:tls";
import { errorMessage } from "../shared/errors.ts";

/** The client certificate of a TLS connection, when the client presented one. */
export interface PeerCertificate {
  /** The DER bytes of the leaf certificate. */
  readonly der: Uint8Array;
  /** Whether it chains to a CA the server trusts. */
  readonly authorized: boolean;
  /** Why not, when not authorized. */
  readonly authorizationError?: string;
}

/** Handles one call of a method served by path. */
export type GrpcStreamHandler = (call: GrpcStream) => void;

const peerCache = new WeakMap<object, PeerCertificate | null>();

/** The peer certificate of a connection's socket (cached per socket). */
export function peerCertificateOf(socket: unknown): PeerCertificate | undefined {
  if (socket === null || typeof socket !== "object") return undefined;
  const cached = peerCache.get(socket);
  if (cached !== undefined) return cached ?? undefined;
  const tls = socket as Partial<TLSSocket>;
  let peer: PeerCertificate | null = null;
  if (typeof tls.getPeerCertificate === "function") {
    const cert = tls.getPeerCertificate(false);
    if (cert && cert.raw) {
      peer = {
        der: new Uint8Array(cert.raw),
        authorized: tls.authorized === true,
        authorizationError: tls.authorizationError ? String(tls.authorizationError) : undefined,
      };
    }
  }
  peerCache.set(socket, peer);
  return peer ?? undefined;
}

/** The HTTP/2 path of a method: "/package.Service/Method". */
export function methodPath(
  method: { readonly parent: { readonly typeName: string }; readonly name: string },
): string {
  return `/${method.parent.typeName}/${method.name}`;
}

/** Decodes a request message; bytes that are not one are the client's error (INVALID_ARGUMENT). */
export function decodeRequest<D extends DescMessage>(schema: D, bytes: Uint8Array): MessageShape<D> {
  try {
    return fromBinary(schema, bytes);
  } catch (err) {
    throw new ConnectError(`malformed ${schema.name}: ${errorMessage(err)}`, Code.InvalidArgument);
  }
}

/** Writes a gRPC message prefix (flag byte and big-endian length) into `into` at `at`. */
export function writeMessagePrefix(into: Uint8Array, at: number, length: number): void {
  into[at] = 0;
  into[at + 1] = (length >>> 24) & 0xff;
  into[at + 2] = (length >>> 16) & 0xff;
  into[at + 3] = (length >>> 8) & 0xff;
  into[at + 4] = length & 0xff;
}

/** One server-side gRPC call on an HTTP/2 stream. */
export class GrpcStream {
  /** Called with each complete request message. Throwing ends the call with the error. */
  onmessage: ((message: Uint8Array) => void) | undefined;
  /** Called when the client half-closes; by default the call then ends with OK. */
  onhalfclose: (() => void) | undefined;
  /** Called once when the call is over, whoever ended it. */
  onclose: (() => void) | undefined;
  private responded = false;
  private finished = false;
  private buffered: Buffer[] = [];
  private bufferedBytes = 0;
  private pendingTrailers: Record<string, string> | undefined;
  /** This call's unread output when it last sent, as counted in its connection's total. */
  private queued = 0;

  constructor(
    private readonly stream: http2.ServerHttp2Stream,
    private readonly readMaxBytes: number,
    private readonly maxQueuedBytes: number,
    private readonly connection?: ConnectionOutput,
  ) {
    connection?.calls.add(this);
    stream.on("data", (chunk: Buffer) => this.receive(chunk));
    stream.on("end", () => {
      if (this.onhalfclose) this.onhalfclose();
      else this.end(0);
    });
    stream.on("error", () => {});
    stream.on("close", () => {
      this.finished = true;
      if (this.connection) {
        this.connection.calls.delete(this);
        this.connection.queued -= this.queued;
        this.queued = 0;
      }
      const cb = this.onclose;
      this.onclose = undefined;
      this.onmessage = undefined;
      this.onhalfclose = undefined;
      cb?.();
    });
  }

  /** The client's certificate, on TLS connections where it presented one. */
  get peer(): PeerCertificate | undefined {
    return peerCertificateOf(this.stream.session?.socket);
  }

  /** Whether the call is over. */
  get closed(): boolean {
    return this.finished;
  }

  /** Response bytes queued that the client has not read yet; recorded as this call's share. */
  unread(): number {
    this.queued = this.finished ? 0 : this.stream.writableLength;
    return this.queued;
  }

  /**
   * Sends one message whose encoding is `head` followed by `body` (either may be shared with other
   * calls; neither is copied here). Returns false, resetting the call with ENHANCE_YOUR_CALM, when
   * the client has left more than the call's or its connection's limit unread.
   */
  send(head: Uint8Array, body?: Uint8Array): boolean {
    if (this.finished) return false;
    const length = head.length + (body?.length ?? 0);
    const prefix = Buffer.allocUnsafe(5 + head.length);
    writeMessagePrefix(prefix, 0, length);
    prefix.set(head, 5);
    this.respond();
    this.stream.write(prefix);
    if (body && body.length > 0) this.stream.write(body);
    const queued = this.stream.writableLength;
    if (queued > this.maxQueuedBytes) {
      this.reset(queued);
      return false;
    }
    const c = this.connection;
    if (c) {
      c.queued += queued - this.queued;
      this.queued = queued;
      if (c.queued > c.limit && unreadOnConnection(c) > c.limit) {
        this.reset(c.queued);
        return false;
      }
    }
    return true;
  }

  /** Resets the call for unread output, freeing what it had queued, and reports it. */
  private reset(queued: number): void {
    this.finished = true;
    this.connection?.onLimit?.(this.stream.session, queued);
    const s = this.stream;
    if (!s.closed && !s.destroyed) s.close(http2.constants.NGHTTP2_ENHANCE_YOUR_CALM);
  }

  /**
   * Sends one message and ends the call with OK, in one write (the unary answer). `body` is copied
   * behind the message prefix; it may be shared with other calls.
   */
  reply(body: Uint8Array): void {
    if (this.finished) return;
    const framed = Buffer.allocUnsafe(5 + body.length);
    writeMessagePrefix(framed, 0, body.length);
    framed.set(body, 5);
    this.respond();
    this.finished = true;
    this.stream.end(framed);
  }

  /** Ends the call with a status (0 is OK). Later calls do nothing. */
  end(code: number, message?: string): void {
    if (this.finished) return;
    this.finished = true;
    const trailers: Record<string, string> = { "grpc-status": String(code) };
    if (message) trailers["grpc-message"] = encodeURIComponent(message);
    const s = this.stream;
    if (s.destroyed || s.closed) return;
    if (!this.responded) {
      this.responded = true;
      s.respond({ ":status": 200, "content-type": "application/grpc+proto", ...trailers }, {
        endStream: true,
      });
      this.resetIfOpen();
    } else {
      this.pendingTrailers = trailers;
      s.end();
    }
  }

  /**
   * The call is over even if the client has not half-closed: reset its side (NO_ERROR), as gRPC
   * servers do, so a client cannot hold the stream open. Deferred so the status goes out first.
   */
  private resetIfOpen(): void {
    if (this.stream.readableEnded) return;
    setImmediate(() => {
      const s = this.stream;
      if (!s.closed && !s.destroyed && !s.readableEnded) s.close(http2.constants.NGHTTP2_NO_ERROR);
    });
  }

  /** Ends the call with an error's code and message (a ConnectError keeps its code). */
  fail(err: unknown): void {
    const e = ConnectError.from(err);
    this.end(e.code, e.rawMessage);
  }

  private respond(): void {
    if (this.responded) return;
    this.responded = true;
    this.stream.respond({ ":status": 200, "content-type": "application/grpc+proto" }, {
      waitForTrailers: true,
    });
    this.stream.once("wantTrailers", () => {
      this.stream.sendTrailers(this.pendingTrailers ?? { "grpc-status": "0" });
      this.resetIfOpen();
    });
  }

  private receive(chunk: Buffer): void {
    if (this.finished) return;
    this.buffered.push(chunk);
    this.bufferedBytes += chunk.length;
    while (this.bufferedBytes >= 5) {
      const head = this.peek(5);
      if (head[0] !== 0) {
        this.end(Code.Internal, "the compressed flag is set but no grpc-encoding was negotiated");
        return;
      }
      const length = ((head[1]! << 24) >>> 0) + (head[2]! << 16) + (head[3]! << 8) + head[4]!;
      if (length > this.readMaxBytes) {
        this.end(Code.ResourceExhausted, `message of ${length} bytes is larger than ${this.readMaxBytes}`);
        return;
      }
      if (this.bufferedBytes < 5 + length) return;
      this.take(5);
      const message = this.take(length);
      try {
        this.onmessage?.(message);
      } catch (err) {
        this.fail(err);
        return;
      }
      if (this.finished) return;
    }
  }

  /** The first `n` buffered bytes, without consuming them. */
  private peek(n: number): Buffer {
    if (this.buffered[0]!.length >= n) return this.buffered[0]!;
    const joined = Buffer.concat(this.buffered);
    this.buffered = [joined];
    return joined;
  }

  /** Consumes the first `n` buffered bytes. */
  private take(n: number): Uint8Array {
    const first = this.peek(n);
    const out = first.subarray(0, n);
    if (first.length === n) this.buffered.shift();
    else this.buffered[0] = first.subarray(n);
    this.bufferedBytes -= n;
    return out;
  }
}

/** The unread output of one connection's calls. */
interface ConnectionOutput {
  readonly calls: Set<GrpcStream>;
  /** Sum of the calls' unread bytes as of their last sends (an upper bound: some may have drained). */
  queued: number;
  readonly limit: number;
  readonly onLimit?: (session: http2.Http2Session | undefined, queued: number) => void;
}

/** Recounts a connection's unread output exactly (when the running total says it is over). */
function unreadOnConnection(c: ConnectionOutput): number {
  let total = 0;
  for (const call of c.calls) total += call.unread();
  c.queued = total;
  return total;
}

/** Options for serving gRPC methods by path. */
export interface GrpcStreamRoutesOptions {
  /** Largest accepted request message. */
  readMaxBytes: number;
  /** Unread response bytes per call beyond which the call is reset. */
  maxQueuedBytes?: number;
  /** Unread response bytes per connection (all its calls) beyond which the sending call is reset. */
  maxQueuedBytesPerConnection?: number;
  /** Told when a call is reset for unread output (to count and log it). */
  onUnreadLimit?: (session: http2.Http2Session | undefined, queued: number) => void;
  /** Holds the calls in progress (to end them all at shutdown). */
  calls?: Set<GrpcStream>;
}

/**
 * Serves `routes` on `server` straight on its HTTP/2 streams; every other path goes to the
 * server's existing stream handling (its request listener).
 */
export function serveGrpcStreams(
  server: http2.Http2Server | http2.Http2SecureServer,
  routes: ReadonlyMap<string, GrpcStreamHandler>,
  opts: GrpcStreamRoutesOptions,
): void {
  const previous = server.listeners("stream") as Array<(...args: unknown[]) => void>;
  server.removeAllListeners("stream");
  const maxQueued = opts.maxQueuedBytes ?? 64 * 1024 * 1024;
  const perConnection = opts.maxQueuedBytesPerConnection;
  const outputs = new WeakMap<http2.Http2Session, ConnectionOutput>();
  const outputOf = (session: http2.Http2Session | undefined): ConnectionOutput | undefined => {
    if (perConnection === undefined || !session) return undefined;
    let o = outputs.get(session);
    if (!o) {
      o = { calls: new Set(), queued: 0, limit: perConnection, onLimit: opts.onUnreadLimit };
      outputs.set(session, o);
    }
    return o;
  };
  server.on("stream", function (this: unknown, stream: http2.ServerHttp2Stream, headers, ...rest: unknown[]) {
    const handler = routes.get(String(headers[":path"]));
    if (!handler) {
      for (const l of previous) l.call(this, stream, headers, ...rest);
      return;
    }
    const contentType = String(headers["content-type"] ?? "");
    if (headers[":method"] !== "POST" || !/^application\/grpc(\+proto)?(;|$)/.test(contentType)) {
      stream.respond({ ":status": 415 }, { endStream: true });
      stream.on("error", () => {});
      return;
    }
    const encoding = headers["grpc-encoding"];
    if (encoding !== undefined && encoding !== "identity") {
      stream.on("error", () => {});
      stream.respond({
        ":status": 200,
        "content-type": "application/grpc+proto",
        "grpc-accept-encoding": "identity",
        "grpc-status": String(Code.Unimplemented),
        "grpc-message": encodeURIComponent(
          `grpc-encoding ${String(encoding)} is not supported; use identity`,
        ),
      }, { endStream: true });
      return;
    }
    const call = new GrpcStream(stream, opts.readMaxBytes, maxQueued, outputOf(stream.session));
    if (opts.calls) {
      const calls = opts.calls;
      calls.add(call);
      stream.once("close", () => calls.delete(call));
    }
    try {
      handler(call);
    } catch (err) {
      call.fail(err);
    }
  });
}

/**
 * A unary method on wire bytes, served on a GrpcStream: one request message, then the client
 * half-closes; the encoded answer and the status follow. The answer is sent as it is (it may be
 * shared with other calls; it is never modified). `impl` gets the request alone (no headers, no
 * deadline); what it throws ends the call with the error's code (a ConnectError keeps its own).
 */
export function unaryBytesHandler(
  impl: (request: Uint8Array) => Promise<Uint8Array> | Uint8Array,
): GrpcStreamHandler {
  return (call) => {
    let request: Uint8Array | undefined;
    call.onmessage = (m) => {
      if (request) throw new ConnectError("a unary call carries one request message", Code.InvalidArgument);
      request = m;
    };
    call.onhalfclose = () => {
      if (!request) {
        call.end(Code.InvalidArgument, "the call carried no request message");
        return;
      }
      const answer = (bytes: Uint8Array) => call.reply(bytes);
      let out: Promise<Uint8Array> | Uint8Array;
      try {
        out = impl(request);
      } catch (err) {
        call.fail(err);
        return;
      }
      if (out instanceof Uint8Array) answer(out);
      else out.then(answer, (err) => call.fail(err));
    };
  };
}

/**
 * A unary method served on a GrpcStream through the generated messages: see
 * {@link unaryBytesHandler}.
 */
export function unaryHandler<I extends DescMessage, O extends DescMessage>(
  method: DescMethodUnary<I, O>,
  impl: (request: MessageShape<I>) => Promise<MessageInitShape<O>> | MessageInitShape<O>,
): GrpcStreamHandler {
  return unaryBytesHandler(async (bytes) => {
    const answer = await impl(decodeRequest(method.input, bytes));
    return toBinary(method.output, isMessage(answer, method.output) ? answer : create(method.output, answer));
  });
}
