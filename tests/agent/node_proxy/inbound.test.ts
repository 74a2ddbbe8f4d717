/**
 * The inbound decision (PeerAuthentication of the port's rule or the rule for every port, then
 * RBAC) and the plaintext inbound listener, bound here on the service port itself so that its
 * own address is the destination (the 15006 listener learns it from SO_ORIGINAL_DST instead):
 * STRICT refuses plaintext, PERMISSIVE and DISABLE pass it to the application.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { connect, createServer, type Server } from "node:net";
import { Registry } from "prom-client";
import { decideInbound, startInboundListener } from "../../../mod/agent/node_proxy/inbound.ts";
import { parseConnectHead } from "../../../mod/agent/node_proxy/http_connect.ts";
import { type AccessLogEntry, createTcpTelemetry } from "../../../mod/agent/node_proxy/telemetry.ts";
import { EMPTY_VIEW, type InboundPort, type NodeProxyView } from "../../../mod/agent/node_proxy/view.ts";
import { systemClock } from "../../../mod/shared/clock.ts";
import { createLogger } from "../../../mod/shared/logger.ts";
import { commonFreePort } from "./_mesh.ts";
import { fromIpBlock, fromNamespace, rbac } from "./_rbac.ts";

const FOO = "spiffe://cluster.local/ns/foo/sa/client";

function viewWith(rules: InboundPort[]): NodeProxyView {
  return { ...EMPTY_VIEW, inbound: new Map(rules.map((r) => [r.port, r])) };
}
const rule = (port: number, mtls: InboundPort["mtls"], o: Partial<InboundPort> = {}): InboundPort => ({
  port,
  mtls,
  rbac: [],
  target: { address: "127.0.0.1", port: 9000 + port },
  ...o,
});

describe("decideInbound()", () => {
  const req = (port: number, peer?: string) => ({
    port,
    destinationAddress: "198.18.0.2",
    sourceAddress: "198.18.0.3",
    ...(peer ? { peer } : {}),
  });

  test("STRICT refuses plaintext and accepts tunnelled; PERMISSIVE and DISABLE accept both", () => {
    const v = viewWith([rule(1, "STRICT"), rule(2, "PERMISSIVE"), rule(3, "DISABLE")]);
    expect(decideInbound(v, req(1))).toMatchObject({ allowed: false, mtls: "STRICT" });
    expect(decideInbound(v, req(1)).reason).toContain("STRICT");
    expect(decideInbound(v, req(1, FOO)).allowed).toBe(true);
    for (const p of [2, 3]) {
      expect(decideInbound(v, req(p)).allowed).toBe(true);
      expect(decideInbound(v, req(p, FOO)).allowed).toBe(true);
    }
    expect(decideInbound(v, req(2)).target).toEqual({ address: "127.0.0.1", port: 9002 });
  });

  test("the rule for every port applies where a port has none; no rule at all accepts", () => {
    const v = viewWith([rule(0, "STRICT", { target: { address: "", port: 0 } })]);
    expect(decideInbound(v, req(8080)).allowed).toBe(false);
    expect(decideInbound(v, req(8080, FOO))).toMatchObject({
      allowed: true,
      target: { address: "198.18.0.2", port: 8080 },
    });
    expect(decideInbound(EMPTY_VIEW, req(8080))).toMatchObject({ allowed: true, mtls: "PERMISSIVE" });
  });

  test("a target the view does not give must be an address of this machine", () => {
    const isLocal = (a: string) => a === "198.18.0.2";
    expect(decideInbound(EMPTY_VIEW, { ...req(8080, FOO), isLocal }).allowed).toBe(true);
    const elsewhere = { ...req(8080, FOO), destinationAddress: "198.18.0.9", isLocal };
    expect(decideInbound(EMPTY_VIEW, elsewhere)).toMatchObject({
      allowed: false,
      reason: "198.18.0.9 is not an address of this machine",
    });
    // The view's own target is trusted.
    expect(decideInbound(viewWith([rule(8080, "STRICT")]), elsewhere).allowed).toBe(true);
  });

  test("RBAC runs after PeerAuthentication, over the peer and the source address", () => {
    const v = viewWith([
      rule(1, "PERMISSIVE", { rbac: [rbac("ALLOW", "ns[foo]", [fromNamespace("foo")])] }),
      rule(2, "PERMISSIVE", { rbac: [rbac("DENY", "lan", [fromIpBlock("198.18.0.0", 16)])] }),
    ]);
    expect(decideInbound(v, req(1, FOO))).toMatchObject({ allowed: true, policy: "ns[foo]" });
    expect(decideInbound(v, req(1))).toMatchObject({
      allowed: false,
      reason: "RBAC: no allow policy matched",
    });
    expect(decideInbound(v, req(2, FOO))).toMatchObject({ allowed: false, reason: "RBAC: deny lan" });
  });
});

describe("parseConnectHead()", () => {
  test("CONNECT HOST:PORT, and what it refuses", () => {
    expect(parseConnectHead("CONNECT Echo.bar:80 HTTP/1.1\r\nHost: x\r\n\r\n")).toEqual({
      host: "echo.bar",
      port: 80,
    });
    expect(parseConnectHead("CONNECT [fd00::1]:443 HTTP/1.1\r\n\r\n")).toEqual({
      host: "fd00::1",
      port: 443,
    });
    expect(parseConnectHead("GET / HTTP/1.1\r\n\r\n")).toContain("CONNECT only");
    expect(parseConnectHead("CONNECT nohost HTTP/1.1\r\n\r\n")).toContain("not HOST:PORT");
    expect(parseConnectHead("CONNECT a:99999 HTTP/1.1\r\n\r\n")).toContain("not HOST:PORT");
  });
});

describe("plaintext inbound listener", () => {
  let app: Server;
  let appPort: number;
  let port: number;
  let view: NodeProxyView;
  const log: AccessLogEntry[] = [];
  let listener: Awaited<ReturnType<typeof startInboundListener>>;

  beforeAll(async () => {
    app = createServer({ allowHalfOpen: true }, (s) => s.pipe(s));
    await new Promise<void>((r) => app.listen(0, "127.0.0.3", () => r()));
    appPort = (app.address() as { port: number }).port;
    port = await commonFreePort(["127.0.0.3"]);
    view = EMPTY_VIEW;
    listener = await startInboundListener({
      host: "127.0.0.3",
      port,
      view: () => view,
      destination: "local",
      telemetry: createTcpTelemetry({
        registry: new Registry(),
        clock: systemClock,
        accessLog: (e) => log.push(e),
      }),
      logger: createLogger({ level: "error", write: () => {} }),
    });
  });
  afterAll(async () => {
    await listener.close();
    app.close();
  });

  /** Sends `text`, half-closes, resolves with what came back before the close. */
  const exchange = (text: string) =>
    new Promise<string>((resolve) => {
      const s = connect({ host: "127.0.0.3", port, allowHalfOpen: true });
      let got = "";
      s.on("error", () => {});
      s.on("data", (c) => (got += c.toString()));
      s.on("close", () => resolve(got));
      s.end(text);
    });
  const setMode = (mtls: InboundPort["mtls"]) =>
    view = viewWith([rule(port, mtls, { target: { address: "127.0.0.3", port: appPort } })]);

  test("STRICT refuses plaintext", async () => {
    setMode("STRICT");
    expect(await exchange("strict")).toBe("");
    expect(log.at(-1)).toMatchObject({ decision: "deny", responseFlags: "UAEX", destinationPort: port });
  });

  test("PERMISSIVE passes plaintext to the application", async () => {
    setMode("PERMISSIVE");
    expect(await exchange("permissive")).toBe("permissive");
    expect(log.at(-1)).toMatchObject({
      decision: "allow",
      security: "none",
      bytesReceived: 10,
      bytesSent: 10,
    });
  });

  test("DISABLE passes plaintext to the application", async () => {
    setMode("DISABLE");
    expect(await exchange("disable")).toBe("disable");
  });
});
