/**
 * The explicit proxy's request head (`--capture=none`): an HTTP/1.1 `CONNECT host:port` request
 * as curl's `-x` and other HTTP proxy clients send it, read from the start of a TCP connection,
 * and the status lines answered to it.
 *
 * @module
 */
import type { Socket } from "node:net";
import { splitHostPort } from "./sockets.ts";

/** The longest request head accepted. */
export const MAX_HEAD_BYTES = 8192;

/** A parsed CONNECT request. */
export interface ConnectRequest {
  /** Lower-case host name or address, without brackets. */
  readonly host: string;
  readonly port: number;
  /** Bytes the client sent after the head (to forward first). */
  readonly rest: Buffer;
}

/**
 * Parses a request head (up to and including the blank line). Returns the request, or a string
 * saying what is wrong with it.
 */
export function parseConnectHead(head: string): { host: string; port: number } | string {
  const line = head.split("\r\n", 1)[0] ?? "";
  const m = /^([A-Z]+) (\S+) HTTP\/1\.[01]$/.exec(line);
  if (!m) return `not an HTTP/1.1 request line: ${JSON.stringify(line.slice(0, 100))}`;
  if (m[1] !== "CONNECT") return `method ${m[1]} is not supported; this proxy takes CONNECT only`;
  const target = splitHostPort(m[2]!);
  if (!target) return `CONNECT target ${JSON.stringify(m[2])} is not HOST:PORT`;
  return target;
}

/** Reads a CONNECT head from `socket`; rejects with what was wrong (or the connection closing). */
export function readConnectRequest(socket: Socket, timeoutMs: number): Promise<ConnectRequest> {
  return new Promise((resolve, reject) => {
    let buf = Buffer.alloc(0);
    const timer = setTimeout(() => finish(new Error(`no CONNECT request within ${timeoutMs} ms`)), timeoutMs);
    const finish = (err: Error | undefined, req?: ConnectRequest) => {
      clearTimeout(timer);
      socket.off("data", onData);
      socket.off("end", onEnd);
      socket.pause();
      if (err) reject(err);
      else resolve(req!);
    };
    const onEnd = () => finish(new Error("the client closed before sending a CONNECT request"));
    const onData = (chunk: Buffer) => {
      buf = Buffer.concat([buf, chunk]);
      const end = buf.indexOf("\r\n\r\n");
      if (end < 0) {
        if (buf.length > MAX_HEAD_BYTES) {
          finish(new Error(`request head longer than ${MAX_HEAD_BYTES} bytes`));
        }
        return;
      }
      const parsed = parseConnectHead(buf.subarray(0, end + 4).toString("latin1"));
      if (typeof parsed === "string") finish(new Error(parsed));
      else finish(undefined, { ...parsed, rest: buf.subarray(end + 4) });
    };
    socket.on("data", onData);
    socket.once("end", onEnd);
    socket.resume();
  });
}

/** The status line and blank line for `status`. */
export function connectResponse(status: 200 | 400 | 403 | 502 | 503, reason: string): string {
  return `HTTP/1.1 ${status} ${reason}\r\n\r\n`;
}
