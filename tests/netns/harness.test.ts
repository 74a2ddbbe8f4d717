/**
 * The network-namespace harness itself: machines reach each other over TCP on their 198.18
 * addresses and nothing else, the root namespace is left as it was, and no namespace outlives
 * a run, whether its body fails, exits the process, or the process is killed.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { spawn, spawnSync } from "bun";
import { createServer, type Server } from "node:net";
import type { AddressInfo } from "node:net";
import { ROOT } from "../e2e/_meshd.ts";
import {
  createTestNetwork,
  listTestNamespaces,
  netnsUnavailable,
  sweepStaleNetworks,
  type TestNetwork,
} from "./_harness.ts";

const unavailable = netnsUnavailable();
if (unavailable !== undefined) console.warn(`skipping the network-namespace harness tests: ${unavailable}`);

/** A bun script that connects to HOST PORT and prints "OK <what it read>" or "ERR <code>". */
const CONNECT = `
const [host, port] = process.argv.slice(-2);
const s = require("node:net").connect(Number(port), host);
let got = "";
s.setTimeout(5000, () => { console.log("ERR TIMEOUT"); process.exit(0); });
s.on("data", (c) => (got += c));
s.on("end", () => console.log("OK " + got));
s.on("error", (e) => console.log("ERR " + e.code));
`;
/** A bun script that answers every connection on HOST PORT with "hello <peer address>". */
const SERVE = `
const [host, port] = process.argv.slice(-2);
require("node:net").createServer((s) => s.end("hello " + s.remoteAddress))
  .listen(Number(port), host, () => console.log("listening"));
`;

function rootLinks(): string[] {
  const r = spawnSync(["ip", "-o", "link", "show"], { stdout: "pipe" });
  return r.stdout.toString().split("\n").map((l) => l.split(":")[1]?.trim() ?? "").filter((n) => n !== "")
    .sort();
}

/** Reads `stream` until a whole line matches `pattern`; returns the match (undefined at the end). */
async function readUntil(
  stream: ReadableStream<Uint8Array>,
  pattern: RegExp,
): Promise<RegExpExecArray | undefined> {
  const reader = stream.getReader();
  const decoder = new TextDecoder();
  let text = "";
  try {
    for (;;) {
      const lines = text.split("\n").slice(0, -1);
      for (const l of lines) {
        const m = pattern.exec(l);
        if (m) return m;
      }
      const { value, done } = await reader.read();
      if (done) return undefined;
      text += decoder.decode(value, { stream: true });
    }
  } finally {
    reader.releaseLock();
  }
}

