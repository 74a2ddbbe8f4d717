/**
 * The node proxy's DNS proxy (Istio's DNS proxying, for VMs): UDP and TCP on one address
 * (127.0.0.1:15053 by contract) and, when that is 127.0.0.1, on the same port of ::1 too, where
 * capture sends IPv6 DNS (skipped with a warning where IPv6 loopback cannot be bound), answering mesh host names from the view (dns_answer.ts) and
 * forwarding everything else to the machine's resolvers (dns_forward.ts), SERVFAIL when none
 * answers. Packets that do not decode as a DNS query are dropped and logged (at most a few lines
 * a minute per source), never answered.
 *
 * @module
 */
import * as packet from "dns-packet";
import { createSocket, type Socket as UdpSocket } from "node:dgram";
import { createServer, isIPv6, type Server, type Socket } from "node:net";
import { errorMessage } from "../../shared/errors.ts";
import type { Logger } from "../../shared/logger.ts";
import { createRateLimiter } from "../../shared/rate_limit.ts";
import { DEFAULT_DOMAIN, DEFAULT_TTL, meshAnswer, servfail, udpLimit } from "./dns_answer.ts";
import { formatHostPort, forwardQuery, parseHostPort, type Upstream } from "./dns_forward.ts";
import { readResolvConf } from "./resolv_conf.ts";
import type { NodeProxyView } from "./view.ts";

/** Options of startDnsProxy. */
export interface DnsProxyOptions {
  /** `IP:PORT` to serve on, UDP and TCP (port 0 picks a free one). */
  addr: string;
  /** The current view, read for every query. */
  view: () => NodeProxyView;
  /** Resolvers (`IP` or `IP:PORT`) for other names; /etc/resolv.conf's nameservers when absent or empty. */
  upstreams?: string[];
  logger: Logger;
  /** How long to wait for one upstream before the next; default 2000 ms. */
  timeoutMs?: number;
  /** The cluster domain of `NAME.NAMESPACE.svc.DOMAIN` hosts; default cluster.local. */
  domain?: string;
  /** TTL of mesh answers in seconds; default 30. */
  ttl?: number;
  /** Queries being forwarded at once, past which new ones are dropped; default 1024. */
  maxInFlight?: number;
  /** Also serve on ::1 (same port) when `addr` is 127.0.0.1; default true. */
  ipv6Loopback?: boolean;
}

/** A running DNS proxy. */
export interface DnsProxy {
  /** Closes both sockets and every TCP connection. */
  stop(): Promise<void>;
  /** The address it serves on (`IP:PORT`, the real port when 0 was asked). */
  readonly addr: string;
  /** Every address it serves on: `addr`, and `[::1]:PORT` when it serves IPv6 loopback too. */
  readonly addrs: readonly string[];
}

const TCP_IDLE_MS = 10_000;

async function resolveUpstreams(o: DnsProxyOptions, self: string): Promise<Upstream[]> {
  const given = o.upstreams !== undefined && o.upstreams.length > 0;
  const list = given ? o.upstreams! : (await readResolvConf()).nameservers;
  return list.map((u, i) =>
    parseHostPort(given ? `dns proxy upstreams[${i}]` : "/etc/resolv.conf nameserver", u, 53)
  )
    .filter((u) => formatHostPort(u) !== self);
}

function bindUdp(host: string, port: number): Promise<UdpSocket> {
  return new Promise((resolve, reject) => {
    const sock = createSocket(isIPv6(host) ? "udp6" : "udp4");
    sock.once("error", reject);
    sock.bind(port, host, () => {
      sock.off("error", reject);
      resolve(sock);
    });
  });
}

function listenTcp(server: Server, host: string, port: number): Promise<void> {
  return new Promise((resolve, reject) => {
    server.once("error", reject);
    server.listen(port, host, () => {
      server.off("error", reject);
      resolve();
    });
  });
}

/** Binds UDP and TCP on the same port; with port 0, tries a few free UDP ports until TCP fits. */
async function bindBoth(host: string, port: number, tcp: Server): Promise<UdpSocket> {
  for (let attempt = 0;; attempt++) {
    const udp = await bindUdp(host, port);
    try {
      await listenTcp(tcp, host, udp.address().port);
      return udp;
    } catch (err) {
      udp.close();
      if (port !== 0 || attempt >= 10 || (err as NodeJS.ErrnoException).code !== "EADDRINUSE") throw err;
    }
  }
}

/**
 * Starts the DNS proxy on `o.addr`. Throws naming the address or the upstream that is wrong,
 * or when the address cannot be bound.
 */
