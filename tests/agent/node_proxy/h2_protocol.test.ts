/**
 * The tunnel's HTTP/2 implementation (mod/agent/node_proxy/h2/) on loopback over mutual TLS:
 * HPACK against RFC 7541's examples, flow control (a slow reader bounds what is buffered for it),
 * GOAWAY drains from either side, RST_STREAM both ways, PING, and protocol errors of a peer (bad
 * preface, a frame too large, DATA on an idle stream, a broken header block, garbage) answered
 * with GOAWAY and the error's code, logged, while the HBONE server keeps serving other
 * connections.
 */
import { afterAll, beforeAll, expect, test } from "bun:test";
import { createServer as createNetServer, type Server as NetServer } from "node:net";
import {
  connect as tlsConnect,
  createServer as createTlsServer,
  type Server,
  type TLSSocket,
} from "node:tls";
import { Registry } from "prom-client";
import type { CertBundle } from "../../../mod/agent/certs.ts";
import {
  H2Connection,
  type H2Settings,
  type H2Stream,
  H2StreamError,
  TUNNEL_SETTINGS,
} from "../../../mod/agent/node_proxy/h2/connection.ts";
import {
  ErrorCode,
  frame,
  type FrameHeader,
  FrameReader,
  FrameType,
  PREFACE,
  settingsFrame,
} from "../../../mod/agent/node_proxy/h2/frames.ts";
import { createHeaderDecoder, type HeaderList } from "../../../mod/agent/node_proxy/h2/hpack.ts";
import {
  createHbonePool,
  type HbonePool,
  type HboneServer,
  startHboneServer,
} from "../../../mod/agent/node_proxy/hbone.ts";
import { createTcpTelemetry } from "../../../mod/agent/node_proxy/telemetry.ts";
import { createTlsMaterial } from "../../../mod/agent/node_proxy/tls_material.ts";
import { systemClock } from "../../../mod/shared/clock.ts";
import { createLogger } from "../../../mod/shared/logger.ts";
import { createTestCa, readAll } from "./_mesh.ts";

const HOST = "127.0.0.1";
const ID_A = "spiffe://cluster.local/ns/foo/sa/client";
const ID_B = "spiffe://cluster.local/ns/bar/sa/server";
const MIB = 1024 * 1024;
const quiet = createLogger({ level: "error", write: () => {} });

let certA: CertBundle;
let certB: CertBundle;
let echo: NetServer;
let echoPort: number;
let hbone: HboneServer;
let pool: HbonePool;
/** What the HBONE server logged. */
const logged: string[] = [];

beforeAll(async () => {
  const ca = await createTestCa();
  certA = ca.issue(ID_A);
  certB = ca.issue(ID_B);
  echo = createNetServer({ allowHalfOpen: true }, (s) => {
    s.on("error", () => {});
    s.pipe(s);
  });
  echoPort = await new Promise<number>((r) =>
    echo.listen(0, HOST, () => r((echo.address() as { port: number }).port))
  );
  hbone = await startHboneServer({
    host: HOST,
    port: 0,
    tls: createTlsMaterial(() => certB),
    decide: () => ({
      allowed: true,
      audit: false,
      mtls: "STRICT",
      target: { address: HOST, port: echoPort },
    }),
    telemetry: createTcpTelemetry({ registry: new Registry(), clock: systemClock, accessLog: () => {} }),
    logger: createLogger({ level: "warn", write: (l) => logged.push(l) }),
  });
  pool = createHbonePool({ tls: createTlsMaterial(() => certA), logger: quiet });
});

afterAll(async () => {
  pool?.close();
  await hbone?.close();
  echo?.close();
});

/** A fresh HBONE stream through the server to the echo application carries `text` back. */
async function echoes(text: string): Promise<string> {
  const { stream } = await pool.connect({
    peer: HOST,
    peerPort: hbone.port,
    authority: `${HOST}:${echoPort}`,
    identities: [ID_B],
    timeoutMs: 5000,
  });
  const back = readAll(stream);
  stream.end(text);
  return (await back).toString();
}

