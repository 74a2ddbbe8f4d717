/**
 * The DNS proxy on loopback, asked by a real resolver client (node:dns Resolver pointed at it)
 * and by raw packets: mesh names answered from the view (exact, case-insensitive, trailing dot,
 * NAME.NAMESPACE and NAME.NAMESPACE.svc), NODATA for other types, the rest forwarded to a test
 * resolver (the next one when the first does not answer, TCP when truncated), SERVFAIL when no
 * resolver answers, and garbage dropped without an answer or a crash.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import * as packet from "dns-packet";
import { createSocket, type Socket as UdpSocket } from "node:dgram";
import { promises as dns } from "node:dns";
import { connect, createServer, type Server } from "node:net";
import { createLogger } from "../../../mod/shared/logger.ts";
import { type DnsProxy, startDnsProxy } from "../../../mod/agent/node_proxy/dns_proxy.ts";
import { meshHost } from "../../../mod/agent/node_proxy/dns_answer.ts";
import { parseHostPort } from "../../../mod/agent/node_proxy/dns_forward.ts";
import { parseResolvConf } from "../../../mod/agent/node_proxy/resolv_conf.ts";
import { EMPTY_VIEW, type NodeProxyView } from "../../../mod/agent/node_proxy/view.ts";

const logLines: string[] = [];
const logger = createLogger({ level: "warn", format: "json", write: (l) => logLines.push(l) });

const view: NodeProxyView = {
  ...EMPTY_VIEW,
  version: "v1",
  dns: new Map([
    ["reviews.default.svc.cluster.local", ["198.19.0.10", "fd00::10"]],
    ["db.example.com", ["198.19.0.11"]],
  ]),
};

/** A test resolver on 127.0.0.2: example.org A, big.example TXT (truncated over UDP). */
interface TestResolver {
  readonly addr: string;
  readonly seen: string[];
  close(): void;
}

const BIG_TXT = Array.from({ length: 8 }, (_, i) => `${i}`.repeat(200));

function resolverAnswer(q: packet.Packet, tcp: boolean): Buffer {
  const question = q.questions![0]!;
  const base = { id: q.id, type: "response" as const, questions: q.questions };
  if (question.name === "big.example" && !tcp) {
    return packet.encode({
      ...base,
      flags: packet.TRUNCATED_RESPONSE | packet.RECURSION_AVAILABLE,
      answers: [],
    });
  }
  const answers: packet.Answer[] = question.name === "big.example"
    ? [{ type: "TXT", name: question.name, ttl: 60, data: BIG_TXT }]
    : question.name === "example.org" && question.type === "A"
    ? [{ type: "A", name: question.name, ttl: 60, data: "192.0.2.1" }]
    : [];
  return packet.encode({ ...base, flags: packet.RECURSION_AVAILABLE, answers });
}

async function startTestResolver(): Promise<TestResolver> {
  const seen: string[] = [];
  const udp = createSocket("udp4");
  udp.on("message", (msg, r) => {
    const q = packet.decode(msg);
    seen.push(`udp ${q.questions![0]!.name}`);
    udp.send(resolverAnswer(q, false), r.port, r.address);
  });
  await new Promise<void>((r) => udp.bind(0, "127.0.0.2", () => r()));
  const port = udp.address().port;
  const tcp: Server = createServer((s) => {
    s.once("data", (chunk: Buffer) => {
      const q = packet.streamDecode(chunk);
      seen.push(`tcp ${q.questions![0]!.name}`);
      s.end(packet.streamEncode(packet.decode(resolverAnswer(q, true))));
    });
  });
  await new Promise<void>((r) => tcp.listen(port, "127.0.0.2", () => r()));
  return {
    addr: `127.0.0.2:${port}`,
    seen,
    close() {
      udp.close();
      tcp.close();
    },
  };
}

/** The response code dns-packet decodes (missing from its types). */
const rcodeOf = (p: packet.DecodedPacket): string | undefined => (p as { rcode?: string }).rcode;

