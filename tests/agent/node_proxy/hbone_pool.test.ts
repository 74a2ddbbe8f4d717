/**
 * The HBONE client pool on loopback against an HTTP/2 server whose behaviour each test chooses:
 * one pooled connection carries successive streams; a stream the pooled connection resets before
 * an answer is asked again on a fresh connection; `drain` lets open streams finish while new ones
 * go to a new connection; a peer's SETTINGS_MAX_CONCURRENT_STREAMS is honoured by opening another
 * connection; a downstream's first bytes go out before the answer and again on a retry.
 */
import { afterAll, beforeAll, expect, test } from "bun:test";
import { type Duplex, PassThrough } from "node:stream";
import { createServer as createTlsServer, type Server, type TLSSocket } from "node:tls";
import type { CertBundle } from "../../../mod/agent/certs.ts";
import { H2Connection, type H2Stream, TUNNEL_SETTINGS } from "../../../mod/agent/node_proxy/h2/connection.ts";
import { ErrorCode } from "../../../mod/agent/node_proxy/h2/frames.ts";
import { createHbonePool, EarlyData, type HbonePool } from "../../../mod/agent/node_proxy/hbone.ts";
import { createTlsMaterial } from "../../../mod/agent/node_proxy/tls_material.ts";
import { createLogger } from "../../../mod/shared/logger.ts";
import { createTestCa } from "./_mesh.ts";

const HOST = "127.0.0.1";
const ID_B = "spiffe://cluster.local/ns/bar/sa/server";
const quiet = createLogger({ level: "error", write: () => {} });

let certA: CertBundle;
let certB: CertBundle;
let server: Server;
let port: number;
let pool: HbonePool;
/** How the server treats the n-th stream (1-based) of its c-th connection (1-based). */
let behaviour: (conn: number, stream: number, s: H2Stream) => void;
let connections = 0;
let maxStreams = TUNNEL_SETTINGS.maxConcurrentStreams;

const echo = (s: H2Stream) => {
  s.respond(200);
  s.pipe(s);
};

beforeAll(async () => {
  const ca = await createTestCa();
  certA = ca.issue("spiffe://cluster.local/ns/foo/sa/client");
  certB = ca.issue(ID_B);
  server = createTlsServer({
    cert: certB.chainPem,
    key: certB.keyPem,
    ca: certB.rootPem,
    requestCert: true,
    rejectUnauthorized: true,
    ALPNProtocols: ["h2"],
  }, (socket: TLSSocket) => {
    socket.on("error", () => {});
    const c = ++connections;
    let n = 0;
    new H2Connection({
      role: "server",
      socket,
      logger: quiet,
      settings: { ...TUNNEL_SETTINGS, maxConcurrentStreams: maxStreams },
      onStream: (s) => {
        s.on("error", () => {});
        behaviour(c, ++n, s);
      },
    });
  });
  port = await new Promise<number>((r) =>
    server.listen(0, HOST, () => r((server.address() as { port: number }).port))
  );
});

afterAll(() => {
  pool?.close();
  server?.close();
});

/** A fresh pool and counters for one test. */
function reset(b: typeof behaviour, streams = TUNNEL_SETTINGS.maxConcurrentStreams): void {
  pool?.close();
  pool = createHbonePool({ tls: createTlsMaterial(() => certA), logger: quiet });
  behaviour = b;
  connections = 0;
  maxStreams = streams;
}

const open = () =>
  pool.connect({ peer: HOST, peerPort: port, authority: "10.0.0.1:80", identities: [ID_B], timeoutMs: 5000 });

/** Sends `text`, ends, and reads the echo. */
async function roundTrip(s: Duplex, text: string): Promise<string> {
  const chunks: Buffer[] = [];
  const done = new Promise<void>((resolve, reject) => {
    s.on("data", (c: Buffer) => chunks.push(c));
    s.once("end", () => resolve());
    s.once("error", reject);
  });
  s.end(text);
  await done;
  return Buffer.concat(chunks).toString();
}

test("successive streams share one pooled connection", async () => {
  reset((_c, _n, s) => echo(s));
  for (const text of ["one", "two", "three"]) expect(await roundTrip((await open()).stream, text)).toBe(text);
  expect(connections).toBe(1);
  expect(pool.peers()).toEqual([`${HOST}:${port}`]);
});

test("a stream reset before an answer on a used connection is asked again on a fresh one", async () => {
  reset((c, n, s) => (c === 1 && n === 2 ? s.cancel(ErrorCode.INTERNAL_ERROR) : echo(s)));
  expect(await roundTrip((await open()).stream, "first")).toBe("first");
  expect(await roundTrip((await open()).stream, "second")).toBe("second");
  expect(connections).toBe(2);
});

test("a refusal (403) is not retried", async () => {
  reset((_c, _n, s) => {
    s.respond(403, true);
    s.cancel(ErrorCode.NO_ERROR);
  });
  await expect(open()).rejects.toThrow(/refused by the destination's policy \(403\)/);
  expect(connections).toBe(1);
});

test("drain: the open stream finishes on the old connection, new streams use a new one", async () => {
  reset((_c, _n, s) => echo(s));
  const old = await open();
  pool.drain();
  expect(pool.peers()).toEqual([]);
  const fresh = await open();
  expect(connections).toBe(2);
  expect(await roundTrip(old.stream, "old")).toBe("old");
  expect(await roundTrip(fresh.stream, "new")).toBe("new");
});

test("the peer's SETTINGS_MAX_CONCURRENT_STREAMS: a full connection makes the pool open another", async () => {
  reset((_c, _n, s) => echo(s), 1);
  const a = await open();
  // The server's SETTINGS (one stream at most) arrived with the first answer.
  const b = await open();
  expect(connections).toBe(2);
  expect(await roundTrip(a.stream, "a")).toBe("a");
  expect(await roundTrip(b.stream, "b")).toBe("b");
});

test("early data: the first bytes go out before the answer, and again when the stream is retried", async () => {
  // The server answers only once bytes arrived: without early data no stream would be answered.
  reset((c, n, s) =>
    s.once("data", (first: Buffer) => {
      if (c === 1 && n === 2) return s.cancel(ErrorCode.REFUSED_STREAM);
      s.respond(200);
      s.write(first);
      s.pipe(s);
    })
  );
  const through = async (text: string): Promise<{ echoed: string; early: number }> => {
    const downstream = new PassThrough();
    downstream.write(text);
    const early = new EarlyData(downstream);
    const { stream } = await pool.connect({
      peer: HOST,
      peerPort: port,
      authority: "10.0.0.1:80",
      identities: [ID_B],
      timeoutMs: 5000,
      early,
    });
    const echoed = roundTrip(stream, "");
    downstream.end();
    downstream.pipe(stream);
    return { echoed: await echoed, early: early.bytes };
  };
  expect(await through("first")).toEqual({ echoed: "first", early: 5 });
  expect(await through("second")).toEqual({ echoed: "second", early: 6 });
  expect(connections).toBe(2);
});
