/**
 * The tunnel's HTTP/2 implementation (mod/agent/node_proxy/h2/) against a real HTTP/2 peer,
 * node:http2, on loopback over mutual TLS: our client against a node:http2 server answering
 * CONNECT, and a node:http2 client against our server, each moving several MiB each way with
 * half-close; header blocks a node:http2 client encodes (Huffman, dynamic table) decode right;
 * PING both ways.
 */
import { afterAll, beforeAll, expect, test } from "bun:test";
import { createHash } from "node:crypto";
import {
  connect as h2connect,
  createSecureServer,
  type Http2SecureServer,
  type ServerHttp2Stream,
} from "node:http2";
import type { Duplex } from "node:stream";
import {
  connect as tlsConnect,
  createServer as createTlsServer,
  type Server,
  type TLSSocket,
} from "node:tls";
import type { CertBundle } from "../../../mod/agent/certs.ts";
import { H2Connection, type H2Stream } from "../../../mod/agent/node_proxy/h2/connection.ts";
import type { HeaderList } from "../../../mod/agent/node_proxy/h2/hpack.ts";
import { createLogger } from "../../../mod/shared/logger.ts";
import { createTestCa, readAll } from "./_mesh.ts";

const HOST = "127.0.0.1";
const MIB = 1024 * 1024;
/** Bytes moved each way per transfer: many windows of node:http2's 64 KiB default. */
const BYTES = 8 * MIB;
const quiet = createLogger({ level: "error", write: () => {} });

let client: CertBundle;
let serverCert: CertBundle;
let nodeServer: Http2SecureServer;
let nodePort: number;
let ourServer: Server;
let ourPort: number;
/** Header lists of the streams our server accepted, in order. */
const accepted: HeaderList[] = [];

/** Deterministic bytes: `n` of them from a counter, so order and content can be checked. */
function pattern(n: number, seed: number): Buffer {
  const b = Buffer.allocUnsafe(n);
  for (let i = 0; i < n; i++) b[i] = (i * 31 + seed) & 0xff;
  return b;
}

const sha = (b: Buffer) => createHash("sha256").update(b).digest("hex");

/** Writes `data` in 64 KiB chunks minding backpressure, then ends `s`. */
async function writeAll(s: Duplex, data: Buffer): Promise<void> {
  for (let at = 0; at < data.length; at += 64 * 1024) {
    if (!s.write(data.subarray(at, at + 64 * 1024))) await new Promise((r) => s.once("drain", r));
  }
  s.end();
}

/** The peer's side of a CONNECT stream: reads everything until the client ends, then answers. */
async function answerAfterEnd(s: Duplex, reply: (got: Buffer) => Buffer): Promise<void> {
  const got = await readAll(s);
  await writeAll(s, reply(got));
}

/** Reply of the peers: the SHA-256 of what arrived, then BYTES of pattern 7. */
const reply = (got: Buffer) => Buffer.concat([Buffer.from(sha(got)), pattern(BYTES, 7)]);

beforeAll(async () => {
  const ca = await createTestCa();
  client = ca.issue("spiffe://cluster.local/ns/a/sa/client");
  serverCert = ca.issue("spiffe://cluster.local/ns/b/sa/server");
  nodeServer = createSecureServer({
    cert: serverCert.chainPem,
    key: serverCert.keyPem,
    ca: serverCert.rootPem,
    requestCert: true,
    rejectUnauthorized: true,
    ALPNProtocols: ["h2"],
  });
  nodeServer.on("stream", (stream: ServerHttp2Stream, headers) => {
    stream.on("error", () => {});
    if (headers[":method"] !== "CONNECT") {
      stream.respond({ ":status": 405 }, { endStream: true });
      return;
    }
    stream.respond({ ":status": 200 });
    void answerAfterEnd(stream, reply);
  });
  nodePort = await new Promise<number>((r) =>
    nodeServer.listen(0, HOST, () => r((nodeServer.address() as { port: number }).port))
  );
  ourServer = createTlsServer({
    cert: serverCert.chainPem,
    key: serverCert.keyPem,
    ca: serverCert.rootPem,
    requestCert: true,
    rejectUnauthorized: true,
    ALPNProtocols: ["h2"],
  }, (socket: TLSSocket) => {
    socket.on("error", () => {});
    new H2Connection({
      role: "server",
      socket,
      logger: quiet,
      onStream: (stream, headers) => {
        accepted.push(headers);
        stream.on("error", () => {});
        stream.respond(200);
        void answerAfterEnd(stream, reply);
      },
    });
  });
  ourPort = await new Promise<number>((r) =>
    ourServer.listen(0, HOST, () => r((ourServer.address() as { port: number }).port))
  );
});

