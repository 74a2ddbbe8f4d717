/**
 * Plain TCP plumbing of the node proxy's listeners: dialing with a deadline, binding with an
 * error that names the listener, and closing a listener together with the connections it
 * accepted.
 *
 * @module
 */
import { connect, type Server, type Socket } from "node:net";

/** Opens a TCP connection (half-open allowed); rejects on error or after `timeoutMs`. */
export function dial(host: string, port: number, timeoutMs: number): Promise<Socket> {
  return new Promise((resolve, reject) => {
    const s = connect({ host, port, allowHalfOpen: true });
    const timer = setTimeout(() => {
      s.destroy();
      reject(new Error(`connect to ${host}:${port} timed out after ${timeoutMs} ms`));
    }, timeoutMs);
    const onError = (err: Error) => {
      clearTimeout(timer);
      reject(new Error(`connect to ${host}:${port}: ${err.message}`));
    };
    s.once("error", onError);
    s.once("connect", () => {
      clearTimeout(timer);
      s.off("error", onError);
      s.setNoDelay(true);
      // Errors after this point are the relay's to handle; never let one go unhandled.
      s.on("error", () => {});
      resolve(s);
    });
  });
}

/** Binds `server` on HOST:PORT; resolves with the bound port. Rejects naming the listener. */
export function listen(server: Server, host: string, port: number, what: string): Promise<number> {
  return new Promise((resolve, reject) => {
    const onError = (err: Error) =>
      reject(new Error(`node proxy ${what} listener ${host}:${port}: ${err.message}`));
    server.once("error", onError);
    server.listen(port, host, () => {
      server.off("error", onError);
      const a = server.address();
      resolve(typeof a === "object" && a ? a.port : port);
    });
  });
}

/** The connections a server accepted and that are still open. */
export function trackConnections(server: Server): Set<Socket> {
  const open = new Set<Socket>();
  server.on("connection", (s: Socket) => {
    open.add(s);
    s.once("close", () => open.delete(s));
  });
  return open;
}

/** Stops accepting and destroys the connections still open; resolves once closed. */
export function closeServer(server: Server, open: Set<Socket>): Promise<void> {
  const closed = new Promise<void>((resolve) => server.close(() => resolve()));
  for (const s of open) s.destroy();
  return closed;
}

/** `HOST:PORT`, with brackets around an IPv6 host. */
export function hostPort(host: string, port: number): string {
  return host.includes(":") ? `[${host}]:${port}` : `${host}:${port}`;
}

/** Splits `HOST:PORT` or `[V6]:PORT`; undefined when it is not that shape. */
export function splitHostPort(text: string): { host: string; port: number } | undefined {
  const m = /^\[([^\]]+)\]:(\d{1,5})$/.exec(text) ?? /^([^:\s]+):(\d{1,5})$/.exec(text);
  if (!m) return undefined;
  const port = Number(m[2]);
  return port > 0 && port < 65536 ? { host: m[1]!.toLowerCase(), port } : undefined;
}
