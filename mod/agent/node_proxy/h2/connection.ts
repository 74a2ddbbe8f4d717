/**
 * One HTTP/2 connection (RFC 9113) over a TLS socket, client or server, made for CONNECT tunnels:
 * the preface and SETTINGS exchange, HEADERS (with CONTINUATION) through HPACK, DATA with
 * END_STREAM, flow control of the connection and of each stream (WINDOW_UPDATE sent as the
 * receiving application consumes the bytes, so what a connection buffers stays bounded by its
 * windows), RST_STREAM, PING, GOAWAY (graceful drain: no new streams, the socket closed once the
 * last stream ends) and SETTINGS_MAX_CONCURRENT_STREAMS. A protocol error of the peer ends the
 * connection with a GOAWAY naming the error; nothing a peer sends throws out of an event handler.
 *
 * Each stream is a node:stream Duplex: writes become DATA frames (one frame per chunk, sized to
 * the peer's SETTINGS_MAX_FRAME_SIZE and windows), `end()` sends END_STREAM, the peer's
 * END_STREAM ends the readable side, and a reset or connection failure destroys it. A write is
 * acknowledged only when its bytes are inside the windows and the socket's buffer has room, so a
 * piped application socket pauses under backpressure and resumes on WINDOW_UPDATE or `drain`.
 *
 * @module
 */
import type { Socket } from "node:net";
import { Duplex } from "node:stream";
import type { Logger } from "../../../shared/logger.ts";
import {
  decodeSettings,
  DEFAULT_MAX_FRAME_SIZE,
  DEFAULT_WINDOW,
  ErrorCode,
  errorCodeName,
  Flag,
  frame,
  FRAME_HEADER_BYTES,
  type FrameHeader,
  frameHeader,
  FrameReader,
  FrameType,
  goawayFrame,
  MAX_FRAME_SIZE_LIMIT,
  MAX_WINDOW,
  pingFrame,
  PREFACE,
  rstStreamFrame,
  Setting,
  settingsFrame,
  windowUpdateFrame,
} from "./frames.ts";
import { createHeaderDecoder, createHeaderEncoder, type HeaderList } from "./hpack.ts";

/** The local settings of a connection. */
export interface H2Settings {
  /** SETTINGS_INITIAL_WINDOW_SIZE: each stream's receive window, bytes. */
  readonly streamWindow: number;
  /** The connection's receive window, bytes (opened with a WINDOW_UPDATE after the preface). */
  readonly connectionWindow: number;
  /** SETTINGS_MAX_FRAME_SIZE: the largest frame payload accepted, bytes. */
  readonly maxFrameSize: number;
  /** SETTINGS_MAX_CONCURRENT_STREAMS the peer may open. */
  readonly maxConcurrentStreams: number;
  /** The largest header block accepted, bytes (HEADERS and its CONTINUATIONs). */
  readonly maxHeaderBlock: number;
}

/** Settings for tunnels: large windows and frames, many streams. */
export const TUNNEL_SETTINGS: H2Settings = {
  streamWindow: 8 * 1024 * 1024,
  connectionWindow: 32 * 1024 * 1024,
  maxFrameSize: 1024 * 1024,
  maxConcurrentStreams: 10_000,
  maxHeaderBlock: 64 * 1024,
};

/** Options of an H2Connection. */
export interface H2ConnectionOptions {
  readonly role: "client" | "server";
  /** The connected (TLS) socket; the connection takes it over. */
  readonly socket: Socket;
  readonly logger: Logger;
  readonly settings?: H2Settings;
  /** A peer opened a stream (server role). Throwing here resets the stream. */
  readonly onStream?: (stream: H2Stream, headers: HeaderList) => void;
  /** The connection closed (after a GOAWAY drain, a failure, or the socket's end). */
  readonly onClose?: (err?: Error) => void;
  /** The peer sent GOAWAY: no new streams on this connection. */
  readonly onGoaway?: (code: number) => void;
}

/** Why a stream ended abnormally. */
export class H2StreamError extends Error {
  /** The RST_STREAM or GOAWAY error code. */
  readonly code: number;
  /**
   * The peer did not process the stream (RST_STREAM REFUSED_STREAM, or beyond a GOAWAY's last
   * stream id): it is safe to try again on another connection.
   */
  readonly refused: boolean;
  constructor(message: string, code: number, refused = false) {
    super(message);
    this.code = code;
    this.refused = refused;
  }
}

/** A write waiting for window or socket room. */
interface PendingWrite {
  chunk: Buffer;
  readonly cb: (err?: Error | null) => void;
}

/** Chunks up to this size go out in one write with their frame header (copying is cheaper). */
const SMALL_CHUNK = 2048;