describe.skipIf(unavailable !== undefined)("network-namespace test machines", () => {
  let net: TestNetwork;
  let linksBefore: string[];
  let hostServer: Server;
  beforeAll(async () => {
    linksBefore = rootLinks();
    net = createTestNetwork({ machines: 3 });
    // A server on the root namespace's loopback, which no machine may reach.
    hostServer = createServer((s) => s.end("root namespace"));
    await new Promise<void>((r) => hostServer.listen(0, "127.0.0.1", () => r()));
  });
  afterAll(() => {
    net?.cleanup();
    hostServer?.close();
  });

  test("createTestNetwork() gives each machine its own 198.18 address, loopback up, and no default route", async () => {
    const [m1, m2] = net.machines;
    expect(net.machines.map((m) => m.ip)).toEqual(["198.18.0.1", "198.18.0.2", "198.18.0.3"]);
    const addrs = await net.run(m2!, ["ip", "-o", "-4", "addr", "show"]);
    expect(addrs.stdout).toContain("inet 127.0.0.1/8");
    expect(addrs.stdout).toContain("eth0    inet 198.18.0.2/24");
    const routes = await net.run(m1!, ["ip", "-4", "route", "show"]);
    expect(routes.stdout.trim()).toBe("198.18.0.0/24 dev eth0 proto kernel scope link src 198.18.0.1");
    // The root namespace got nothing: the bridge and veth pairs live in the switch namespace.
    expect(rootLinks()).toEqual(linksBefore);
  });

  test("exec() runs a server in one machine that another reaches over TCP at its 198.18 address", async () => {
    const [m1, m2, m3] = net.machines;
    const server = net.exec(m1!, [process.execPath, "-e", SERVE, "198.18.0.1", "7000"]);
    expect(await readUntil(server.stdout, /^listening$/)).toBeDefined();
    const fromM2 = await net.run(m2!, [process.execPath, "-e", CONNECT, "198.18.0.1", "7000"]);
    expect(fromM2.stdout.trim()).toBe("OK hello 198.18.0.2");
    const fromM3 = await net.run(m3!, [process.execPath, "-e", CONNECT, "198.18.0.1", "7000"]);
    expect(fromM3.stdout.trim()).toBe("OK hello 198.18.0.3");
    server.kill();
  });

  test("a machine reaches nothing outside the test network, not even the host's loopback", async () => {
    const m2 = net.machines[1]!;
    const hostPort = (hostServer.address() as AddressInfo).port;
    const loopback = await net.run(m2, [process.execPath, "-e", CONNECT, "127.0.0.1", String(hostPort)]);
    expect(loopback.stdout.trim()).toBe("ERR ECONNREFUSED");
    // No route: refused by the machine's own kernel, so no packet is sent anywhere. (Bun reports
    // the connect's ENETUNREACH as ECONNREFUSED; the routing table says which it is.)
    const route = await net.run(m2, ["ip", "route", "get", "192.0.2.1"]);
    expect([route.exitCode, route.stderr.trim()]).toEqual([2, "RTNETLINK answers: Network is unreachable"]);
    const outside = await net.run(m2, [process.execPath, "-e", CONNECT, "192.0.2.1", "80"]);
    expect(outside.stdout.trim()).toStartWith("ERR ");
  });

  test("cleanup() kills the processes inside and deletes every namespace; a second call does nothing", async () => {
    const extra = createTestNetwork({ machines: 2 });
    const sleeper = extra.exec(extra.machines[0]!, ["sleep", "60"]);
    expect(listTestNamespaces().filter((n) => n.startsWith(extra.id)).sort()).toEqual(
      [...extra.namespaces].sort(),
    );
    extra.cleanup();
    expect(await sleeper.exited).not.toBe(0);
    expect(listTestNamespaces().filter((n) => n.startsWith(extra.id))).toEqual([]);
    extra.cleanup();
    expect(rootLinks()).toEqual(linksBefore);
  });

  for (const mode of ["throw", "exit"] as const) {
    test(`no namespace is left after a test body that ${mode === "throw" ? "throws" : "exits the process"}`, () => {
      const r = spawnSync([process.execPath, "test", "./tests/netns/_failing_body.ts"], {
        cwd: ROOT,
        env: { ...process.env, FAILING_BODY: mode },
        stdout: "pipe",
        stderr: "pipe",
      });
      const out = r.stdout.toString();
      const id = /NETWORK (\S+)/.exec(out)?.[1];
      expect(id).toBeDefined();
      expect(r.exitCode).toBe(mode === "throw" ? 1 : 3);
      expect(listTestNamespaces().filter((n) => n.startsWith(id!))).toEqual([]);
    });
  }

  test("the namespaces of a killed run are swept by the next network", async () => {
    const child = spawn([process.execPath, "test", "./tests/netns/_failing_body.ts"], {
      cwd: ROOT,
      env: { ...process.env, FAILING_BODY: "hang" },
      stdout: "pipe",
      stderr: "ignore",
    });
    const id = (await readUntil(child.stdout, /^NETWORK (\S+)$/))?.[1];
    expect(id).toBeDefined();
    child.kill("SIGKILL");
    await child.exited;
    expect(listTestNamespaces().filter((n) => n.startsWith(id!)).length).toBe(3);
    expect(sweepStaleNetworks().filter((n) => n.startsWith(id!)).length).toBe(3);
    expect(listTestNamespaces().filter((n) => n.startsWith(id!))).toEqual([]);
    // The networks of live runs (this one) are kept.
    expect(listTestNamespaces().filter((n) => n.startsWith(net.id)).length).toBe(4);
  });
});