test("HPACK decodes RFC 7541's requests with Huffman coding and a dynamic table (C.4)", () => {
  const d = createHeaderDecoder();
  const hex = (s: string) => Buffer.from(s.replace(/\s/g, ""), "hex");
  expect(d.decode(hex("8286 8441 8cf1 e3c2 e5f2 3a6b a0ab 90f4 ff"))).toEqual([
    [":method", "GET"],
    [":scheme", "http"],
    [":path", "/"],
    [":authority", "www.example.com"],
  ]);
  expect(d.decode(hex("8286 84be 5886 a8eb 1064 9cbf"))).toEqual([
    [":method", "GET"],
    [":scheme", "http"],
    [":path", "/"],
    [":authority", "www.example.com"],
    ["cache-control", "no-cache"],
  ]);
  expect(d.decode(hex("8287 85bf 4088 25a8 49e9 5ba9 7d7f 8925 a849 e95b b8e8 b4bf"))).toEqual([
    [":method", "GET"],
    [":scheme", "https"],
    [":path", "/index.html"],
    [":authority", "www.example.com"],
    ["custom-key", "custom-value"],
  ]);
  expect(() => d.decode(hex("ff ff ff ff ff ff"))).toThrow(/HPACK/);
});

/** A pair of our connections over TLS on loopback; `onStream` serves the server's streams. */
async function pair(
  onStream: (s: H2Stream, conn: H2Connection) => void,
  serverSettings: H2Settings = TUNNEL_SETTINGS,
): Promise<{ client: H2Connection; server: () => H2Connection; close: () => void }> {
  let serverConn: H2Connection | undefined;
  const tls: Server = createTlsServer({
    cert: certB.chainPem,
    key: certB.keyPem,
    ca: certB.rootPem,
    requestCert: true,
    rejectUnauthorized: true,
  }, (socket: TLSSocket) => {
    socket.on("error", () => {});
    const conn: H2Connection = new H2Connection({
      role: "server",
      socket,
      logger: quiet,
      settings: serverSettings,
      onStream: (s) => onStream(s, conn),
    });
    serverConn = conn;
  });
  const port = await new Promise<number>((r) =>
    tls.listen(0, HOST, () => r((tls.address() as { port: number }).port))
  );
  const client = await new Promise<H2Connection>((resolve, reject) => {
    const socket = tlsConnect({
      host: HOST,
      port,
      cert: certA.chainPem,
      key: certA.keyPem,
      ca: certA.rootPem,
      checkServerIdentity: () => undefined,
    });
    socket.once("error", reject);
    socket.once("secureConnect", () => resolve(new H2Connection({ role: "client", socket, logger: quiet })));
  });
  return {
    client,
    server: () => serverConn!,
    close: () => {
      client.destroy();
      serverConn?.destroy();
      tls.close();
    },
  };
}

/** Opens a CONNECT stream on `c` and waits for its 200. */
async function connectStream(c: H2Connection): Promise<H2Stream> {
  const s = c.request([[":method", "CONNECT"], [":authority", "x:1"]]);
  s.on("error", () => {});
  await new Promise<void>((resolve, reject) => {
    s.once(
      "response",
      (h: HeaderList) =>
        h.find(([n]) => n === ":status")?.[1] === "200" ? resolve() : reject(new Error("not 200")),
    );
    s.once("error", reject);
  });
  return s;
}

/** Serves a stream by echoing it. */
const echoStream = (s: H2Stream) => {
  s.on("error", () => {});
  s.respond(200);
  s.pipe(s);
};