/** One stream of an H2Connection. */
export class H2Stream extends Duplex {
  /** The stream identifier. */
  readonly id: number;
  /** The peer's response headers (client role), once received. */
  response: HeaderList | undefined;
  /** @internal the peer's window for this stream's DATA. */
  sendWindow: number;
  /** @internal bytes the peer may still send before our next WINDOW_UPDATE. */
  recvWindow: number;
  /** @internal received flow-controlled bytes, and those handed back as consumed. */
  received = 0;
  credited = 0;
  /** @internal consumed bytes not yet handed back to the peer in a WINDOW_UPDATE. */
  owed = 0;
  /** @internal END_STREAM sent / received, RST_STREAM sent or received. */
  localEnded = false;
  remoteEnded = false;
  reset = false;
  /** @internal a write waiting for window or socket room. */
  pending: PendingWrite | undefined;
  private readonly conn: H2Connection;

  /** @internal streams are made by their connection. */
  constructor(conn: H2Connection, id: number, sendWindow: number, recvWindow: number) {
    super({ allowHalfOpen: true, readableHighWaterMark: 256 * 1024, writableHighWaterMark: 256 * 1024 });
    this.conn = conn;
    this.id = id;
    this.sendWindow = sendWindow;
    this.recvWindow = recvWindow;
  }

  /** The connection this stream belongs to. */
  get connection(): H2Connection {
    return this.conn;
  }

  /** Sends the response headers (server role); `endStream` ends the stream's sending side too. */
  respond(status: number, endStream = false, headers: HeaderList = []): void {
    if (this.destroyed || this.localEnded) return;
    this.conn.sendHeaders(this, [[":status", String(status)], ...headers], endStream);
    if (endStream) {
      this.localEnded = true;
      this.end();
      this.conn.maybeClosed(this);
    }
  }

  /** Resets the stream with `code` (CANCEL by default) and destroys it. */
  cancel(code: number = ErrorCode.CANCEL): void {
    this.conn.resetStream(this, code);
    this.destroy();
  }

  override _write(chunk: Buffer, _enc: BufferEncoding, cb: (err?: Error | null) => void): void {
    this.conn.sendData(this, chunk, cb);
  }

  override _final(cb: (err?: Error | null) => void): void {
    if (!this.localEnded) this.conn.sendEnd(this);
    cb();
  }

  override _read(): void {
    this.conn.consumed(this);
  }

  /** Reads as a Readable does, then hands what left the buffer back to the peer's window. */
  override read(size?: number): ReturnType<Duplex["read"]> {
    const r = super.read(size);
    this.conn.consumed(this);
    return r;
  }

  override _destroy(err: Error | null, cb: (err?: Error | null) => void): void {
    this.conn.streamDestroyed(this);
    cb(err);
  }
}

/** An HTTP/2 connection over a connected socket. */
export class H2Connection {
  readonly role: "client" | "server";
  readonly socket: Socket;
  private readonly log: Logger;
  private readonly local: H2Settings;
  private readonly o: H2ConnectionOptions;
  private readonly streams = new Map<number, H2Stream>();
  private readonly encoder = createHeaderEncoder();
  private readonly decoder = createHeaderDecoder();
  private readonly reader: FrameReader;
  private nextStreamId: number;
  private lastPeerStreamId = 0;
  // The peer's settings.
  private peerMaxFrame = DEFAULT_MAX_FRAME_SIZE;
  private peerStreamWindow = DEFAULT_WINDOW;
  private peerMaxStreams = Number.POSITIVE_INFINITY;
  /** The peer's window for the connection; our receive window for it. */
  private sendWindow = DEFAULT_WINDOW;
  private recvWindow = DEFAULT_WINDOW;
  private connCredit = 0;
  /** Streams waiting for the connection's send window. */
  private readonly blocked = new Set<H2Stream>();
  /** Write callbacks waiting for the socket's `drain`. */
  private drainWaiters: Array<(err?: Error | null) => void> = [];
  private socketFull = false;
  /** Server role: preface bytes matched so far. */
  private prefaceSeen: number;
  private settingsSeen = false;
  /** A header block being collected (HEADERS then CONTINUATION). */
  private headerBlock: { streamId: number; flags: number; parts: Buffer[]; size: number } | undefined;
  /** The DATA frame being read, and its stream (undefined: discard its payload). */
  private dataStream: H2Stream | undefined;
  private goawaySent = false;
  private goawayReceived = false;
  private closed = false;
  private closeError: Error | undefined;
  private readonly pings = new Map<string, (err?: Error) => void>();

