import { describe, expect, test } from "bun:test";
import { create, fromBinary, toBinary } from "@bufbuild/protobuf";
import { BinaryWriter, WireType } from "@bufbuild/protobuf/wire";
import { Code, ConnectError } from "@connectrpc/connect";
import {
  AttributesSchema,
  CheckRequestSchema,
  CheckResponseSchema,
  ReportRequestSchema,
} from "#gen/meshd/mixer/v1/mixer_pb.ts";
import {
  BadBagError,
  MalformedMessageError,
  readBag,
  readCheckRequest,
  readReportRequest,
  TooManyEntriesError,
} from "../../mod/mixer/client/bag_codec.ts";
import { DEFAULT_BAG_LIMITS, encodeBag } from "../../mod/mixer/client/wire.ts";
import { mixerMethods } from "../../mod/mixer/mixer_service.ts";
import { coreHarness, docs, mixerYaml } from "./_harness.ts";

const limits = DEFAULT_BAG_LIMITS;

const everyKind = {
  "request.path": "/shop.Cart/Add",
  "source.principal": "spiffe://cluster.local/ns/shop/sa/frontend ✓",
  "request.size": 12,
  "request.total_size": 2n ** 60n,
  "response.duration": 1500.25,
  "connection.mtls": true,
  "source.ip": new Uint8Array([10, 0, 0, 1]),
  "request.time": new Date(1_700_000_000_123),
  "request.headers": { "x-user": "alice", ":authority": "cart", "ключ": "значение" },
  "context.protocol": "grpc",
};

/** Appends an unknown field (number 99) to an encoded message. */
const withUnknown = (bytes: Uint8Array) => {
  const w = new BinaryWriter();
  w.raw(bytes).tag(99, WireType.LengthDelimited).string("ignored").tag(98, WireType.Varint).int32(7);
  return w.finish();
};

/** A map entry of Attributes (field 1) with the value written before the key. */
const valueFirstEntry = (name: string, value: string) => {
  const w = new BinaryWriter();
  w.tag(1, WireType.LengthDelimited).fork();
  w.tag(2, WireType.LengthDelimited).fork().tag(1, WireType.LengthDelimited).string(value).join();
  w.tag(1, WireType.LengthDelimited).string(name);
  return w.join().finish();
};

