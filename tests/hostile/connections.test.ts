/**
 * Every listener under connection and stream attacks, against a real `meshd serve` process with
 * small limits: preface-only connections are capped per source and in total, closed when they do
 * not finish their handshake, streams beyond the advertised maximum are refused, streams whose
 * client never reads are reset once the connection's unread output passes its cap, clients that
 * ping too often are sent away, and readiness and a real gRPC client are served throughout.
 * Also: every gRPC method answers a malformed request with INVALID_ARGUMENT and a compressed
 * message without a negotiated encoding with INTERNAL, and an xDS response over the size limit
 * is warned about, counted and shown in /debug/syncz.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { create, toBinary } from "@bufbuild/protobuf";
import * as grpc from "@grpc/grpc-js";
import * as protoLoader from "@grpc/proto-loader";
import { mkdtempSync, writeFileSync } from "node:fs";
import http2 from "node:http2";
import { connect, type Socket } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { DiscoveryRequestSchema } from "#gen/envoy/service/discovery/v3/discovery_pb.ts";
import { ADS_PATHS } from "../../mod/xds/server.ts";
import { eventually, type MeshdProcess, ROOT, startMeshd } from "../e2e/_meshd.ts";

const CDS = "type.googleapis.com/envoy.config.cluster.v3.Cluster";
const NODE = "sidecar~10.1.0.1~web-1.shop~shop.svc.cluster.local";
const LIMITS = {
  maxConnections: 120,
  perSource: 40,
  streams: 8,
  unread: 262144,
  warnSize: 65536,
};

/** Enough ServiceEntries that one CDS response is well over LIMITS.warnSize and LIMITS.unread. */
function bigMesh(): string {
  const docs: string[] = [];
  for (let i = 0; i < 400; i++) {
    docs.push(`apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata:
  name: svc-${i}
  namespace: shop
spec:
  hosts: [svc-${i}.shop.example.com]
  location: MESH_EXTERNAL
  resolution: DNS
  ports:
  - number: 80
    name: http
    protocol: HTTP
`);
  }
  return docs.join("---\n");
}

/** One HTTP/2 frame. */
function h2frame(
  type: number,
  flags: number,
  stream: number,
  payload: Uint8Array = new Uint8Array(),
): Buffer {
  const b = Buffer.alloc(9 + payload.length);
  b.writeUIntBE(payload.length, 0, 3);
  b[3] = type;
  b[4] = flags;
  b.writeUInt32BE(stream, 5);
  b.set(payload, 9);
  return b;
}

/** A header block of literal fields without indexing or Huffman coding (names and values < 127 bytes). */
function headerBlock(h: Record<string, string>): Buffer {
  const out: number[] = [];
  for (const [k, v] of Object.entries(h)) {
    out.push(0, k.length, ...Buffer.from(k), v.length, ...Buffer.from(v));
  }
  return Buffer.from(out);
}

const PREFACE = Buffer.from("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n");
const SETTINGS = 4, HEADERS = 1, DATA = 0, RST_STREAM = 3;

/** A gRPC message: flag, length, bytes. */
function grpcMessage(body: Uint8Array, flag = 0): Buffer {
  const b = Buffer.alloc(5 + body.length);
  b[0] = flag;
  b.writeUInt32BE(body.length, 1);
  b.set(body, 5);
  return b;
}

interface RawConnection {
  readonly socket: Socket;
  readonly frames: Array<{ type: number; stream: number; payload: Buffer }>;
  readonly closed: () => boolean;
}

/** A TCP connection from `localAddress` that writes `first` once connected and collects frames. */
function rawConnect(
  addr: string,
  opts: { localAddress?: string; first?: Buffer } = {},
): Promise<RawConnection> {
  const [host, port] = [addr.slice(0, addr.lastIndexOf(":")), Number(addr.slice(addr.lastIndexOf(":") + 1))];
  return new Promise((resolve) => {
    const socket = connect({ host, port, localAddress: opts.localAddress });
    const frames: RawConnection["frames"] = [];
    let closed = false;
    let buf = Buffer.alloc(0);
    socket.on("error", () => {});
    socket.on("close", () => (closed = true));
    socket.on("data", (d: Buffer) => {
      buf = Buffer.concat([buf, d]);
      while (buf.length >= 9 && buf.length >= 9 + buf.readUIntBE(0, 3)) {
        const len = buf.readUIntBE(0, 3);
        frames.push({
          type: buf[3]!,
          stream: buf.readUInt32BE(5) & 0x7fffffff,
          payload: buf.subarray(9, 9 + len),
        });
        buf = buf.subarray(9 + len);
      }
    });
    const done = () => resolve({ socket, frames, closed: () => closed });
    socket.once("connect", () => {
      if (opts.first) socket.write(opts.first);
      done();
    });
    socket.once("close", done);
  });
}

