import { describe, expect, test } from "bun:test";
import { DEFAULT_PREFIX, parseStoreAddress } from "../../mod/store/etcd_url.ts";

describe("parseStoreAddress()", () => {
  test("reads one endpoint and uses the default prefix", () => {
    expect(parseStoreAddress("etcd://127.0.0.1:2379")).toEqual({
      endpoints: ["127.0.0.1:2379"],
      prefix: DEFAULT_PREFIX,
    });
    expect(parseStoreAddress("etcd://etcd-0:2379/")).toEqual({
      endpoints: ["etcd-0:2379"],
      prefix: "/meshd",
    });
  });

  test("reads several endpoints in order, IPv6 included, and a prefix of several segments", () => {
    expect(parseStoreAddress("etcd://a:1,[::1]:2,c.example.com:3/prod/mesh-1/")).toEqual({
      endpoints: ["a:1", "[::1]:2", "c.example.com:3"],
      prefix: "/prod/mesh-1",
    });
  });

  test("refuses other schemes, missing endpoints and bad ports, saying what it wants", () => {
    expect(() => parseStoreAddress("http://127.0.0.1:2379")).toThrow(/want etcd:\/\/HOST:PORT/);
    expect(() => parseStoreAddress("etcd://")).toThrow(/no endpoints/);
    expect(() => parseStoreAddress("etcd:///meshd")).toThrow(/no endpoints/);
    expect(() => parseStoreAddress("etcd://a:1,")).toThrow(/endpoint "" .*want HOST:PORT/);
    expect(() => parseStoreAddress("etcd://a")).toThrow(/endpoint "a" .*want HOST:PORT/);
    expect(() => parseStoreAddress("etcd://a:0")).toThrow(/port 1-65535/);
    expect(() => parseStoreAddress("etcd://a:70000")).toThrow(/port 1-65535/);
    expect(() => parseStoreAddress("etcd://:2379")).toThrow(/want HOST:PORT/);
  });

  test("refuses credentials in the address and an endpoint named twice", () => {
    expect(() => parseStoreAddress("etcd://root:pw@a:1")).toThrow(/--etcd-user and --etcd-password-file/);
    expect(() => parseStoreAddress("etcd://a:1,a:1")).toThrow(/named twice/);
  });

  test("refuses prefixes with empty, dot or odd segments", () => {
    for (const p of ["//x", "/a//b", "/./a", "/a/..", "/a b", "/a?x", "/ä"]) {
      expect(() => parseStoreAddress(`etcd://a:1${p}`)).toThrow(/prefix .*segments must be non-empty/);
    }
  });
});