function resolverFor(p: DnsProxy): dns.Resolver {
  const r = new dns.Resolver({ timeout: 3000, tries: 1 });
  r.setServers([p.addr]);
  return r;
}

/** Sends raw bytes over UDP to the proxy; resolves with the answer, or undefined after `waitMs`. */
function udpExchange(addr: string, bytes: Uint8Array, waitMs: number): Promise<Buffer | undefined> {
  const { host, port } = parseHostPort("addr", addr);
  return new Promise((resolve) => {
    const s: UdpSocket = createSocket(host.includes(":") ? "udp6" : "udp4");
    const timer = setTimeout(() => {
      s.close();
      resolve(undefined);
    }, waitMs);
    s.on("message", (m) => {
      clearTimeout(timer);
      s.close();
      resolve(m);
    });
    s.send(bytes, port, host);
  });
}

describe("DNS names and settings", () => {
  test("meshHost() matches FQDNs case-insensitively with a trailing dot, and NAME.NS(.svc) short names", () => {
    expect(meshHost(view.dns, "Reviews.Default.SVC.cluster.local.")).toBe(
      "reviews.default.svc.cluster.local",
    );
    expect(meshHost(view.dns, "reviews.default")).toBe("reviews.default.svc.cluster.local");
    expect(meshHost(view.dns, "reviews.default.svc.")).toBe("reviews.default.svc.cluster.local");
    expect(meshHost(view.dns, "reviews")).toBeUndefined();
    expect(meshHost(view.dns, "db.example")).toBeUndefined();
    expect(meshHost(view.dns, "reviews.default.svc", "corp.internal")).toBeUndefined();
  });

  test("parseResolvConf() reads nameservers and the last search or domain line, skipping the rest", () => {
    const conf = parseResolvConf(
      "# comment\nnameserver 10.0.0.2\nnameserver fe80::1%eth0\nnameserver not-an-ip\n" +
        "search Corp.Example. example.net ; trailing\noptions ndots:2\n",
    );
    expect(conf).toEqual({
      nameservers: ["10.0.0.2", "fe80::1%eth0"],
      search: ["corp.example", "example.net"],
    });
  });

  test("parseHostPort() takes IP, IP:PORT and [IPv6]:PORT and names the field otherwise", () => {
    expect(parseHostPort("f", "10.0.0.2", 53)).toEqual({ host: "10.0.0.2", port: 53 });
    expect(parseHostPort("f", "127.0.0.1:15053")).toEqual({ host: "127.0.0.1", port: 15053 });
    expect(parseHostPort("f", "[::1]:5353")).toEqual({ host: "::1", port: 5353 });
    expect(parseHostPort("f", "fd00::1", 53)).toEqual({ host: "fd00::1", port: 53 });
    expect(() => parseHostPort("dns proxy addr", "localhost:53")).toThrow(
      'dns proxy addr: "localhost:53" is not IP:PORT',
    );
    expect(() => parseHostPort("f", "127.0.0.1")).toThrow("is not IP:PORT");
  });
});

