/**
 * Forwarding the DNS queries that are not the mesh's to the machine's resolvers: over UDP from a
 * fresh socket per query (a random source port), and again over TCP to the same resolver when a
 * TCP client's answer came back truncated; a resolver that times out or fails is skipped for the
 * next. The query's bytes go out unchanged and an answer counts only when it comes from the
 * resolver asked and carries the query's id.
 *
 * @module
 */
import { createSocket } from "node:dgram";
import { connect, isIP, isIPv6 } from "node:net";

/** A resolver's address. */
export interface Upstream {
  readonly host: string;
  readonly port: number;
}

/**
 * Parses `IP`, `IP:PORT`, `IPV6` or `[IPV6]:PORT` (`defaultPort` when no port is given); throws naming
 * `field` when it is none of these.
 */
export function parseHostPort(field: string, text: string, defaultPort?: number): Upstream {
  const bad = () => new Error(`${field}: ${JSON.stringify(text)} is not IP:PORT`);
  const ipOf = (h: string) => isIP(h.split("%")[0]!);
  let host: string;
  let port: string | undefined;
  const bracket = /^\[([^\]]+)\](?::(\d+))?$/.exec(text);
  if (bracket) [host, port] = [bracket[1]!, bracket[2]];
  else if (ipOf(text) !== 0) [host, port] = [text, undefined];
  else {
    const i = text.lastIndexOf(":");
    if (i < 0) throw bad();
    [host, port] = [text.slice(0, i), text.slice(i + 1)];
  }
  if (ipOf(host) === 0 || (port !== undefined && !/^\d{1,5}$/.test(port))) throw bad();
  const n = port === undefined ? defaultPort : Number(port);
  if (n === undefined || n > 65535) throw bad();
  return { host, port: n };
}

/** `host:port`, with brackets around IPv6. */
export function formatHostPort(u: Upstream): string {
  return isIPv6(u.host.split("%")[0]!) ? `[${u.host}]:${u.port}` : `${u.host}:${u.port}`;
}

const idOf = (msg: Uint8Array): number => (msg.length >= 2 ? (msg[0]! << 8) | msg[1]! : -1);
/** Whether a DNS message has the TC (truncated) bit. */
export const truncated = (msg: Uint8Array): boolean => msg.length >= 3 && (msg[2]! & 0x02) !== 0;

/** Sends `query` to `u` over UDP; resolves with the first answer with the query's id from `u`. */
export function exchangeUdp(u: Upstream, query: Uint8Array, timeoutMs: number): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const sock = createSocket(isIPv6(u.host.split("%")[0]!) ? "udp6" : "udp4");
    const timer = setTimeout(
      () => finish(new Error(`no answer from ${formatHostPort(u)} within ${timeoutMs} ms`)),
      timeoutMs,
    );
    function finish(err: Error | undefined, msg?: Buffer) {
      clearTimeout(timer);
      try {
        sock.close();
      } catch {
        // already closed
      }
      if (err) reject(err);
      else resolve(msg!);
    }
    sock.on("error", (err) => finish(err));
    sock.on("message", (msg, from) => {
      if (from.port === u.port && idOf(msg) === idOf(query)) finish(undefined, msg);
    });
    sock.send(query, u.port, u.host, (err) => err && finish(err));
  });
}

/** Sends `query` to `u` over TCP (2-byte length prefix) and resolves with its answer. */
export function exchangeTcp(u: Upstream, query: Uint8Array, timeoutMs: number): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const sock = connect({ host: u.host, port: u.port });
    let buf = Buffer.alloc(0);
    const timer = setTimeout(
      () => finish(new Error(`no TCP answer from ${formatHostPort(u)} within ${timeoutMs} ms`)),
      timeoutMs,
    );
    function finish(err: Error | undefined, msg?: Buffer) {
      clearTimeout(timer);
      sock.destroy();
      if (err) reject(err);
      else resolve(msg!);
    }
    sock.on("error", (err) => finish(err));
    sock.on("connect", () => {
      const len = Buffer.alloc(2);
      len.writeUInt16BE(query.length);
      sock.write(Buffer.concat([len, query]));
    });
    sock.on("data", (chunk: Buffer) => {
      buf = Buffer.concat([buf, chunk]);
      if (buf.length < 2) return;
      const need = buf.readUInt16BE(0);
      if (buf.length < 2 + need) return;
      const msg = buf.subarray(2, 2 + need);
      if (idOf(msg) !== idOf(query)) {
        finish(new Error(`TCP answer from ${formatHostPort(u)} has the wrong id`));
      } else finish(undefined, Buffer.from(msg));
    });
    sock.on(
      "end",
      () => finish(new Error(`${formatHostPort(u)} closed the TCP connection before answering`)),
    );
  });
}

/**
 * Asks each upstream in turn until one answers: UDP first, then TCP to the same one when the
 * answer is truncated and `tcpClient` (a UDP client gets the truncated answer and retries over
 * TCP itself). Rejects with every upstream's failure when none answered.
 */
export async function forwardQuery(
  upstreams: readonly Upstream[],
  query: Uint8Array,
  opts: { tcpClient: boolean; timeoutMs: number },
): Promise<Buffer> {
  const failures: string[] = [];
  for (const u of upstreams) {
    try {
      const answer = await exchangeUdp(u, query, opts.timeoutMs);
      if (!(opts.tcpClient && truncated(answer))) return answer;
      return await exchangeTcp(u, query, opts.timeoutMs);
    } catch (err) {
      failures.push(`${formatHostPort(u)}: ${(err as Error).message}`);
    }
  }
  throw new Error(upstreams.length === 0 ? "no upstream resolvers" : failures.join("; "));
}