  constructor(o: H2ConnectionOptions) {
    this.o = o;
    this.role = o.role;
    this.socket = o.socket;
    this.log = o.logger;
    this.local = o.settings ?? TUNNEL_SETTINGS;
    this.nextStreamId = o.role === "client" ? 1 : 2;
    this.prefaceSeen = o.role === "server" ? 0 : PREFACE.length;
    this.reader = new FrameReader(this.sink(), this.local.maxFrameSize);
    const s = o.socket;
    s.setNoDelay?.(true);
    s.on("data", (chunk: Buffer) => this.onBytes(chunk));
    s.on("drain", () => this.onDrain());
    s.on("error", (err: Error) => this.teardown(err));
    s.on("end", () => this.teardown());
    s.on("close", () => this.teardown());
    const hello: Buffer[] = [];
    if (o.role === "client") hello.push(PREFACE);
    hello.push(settingsFrame([
      [Setting.ENABLE_PUSH, 0],
      [Setting.MAX_CONCURRENT_STREAMS, this.local.maxConcurrentStreams],
      [Setting.INITIAL_WINDOW_SIZE, this.local.streamWindow],
      [Setting.MAX_FRAME_SIZE, this.local.maxFrameSize],
      [Setting.MAX_HEADER_LIST_SIZE, this.local.maxHeaderBlock],
    ]));
    if (this.local.connectionWindow > DEFAULT_WINDOW) {
      hello.push(windowUpdateFrame(0, this.local.connectionWindow - DEFAULT_WINDOW));
      this.recvWindow = this.local.connectionWindow;
    }
    this.write(Buffer.concat(hello));
  }

  /** Open streams. */
  get streamCount(): number {
    return this.streams.size;
  }

  /** Whether the connection takes no new streams (GOAWAY either way, or closed). */
  get draining(): boolean {
    return this.goawaySent || this.goawayReceived || this.closed;
  }

  /** Whether the socket is gone. */
  get isClosed(): boolean {
    return this.closed;
  }

  /** Whether a new stream may be opened now (client role). */
  canOpen(): boolean {
    return !this.draining && this.streams.size < this.peerMaxStreams && this.nextStreamId <= 0x7fffffff;
  }

  /**
   * Opens a stream with `headers` (client role). The stream emits `response` with the peer's
   * headers. Throws when the connection takes no new streams.
   */
  request(headers: HeaderList): H2Stream {
    if (!this.canOpen()) {
      throw new H2StreamError("HTTP/2 connection takes no new streams", ErrorCode.REFUSED_STREAM, true);
    }
    const id = this.nextStreamId;
    this.nextStreamId += 2;
    const s = new H2Stream(this, id, this.peerStreamWindow, this.local.streamWindow);
    this.streams.set(id, s);
    this.sendHeaders(s, headers, false);
    return s;
  }

  /** Sends a PING; resolves with the round trip in ms once answered. */
  ping(): Promise<number> {
    const opaque = Buffer.allocUnsafe(8);
    opaque.writeDoubleBE(performance.now(), 0);
    const key = opaque.toString("hex");
    const started = performance.now();
    return new Promise((resolve, reject) => {
      if (this.closed) return reject(new Error("HTTP/2 connection closed"));
      this.pings.set(key, (err) => (err ? reject(err) : resolve(performance.now() - started)));
      this.write(pingFrame(opaque, false));
    });
  }

  /**
   * Graceful close: sends GOAWAY (no new streams), lets the open streams finish, then closes
   * the socket.
   */
  drain(): void {
    if (this.closed) return;
    if (!this.goawaySent) {
      this.goawaySent = true;
      this.write(goawayFrame(this.lastPeerStreamId, ErrorCode.NO_ERROR));
    }
    this.closeIfIdle();
  }

  /** Closes the connection at once: every stream is destroyed. */
  destroy(err?: Error): void {
    this.teardown(err);
    this.socket.destroy();
  }

  // ---- sending ----

  /** @internal */
  sendHeaders(s: H2Stream, headers: HeaderList, endStream: boolean): void {
    const block = this.encoder.encode(headers);
    const max = this.peerMaxFrame;
    const first = block.subarray(0, max);
    const flags = (endStream ? Flag.END_STREAM : 0) | (block.length <= max ? Flag.END_HEADERS : 0);
    const out = [frame(FrameType.HEADERS, flags, s.id, first)];
    for (let at = max; at < block.length; at += max) {
      const part = block.subarray(at, at + max);
      const last = at + max >= block.length;
      out.push(frame(FrameType.CONTINUATION, last ? Flag.END_HEADERS : 0, s.id, part));
    }
    this.write(out.length === 1 ? out[0]! : Buffer.concat(out));
  }

