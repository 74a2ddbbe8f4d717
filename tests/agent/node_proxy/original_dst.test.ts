/**
 * The sockaddr the kernel returns for SO_ORIGINAL_DST (IPv4) and IP6T_SO_ORIGINAL_DST (IPv6),
 * parsed; and a connection that was not redirected has no original destination.
 */
import { describe, expect, test } from "bun:test";
import { connect, createServer, type Socket } from "node:net";
import {
  compressIpv6,
  originalDestination,
  parseSockaddr,
  socketFd,
} from "../../../mod/agent/node_proxy/original_dst.ts";

describe("parseSockaddr()", () => {
  test("sockaddr_in: family little-endian, port and address in network order", () => {
    const b = new Uint8Array(16);
    b.set([2, 0, 0x1f, 0x90, 198, 19, 0, 10]);
    expect(parseSockaddr(b)).toEqual({ address: "198.19.0.10", port: 8080, family: 4 });
  });

  test("sockaddr_in6", () => {
    const b = new Uint8Array(28);
    b.set([10, 0, 0x01, 0xbb]);
    b.set([0xfd, 0x00, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x10], 8);
    expect(parseSockaddr(b)).toEqual({ address: "fd00::10", port: 443, family: 6 });
    b.set([0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 198, 18, 0, 2], 8);
    expect(parseSockaddr(b)?.address).toBe("::ffff:198.18.0.2");
  });

  test("other families and short buffers give undefined", () => {
    expect(parseSockaddr(new Uint8Array([1, 0, 0, 0]))).toBeUndefined();
    expect(parseSockaddr(new Uint8Array([2, 0, 0, 80]))).toBeUndefined();
    expect(parseSockaddr(new Uint8Array(28).fill(0).map((_, i) => (i === 0 ? 10 : 0)), 16)).toBeUndefined();
  });

  test("compressIpv6() shortens the longest zero run", () => {
    expect(compressIpv6(["2001", "db8", "0", "0", "1", "0", "0", "1"])).toBe("2001:db8::1:0:0:1");
    expect(compressIpv6(["0", "0", "0", "0", "0", "0", "0", "1"])).toBe("::1");
    expect(compressIpv6(["1", "0", "2", "0", "3", "0", "4", "0"])).toBe("1:0:2:0:3:0:4:0");
  });
});

describe("originalDestination()", () => {
  test("a connection that was not redirected has none, and the descriptor is found", async () => {
    let accepted!: (s: Socket) => void;
    const got = new Promise<Socket>((r) => (accepted = r));
    const server = createServer((s) => accepted(s));
    await new Promise<void>((r) => server.listen(0, "127.0.0.1", () => r()));
    const client = connect((server.address() as { port: number }).port, "127.0.0.1");
    const s = await got;
    expect(socketFd(s)).toBeGreaterThan(2);
    expect(await originalDestination(s)).toBeUndefined();
    client.destroy();
    s.destroy();
    await new Promise<void>((r) => server.close(() => r()));
  });
});