test("a slow reader bounds what is buffered for it to the stream's window, and gets everything", async () => {
  const WINDOW = 256 * 1024;
  const TOTAL = 16 * MIB;
  let maxBuffered = 0;
  let got = 0;
  let checksum = 0;
  let finished: () => void = () => {};
  const done = new Promise<void>((r) => (finished = r));
  const slow = async (s: H2Stream) => {
    s.on("error", () => {});
    s.respond(200);
    s.pause();
    let ended = false;
    s.once("end", () => (ended = true));
    while (!ended) {
      await new Promise((r) => setTimeout(r, 2));
      maxBuffered = Math.max(maxBuffered, s.readableLength);
      // At most 128 KiB per turn: a reader slower than the sender.
      for (let taken = 0; taken < 128 * 1024;) {
        const c = s.read() as Buffer | null;
        if (c === null) break;
        taken += c.length;
        got += c.length;
        for (let i = 0; i < c.length; i++) checksum += c[i]!;
      }
    }
    finished();
  };
  const pairReady = pair((s) => void slow(s), {
    ...TUNNEL_SETTINGS,
    streamWindow: WINDOW,
    connectionWindow: 4 * WINDOW,
  });
  const p = await pairReady;
  try {
    const s = await connectStream(p.client);
    const chunk = Buffer.alloc(64 * 1024);
    let expected = 0;
    for (let sent = 0, n = 0; sent < TOTAL; sent += chunk.length, n++) {
      chunk.fill(n & 0xff);
      expected += chunk.length * (n & 0xff);
      if (!s.write(Buffer.from(chunk))) await new Promise((r) => s.once("drain", r));
    }
    s.end();
    await done;
    expect(got).toBe(TOTAL);
    expect(checksum).toBe(expected);
    // The reader was slow: its buffer filled up to near the window, but never beyond it.
    expect(maxBuffered).toBeGreaterThan(WINDOW / 2);
    expect(maxBuffered).toBeLessThanOrEqual(WINDOW);
  } finally {
    p.close();
  }
}, 60_000);

test("GOAWAY from the client: no new streams, the open one finishes, then the connection closes", async () => {
  const p = await pair(echoStream);
  try {
    const closed = new Promise<void>((r) => p.client.socket.once("close", () => r()));
    const s = await connectStream(p.client);
    p.client.drain();
    expect(p.client.canOpen()).toBe(false);
    expect(() => p.client.request([[":method", "CONNECT"], [":authority", "x:1"]])).toThrow(/no new streams/);
    const back = readAll(s);
    s.write("still ");
    s.end("open");
    expect((await back).toString()).toBe("still open");
    await closed;
    expect(p.client.isClosed).toBe(true);
  } finally {
    p.close();
  }
});

test("GOAWAY from the server: the client opens no new streams; the open one finishes", async () => {
  const p = await pair(echoStream);
  try {
    const s = await connectStream(p.client);
    const closed = new Promise<void>((r) => p.client.socket.once("close", () => r()));
    const back = readAll(s);
    s.write("before ");
    p.server().drain();
    await p.client.ping(); // The GOAWAY arrived before the PING's answer.
    expect(p.client.draining).toBe(true);
    expect(p.client.canOpen()).toBe(false);
    s.end("after");
    expect((await back).toString()).toBe("before after");
    await closed;
  } finally {
    p.close();
  }
});

test("RST_STREAM both ways resets only its stream", async () => {
  const serverErrors: H2StreamError[] = [];
  let toCancel: H2Stream | undefined;
  const p = await pair((s) => {
    s.on("error", (e) => serverErrors.push(e as H2StreamError));
    s.respond(200);
    if (toCancel === undefined) toCancel = s;
    else s.pipe(s);
  });
  try {
    const first = await connectStream(p.client);
    const other = await connectStream(p.client);
    // The client resets the first: the server's stream fails with CANCEL.
    first.cancel();
    await p.client.ping();
    expect(serverErrors.map((e) => e.code)).toEqual([ErrorCode.CANCEL]);
    // The server resets a new one with REFUSED_STREAM: the client's fails, retryable.
    toCancel = undefined;
    const third = await connectStream(p.client);
    const failed = new Promise<H2StreamError>((r) => third.once("error", (e) => r(e as H2StreamError)));
    toCancel!.cancel(ErrorCode.REFUSED_STREAM);
    const e = await failed;
    expect(e.code).toBe(ErrorCode.REFUSED_STREAM);
    expect(e.refused).toBe(true);
    // The other stream still works.
    const back = readAll(other);
    other.end("intact");
    expect((await back).toString()).toBe("intact");
  } finally {
    p.close();
  }
});

