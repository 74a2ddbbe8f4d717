import { describe, expect, test } from "bun:test";
import {
  childrenOf,
  decodeOid,
  decodeTime,
  der,
  DerError,
  derOid,
  derSequence,
  derSmallInteger,
  derTime,
  derUnsignedInteger,
  readTlv,
  TAG,
  tlvValue,
} from "../../mod/citadel/der.ts";
import { pemDecodeAll, pemDecodeOne, pemEncode } from "../../mod/citadel/pem.ts";

describe("DER reader", () => {
  test("readTlv() reads short and long lengths and checks them against the container", () => {
    const short = Uint8Array.of(0x04, 0x02, 0xaa, 0xbb);
    expect(readTlv(short, 0)).toEqual({ tag: 4, start: 0, valueStart: 2, end: 4 });
    const long = der(TAG.OCTET_STRING, new Uint8Array(300));
    expect(Array.from(long.subarray(0, 4))).toEqual([0x04, 0x82, 0x01, 0x2c]);
    expect(readTlv(long, 0).end).toBe(304);
    expect(() => readTlv(long.subarray(0, 100), 0)).toThrow(DerError);
  });

  test("readTlv() refuses indefinite, non-minimal, oversized lengths, high tags and truncation", () => {
    expect(() => readTlv(Uint8Array.of(0x30, 0x80, 0, 0), 0)).toThrow(/indefinite/);
    expect(() => readTlv(Uint8Array.of(0x04, 0x81, 0x05, 1, 2, 3, 4, 5), 0)).toThrow(/non-minimal/);
    expect(() => readTlv(Uint8Array.of(0x04, 0x85, 1, 1, 1, 1, 1), 0)).toThrow(/too long/);
    expect(() => readTlv(Uint8Array.of(0x1f, 0x01, 0x00), 0)).toThrow(/high tag/);
    expect(() => readTlv(Uint8Array.of(0x04), 0)).toThrow(/truncated/);
    expect(() => readTlv(Uint8Array.of(0x04, 0x84, 0xff, 0xff, 0xff, 0xff), 0)).toThrow(/runs past/);
  });

  test("childrenOf() lists the elements of a SEQUENCE and bounds their number", () => {
    const seq = derSequence(derSmallInteger(1), derSmallInteger(2), derSmallInteger(3));
    const kids = childrenOf(seq, readTlv(seq, 0));
    expect(kids.map((k) => tlvValue(seq, k)[0])).toEqual([1, 2, 3]);
    expect(() => childrenOf(seq, readTlv(seq, 0), 2)).toThrow(/more than 2/);
  });

  test("OIDs round-trip, including multi-octet arcs", () => {
    for (
      const oid of [
        "1.2.840.10045.4.3.2",
        "2.5.29.17",
        "1.3.6.1.5.5.7.3.2",
        "1.2.840.113549.1.9.14",
        "2.999.3",
      ]
    ) {
      const enc = derOid(oid);
      expect(decodeOid(tlvValue(enc, readTlv(enc, 0)))).toBe(oid);
    }
    expect(Array.from(derOid("1.2.840.10045.4.3.2"))).toEqual([6, 8, 0x2a, 0x86, 0x48, 0xce, 0x3d, 4, 3, 2]);
    expect(() => decodeOid(Uint8Array.of(0x2a, 0x86))).toThrow(/truncated/);
    expect(() => decodeOid(Uint8Array.of(0x80, 0x01))).toThrow(/non-minimal/);
  });

  test("derUnsignedInteger() trims leading zeros and adds a sign octet when the top bit is set", () => {
    expect(Array.from(derUnsignedInteger(Uint8Array.of(0, 0, 0x7f)))).toEqual([2, 1, 0x7f]);
    expect(Array.from(derUnsignedInteger(Uint8Array.of(0x80)))).toEqual([2, 2, 0, 0x80]);
    expect(Array.from(derUnsignedInteger(Uint8Array.of(0, 0)))).toEqual([2, 1, 0]);
    expect(Array.from(derSmallInteger(2))).toEqual([2, 1, 2]);
  });

  test("derTime() writes UTCTime before 2050 and GeneralizedTime from 2050 on, and decodeTime() reads both", () => {
    const t1 = Date.UTC(2026, 10, 21, 23, 5, 9);
    const a = derTime(t1 + 999);
    expect(a[0]).toBe(TAG.UTC_TIME);
    expect(new TextDecoder().decode(a.subarray(2))).toBe("261121230509Z");
    expect(decodeTime(a, readTlv(a, 0))).toBe(t1);
    const t2 = Date.UTC(2051, 0, 2, 3, 4, 5);
    const b = derTime(t2);
    expect(b[0]).toBe(TAG.GENERALIZED_TIME);
    expect(new TextDecoder().decode(b.subarray(2))).toBe("20510102030405Z");
    expect(decodeTime(b, readTlv(b, 0))).toBe(t2);
    const bad = der(TAG.UTC_TIME, new TextEncoder().encode("2611212305Z"));
    expect(() => decodeTime(bad, readTlv(bad, 0))).toThrow(DerError);
  });
});

describe("PEM", () => {
  test("pemEncode() and pemDecodeOne() round-trip with 64-column lines", () => {
    const data = new Uint8Array(200).map((_, i) => i);
    const pem = pemEncode("CERTIFICATE", data);
    expect(pem.split("\n").every((l) => l.length <= 64)).toBe(true);
    expect(pemDecodeOne(pem, ["CERTIFICATE"])).toEqual(data);
  });

  test("pemDecodeAll() reads several blocks, ignores text between them, and refuses broken armour", () => {
    const two = "comment\n" + pemEncode("A", Uint8Array.of(1)) + "between\n" +
      pemEncode("B", Uint8Array.of(2));
    expect(pemDecodeAll(two).map((b) => b.label)).toEqual(["A", "B"]);
    expect(() => pemDecodeAll("-----BEGIN A-----\nAQ==\n")).toThrow(/no END A/);
    expect(() => pemDecodeAll("-----BEGIN A-----\n!!!!\n-----END A-----\n")).toThrow(/not base64/);
    expect(() => pemDecodeAll("-----BEGIN A-----\nAQ\n-----END A-----\n")).toThrow(/truncated/);
    expect(() => pemDecodeOne(two, ["A"])).toThrow(/2 PEM blocks/);
    expect(() => pemDecodeOne(pemEncode("B", Uint8Array.of(1)), ["A"])).toThrow(/is B, want A/);
  });

  test("pemDecodeAll() stays linear on hostile input (many unterminated BEGIN lines)", () => {
    const hostile = "-----BEGIN X-----\n".repeat(4000);
    const t0 = performance.now();
    expect(() => pemDecodeAll(hostile)).toThrow();
    expect(performance.now() - t0).toBeLessThan(500);
  });
});