/** Prometheus sample value of `name{labels}` in a text exposition (0 when absent). */
function sample(text: string, name: string, labels: Record<string, string>): number {
  const want = Object.entries(labels).map(([k, v]) => `${k}="${v}"`);
  const line = text.split("\n").find((l) => l.startsWith(name + "{") && want.every((w) => l.includes(w)));
  return line === undefined ? 0 : Number(line.split(" ").pop());
}

/** A grpc-js client of grpc.health.v1. */
function healthClient(addr: string) {
  const def = protoLoader.loadSync(join(ROOT, "proto/api/grpc/health/v1/health.proto"), { keepCase: true });
  const pkg = grpc.loadPackageDefinition(def) as unknown as {
    grpc: { health: { v1: { Health: new (addr: string, creds: grpc.ChannelCredentials) => grpc.Client } } };
  };
  return new pkg.grpc.health.v1.Health(addr, grpc.credentials.createInsecure()) as grpc.Client & {
    Check(
      req: object,
      opts: grpc.CallOptions,
      cb: (err: grpc.ServiceError | null, res: { status: number }) => void,
    ): void;
  };
}

/** Polls readiness until stopped; counts answers that are not 200 (or do not come). */
function watchReadiness(adminAddr: string) {
  let stop = false;
  let ok = 0;
  let failed = 0;
  const loop = (async () => {
    for (let i = 0; i < 2000 && !stop; i++) {
      try {
        const res = await fetch(`http://${adminAddr}/healthz/ready`, { signal: AbortSignal.timeout(5000) });
        if (res.status === 200) ok++;
        else failed++;
      } catch {
        failed++;
      }
      await Bun.sleep(20);
    }
  })();
  return {
    async end() {
      stop = true;
      await loop;
      return { ok, failed };
    },
  };
}

