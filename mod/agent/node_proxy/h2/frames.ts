/**
 * HTTP/2 frames (RFC 9113 section 4 and 6): the constants of the protocol, the 9-byte frame
 * header, encoders of the small control frames, and an incremental reader that splits the bytes
 * of a connection into frames. DATA payloads are handed on as slices of the bytes read, piece by
 * piece as they arrive, so a large DATA frame is never copied or held whole; other frames are
 * collected whole (bounded by the local SETTINGS_MAX_FRAME_SIZE) before they are handed on.
 *
 * @module
 */

/** The client connection preface (RFC 9113 section 3.4). */
export const PREFACE = Buffer.from("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", "latin1");

/** Bytes of a frame header. */
export const FRAME_HEADER_BYTES = 9;

/** Frame types (RFC 9113 section 6). */
export const FrameType = {
  DATA: 0x0,
  HEADERS: 0x1,
  PRIORITY: 0x2,
  RST_STREAM: 0x3,
  SETTINGS: 0x4,
  PUSH_PROMISE: 0x5,
  PING: 0x6,
  GOAWAY: 0x7,
  WINDOW_UPDATE: 0x8,
  CONTINUATION: 0x9,
} as const;

/** Frame flags. */
export const Flag = {
  END_STREAM: 0x1,
  ACK: 0x1,
  END_HEADERS: 0x4,
  PADDED: 0x8,
  PRIORITY: 0x20,
} as const;

/** Error codes (RFC 9113 section 7). */
export const ErrorCode = {
  NO_ERROR: 0x0,
  PROTOCOL_ERROR: 0x1,
  INTERNAL_ERROR: 0x2,
  FLOW_CONTROL_ERROR: 0x3,
  SETTINGS_TIMEOUT: 0x4,
  STREAM_CLOSED: 0x5,
  FRAME_SIZE_ERROR: 0x6,
  REFUSED_STREAM: 0x7,
  CANCEL: 0x8,
  COMPRESSION_ERROR: 0x9,
  CONNECT_ERROR: 0xa,
  ENHANCE_YOUR_CALM: 0xb,
  INADEQUATE_SECURITY: 0xc,
  HTTP_1_1_REQUIRED: 0xd,
} as const;

/** The name of an error code, for messages. */
export function errorCodeName(code: number): string {
  for (const [name, value] of Object.entries(ErrorCode)) if (value === code) return name;
  return `0x${code.toString(16)}`;
}

/** SETTINGS identifiers (RFC 9113 section 6.5.2). */
export const Setting = {
  HEADER_TABLE_SIZE: 0x1,
  ENABLE_PUSH: 0x2,
  MAX_CONCURRENT_STREAMS: 0x3,
  INITIAL_WINDOW_SIZE: 0x4,
  MAX_FRAME_SIZE: 0x5,
  MAX_HEADER_LIST_SIZE: 0x6,
} as const;

/** The default SETTINGS_MAX_FRAME_SIZE and its lower bound. */
export const DEFAULT_MAX_FRAME_SIZE = 16_384;
/** The largest SETTINGS_MAX_FRAME_SIZE a peer may announce. */
export const MAX_FRAME_SIZE_LIMIT = 16_777_215;
/** The default initial flow-control window, of streams and of the connection. */
export const DEFAULT_WINDOW = 65_535;
/** The largest flow-control window. */
export const MAX_WINDOW = 2_147_483_647;

/** A frame header, decoded. */
export interface FrameHeader {
  readonly length: number;
  readonly type: number;
  readonly flags: number;
  readonly streamId: number;
}

/** A 9-byte frame header. */
export function frameHeader(length: number, type: number, flags: number, streamId: number): Buffer {
  const b = Buffer.allocUnsafe(FRAME_HEADER_BYTES);
  b[0] = (length >>> 16) & 0xff;
  b[1] = (length >>> 8) & 0xff;
  b[2] = length & 0xff;
  b[3] = type;
  b[4] = flags;
  b.writeUInt32BE(streamId & 0x7fffffff, 5);
  return b;
}

/** A whole frame: header and payload in one buffer (for small control frames). */
export function frame(type: number, flags: number, streamId: number, payload?: Uint8Array): Buffer {
  const n = payload?.length ?? 0;
  const b = Buffer.allocUnsafe(FRAME_HEADER_BYTES + n);
  b[0] = (n >>> 16) & 0xff;
  b[1] = (n >>> 8) & 0xff;
  b[2] = n & 0xff;
  b[3] = type;
  b[4] = flags;
  b.writeUInt32BE(streamId & 0x7fffffff, 5);
  if (payload) b.set(payload, FRAME_HEADER_BYTES);
  return b;
}

/** A SETTINGS frame with `values` (identifier, value pairs); an ACK when `values` is omitted. */
export function settingsFrame(values?: ReadonlyArray<readonly [number, number]>): Buffer {
  if (!values) return frame(FrameType.SETTINGS, Flag.ACK, 0);
  const p = Buffer.allocUnsafe(values.length * 6);
  values.forEach(([id, v], i) => {
    p.writeUInt16BE(id, i * 6);
    p.writeUInt32BE(v, i * 6 + 2);
  });
  return frame(FrameType.SETTINGS, 0, 0, p);
}

/** Decodes a SETTINGS payload (its length a multiple of 6) into identifier, value pairs. */
export function decodeSettings(payload: Buffer): Array<[number, number]> {
  const out: Array<[number, number]> = [];
  for (let i = 0; i + 6 <= payload.length; i += 6) {
    out.push([payload.readUInt16BE(i), payload.readUInt32BE(i + 2)]);
  }
  return out;
}

