/**
 * The ADS methods served straight on HTTP/2 (mod/grpc/raw.ts), driven with a bare node:http2
 * client so that the framing itself can be wrong: hostile or broken input ends that call with a
 * gRPC status and a log line, and the server keeps serving.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { create, toBinary } from "@bufbuild/protobuf";
import { anyPack, StringValueSchema } from "@bufbuild/protobuf/wkt";
import http2 from "node:http2";
import {
  DiscoveryRequestSchema,
  DiscoveryResponseSchema,
} from "#gen/envoy/service/discovery/v3/discovery_pb.ts";
import { fromBinary } from "@bufbuild/protobuf";
import { createGrpcServer, type GrpcServer } from "../../mod/grpc/server.ts";
import { createLogger } from "../../mod/shared/logger.ts";
import { ADS_PATHS, createAdsServer } from "../../mod/xds/server.ts";
import type { XdsResource } from "../../mod/xds/provider.ts";

const TYPE = "type.googleapis.com/google.protobuf.StringValue";
const logged: Array<{ level: string; msg: string; err?: string }> = [];
let grpc: GrpcServer;
let url: string;

beforeAll(async () => {
  const logger = createLogger({ write: (l) => logged.push(JSON.parse(l)), format: "json" });
  const ads = createAdsServer({ logger });
  const resource: XdsResource = {
    name: "a",
    version: "1",
    resource: anyPack(StringValueSchema, create(StringValueSchema, { value: "hello" })),
  };
  ads.addProvider({ typeUrls: [TYPE], resources: () => new Map([["a", resource]]), watch: () => () => {} });
  grpc = createGrpcServer({ logger, readMaxBytes: 1024 * 1024 });
  ads.register(grpc);
  const a = await grpc.listen("127.0.0.1:0");
  url = `http://127.0.0.1:${a.port}`;
});
afterAll(() => grpc.shutdown(1000));

/** Frames `body` as one gRPC message (flag, big-endian length). */
function frame(body: Uint8Array, flag = 0, length = body.length): Buffer {
  const b = Buffer.alloc(5 + body.length);
  b[0] = flag;
  b.writeUInt32BE(length, 1);
  b.set(body, 5);
  return b;
}

interface Outcome {
  status?: number;
  grpcStatus?: string;
  grpcMessage?: string;
  messages: Uint8Array[];
}

/** Opens one ADS stream, writes `chunks`, and collects what comes back within `ms`. */
function call(chunks: Buffer[], opts: { contentType?: string; end?: boolean; ms?: number } = {}) {
  return new Promise<Outcome>((resolve) => {
    const session = http2.connect(url);
    session.on("error", () => {});
    const out: Outcome = { messages: [] };
    const req = session.request({
      ":method": "POST",
      ":path": ADS_PATHS.sotw,
      "content-type": opts.contentType ?? "application/grpc",
      te: "trailers",
    });
    let buf = Buffer.alloc(0);
    req.on("response", (h) => {
      out.status = Number(h[":status"]);
      if (h["grpc-status"] !== undefined) out.grpcStatus = String(h["grpc-status"]);
      if (h["grpc-message"] !== undefined) out.grpcMessage = decodeURIComponent(String(h["grpc-message"]));
    });
    req.on("data", (d: Buffer) => {
      buf = Buffer.concat([buf, d]);
      while (buf.length >= 5 && buf.length >= 5 + buf.readUInt32BE(1)) {
        const n = buf.readUInt32BE(1);
        out.messages.push(new Uint8Array(buf.subarray(5, 5 + n)));
        buf = buf.subarray(5 + n);
      }
    });
    req.on("trailers", (t) => {
      out.grpcStatus = String(t["grpc-status"]);
      if (t["grpc-message"] !== undefined) out.grpcMessage = decodeURIComponent(String(t["grpc-message"]));
    });
    req.on("error", () => {});
    const done = () => {
      clearTimeout(timer);
      session.destroy();
      resolve(out);
    };
    const timer = setTimeout(done, opts.ms ?? 1500);
    req.on("close", done);
    for (const c of chunks) req.write(c);
    if (opts.end) req.end();
  });
}