  /** @internal a chunk written to a stream: DATA frames as the windows allow. */
  sendData(s: H2Stream, chunk: Buffer, cb: (err?: Error | null) => void): void {
    if (s.reset || this.closed) return cb(this.streamGone(s));
    if (chunk.length === 0) return cb();
    s.pending = { chunk, cb };
    this.flush(s);
  }

  /** @internal the stream's writable side ended: END_STREAM. */
  sendEnd(s: H2Stream): void {
    if (s.reset || this.closed || s.localEnded) return;
    s.localEnded = true;
    this.write(frame(FrameType.DATA, Flag.END_STREAM, s.id));
    this.maybeClosed(s);
  }

  /** @internal resets a stream (unless already reset or closed). */
  resetStream(s: H2Stream, code: number): void {
    if (s.reset || (s.localEnded && s.remoteEnded)) return;
    s.reset = true;
    if (!this.closed) this.write(rstStreamFrame(s.id, code));
    this.forget(s);
  }

  /** @internal a stream was destroyed by its user or its connection. */
  streamDestroyed(s: H2Stream): void {
    if (!s.reset && !(s.localEnded && s.remoteEnded)) this.resetStream(s, ErrorCode.CANCEL);
    // What it received and nobody will read goes back to the connection's window.
    this.creditConnection(s.received - s.credited);
    s.credited = s.received;
    const p = s.pending;
    s.pending = undefined;
    p?.cb(this.streamGone(s));
    this.forget(s);
  }

  /** Sends what a stream has pending, as far as the windows allow. */
  private flush(s: H2Stream): void {
    const p = s.pending;
    if (!p) return;
    for (;;) {
      const c = p.chunk;
      const n = Math.min(c.length, s.sendWindow, this.sendWindow, this.peerMaxFrame);
      if (n <= 0) {
        if (this.sendWindow <= 0) this.blocked.add(s);
        return;
      }
      const piece = n === c.length ? c : c.subarray(0, n);
      this.writeData(s.id, piece);
      s.sendWindow -= n;
      this.sendWindow -= n;
      if (n < c.length) {
        p.chunk = c.subarray(n);
        continue;
      }
      s.pending = undefined;
      if (this.socketFull) this.drainWaiters.push(p.cb);
      else p.cb();
      return;
    }
  }

  /** One DATA frame: its header and the chunk, without copying a large chunk. */
  private writeData(id: number, piece: Buffer): void {
    if (piece.length <= SMALL_CHUNK) {
      const b = Buffer.allocUnsafe(FRAME_HEADER_BYTES + piece.length);
      b[0] = 0;
      b[1] = (piece.length >>> 8) & 0xff;
      b[2] = piece.length & 0xff;
      b[3] = FrameType.DATA;
      b[4] = 0;
      b.writeUInt32BE(id, 5);
      b.set(piece, FRAME_HEADER_BYTES);
      this.write(b);
      return;
    }
    // Two writes, no cork: corking makes the socket concatenate (copy) the pair.
    const sock = this.socket;
    sock.write(frameHeader(piece.length, FrameType.DATA, 0, id));
    if (!sock.write(piece)) this.socketFull = true;
  }

  private write(b: Buffer): void {
    if (this.socket.destroyed || this.socket.writableEnded) return;
    if (!this.socket.write(b)) this.socketFull = true;
  }

  private onDrain(): void {
    this.socketFull = false;
    const waiters = this.drainWaiters;
    this.drainWaiters = [];
    for (const cb of waiters) cb();
  }

  // ---- receiving ----

  /** @internal the application took bytes out of a stream: WINDOW_UPDATEs as they add up. */
  consumed(s: H2Stream): void {
    const delta = s.received - s.readableLength - s.credited;
    if (delta <= 0) return;
    s.credited += delta;
    this.creditConnection(delta);
    if (s.remoteEnded || s.reset || this.closed) return;
    s.owed += delta;
    if (s.owed >= Math.min(this.local.streamWindow / 4, 1024 * 1024)) {
      s.recvWindow += s.owed;
      this.write(windowUpdateFrame(s.id, s.owed));
      s.owed = 0;
    }
  }

  private creditConnection(n: number): void {
    if (n <= 0 || this.closed) return;
    this.connCredit += n;
    if (this.connCredit >= this.local.connectionWindow / 8) {
      this.recvWindow += this.connCredit;
      this.write(windowUpdateFrame(0, this.connCredit));
      this.connCredit = 0;
    }
  }