/** A WINDOW_UPDATE frame. */
export function windowUpdateFrame(streamId: number, increment: number): Buffer {
  const b = frameHeader(4, FrameType.WINDOW_UPDATE, 0, streamId);
  return Buffer.concat([b, u32(increment & 0x7fffffff)]);
}

/** A RST_STREAM frame. */
export function rstStreamFrame(streamId: number, code: number): Buffer {
  return frame(FrameType.RST_STREAM, 0, streamId, u32(code));
}

/** A PING frame (an answer when `ack`). */
export function pingFrame(opaque: Uint8Array, ack: boolean): Buffer {
  return frame(FrameType.PING, ack ? Flag.ACK : 0, 0, opaque);
}

/** A GOAWAY frame: the last stream id processed, an error code, and debug text. */
export function goawayFrame(lastStreamId: number, code: number, debug = ""): Buffer {
  const text = Buffer.from(debug.slice(0, 256), "utf8");
  const p = Buffer.allocUnsafe(8 + text.length);
  p.writeUInt32BE(lastStreamId & 0x7fffffff, 0);
  p.writeUInt32BE(code, 4);
  p.set(text, 8);
  return frame(FrameType.GOAWAY, 0, 0, p);
}

function u32(v: number): Buffer {
  const b = Buffer.allocUnsafe(4);
  b.writeUInt32BE(v >>> 0, 0);
  return b;
}

/** What a FrameReader hands its frames to. */
export interface FrameSink {
  /** A whole frame other than an unpadded DATA frame. */
  frame(h: FrameHeader, payload: Buffer): void;
  /**
   * The header of an unpadded DATA frame; its payload follows through `data`, then `dataEnd`.
   * Returning false stops reading (the connection failed).
   */
  dataStart(h: FrameHeader): boolean;
  /** A piece of the current DATA frame's payload (a slice of the bytes read, not a copy). */
  data(h: FrameHeader, piece: Buffer): void;
  /** The current DATA frame is complete. */
  dataEnd(h: FrameHeader): void;
  /** The peer broke the framing: a frame larger than allowed. */
  frameTooLarge(h: FrameHeader): void;
}

/**
 * Splits the bytes of a connection into frames, incrementally. `maxFrameSize` is the largest
 * payload accepted (the local SETTINGS_MAX_FRAME_SIZE).
 */
export class FrameReader {
  private readonly head = Buffer.alloc(FRAME_HEADER_BYTES);
  private headFill = 0;
  private current: FrameHeader | undefined;
  /** Payload bytes of the current frame still to come. */
  private remaining = 0;
  /** Whether the current frame's payload is streamed (unpadded DATA). */
  private streaming = false;
  private payload: Buffer | undefined;
  private payloadFill = 0;
  private stopped = false;

  constructor(private readonly sink: FrameSink, private readonly maxFrameSize: number) {}

  /** Stops reading for good (after a connection error). */
  stop(): void {
    this.stopped = true;
    this.payload = undefined;
  }

  /** Feeds bytes read from the connection. */
  push(chunk: Buffer): void {
    let off = 0;
    const n = chunk.length;
    while (off < n && !this.stopped) {
      if (this.current === undefined) {
        if (this.headFill === 0 && n - off >= FRAME_HEADER_BYTES) {
          this.begin(chunk, off);
          off += FRAME_HEADER_BYTES;
        } else {
          const take = Math.min(FRAME_HEADER_BYTES - this.headFill, n - off);
          chunk.copy(this.head, this.headFill, off, off + take);
          this.headFill += take;
          off += take;
          if (this.headFill < FRAME_HEADER_BYTES) return;
          this.headFill = 0;
          this.begin(this.head, 0);
        }
        if (this.stopped) return;
        if (this.remaining === 0) this.finish();
        continue;
      }
      const take = Math.min(this.remaining, n - off);
      if (this.streaming) {
        this.sink.data(this.current, chunk.subarray(off, off + take));
      } else if (this.payload === undefined && take === this.remaining) {
        this.payload = chunk.subarray(off, off + take);
        this.payloadFill = take;
      } else {
        this.payload ??= Buffer.allocUnsafe(this.current.length);
        chunk.copy(this.payload, this.payloadFill, off, off + take);
        this.payloadFill += take;
      }
      off += take;
      this.remaining -= take;
      if (this.remaining === 0 && !this.stopped) this.finish();
    }
  }

  private begin(b: Buffer, at: number): void {
    const h: FrameHeader = {
      length: (b[at]! << 16) | (b[at + 1]! << 8) | b[at + 2]!,
      type: b[at + 3]!,
      flags: b[at + 4]!,
      streamId: b.readUInt32BE(at + 5) & 0x7fffffff,
    };
    if (h.length > this.maxFrameSize) {
      this.stop();
      this.sink.frameTooLarge(h);
      return;
    }
    this.current = h;
    this.remaining = h.length;
    this.streaming = h.type === FrameType.DATA && (h.flags & Flag.PADDED) === 0;
    this.payload = undefined;
    this.payloadFill = 0;
    if (this.streaming && !this.sink.dataStart(h)) this.stop();
  }

  private finish(): void {
    const h = this.current!;
    this.current = undefined;
    if (this.streaming) {
      this.sink.dataEnd(h);
      return;
    }
    const p = this.payload ?? EMPTY;
    this.payload = undefined;
    this.sink.frame(h, p);
  }
}

const EMPTY = Buffer.alloc(0);