describe("bags read straight from wire bytes", () => {
  test("every kind of value reads back as the vocabulary's JS value", () => {
    const bag = readBag(toBinary(AttributesSchema, encodeBag(everyKind)), limits);
    expect(bag).toEqual({
      ...everyKind,
      "request.total_size": 2n ** 60n, // beyond 2^53: kept exact as a bigint
    });
    expect(bag["request.time"]).toBeInstanceOf(Date);
    expect(Object.getPrototypeOf(bag["request.headers"])).toBe(Object.prototype);
  });

  test("unknown fields are skipped at every level; a value may come before its key; the last duplicate wins", () => {
    const attrs = toBinary(AttributesSchema, encodeBag({ "request.path": "/a" }));
    const bytes = new BinaryWriter()
      .raw(withUnknown(attrs))
      .raw(valueFirstEntry("request.path", "/b"))
      .raw(valueFirstEntry("destination.service.host", "cart"))
      .finish();
    expect(readBag(bytes, limits)).toEqual({ "request.path": "/b", "destination.service.host": "cart" });
  });

  test("a Check request gives its bag, quotas and deduplication id", () => {
    const req = create(CheckRequestSchema, {
      attributes: encodeBag({ "request.path": "/x" }),
      quotas: { requestcount: { amount: 3n, bestEffort: true }, bytes: { amount: 1n } },
      deduplicationId: "d-1",
    });
    const read = readCheckRequest(withUnknown(toBinary(CheckRequestSchema, req)), limits);
    expect(read.bag).toEqual({ "request.path": "/x" });
    expect([...read.quotas]).toEqual([
      ["requestcount", { amount: 3n, bestEffort: true }],
      ["bytes", { amount: 1n, bestEffort: false }],
    ]);
    expect(read.deduplicationId).toBe("d-1");
  });

  test("a string-map key __proto__ stays an own entry and leaves the prototype alone", () => {
    const w = new BinaryWriter();
    w.tag(1, WireType.LengthDelimited).fork().tag(1, WireType.LengthDelimited).string("request.headers");
    w.tag(2, WireType.LengthDelimited).fork().tag(8, WireType.LengthDelimited).fork();
    w.tag(1, WireType.LengthDelimited).fork().tag(1, WireType.LengthDelimited).string("__proto__");
    w.tag(2, WireType.LengthDelimited).string("polluted").join();
    w.join().join().join();
    const headers = readBag(w.finish(), limits)["request.headers"] as Record<string, string>;
    expect(Object.getPrototypeOf(headers)).toBe(Object.prototype);
    expect(Object.hasOwn(headers, "__proto__")).toBe(true);
    expect(headers["__proto__"]).toBe("polluted");
    expect(({} as Record<string, unknown>)["polluted"]).toBeUndefined();
  });

  test("the vocabulary's rules and the limits name the attribute", () => {
    const bytes = (attributes: Record<string, unknown>) =>
      toBinary(AttributesSchema, create(AttributesSchema, { attributes: attributes as never }));
    expect(() => readBag(bytes({ "request.size": { value: { case: "stringValue", value: "big" } } }), limits))
      .toThrow(new BadBagError("attribute request.size must be of type int, got string"));
    expect(() => readBag(bytes({ "9lives": { value: { case: "boolValue", value: true } } }), limits))
      .toThrow(BadBagError);
    // Names outside the vocabulary take any type, but a double must still be finite.
    expect(() => readBag(bytes({ "custom.score": { value: { case: "doubleValue", value: NaN } } }), limits))
      .toThrow("attribute custom.score is not a finite number");
    const headers = Object.fromEntries(Array.from({ length: 300 }, (_, i) => [`h${i}`, "v"]));
    expect(() => readBag(toBinary(AttributesSchema, encodeBag({ "request.headers": headers })), limits))
      .toThrow("attribute request.headers has too many entries");
    const many = Object.fromEntries(Array.from({ length: 257 }, (_, i) => [`a${i}`, "v"]));
    expect(() => readBag(toBinary(AttributesSchema, encodeBag(many)), limits))
      .toThrow("more than 256 attributes");
  });

  test("a value with the wrong wire type is malformed, not misread", () => {
    // string_value (field 1) sent as a varint.
    const w = new BinaryWriter();
    w.tag(1, WireType.LengthDelimited).fork().tag(1, WireType.LengthDelimited).string("request.path");
    w.tag(2, WireType.LengthDelimited).fork().tag(1, WireType.Varint).int32(5).join().join();
    expect(() => readBag(w.finish(), limits)).toThrow(MalformedMessageError);
  });

  test("truncated and random bytes are refused as malformed or bad bags, never with another error", () => {
    const full = toBinary(
      CheckRequestSchema,
      create(CheckRequestSchema, { attributes: encodeBag(everyKind), quotas: { q: { amount: 2n } } }),
    );
    const outcomes = new Set<string>();
    const classify = (bytes: Uint8Array) => {
      try {
        readCheckRequest(bytes, limits);
        outcomes.add("read");
      } catch (err) {
        if (err instanceof MalformedMessageError) outcomes.add("malformed");
        else if (err instanceof BadBagError) outcomes.add("bad bag");
        else throw err;
      }
    };
    for (let n = 0; n < full.length; n++) classify(full.subarray(0, n));
    let seed = 7;
    const rand = () => (seed = (seed * 1103515245 + 12345) & 0x7fffffff) / 0x7fffffff;
    for (let i = 0; i < 3000; i++) {
      const junk = Uint8Array.from({ length: 1 + Math.floor(rand() * 64) }, () => Math.floor(rand() * 256));
      classify(junk);
    }
    // Flipping bytes of a real request exercises the deeper paths.
    for (let i = 0; i < 3000; i++) {
      const b = full.slice();
      b[Math.floor(rand() * b.length)] = Math.floor(rand() * 256);
      classify(b);
    }
    expect(outcomes).toContain("malformed");
    expect(outcomes).toContain("read");
  });

  test("a Report request gives one bag per entry; too many entries and bad entries are named", () => {
    const report = (n: number, bad?: number) =>
      toBinary(
        ReportRequestSchema,
        create(ReportRequestSchema, {
          entries: Array.from({ length: n }, (_, i) =>
            i === bad
              ? create(AttributesSchema, {
                attributes: { "request.size": { value: { case: "stringValue", value: "x" } } },
              })
              : encodeBag({ "request.path": `/p${i}` })),
        }),
      );
    expect(readReportRequest(report(3), limits, 3).map((b) => b["request.path"])).toEqual([
      "/p0",
      "/p1",
      "/p2",
    ]);
    expect(() => readReportRequest(report(4), limits, 3)).toThrow(TooManyEntriesError);
    expect(() => readReportRequest(report(3, 1), limits, 3))
      .toThrow("entries[1]: attribute request.size must be of type int, got string");
  });
});