const hello = () =>
  frame(
    toBinary(DiscoveryRequestSchema, create(DiscoveryRequestSchema, { node: { id: "n1" }, typeUrl: TYPE })),
  );

describe("gRPC methods served on raw HTTP/2 streams", () => {
  test("a well-formed stream gets its response; the message may arrive split across DATA frames", async () => {
    const whole = hello();
    const out = await call([whole.subarray(0, 3), whole.subarray(3, 9), whole.subarray(9)], { ms: 500 });
    expect(out.status).toBe(200);
    expect(out.messages.length).toBe(1);
    const resp = fromBinary(DiscoveryResponseSchema, out.messages[0]!);
    expect(resp.typeUrl).toBe(TYPE);
    expect(resp.nonce).toBe("1");
    expect(resp.resources.length).toBe(1);
  });

  test("a client that half-closes ends the call with OK", async () => {
    const out = await call([hello()], { end: true });
    expect(out.messages.length).toBe(1);
    expect(out.grpcStatus).toBe("0");
  });

  test("hostile and broken input ends the call with a status, and is logged", async () => {
    // The compressed flag without a negotiated grpc-encoding is a protocol error: INTERNAL.
    const compressed = await call([frame(new Uint8Array([1, 2, 3]), 1)]);
    expect(compressed.grpcStatus).toBe("13");
    expect(compressed.grpcMessage).toContain("compressed");

    const huge = await call([frame(new Uint8Array(8), 0, 512 * 1024 * 1024)]);
    expect(huge.grpcStatus).toBe("8");
    expect(huge.grpcMessage).toContain("larger than");

    const garbage = await call([frame(new Uint8Array([0xff, 0xff, 0xff, 0xff, 0x0f, 0x22]))]);
    expect(garbage.grpcStatus).toBe("3");
    expect(garbage.grpcMessage).toContain("malformed");
    expect(logged.some((l) => l.msg === "xDS stream failed" && /malformed/.test(l.err ?? ""))).toBe(true);

    const noNode = await call([
      frame(toBinary(DiscoveryRequestSchema, create(DiscoveryRequestSchema, { typeUrl: TYPE }))),
    ]);
    expect(noNode.grpcStatus).toBe("3");

    const notGrpc = await call([Buffer.from("GET / HTTP/1.1\r\n\r\n")], { contentType: "text/plain" });
    expect(notGrpc.status).toBe(415);

    // Still serving.
    const after = await call([hello()], { ms: 500 });
    expect(after.messages.length).toBe(1);
  });

  test("shutdown ends open streams", async () => {
    const logger = createLogger({ write: () => {} });
    const ads = createAdsServer({ logger });
    ads.addProvider({ typeUrls: [TYPE], resources: () => new Map(), watch: () => () => {} });
    const own = createGrpcServer({ logger });
    ads.register(own);
    const a = await own.listen("127.0.0.1:0");
    const session = http2.connect(`http://127.0.0.1:${a.port}`);
    session.on("error", () => {});
    const req = session.request({
      ":method": "POST",
      ":path": ADS_PATHS.sotw,
      "content-type": "application/grpc",
    });
    const trailers = new Promise<string>((resolve) =>
      req.on("trailers", (t) => resolve(String(t["grpc-status"])))
    );
    req.on("data", () => {});
    req.on("error", () => {});
    req.write(hello());
    await new Promise((r) => setTimeout(r, 100));
    expect(ads.streams().length).toBe(1);
    const started = performance.now();
    await own.shutdown(5000);
    expect(await trailers).toBe("0");
    expect(performance.now() - started).toBeLessThan(4000);
    expect(ads.streams().length).toBe(0);
    session.destroy();
  });
});