  private onBytes(chunk: Buffer): void {
    if (this.closed) return;
    try {
      if (this.prefaceSeen < PREFACE.length) {
        const take = Math.min(PREFACE.length - this.prefaceSeen, chunk.length);
        if (!chunk.subarray(0, take).equals(PREFACE.subarray(this.prefaceSeen, this.prefaceSeen + take))) {
          return void this.fail(ErrorCode.PROTOCOL_ERROR, "bad connection preface");
        }
        this.prefaceSeen += take;
        chunk = chunk.subarray(take);
        if (chunk.length === 0) return;
      }
      this.reader.push(chunk);
    } catch (err) {
      this.fail(ErrorCode.INTERNAL_ERROR, `internal error: ${(err as Error).message}`);
    }
  }

  private sink() {
    return {
      frame: (h: FrameHeader, p: Buffer) => this.onFrame(h, p),
      dataStart: (h: FrameHeader) => this.onDataStart(h),
      data: (_h: FrameHeader, piece: Buffer) => this.onDataPiece(piece),
      dataEnd: (h: FrameHeader) => this.onDataEnd(h),
      frameTooLarge: (h: FrameHeader) =>
        this.fail(
          ErrorCode.FRAME_SIZE_ERROR,
          `frame of ${h.length} bytes (type ${h.type}) exceeds SETTINGS_MAX_FRAME_SIZE ${this.local.maxFrameSize}`,
        ),
    };
  }

  /** Checks the frame order rules that hold for every frame; false when the connection failed. */
  private admit(h: FrameHeader): boolean {
    if (!this.settingsSeen) {
      if (h.type !== FrameType.SETTINGS || (h.flags & Flag.ACK) !== 0) {
        this.fail(ErrorCode.PROTOCOL_ERROR, "the first frame is not SETTINGS");
        return false;
      }
      this.settingsSeen = true;
    }
    if (this.headerBlock && (h.type !== FrameType.CONTINUATION || h.streamId !== this.headerBlock.streamId)) {
      this.fail(ErrorCode.PROTOCOL_ERROR, "a header block is not continued by CONTINUATION");
      return false;
    }
    return true;
  }

  private isIdle(id: number): boolean {
    const ours = (id % 2 === 1) === (this.role === "client");
    return ours ? id >= this.nextStreamId : id > this.lastPeerStreamId;
  }

  private onDataStart(h: FrameHeader): boolean {
    if (!this.admit(h)) return false;
    this.dataStream = undefined;
    if (h.streamId === 0) return this.fail(ErrorCode.PROTOCOL_ERROR, "DATA on stream 0");
    if (h.length > this.recvWindow) {
      return this.fail(ErrorCode.FLOW_CONTROL_ERROR, "DATA beyond the connection's window");
    }
    this.recvWindow -= h.length;
    const s = this.streams.get(h.streamId);
    if (!s) {
      if (this.isIdle(h.streamId)) {
        return this.fail(ErrorCode.PROTOCOL_ERROR, `DATA on idle stream ${h.streamId}`);
      }
      this.creditConnection(h.length);
      return true;
    }
    if (s.remoteEnded) {
      this.creditConnection(h.length);
      this.streamError(s, ErrorCode.STREAM_CLOSED, "DATA after END_STREAM");
      return true;
    }
    if (h.length > s.recvWindow) {
      this.creditConnection(h.length);
      this.streamError(s, ErrorCode.FLOW_CONTROL_ERROR, "DATA beyond the stream's window");
      return true;
    }
    s.recvWindow -= h.length;
    this.dataStream = s;
    return true;
  }

  private onDataPiece(piece: Buffer): void {
    const s = this.dataStream;
    if (!s) return;
    if (s.destroyed) return this.creditConnection(piece.length);
    s.received += piece.length;
    s.push(piece);
    // In flowing mode the piece may have gone straight to the reader.
    if (s.readableLength === 0) this.consumed(s);
  }

  private onDataEnd(h: FrameHeader): void {
    const s = this.dataStream;
    this.dataStream = undefined;
    if (!s) return;
    if (h.flags & Flag.END_STREAM) this.remoteEnd(s);
  }

  private onFrame(h: FrameHeader, p: Buffer): void {
    if (!this.admit(h)) return;
    switch (h.type) {
      case FrameType.DATA:
        return this.onPaddedData(h, p);
      case FrameType.HEADERS:
        return this.onHeaders(h, p);
      case FrameType.CONTINUATION:
        return this.onContinuation(h, p);
      case FrameType.PRIORITY:
        if (h.streamId === 0) return void this.fail(ErrorCode.PROTOCOL_ERROR, "PRIORITY on stream 0");
        if (p.length !== 5) return void this.fail(ErrorCode.FRAME_SIZE_ERROR, "PRIORITY of a wrong size");
        return;
      case FrameType.RST_STREAM:
        return this.onRstStream(h, p);
      case FrameType.SETTINGS:
        return this.onSettings(h, p);
      case FrameType.PUSH_PROMISE:
        return void this.fail(ErrorCode.PROTOCOL_ERROR, "PUSH_PROMISE although push is disabled");
      case FrameType.PING:
        return this.onPing(h, p);
      case FrameType.GOAWAY:
        return this.onGoaway(h, p);
      case FrameType.WINDOW_UPDATE:
        return this.onWindowUpdate(h, p);
      default:
        return; // Unknown frame types are ignored (RFC 9113 section 4.1).
    }
  }