export async function startDnsProxy(o: DnsProxyOptions): Promise<DnsProxy> {
  const logger = o.logger;
  const listen = parseHostPort("dns proxy addr", o.addr);
  const timeoutMs = o.timeoutMs ?? 2000;
  const maxInFlight = o.maxInFlight ?? 1024;
  const garbageLog = createRateLimiter({ perMinute: 6, now: Date.now });
  let inFlight = 0;

  function drop(from: string, reason: string): void {
    if (garbageLog.take(from)) logger.warn("dns proxy dropped a packet", { from, reason });
  }

  /** The answer to one message from `from`, or undefined to drop it. */
  async function answer(msg: Buffer, from: string, tcp: boolean): Promise<Buffer | undefined> {
    let q: packet.DecodedPacket;
    try {
      q = packet.decode(msg);
    } catch (err) {
      drop(from, `not a DNS message: ${errorMessage(err)}`);
      return undefined;
    }
    if (q.type !== "query") {
      drop(from, "a DNS response, not a query");
      return undefined;
    }
    let view: NodeProxyView;
    try {
      view = o.view();
    } catch (err) {
      logger.error("dns proxy could not read the view", { error: errorMessage(err) });
      return servfail(q);
    }
    const own = meshAnswer(q, view, {
      domain: o.domain ?? DEFAULT_DOMAIN,
      ttl: o.ttl ?? DEFAULT_TTL,
      maxBytes: tcp ? undefined : udpLimit(q),
    });
    if (own !== undefined) return own;
    if (inFlight >= maxInFlight) {
      drop(from, `more than ${maxInFlight} queries being forwarded`);
      return undefined;
    }
    inFlight++;
    try {
      return await forwardQuery(upstreams, msg, { tcpClient: tcp, timeoutMs });
    } catch (err) {
      logger.warn("dns proxy: no upstream answered", {
        name: q.questions?.[0]?.name,
        error: errorMessage(err),
      });
      return servfail(q);
    } finally {
      inFlight--;
    }
  }

  const conns = new Set<Socket>();
  const tcp = createServer((sock) => serveTcp(sock));
  function serveTcp(sock: Socket): void {
    conns.add(sock);
    const from = `${sock.remoteAddress}`;
    let buf = Buffer.alloc(0);
    sock.setTimeout(TCP_IDLE_MS, () => sock.destroy());
    sock.on("close", () => conns.delete(sock));
    sock.on("error", () => sock.destroy());
    sock.on("data", (chunk: Buffer) => {
      buf = Buffer.concat([buf, chunk]);
      while (buf.length >= 2 && buf.length >= 2 + buf.readUInt16BE(0)) {
        const msg = buf.subarray(2, 2 + buf.readUInt16BE(0));
        buf = buf.subarray(2 + msg.length);
        void answer(Buffer.from(msg), from, true).then((out) => {
          if (out === undefined) return sock.destroy();
          if (sock.destroyed) return;
          const len = Buffer.alloc(2);
          len.writeUInt16BE(out.length);
          sock.write(Buffer.concat([len, out]));
        });
      }
    });
  }
  function serveUdp(sock: UdpSocket): void {
    sock.on("error", (err) => logger.warn("dns proxy UDP socket error", { error: errorMessage(err) }));
    sock.on("message", (msg, rinfo) => {
      void answer(msg, rinfo.address, false).then((out) => {
        if (out !== undefined) sock.send(out, rinfo.port, rinfo.address, () => {});
      });
    });
  }

  const udp = await bindBoth(listen.host, listen.port, tcp);
  const port = udp.address().port;
  const addr = formatHostPort({ host: listen.host, port });
  const sockets: { udp: UdpSocket; tcp: Server }[] = [{ udp, tcp }];
  if (listen.host === "127.0.0.1" && o.ipv6Loopback !== false) {
    const tcp6 = createServer((sock) => serveTcp(sock));
    try {
      sockets.push({ udp: await bindBoth("::1", port, tcp6), tcp: tcp6 });
    } catch (err) {
      tcp6.close();
      logger.warn("dns proxy: cannot serve on IPv6 loopback; IPv6 DNS is not answered", {
        addr: formatHostPort({ host: "::1", port }),
        error: errorMessage(err),
      });
    }
  }
  const closeAll = () => {
    for (const s of sockets) {
      s.udp.close();
      s.tcp.close();
    }
  };
  let upstreams: Upstream[];
  try {
    upstreams = await resolveUpstreams(o, addr);
  } catch (err) {
    closeAll();
    throw err;
  }
  for (const s of sockets) serveUdp(s.udp);
  const addrs = sockets.map((s) => formatHostPort({ host: s.udp.address().address, port }));
  logger.info("dns proxy listening", { addrs, upstreams: upstreams.map(formatHostPort) });

  let stopped: Promise<void> | undefined;
  return {
    addr,
    addrs,
    stop() {
      stopped ??= (async () => {
        for (const c of conns) c.destroy();
        await Promise.all(sockets.map((s) =>
          new Promise<void>((resolve) => {
            s.udp.close();
            s.tcp.close(() => resolve());
          })
        ));
      })();
      return stopped;
    },
  };
}