afterAll(() => {
  nodeServer?.close();
  ourServer?.close();
});

/** Our client connection to `port`, once TLS is up. */
function ourClient(port: number): Promise<H2Connection> {
  return new Promise((resolve, reject) => {
    const socket = tlsConnect({
      host: HOST,
      port,
      cert: client.chainPem,
      key: client.keyPem,
      ca: client.rootPem,
      ALPNProtocols: ["h2"],
      checkServerIdentity: () => undefined,
    });
    socket.once("error", reject);
    socket.once("secureConnect", () => resolve(new H2Connection({ role: "client", socket, logger: quiet })));
  });
}

/** The :status of the response to `s`. */
function status(s: H2Stream): Promise<string | undefined> {
  return new Promise((resolve, reject) => {
    s.once("response", (h: HeaderList) => resolve(h.find(([n]) => n === ":status")?.[1]));
    s.once("error", reject);
  });
}

test("our client moves 8 MiB each way through a node:http2 server's CONNECT, with half-close", async () => {
  const conn = await ourClient(nodePort);
  try {
    for (let round = 0; round < 2; round++) {
      const s = conn.request([[":method", "CONNECT"], [":authority", "example.test:443"]]);
      expect(await status(s)).toBe("200");
      const up = pattern(BYTES, round);
      const back = readAll(s);
      await writeAll(s, up);
      const got = await back;
      expect(got.subarray(0, 64).toString()).toBe(sha(up));
      expect(sha(got.subarray(64))).toBe(sha(pattern(BYTES, 7)));
    }
    const s = conn.request([[":method", "GET"], [":path", "/"], [":scheme", "https"], [":authority", "x"]]);
    expect(await status(s)).toBe("405");
    expect(await conn.ping()).toBeGreaterThanOrEqual(0);
  } finally {
    conn.destroy();
  }
}, 30_000);

test("a node:http2 client moves 8 MiB each way through our server, with half-close", async () => {
  const session = h2connect(`https://${HOST}:${ourPort}`, {
    cert: client.chainPem,
    key: client.keyPem,
    ca: client.rootPem,
    checkServerIdentity: () => undefined,
  });
  session.on("error", () => {});
  try {
    const before = accepted.length;
    for (let round = 0; round < 2; round++) {
      // The same custom fields twice: the second request refers to nghttp2's dynamic table.
      const req = session.request({
        ":method": "CONNECT",
        ":authority": "10.1.2.3:8080",
        "x-tunnel-note": "a rather long value that Huffman coding shortens noticeably",
        baggage: "k8s.namespace.name=shop,k8s.deployment.name=web",
      });
      const answered = new Promise<number>((r) => req.once("response", (h) => r(Number(h[":status"]))));
      const up = pattern(BYTES, 100 + round);
      const back = readAll(req);
      expect(await answered).toBe(200);
      await writeAll(req, up);
      const got = await back;
      expect(got.subarray(0, 64).toString()).toBe(sha(up));
      expect(sha(got.subarray(64))).toBe(sha(pattern(BYTES, 7)));
    }
    const seen = accepted.slice(before);
    expect(seen.length).toBe(2);
    for (const h of seen) {
      const get = (n: string) => h.find(([k]) => k === n)?.[1];
      expect(get(":method")).toBe("CONNECT");
      expect(get(":authority")).toBe("10.1.2.3:8080");
      expect(get("x-tunnel-note")).toBe("a rather long value that Huffman coding shortens noticeably");
      expect(get("baggage")).toBe("k8s.namespace.name=shop,k8s.deployment.name=web");
    }
    const rtt = await new Promise<number>((resolve, reject) =>
      session.ping((err, ms) => (err ? reject(err) : resolve(ms)))
    );
    expect(rtt).toBeGreaterThanOrEqual(0);
  } finally {
    session.close();
  }
}, 30_000);