  /** A padded DATA frame, whole. Its padding counts as consumed at the stream's next read. */
  private onPaddedData(h: FrameHeader, p: Buffer): void {
    const pad = p.length > 0 ? p[0]! : 0;
    if (p.length === 0 || pad >= p.length) {
      return void this.fail(ErrorCode.PROTOCOL_ERROR, "DATA padding exceeds the frame");
    }
    if (!this.onDataStart(h)) return;
    const s = this.dataStream;
    const body = p.subarray(1, p.length - pad);
    if (s) s.received += p.length - body.length;
    if (body.length > 0) this.onDataPiece(body);
    this.onDataEnd(h);
    if (s && !s.destroyed) this.consumed(s);
  }

  /** Strips padding and priority from a HEADERS payload; undefined when malformed. */
  private headersFragment(h: FrameHeader, p: Buffer): Buffer | undefined {
    let start = 0;
    let end = p.length;
    if (h.flags & Flag.PADDED) {
      if (p.length < 1) return undefined;
      end -= p[0]!;
      start = 1;
    }
    if (h.flags & Flag.PRIORITY) start += 5;
    return start > end ? undefined : p.subarray(start, end);
  }

  private onHeaders(h: FrameHeader, p: Buffer): void {
    if (h.streamId === 0) return void this.fail(ErrorCode.PROTOCOL_ERROR, "HEADERS on stream 0");
    const frag = this.headersFragment(h, p);
    if (!frag) return void this.fail(ErrorCode.PROTOCOL_ERROR, "HEADERS padding exceeds the frame");
    const block = { streamId: h.streamId, flags: h.flags, parts: [frag], size: frag.length };
    if (h.flags & Flag.END_HEADERS) return this.onHeaderBlock(block.streamId, block.flags, frag);
    this.headerBlock = block;
    this.checkBlockSize(block.size);
  }

  private onContinuation(h: FrameHeader, p: Buffer): void {
    const b = this.headerBlock;
    if (!b) return void this.fail(ErrorCode.PROTOCOL_ERROR, "CONTINUATION without HEADERS");
    b.parts.push(Buffer.from(p));
    b.size += p.length;
    if (!this.checkBlockSize(b.size)) return;
    if (h.flags & Flag.END_HEADERS) {
      this.headerBlock = undefined;
      this.onHeaderBlock(b.streamId, b.flags, Buffer.concat(b.parts));
    }
  }

  private checkBlockSize(size: number): boolean {
    if (size <= this.local.maxHeaderBlock) return true;
    this.fail(ErrorCode.ENHANCE_YOUR_CALM, `header block larger than ${this.local.maxHeaderBlock} bytes`);
    return false;
  }

  private onHeaderBlock(id: number, flags: number, block: Buffer): void {
    let headers: HeaderList;
    try {
      headers = this.decoder.decode(block);
    } catch (err) {
      return void this.fail(ErrorCode.COMPRESSION_ERROR, (err as Error).message);
    }
    const endStream = (flags & Flag.END_STREAM) !== 0;
    const s = this.streams.get(id);
    if (s) {
      if (s.remoteEnded) return this.streamError(s, ErrorCode.STREAM_CLOSED, "HEADERS after END_STREAM");
      if (this.role === "client" && s.response === undefined) {
        const status = Number(headers.find(([n]) => n === ":status")?.[1]);
        if (status >= 100 && status < 200) return;
        s.response = headers;
        s.emit("response", headers);
      }
      if (endStream) this.remoteEnd(s);
      return;
    }
    if (!this.isIdle(id)) return; // A stream already closed or reset: ignore.
    if (this.role === "client" || id % 2 === 0) {
      return void this.fail(ErrorCode.PROTOCOL_ERROR, `HEADERS opening stream ${id} the peer may not open`);
    }
    this.lastPeerStreamId = id;
    if (this.goawaySent || this.streams.size >= this.local.maxConcurrentStreams) {
      this.write(rstStreamFrame(id, ErrorCode.REFUSED_STREAM));
      return;
    }
    const st = new H2Stream(this, id, this.peerStreamWindow, this.local.streamWindow);
    this.streams.set(id, st);
    if (endStream) this.remoteEnd(st);
    try {
      this.o.onStream?.(st, headers);
    } catch (err) {
      this.log.warn("HTTP/2 stream handler failed", { stream: id, err: (err as Error).message });
      st.cancel(ErrorCode.INTERNAL_ERROR);
    }
  }

