/**
 * HBONE flow control on loopback: a tunnel between a pool and an HBONE server opens its streams'
 * HTTP/2 windows to HBONE_WINDOW_BYTES, and a TCP stream several windows long crosses it intact in
 * each direction (a window the two ends disagree on stalls such a stream after its first
 * window), also on a second stream of the same connection.
 */
import { afterAll, beforeAll, expect, test } from "bun:test";
import { createServer, type Server } from "node:net";
import type { Duplex } from "node:stream";
import { Registry } from "prom-client";
import {
  createHbonePool,
  HBONE_WINDOW_BYTES,
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
/** Three windows: more than any one window can hold. */
const BYTES = 3 * HBONE_WINDOW_BYTES;
const quiet = createLogger({ level: "error", write: () => {} });

let app: Server;
let appPort: number;
let server: HboneServer;
let pool: HbonePool;

/**
 * The application: the first byte chooses `S` (count what arrives, answer the count once the
 * client ends) or `G` (send BYTES, then end).
 */
function startApp(): Promise<number> {
  app = createServer({ allowHalfOpen: true }, (s) => {
    s.on("error", () => {});
    let mode: string | undefined;
    let count = 0;
    s.on("data", (c: Buffer) => {
      if (mode === undefined) {
        mode = String.fromCharCode(c[0]!);
        c = c.subarray(1);
        if (mode === "G") s.end(Buffer.alloc(BYTES, 0x67));
      }
      count += c.length;
    });
    s.on("end", () => (mode === "S" ? s.end(String(count)) : undefined));
  });
  return new Promise((r) => app.listen(0, HOST, () => r((app.address() as { port: number }).port)));
}

beforeAll(async () => {
  const ca = await createTestCa();
  const certA = ca.issue(ID_A);
  const certB = ca.issue(ID_B);
  appPort = await startApp();
  server = await startHboneServer({
    host: HOST,
    port: 0,
    tls: createTlsMaterial(() => certB),
    decide: () => ({ allowed: true, audit: false, mtls: "STRICT", target: { address: HOST, port: appPort } }),
    telemetry: createTcpTelemetry({ registry: new Registry(), clock: systemClock, accessLog: () => {} }),
    logger: quiet,
  });
  pool = createHbonePool({ tls: createTlsMaterial(() => certA), logger: quiet });
});

afterAll(async () => {
  pool?.close();
  await server?.close();
  app?.close();
});

/** Writes `total` bytes to `s` in 64 KiB chunks, minding backpressure, then ends it. */
async function writeBytes(s: Duplex, total: number): Promise<void> {
  const chunk = Buffer.alloc(64 * 1024, 0x73);
  for (let sent = 0; sent < total; sent += chunk.length) {
    if (!s.write(chunk.subarray(0, Math.min(chunk.length, total - sent)))) {
      await new Promise((r) => s.once("drain", r));
    }
  }
  s.end();
}

const open = () =>
  pool.connect({
    peer: HOST,
    peerPort: server.port,
    authority: `${HOST}:${appPort}`,
    identities: [ID_B],
    timeoutMs: 5000,
  });

test("a tunnelled stream's receive window is HBONE_WINDOW_BYTES", async () => {
  const { stream } = await open();
  expect(stream.recvWindow).toBe(HBONE_WINDOW_BYTES);
  const answer = readAll(stream);
  stream.end("S");
  expect((await answer).toString()).toBe("0");
});

test("a stream of three windows crosses the tunnel toward the application", async () => {
  const { stream } = await open();
  const answer = readAll(stream);
  stream.write("S");
  await writeBytes(stream, BYTES);
  expect((await answer).toString()).toBe(String(BYTES));
}, 20_000);

test("a stream of three windows crosses the tunnel back from the application, twice", async () => {
  for (let i = 0; i < 2; i++) {
    const { stream } = await open();
    const received = readAll(stream);
    stream.end("G");
    const got = await received;
    expect(got.length).toBe(BYTES);
    expect(got.every((b) => b === 0x67)).toBe(true);
  }
  expect(pool.peers()).toEqual([`${HOST}:${server.port}`]);
}, 20_000);