describe("startDnsProxy()", () => {
  let upstream: TestResolver;
  let blackhole: UdpSocket;
  let proxy: DnsProxy;
  let failing: DnsProxy;

  beforeAll(async () => {
    upstream = await startTestResolver();
    blackhole = createSocket("udp4"); // receives, never answers
    await new Promise<void>((r) => blackhole.bind(0, "127.0.0.3", () => r()));
    const silent = `127.0.0.3:${blackhole.address().port}`;
    proxy = await startDnsProxy({
      addr: "127.0.0.1:0",
      view: () => view,
      upstreams: [silent, upstream.addr],
      logger,
      timeoutMs: 300,
    });
    failing = await startDnsProxy({
      addr: "127.0.0.1:0",
      view: () => view,
      upstreams: [silent],
      logger,
      timeoutMs: 300,
    });
  });
  afterAll(async () => {
    await proxy?.stop();
    await failing?.stop();
    upstream?.close();
    blackhole?.close();
  });

  test("answers A and AAAA for mesh names, in every accepted spelling, without asking upstream", async () => {
    const r = resolverFor(proxy);
    expect(await r.resolve4("reviews.default.svc.cluster.local")).toEqual(["198.19.0.10"]);
    expect(await r.resolve6("reviews.default.svc.cluster.local")).toEqual(["fd00::10"]);
    expect(await r.resolve4("REVIEWS.default.svc.cluster.local.")).toEqual(["198.19.0.10"]);
    expect(await r.resolve4("reviews.default")).toEqual(["198.19.0.10"]);
    expect(await r.resolve4("reviews.default.svc")).toEqual(["198.19.0.10"]);
    expect(await r.resolve4("db.example.com")).toEqual(["198.19.0.11"]);
    expect(upstream.seen.filter((s) => /reviews|db\.example/.test(s))).toEqual([]);
  });

  test("answers NODATA for other types of a mesh name and for a family it has no address of", async () => {
    // Bun's resolver reports NODATA and NXDOMAIN alike (ENOTFOUND); the raw answers tell them apart.
    await expect(resolverFor(proxy).resolveTxt("reviews.default.svc.cluster.local")).rejects.toThrow();
    const ask = async (id: number, type: "MX" | "TXT" | "AAAA", name: string) => {
      const q = packet.encode({
        id,
        type: "query",
        flags: packet.RECURSION_DESIRED,
        questions: [{ type, name }],
      });
      const a = packet.decode((await udpExchange(proxy.addr, q, 3000))!);
      return [a.id, rcodeOf(a), a.answers, a.flag_aa, a.flag_rd];
    };
    expect(await ask(7, "MX", "db.example.com")).toEqual([7, "NOERROR", [], true, true]);
    expect(await ask(8, "TXT", "reviews.default")).toEqual([8, "NOERROR", [], true, true]);
    expect(await ask(9, "AAAA", "db.example.com")).toEqual([9, "NOERROR", [], true, true]);
    expect(upstream.seen.filter((s) => /reviews|db\.example/.test(s))).toEqual([]);
  });

  test("serves IPv6 loopback on the same port too (where capture sends IPv6 DNS): UDP and TCP", async () => {
    const port = parseHostPort("addr", proxy.addr).port;
    expect(proxy.addrs).toEqual([proxy.addr, `[::1]:${port}`]);
    const r = new dns.Resolver({ timeout: 3000, tries: 1 });
    r.setServers([`[::1]:${port}`]);
    expect(await r.resolve6("reviews.default.svc.cluster.local")).toEqual(["fd00::10"]);
    const q = packet.encode({ id: 11, type: "query", questions: [{ type: "AAAA", name: "db.example.com" }] });
    const a = packet.decode((await udpExchange(`[::1]:${port}`, q, 3000))!);
    expect([a.id, rcodeOf(a), a.answers]).toEqual([11, "NOERROR", []]);
    const len = Buffer.alloc(2);
    len.writeUInt16BE(q.length);
    const viaTcp = await new Promise<Buffer>((resolve, reject) => {
      const s = connect({ host: "::1", port }, () => s.write(Buffer.concat([len, q])));
      let buf = Buffer.alloc(0);
      s.on("data", (c) => {
        buf = Buffer.concat([buf, c]);
        if (buf.length >= 2 && buf.length >= 2 + buf.readUInt16BE(0)) {
          s.destroy();
          resolve(buf.subarray(2));
        }
      });
      s.on("error", reject);
    });
    expect(packet.decode(viaTcp).id).toBe(11);
  });

  test("with ipv6Loopback false it serves only the address given", async () => {
    const only = await startDnsProxy({
      addr: "127.0.0.1:0",
      view: () => view,
      upstreams: [upstream.addr],
      logger,
      ipv6Loopback: false,
    });
    try {
      expect(only.addrs).toEqual([only.addr]);
    } finally {
      await only.stop();
    }
  });

  test("forwards other names to the next resolver when the first does not answer", async () => {
    expect(await resolverFor(proxy).resolve4("example.org")).toEqual(["192.0.2.1"]);
    expect(upstream.seen).toContain("udp example.org");
  });

  test("a truncated upstream answer reaches the client, which asks again over TCP and gets it whole", async () => {
    const txt = await resolverFor(proxy).resolveTxt("big.example");
    expect(txt.flat().join("")).toBe(BIG_TXT.join(""));
    expect(upstream.seen.filter((s) => s.endsWith("big.example"))).toEqual([
      "udp big.example",
      "udp big.example",
      "tcp big.example",
    ]);
  });

  test("answers a TCP client, several queries on one connection", async () => {
    const { host, port } = parseHostPort("addr", proxy.addr);
    const sock = connect(port, host);
    const query = (id: number, name: string) =>
      packet.streamEncode({ id, type: "query", questions: [{ type: "A", name }] });
    sock.write(Buffer.concat([query(1, "db.example.com"), query(2, "example.org")]));
    let buf = Buffer.alloc(0);
    const answers: packet.Packet[] = [];
    await new Promise<void>((resolve) =>
      sock.on("data", (c: Buffer) => {
        buf = Buffer.concat([buf, c]);
        while (buf.length >= 2 && buf.length >= 2 + buf.readUInt16BE(0)) {
          answers.push(packet.streamDecode(buf));
          buf = buf.subarray(2 + buf.readUInt16BE(0));
        }
        if (answers.length === 2) resolve();
      })
    );
    sock.destroy();
    const byId = new Map(answers.map((a) => [a.id, a.answers!.map((x) => (x as packet.StringAnswer).data)]));
    expect(byId.get(1)).toEqual(["198.19.0.11"]);
    expect(byId.get(2)).toEqual(["192.0.2.1"]);
  });

  test("answers SERVFAIL when no resolver answers", async () => {
    await expect(resolverFor(failing).resolve4("example.org")).rejects.toMatchObject({ code: "ESERVFAIL" });
    const raw = await udpExchange(
      failing.addr,
      packet.encode({ id: 9, type: "query", questions: [{ type: "A", name: "example.org" }] }),
      3000,
    );
    expect(rcodeOf(packet.decode(raw!))).toBe("SERVFAIL");
  });

  test("drops garbage over UDP and TCP with a log line, and keeps answering", async () => {
    logLines.length = 0;
    expect(await udpExchange(proxy.addr, new Uint8Array([1, 2, 3, 4, 5]), 300)).toBeUndefined();
    const response = packet.encode({
      id: 3,
      type: "response",
      questions: [{ type: "A", name: "db.example.com" }],
    });
    expect(await udpExchange(proxy.addr, response, 300)).toBeUndefined();
    const { host, port } = parseHostPort("addr", proxy.addr);
    const sock = connect(port, host);
    sock.write(new Uint8Array([0, 3, 0xff, 0xff, 0xff]));
    await new Promise<void>((r) => sock.on("close", () => r()));
    expect(logLines.filter((l) => l.includes("dns proxy dropped a packet")).length).toBe(3);
    expect(await resolverFor(proxy).resolve4("db.example.com")).toEqual(["198.19.0.11"]);
  });

  test("refuses an address that is not IP:PORT, naming the setting", async () => {
    await expect(startDnsProxy({ addr: "localhost:53", view: () => view, upstreams: ["127.0.0.1"], logger }))
      .rejects.toThrow(
        "dns proxy addr",
      );
    await expect(startDnsProxy({ addr: "127.0.0.1:0", view: () => view, upstreams: ["nope"], logger }))
      .rejects.toThrow(
        "dns proxy upstreams[0]",
      );
  });
});