  private onRstStream(h: FrameHeader, p: Buffer): void {
    if (h.streamId === 0) return void this.fail(ErrorCode.PROTOCOL_ERROR, "RST_STREAM on stream 0");
    if (p.length !== 4) return void this.fail(ErrorCode.FRAME_SIZE_ERROR, "RST_STREAM of a wrong size");
    const s = this.streams.get(h.streamId);
    if (!s) {
      if (this.isIdle(h.streamId)) {
        this.fail(ErrorCode.PROTOCOL_ERROR, `RST_STREAM on idle stream ${h.streamId}`);
      }
      return;
    }
    const code = p.readUInt32BE(0);
    s.reset = true;
    this.forget(s);
    if (code === ErrorCode.NO_ERROR && s.remoteEnded) {
      // A complete answer, and the peer wants no more of our side: not an error.
      s.localEnded = true;
      if (s.pending) {
        const cb = s.pending.cb;
        s.pending = undefined;
        cb();
      }
      return;
    }
    s.destroy(
      new H2StreamError(
        `stream ${s.id} reset by the peer (${errorCodeName(code)})`,
        code,
        code === ErrorCode.REFUSED_STREAM,
      ),
    );
  }

  private onSettings(h: FrameHeader, p: Buffer): void {
    if (h.streamId !== 0) return void this.fail(ErrorCode.PROTOCOL_ERROR, "SETTINGS on a stream");
    if (h.flags & Flag.ACK) {
      if (p.length !== 0) this.fail(ErrorCode.FRAME_SIZE_ERROR, "SETTINGS ACK with a payload");
      return;
    }
    if (p.length % 6 !== 0) return void this.fail(ErrorCode.FRAME_SIZE_ERROR, "SETTINGS of a wrong size");
    for (const [id, v] of decodeSettings(p)) {
      switch (id) {
        case Setting.ENABLE_PUSH:
          if (v > 1) return void this.fail(ErrorCode.PROTOCOL_ERROR, "SETTINGS_ENABLE_PUSH not 0 or 1");
          break;
        case Setting.MAX_CONCURRENT_STREAMS:
          this.peerMaxStreams = v;
          break;
        case Setting.INITIAL_WINDOW_SIZE: {
          if (v > MAX_WINDOW) {
            return void this.fail(ErrorCode.FLOW_CONTROL_ERROR, "SETTINGS_INITIAL_WINDOW_SIZE too large");
          }
          const delta = v - this.peerStreamWindow;
          this.peerStreamWindow = v;
          for (const s of this.streams.values()) s.sendWindow += delta;
          if (delta > 0) { for (const s of [...this.streams.values()]) this.flush(s); }
          break;
        }
        case Setting.MAX_FRAME_SIZE:
          if (v < DEFAULT_MAX_FRAME_SIZE || v > MAX_FRAME_SIZE_LIMIT) {
            return void this.fail(ErrorCode.PROTOCOL_ERROR, "SETTINGS_MAX_FRAME_SIZE out of range");
          }
          this.peerMaxFrame = v;
          break;
        default:
          break; // HEADER_TABLE_SIZE: our encoder never indexes; others are advisory or unknown.
      }
    }
    this.write(settingsFrame());
  }

  private onPing(h: FrameHeader, p: Buffer): void {
    if (h.streamId !== 0) return void this.fail(ErrorCode.PROTOCOL_ERROR, "PING on a stream");
    if (p.length !== 8) return void this.fail(ErrorCode.FRAME_SIZE_ERROR, "PING of a wrong size");
    if ((h.flags & Flag.ACK) === 0) return this.write(pingFrame(p, true));
    const key = p.toString("hex");
    const done = this.pings.get(key);
    this.pings.delete(key);
    done?.();
  }

  private onGoaway(h: FrameHeader, p: Buffer): void {
    if (h.streamId !== 0) return void this.fail(ErrorCode.PROTOCOL_ERROR, "GOAWAY on a stream");
    if (p.length < 8) return void this.fail(ErrorCode.FRAME_SIZE_ERROR, "GOAWAY of a wrong size");
    const last = p.readUInt32BE(0) & 0x7fffffff;
    const code = p.readUInt32BE(4);
    this.goawayReceived = true;
    if (code !== ErrorCode.NO_ERROR) {
      this.log.debug("HTTP/2 peer sent GOAWAY", {
        code: errorCodeName(code),
        debug: p.subarray(8).toString("utf8"),
      });
    }
    for (const s of [...this.streams.values()]) {
      const ours = (s.id % 2 === 1) === (this.role === "client");
      if (ours && s.id > last) {
        s.reset = true;
        this.forget(s);
        s.destroy(new H2StreamError(`stream ${s.id} not processed (GOAWAY)`, ErrorCode.REFUSED_STREAM, true));
      }
    }
    this.o.onGoaway?.(code);
    this.closeIfIdle();
  }