/**
 * Sends `bytes` to the HBONE server over TLS with a valid client certificate; resolves with the
 * GOAWAY error code it answers (undefined when none) once it closes the connection.
 */
function rawExchange(bytes: Buffer): Promise<number | undefined> {
  return new Promise((resolve) => {
    let code: number | undefined;
    const reader = new FrameReader({
      frame: (h: FrameHeader, p: Buffer) => {
        if (h.type === FrameType.GOAWAY) code = p.readUInt32BE(4);
      },
      dataStart: () => true,
      data: () => {},
      dataEnd: () => {},
      frameTooLarge: () => {},
    }, 16 * MIB);
    const s = tlsConnect({
      host: HOST,
      port: hbone.port,
      cert: certA.chainPem,
      key: certA.keyPem,
      ca: certA.rootPem,
      checkServerIdentity: () => undefined,
    });
    s.on("error", () => {});
    s.on("secureConnect", () => s.write(bytes));
    s.on("data", (c: Buffer) => reader.push(c));
    s.on("close", () => resolve(code));
  });
}

const hello = Buffer.concat([PREFACE, settingsFrame([])]);

test("protocol errors end only their connection, with GOAWAY and the error's code, logged", async () => {
  const cases: Array<[string, Buffer, number]> = [
    ["bad preface", Buffer.from("GET / HTTP/1.1\r\nHost: x\r\n\r\n"), ErrorCode.PROTOCOL_ERROR],
    [
      "frame too large",
      Buffer.concat([hello, Buffer.from([0x20, 0x00, 0x00, FrameType.DATA, 0, 0, 0, 0, 1])]),
      ErrorCode.FRAME_SIZE_ERROR,
    ],
    [
      "DATA on an idle stream",
      Buffer.concat([hello, frame(FrameType.DATA, 0, 5, Buffer.from("boom"))]),
      ErrorCode.PROTOCOL_ERROR,
    ],
    [
      "a broken header block",
      Buffer.concat([hello, frame(FrameType.HEADERS, 0x4, 1, Buffer.from([0xff, 0xff, 0xff, 0xff, 0xff]))]),
      ErrorCode.COMPRESSION_ERROR,
    ],
    [
      "a header block interrupted",
      Buffer.concat([
        hello,
        frame(FrameType.HEADERS, 0, 1, Buffer.from([0x82])),
        frame(FrameType.PING, 0, 0, Buffer.alloc(8)),
      ]),
      ErrorCode.PROTOCOL_ERROR,
    ],
    [
      "SETTINGS not first",
      Buffer.concat([PREFACE, frame(FrameType.PING, 0, 0, Buffer.alloc(8))]),
      ErrorCode.PROTOCOL_ERROR,
    ],
    [
      "garbage after the preface",
      Buffer.concat([hello, Buffer.from("\x00\x00\x07\x04\x00\x00\x00\x00\x00garbage", "latin1")]),
      ErrorCode.FRAME_SIZE_ERROR,
    ],
  ];
  expect(await echoes("before")).toBe("before");
  for (const [what, bytes, code] of cases) {
    const before = logged.length;
    expect({ what, code: await rawExchange(bytes) }).toEqual({ what, code });
    expect(logged.slice(before).some((l) => l.includes("HTTP/2 connection error"))).toBe(true);
    // The server still serves a well-behaved client.
    expect(await echoes(what)).toBe(what);
  }
}, 30_000);