describe("listeners under attack (meshd serve with small limits)", () => {
  let meshd: MeshdProcess;
  const metrics = async () => await (await fetch(`http://${meshd.adminAddr}/metrics`)).text();
  const rssLine = (text: string) => {
    const l = text.split("\n").find((x) => x.startsWith("process_resident_memory_bytes "));
    return l === undefined ? 0 : Math.round(Number(l.split(" ")[1]) / 1e6);
  };
  const figures: string[] = [];

  beforeAll(async () => {
    const dir = mkdtempSync(join(tmpdir(), "meshd-hostile-"));
    writeFileSync(join(dir, "mesh.yaml"), bigMesh());
    meshd = await startMeshd({
      args: [
        `--config-dir=${dir}`,
        `--max-connections=${LIMITS.maxConnections}`,
        `--max-connections-per-source=${LIMITS.perSource}`,
        "--handshake-timeout=2s",
        "--idle-timeout=3s",
        `--max-concurrent-streams=${LIMITS.streams}`,
        `--max-unread-output-per-connection=${LIMITS.unread}`,
        "--grpc-keepalive-min-time=1m",
        `--xds-response-warn-size=${LIMITS.warnSize}`,
        "--push-debounce=10ms",
      ],
    });
    expect(
      await eventually(
        async () => (await fetch(`http://${meshd.adminAddr}/healthz/ready`)).status === 200,
        20_000,
      ),
    ).toBe(true);
  });
  afterAll(() => {
    if (meshd.proc.exitCode === null) meshd.proc.kill("SIGKILL");
    console.log(`figures:\n  ${figures.join("\n  ")}`);
  }, 30_000);

  test(
    "preface-only connections are capped per source and in total; readiness and a gRPC client are served throughout",
    async () => {
      const rssBefore = rssLine(await metrics());
      const readiness = watchReadiness(meshd.adminAddr);
      const health = healthClient(meshd.grpcAddr);
      const check = () =>
        new Promise<number | string>((resolve) =>
          health.Check(
            { service: "" },
            { deadline: Date.now() + 5000 },
            (err, res) => resolve(err ? `error ${err.code}` : res.status),
          )
        );
      try {
        // One source opens far more than its share.
        const one = await Promise.all(
          Array.from(
            { length: 150 },
            () => rawConnect(meshd.grpcAddr, { localAddress: "127.0.0.2", first: PREFACE }),
          ),
        );
        await Bun.sleep(300);
        const heldBySource = one.filter((c) => !c.closed()).length;
        expect(heldBySource).toBe(LIMITS.perSource);
        // Another source, a real client, is served meanwhile.
        expect(await check()).toBe(1);

        // Many sources together reach the listener's total.
        const many = await Promise.all(
          Array.from(
            { length: 150 },
            (_, i) => rawConnect(meshd.grpcAddr, { localAddress: `127.0.1.${1 + (i % 5)}`, first: PREFACE }),
          ),
        );
        await Bun.sleep(300);
        const heldInTotal = [...one, ...many].filter((c) => !c.closed()).length;
        expect(heldInTotal).toBeLessThanOrEqual(LIMITS.maxConnections);
        expect(heldInTotal).toBeGreaterThan(LIMITS.maxConnections - 5);
        const text = await metrics();
        const rssDuring = rssLine(text);
        figures.push(
          `preface-only: held ${heldBySource} of 150 from one source, ${heldInTotal} of 300 in total; RSS ${rssBefore} -> ${rssDuring} MB`,
        );
        expect(
          sample(text, "meshd_listener_limit_hits_total", {
            listener: "grpc",
            reason: "connections_per_source",
          }),
        )
          .toBeGreaterThanOrEqual(150 - LIMITS.perSource);
        expect(sample(text, "meshd_listener_limit_hits_total", { listener: "grpc", reason: "connections" }))
          .toBeGreaterThan(0);
        expect(sample(text, "meshd_listener_connections", { listener: "grpc" })).toBeLessThanOrEqual(
          LIMITS.maxConnections,
        );
        // Logged once per source, however many connections it lost.
        const lines = meshd.logs.filter((l) =>
          l.msg === "connection limit reached" && l.reason === "connections_per_source" &&
          l.source === "127.0.0.2"
        );
        expect(lines.length).toBe(1);

        // Nothing of it finished a handshake: all of it is closed once the handshake timeout passes.
        expect(await eventually(() => [...one, ...many].every((c) => c.closed()), 15_000)).toBe(true);
        expect(
          sample(await metrics(), "meshd_listener_limit_hits_total", {
            listener: "grpc",
            reason: "handshake_timeout",
          }),
        )
          .toBeGreaterThanOrEqual(heldInTotal);
        expect(await check()).toBe(1);
      } finally {
        health.close();
      }
      const r = await readiness.end();
      figures.push(`readiness during the connection attacks: ${r.ok} answered 200, ${r.failed} failed`);
      expect(r.ok).toBeGreaterThan(0);
      expect(r.failed).toBe(0);
    },
    30_000,
  );

  test("a connection that sends nothing is closed after --handshake-timeout and counted", async () => {
    const before = sample(await metrics(), "meshd_listener_limit_hits_total", {
      listener: "grpc",
      reason: "handshake_timeout",
    });
    const silent = await rawConnect(meshd.grpcAddr);
    const admin = await rawConnect(meshd.adminAddr);
    expect(silent.closed()).toBe(false);
    expect(await eventually(() => silent.closed() && admin.closed(), 15_000)).toBe(true);
    const text = await metrics();
    expect(sample(text, "meshd_listener_limit_hits_total", { listener: "grpc", reason: "handshake_timeout" }))
      .toBeGreaterThan(before);
    expect(
      sample(text, "meshd_listener_limit_hits_total", { listener: "admin", reason: "handshake_timeout" }),
    )
      .toBeGreaterThan(0);
  }, 30_000);

  test(
    "a connection without streams is closed with GOAWAY after --idle-timeout; one holding an xDS stream is not",
    async () => {
      const idle = http2.connect(`http://${meshd.grpcAddr}`);
      const busy = http2.connect(`http://${meshd.grpcAddr}`);
      const goaways: string[] = [];
      for (const [name, s] of [["idle", idle], ["busy", busy]] as const) {
        s.on("error", () => {});
        s.on("goaway", () => goaways.push(name));
      }
      const stream = busy.request({
        ":method": "POST",
        ":path": ADS_PATHS.sotw,
        "content-type": "application/grpc",
      });
      stream.on("error", () => {});
      stream.on("data", () => {});
      stream.write(
        grpcMessage(
          toBinary(
            DiscoveryRequestSchema,
            create(DiscoveryRequestSchema, { node: { id: NODE }, typeUrl: CDS }),
          ),
        ),
      );
      expect(await eventually(() => idle.closed || idle.destroyed, 15_000)).toBe(true);
      expect(goaways).toEqual(["idle"]);
      expect(busy.closed || busy.destroyed).toBe(false);
      expect(stream.closed).toBe(false);
      busy.destroy();
      idle.destroy();
      expect(
        sample(await metrics(), "meshd_listener_limit_hits_total", {
          listener: "grpc",
          reason: "idle_timeout",
        }),
      )
        .toBeGreaterThan(0);
    },
    30_000,
  );

  test("streams beyond --max-concurrent-streams are refused with REFUSED_STREAM", async () => {
    const c = await rawConnect(meshd.grpcAddr, { first: Buffer.concat([PREFACE, h2frame(SETTINGS, 0, 0)]) });
    const headers = headerBlock({
      ":method": "POST",
      ":scheme": "http",
      ":path": ADS_PATHS.sotw,
      ":authority": "meshd",
      "content-type": "application/grpc",
    });
    for (let i = 0; i < LIMITS.streams + 4; i++) c.socket.write(h2frame(HEADERS, 4, 1 + 2 * i, headers));
    expect(await eventually(() => c.frames.filter((f) => f.type === RST_STREAM).length >= 4, 10_000)).toBe(
      true,
    );
    const refused = c.frames.filter((f) => f.type === RST_STREAM && f.payload.readUInt32BE(0) === 7);
    expect(refused.length).toBe(4);
    c.socket.destroy();
  }, 30_000);

  test("streams that never read are reset once the connection's unread output passes its cap", async () => {
    const rssBefore = rssLine(await metrics());
    const request = grpcMessage(
      toBinary(DiscoveryRequestSchema, create(DiscoveryRequestSchema, { node: { id: NODE }, typeUrl: CDS })),
    );
    // The client never sends WINDOW_UPDATE: the server can send 64 KiB and must queue the rest.
    const conns = await Promise.all(
      Array.from(
        { length: 4 },
        () => rawConnect(meshd.grpcAddr, { first: Buffer.concat([PREFACE, h2frame(SETTINGS, 0, 0)]) }),
      ),
    );
    const headers = headerBlock({
      ":method": "POST",
      ":scheme": "http",
      ":path": ADS_PATHS.sotw,
      ":authority": "meshd",
      "content-type": "application/grpc",
    });
    for (const c of conns) {
      for (let i = 0; i < LIMITS.streams; i++) {
        c.socket.write(
          Buffer.concat([h2frame(HEADERS, 4, 1 + 2 * i, headers), h2frame(DATA, 0, 1 + 2 * i, request)]),
        );
      }
    }
    const resets = () =>
      conns.reduce(
        (n, c) =>
          n + c.frames.filter((f) => f.type === RST_STREAM && f.payload.readUInt32BE(0) === 11).length,
        0,
      );
    expect(await eventually(() => resets() >= conns.length, 15_000)).toBe(true);
    const text = await metrics();
    expect(sample(text, "meshd_listener_limit_hits_total", { listener: "grpc", reason: "unread_output" }))
      .toBeGreaterThanOrEqual(conns.length);
    const rssAfter = rssLine(text);
    figures.push(
      `never-reading streams: ${conns.length} x ${LIMITS.streams} streams, ${resets()} reset (ENHANCE_YOUR_CALM); RSS ${rssBefore} -> ${rssAfter} MB`,
    );
    expect(meshd.logs.some((l) => l.msg === "connection limit reached" && l.reason === "unread_output")).toBe(
      true,
    );
    for (const c of conns) c.socket.destroy();
  }, 30_000);

  test(
    "a client pinging more often than --grpc-keepalive-min-time gets GOAWAY ENHANCE_YOUR_CALM too_many_pings",
    async () => {
      const client = http2.connect(`http://${meshd.grpcAddr}`);
      client.on("error", () => {});
      const away = new Promise<{ code: number; debug: string }>((resolve) =>
        client.on("goaway", (code, _last, data) => resolve({ code, debug: data?.toString() ?? "" }))
      );
      await new Promise((r) => client.once("remoteSettings", r));
      for (let i = 0; i < 5 && !client.destroyed; i++) {
        try {
          client.ping(() => {});
        } catch {
          break;
        }
        await Bun.sleep(30);
      }
      const g = await Promise.race([away, Bun.sleep(10_000).then(() => undefined)]);
      expect(g).toEqual({ code: http2.constants.NGHTTP2_ENHANCE_YOUR_CALM, debug: "too_many_pings" });
      client.destroy();
      expect(
        sample(await metrics(), "meshd_listener_limit_hits_total", {
          listener: "grpc",
          reason: "too_many_pings",
        }),
      )
        .toBe(1);
    },
    30_000,
  );

  test(
    "every gRPC method answers a malformed message with INVALID_ARGUMENT and a compressed one without grpc-encoding with INTERNAL",
    async () => {
      const { methods } = await (await fetch(`http://${meshd.adminAddr}/debug/grpcz`)).json() as {
        methods: string[];
      };
      expect(methods).toContain(ADS_PATHS.sotw);
      expect(methods).toContain("/grpc.health.v1.Health/Check");
      expect(methods.length).toBeGreaterThan(8);
      const session = http2.connect(`http://${meshd.grpcAddr}`);
      session.on("error", () => {});
      /** Sends one message on `path` and half-closes; resolves with grpc-status. */
      const statusOf = (path: string, message: Buffer) =>
        new Promise<string>((resolve) => {
          const req = session.request({
            ":method": "POST",
            ":path": path,
            "content-type": "application/grpc",
            te: "trailers",
          });
          let status = "none";
          req.on("response", (h) => {
            if (h["grpc-status"] !== undefined) status = String(h["grpc-status"]);
          });
          req.on("trailers", (t) => (status = String(t["grpc-status"])));
          req.on("data", () => {});
          req.on("error", () => {});
          const timer = setTimeout(() => req.close(), 5000);
          req.on("close", () => {
            clearTimeout(timer);
            resolve(status);
          });
          req.end(message);
        });
      // Field 1 as a varint that never ends: no message decodes from it.
      const malformed = grpcMessage(
        new Uint8Array([0x08, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff]),
      );
      const compressed = grpcMessage(new Uint8Array([1, 2, 3]), 1);
      const table: Record<string, { malformed: string; compressed: string }> = {};
      for (const path of methods) {
        table[path] = {
          malformed: await statusOf(path, malformed),
          compressed: await statusOf(path, compressed),
        };
      }
      session.destroy();
      const want = Object.fromEntries(methods.map((p) => [p, { malformed: "3", compressed: "13" }]));
      expect(table).toEqual(want);
    },
    30_000,
  );

  test(
    "an xDS response over --xds-response-warn-size is warned about once, counted and shown in /debug/syncz",
    async () => {
      const session = http2.connect(`http://${meshd.grpcAddr}`);
      session.on("error", () => {});
      const req = session.request({
        ":method": "POST",
        ":path": ADS_PATHS.sotw,
        "content-type": "application/grpc",
      });
      let received = 0;
      req.on("data", (d: Buffer) => (received += d.length));
      req.on("error", () => {});
      req.write(
        grpcMessage(
          toBinary(
            DiscoveryRequestSchema,
            create(DiscoveryRequestSchema, { node: { id: NODE }, typeUrl: CDS }),
          ),
        ),
      );
      expect(await eventually(() => received > LIMITS.warnSize, 15_000)).toBe(true);
      const proxy = async () => {
        const list = await (await fetch(`http://${meshd.adminAddr}/debug/syncz`)).json() as Array<{
          proxy: string;
          types: Record<string, { sizeWarning?: string; sentBytes?: number }>;
        }>;
        return list.find((p) => p.proxy === NODE);
      };
      expect(await eventually(async () => (await proxy())?.types.CDS?.sizeWarning !== undefined)).toBe(true);
      const cds = (await proxy())!.types.CDS!;
      expect(cds.sentBytes).toBeGreaterThan(LIMITS.warnSize);
      expect(cds.sizeWarning).toBe(`SENT ${Math.round(cds.sentBytes! / 1024)} KB > 64 KB client limit`);
      const warnings = meshd.logs.filter((l) =>
        l.msg === "xDS response larger than clients accept by default"
      );
      expect(warnings.length).toBe(1);
      expect(warnings[0]).toMatchObject({ typeUrl: CDS, proxies: expect.arrayContaining([NODE]) });
      expect(sample(await metrics(), "meshd_xds_oversized_responses_total", { type_url: CDS }))
        .toBeGreaterThan(0);
      figures.push(`oversized CDS: ${cds.sizeWarning} (${cds.sentBytes} bytes)`);
      req.close();
      session.destroy();
    },
    30_000,
  );
});