  private onWindowUpdate(h: FrameHeader, p: Buffer): void {
    if (p.length !== 4) return void this.fail(ErrorCode.FRAME_SIZE_ERROR, "WINDOW_UPDATE of a wrong size");
    const inc = p.readUInt32BE(0) & 0x7fffffff;
    if (h.streamId === 0) {
      if (inc === 0) return void this.fail(ErrorCode.PROTOCOL_ERROR, "WINDOW_UPDATE of 0");
      this.sendWindow += inc;
      if (this.sendWindow > MAX_WINDOW) {
        return void this.fail(ErrorCode.FLOW_CONTROL_ERROR, "connection window above 2^31-1");
      }
      const waiting = [...this.blocked];
      this.blocked.clear();
      for (const s of waiting) this.flush(s);
      return;
    }
    const s = this.streams.get(h.streamId);
    if (!s) {
      if (this.isIdle(h.streamId)) {
        this.fail(ErrorCode.PROTOCOL_ERROR, `WINDOW_UPDATE on idle stream ${h.streamId}`);
      }
      return;
    }
    if (inc === 0) return this.streamError(s, ErrorCode.PROTOCOL_ERROR, "WINDOW_UPDATE of 0");
    s.sendWindow += inc;
    if (s.sendWindow > MAX_WINDOW) {
      return this.streamError(s, ErrorCode.FLOW_CONTROL_ERROR, "window above 2^31-1");
    }
    this.flush(s);
  }

  // ---- stream and connection ends ----

  private remoteEnd(s: H2Stream): void {
    s.remoteEnded = true;
    s.push(null);
    this.maybeClosed(s);
  }

  /** @internal forgets a stream whose both sides ended. */
  maybeClosed(s: H2Stream): void {
    if (s.localEnded && s.remoteEnded) this.forget(s);
  }

  private forget(s: H2Stream): void {
    if (this.streams.get(s.id) !== s) return;
    this.streams.delete(s.id);
    this.blocked.delete(s);
    this.closeIfIdle();
  }

  private streamError(s: H2Stream, code: number, why: string): void {
    this.log.debug("HTTP/2 stream error", { stream: s.id, code: errorCodeName(code), why });
    this.resetStream(s, code);
    s.destroy(new H2StreamError(`stream ${s.id}: ${why}`, code));
  }

  private streamGone(s: H2Stream): Error {
    return this.closeError ?? new H2StreamError(`stream ${s.id} was reset`, ErrorCode.CANCEL);
  }

  private closeIfIdle(): void {
    if ((this.goawaySent || this.goawayReceived) && this.streams.size === 0 && !this.closed) {
      this.socket.end();
      this.teardown();
    }
  }

  /** A connection error: GOAWAY with `code`, then close. Returns false (for frame handlers). */
  private fail(code: number, message: string): false {
    if (this.closed) return false;
    this.log.warn("HTTP/2 connection error; closing", {
      peer: this.socket.remoteAddress,
      code: errorCodeName(code),
      err: message,
    });
    this.reader.stop();
    this.write(goawayFrame(this.lastPeerStreamId, code, message));
    const sock = this.socket;
    sock.end();
    this.teardown(new Error(`HTTP/2 ${errorCodeName(code)}: ${message}`));
    const timer = setTimeout(() => sock.destroy(), 1000);
    timer.unref?.();
    sock.once("close", () => clearTimeout(timer));
    return false;
  }

  /** Marks the connection closed and destroys its streams (once). */
  private teardown(err?: Error): void {
    if (this.closed) return;
    this.closed = true;
    this.closeError = err ?? new Error("HTTP/2 connection closed");
    this.reader.stop();
    const open = [...this.streams.values()];
    this.streams.clear();
    this.blocked.clear();
    for (const s of open) {
      if (!(s.localEnded && s.remoteEnded)) {
        s.reset = true;
        s.destroy(this.closeError);
      }
    }
    const waiters = this.drainWaiters;
    this.drainWaiters = [];
    for (const cb of waiters) cb(this.closeError);
    for (const done of this.pings.values()) done(this.closeError);
    this.pings.clear();
    this.o.onClose?.(err);
  }
}