describe("Mixer methods on wire bytes", () => {
  const config = docs(
    mixerYaml("handler", "users", { compiledAdapter: "listchecker", params: { overrides: ["alice"] } }),
    mixerYaml("instance", "user", {
      compiledTemplate: "listentry",
      params: { value: 'request.headers["x-user"]' },
    }),
    mixerYaml("rule", "users", { actions: [{ handler: "users", instances: ["user"] }] }),
  );
  const check = async (m: ReturnType<typeof mixerMethods>, user: string) =>
    fromBinary(
      CheckResponseSchema,
      await m.check(
        toBinary(
          CheckRequestSchema,
          create(CheckRequestSchema, { attributes: encodeBag({ "request.headers": { "x-user": user } }) }),
        ),
      ),
    );

  test("answers shared between callers still say what each decision said", async () => {
    const h = coreHarness();
    h.load(config);
    const m = mixerMethods(h.core, { maxBatch: 10, limits });
    for (let i = 0; i < 3; i++) {
      const allowed = await check(m, "alice");
      expect(allowed.status?.code ?? 0).toBe(0);
      expect(allowed.referencedAttributes.map((r) => [r.name, r.mapKey])).toEqual([[
        "request.headers",
        "x-user",
      ]]);
      const denied = await check(m, "mallory");
      expect(denied.status?.code).toBe(Code.NotFound);
      expect(denied.status?.message).toContain("mallory");
    }
    // A changed list changes the answer, though the bytes of earlier answers were kept.
    h.load(config.replace('"overrides":["alice"]', '"overrides":["mallory"]'));
    expect((await check(m, "mallory")).status?.code ?? 0).toBe(0);
    expect((await check(m, "alice")).status?.code).toBe(Code.NotFound);
    await h.close();
  });

  test("garbage is INVALID_ARGUMENT, counted as refused, and the next call is answered", async () => {
    const h = coreHarness();
    h.load(config);
    const m = mixerMethods(h.core, { maxBatch: 10, limits });
    const err = await m.check(new Uint8Array([0x0a, 0xff, 0xff, 0xff, 0xff, 0x0f])).catch((e) => e);
    expect(err).toBeInstanceOf(ConnectError);
    expect((err as ConnectError).code).toBe(Code.InvalidArgument);
    expect((err as ConnectError).rawMessage).toStartWith("malformed CheckRequest");
    const over = await m.report(
      toBinary(
        ReportRequestSchema,
        create(ReportRequestSchema, { entries: Array.from({ length: 11 }, () => encodeBag({})) }),
      ),
    ).catch((e) => e);
    expect((over as ConnectError).code).toBe(Code.ResourceExhausted);
    const metrics = await h.metrics.metrics();
    expect(metrics).toMatch(/mixer_requests_refused_total\{api="mixer"\} 2/);
    expect((await check(m, "alice")).status?.code ?? 0).toBe(0);
    await h.close();
  });
});
