/**
 * Two node-proxy data planes on loopback, machine A on 127.0.0.2 (identity ns/foo/sa/client) and
 * machine B on 127.0.0.3 (ns/bar/sa/server), with certificates from citadel's signing code and
 * views built by hand: A's explicit CONNECT proxy (`--capture=none`) carries connections to B's
 * application through an HBONE tunnel to B's node proxy. Covers bytes both ways, identity checks
 * both ways, B's PeerAuthentication and RBAC (ALLOW by namespace, DENY by principal, AUDIT),
 * plaintext and Istio-mTLS endpoints with retry on another endpoint, passthrough, renewal with a
 * connection open, and Istio's TCP metrics.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { connect, createServer, type Server, type Socket } from "node:net";
import { createServer as createTlsServer, type Server as TlsServer, type TLSSocket } from "node:tls";
import { Registry } from "prom-client";
import type { CertBundle } from "../../../mod/agent/certs.ts";
import { createHbonePool } from "../../../mod/agent/node_proxy/hbone.ts";
import { type NodeProxy, startNodeProxy } from "../../../mod/agent/node_proxy/node_proxy.ts";
import { createTlsMaterial } from "../../../mod/agent/node_proxy/tls_material.ts";
import type { AccessLogEntry } from "../../../mod/agent/node_proxy/telemetry.ts";
import type {
  Endpoint,
  InboundPort,
  NodeProxyView,
  UpstreamCluster,
} from "../../../mod/agent/node_proxy/view.ts";
import { EMPTY_VIEW } from "../../../mod/agent/node_proxy/view.ts";
import type { RBAC } from "#gen/envoy/config/rbac/v3/rbac_pb.ts";
import { systemClock } from "../../../mod/shared/clock.ts";
import { createLogger } from "../../../mod/shared/logger.ts";
import { commonFreePort, createTestCa, type TestCa } from "./_mesh.ts";
import { ANY_PRINCIPAL, fromNamespace, fromPrincipal, rbac } from "./_rbac.ts";

const A_IP = "127.0.0.2";
const B_IP = "127.0.0.3";
const ID_A = "spiffe://cluster.local/ns/foo/sa/client";
const ID_B = "spiffe://cluster.local/ns/bar/sa/server";
const VIP = "198.19.0.10";
const HOST = "echo.bar.svc.cluster.local";
const CLUSTER = `outbound|80||${HOST}`;

let ca: TestCa;
let certA: CertBundle;
let certB: CertBundle;
let proxyA: NodeProxy;
let proxyB: NodeProxy;
let metricsA: Registry;
let metricsB: Registry;
const logA: AccessLogEntry[] = [];
const logB: AccessLogEntry[] = [];
let app: Server;
let appPort: number;
let other: Server;
let otherPort: number;
let sidecar: TlsServer;
let sidecarPort: number;
const sidecarAlpn: (string | false | null)[] = [];
let viewA: NodeProxyView;
let viewB: NodeProxyView;

/** An echo server that answers every chunk with the same bytes and half-closes when the client does. */
function echoServer(host: string): Promise<{ server: Server; port: number }> {
  const server = createServer({ allowHalfOpen: true }, (s) => {
    s.on("error", () => {});
    s.pipe(s);
  });
  return new Promise((r) =>
    server.listen(0, host, () => r({ server, port: (server.address() as { port: number }).port }))
  );
}

function endpoint(address: string, port: number, o: Partial<Endpoint> = {}): Endpoint {
  return {
    address,
    port,
    weight: 1,
    locality: { region: "", zone: "", subZone: "" },
    priority: 0,
    transport: "hbone",
    identities: [ID_B],
    healthy: true,
    ...o,
  };
}

function clientView(endpoints: Endpoint[], extra: Partial<UpstreamCluster> = {}): NodeProxyView {
  return {
    ...EMPTY_VIEW,
    version: "a",
    services: [{
      host: HOST,
      namespace: "bar",
      addresses: [VIP],
      ports: [{ port: 80, protocol: "TCP", cluster: CLUSTER }],
    }],
    clusters: new Map([[CLUSTER, {
      name: CLUSTER,
      connectTimeoutMs: 2000,
      lbPolicy: "ROUND_ROBIN",
      endpoints,
      ...extra,
    }]]),
  };
}

function serverView(mtls: InboundPort["mtls"], rbacs: RBAC[] = []): NodeProxyView {
  return {
    ...EMPTY_VIEW,
    version: "b",
    inbound: new Map([[appPort, {
      port: appPort,
      mtls,
      rbac: rbacs,
      target: { address: B_IP, port: appPort },
    }]]),
  };
}

const quiet = createLogger({ level: "error", write: () => {} });

beforeAll(async () => {
  ca = await createTestCa();
  certA = ca.issue(ID_A);
  certB = ca.issue(ID_B);
  ({ server: app, port: appPort } = await echoServer(B_IP));
  ({ server: other, port: otherPort } = await echoServer("127.0.0.4"));
  sidecar = createTlsServer({
    cert: certB.chainPem,
    key: certB.keyPem,
    ca: ca.rootPem,
    requestCert: true,
    rejectUnauthorized: true,
    ALPNProtocols: ["istio-peer-exchange", "istio"],
  }, (s: TLSSocket) => {
    sidecarAlpn.push(s.alpnProtocol);
    s.on("error", () => {});
    s.pipe(s);
  });
  await new Promise<void>((r) => sidecar.listen(0, B_IP, () => r()));
  sidecarPort = (sidecar.address() as { port: number }).port;
  viewA = clientView([endpoint(B_IP, appPort)]);
  viewB = serverView("STRICT");
  const tunnelPort = await commonFreePort([A_IP, B_IP]);
  const settings = {
    capture: "none" as const,
    captureBackend: "auto" as const,
    excludePorts: [],
    excludeCidrs: [],
    excludeUids: [],
    outboundPort: 0,
    inboundPort: 0,
    tunnelPort,
    dnsAddr: "",
    dnsCapture: false,
  };
  metricsA = new Registry();
  metricsB = new Registry();
  proxyA = await startNodeProxy({
    settings: { ...settings, bindAddress: A_IP },
    certs: () => certA,
    view: { kind: "static", view: () => viewA },
    workload: { name: "client-vm", namespace: "foo" },
    logger: quiet,
    metrics: metricsA,
    clock: systemClock,
    accessLog: (e) => logA.push(e),
  });
  proxyB = await startNodeProxy({
    settings: { ...settings, bindAddress: B_IP },
    certs: () => certB,
    view: { kind: "static", view: () => viewB },
    workload: { name: "server-vm", namespace: "bar" },
    logger: quiet,
    metrics: metricsB,
    clock: systemClock,
    accessLog: (e) => logB.push(e),
  });
});

afterAll(async () => {
  await proxyA?.stop();
  await proxyB?.stop();
  for (const s of [app, other, sidecar]) s?.close();
});

/** A connection through A's explicit proxy: the status line, and the socket when it was 200. */
async function connectVia(target: string): Promise<{ status: number; socket: Socket }> {
  const [host, port] = proxyA.addrs.outbound.split(":");
  const socket = connect({ host: host!, port: Number(port), allowHalfOpen: true });
  socket.on("error", () => {});
  await new Promise<void>((r) => socket.once("connect", () => r()));
  socket.write(`CONNECT ${target} HTTP/1.1\r\nHost: ${target}\r\n\r\n`);
  const head = await new Promise<string>((resolve) => {
    let buf = "";
    const onData = (c: Buffer) => {
      buf += c.toString("latin1");
      const end = buf.indexOf("\r\n\r\n");
      if (end >= 0) {
        socket.off("data", onData);
        socket.pause();
        if (buf.length > end + 4) socket.unshift(Buffer.from(buf.slice(end + 4), "latin1"));
        resolve(buf.slice(0, end));
      }
    };
    socket.on("data", onData);
    socket.once("close", () => resolve(buf));
  });
  const status = Number(/^HTTP\/1\.1 (\d{3})/.exec(head)?.[1] ?? 0);
  return { status, socket };
}

/** Writes `data`, half-closes, and collects everything until the other side ends. */
async function roundTrip(socket: Socket, data: Buffer): Promise<Buffer> {
  const chunks: Buffer[] = [];
  socket.on("data", (c: Buffer) => chunks.push(c));
  const ended = new Promise<void>((r) => socket.once("end", () => r()));
  socket.resume();
  socket.end(data);
  await ended;
  socket.destroy();
  return Buffer.concat(chunks);
}

/** Sends `data` and waits until the same number of bytes came back (connection stays open). */
async function echoOnce(socket: Socket, data: string): Promise<string> {
  let got = "";
  const done = new Promise<void>((resolve) => {
    const onData = (c: Buffer) => {
      got += c.toString();
      if (got.length >= data.length) {
        socket.off("data", onData);
        resolve();
      }
    };
    socket.on("data", onData);
  });
  socket.resume();
  socket.write(data);
  await done;
  return got;
}

/** Waits until `log` has an entry matching `pred`. */
async function entry(log: AccessLogEntry[], pred: (e: AccessLogEntry) => boolean): Promise<AccessLogEntry> {
  for (let i = 0; i < 200; i++) {
    const e = log.find(pred);
    if (e) return e;
    await Bun.sleep(10);
  }
  throw new Error(`no access log entry matched; have ${JSON.stringify(log.slice(-3))}`);
}

describe("node proxy data plane", () => {
  test("an HBONE tunnel carries a megabyte both ways with both identities known", async () => {
    const { status, socket } = await connectVia(`${VIP}:80`);
    expect(status).toBe(200);
    const payload = Buffer.alloc(1 << 20, 7);
    payload.write("first bytes");
    const back = await roundTrip(socket, payload);
    expect(back.length).toBe(payload.length);
    expect(back.equals(payload)).toBe(true);
    const out = await entry(logA, (e) => e.transport === "hbone" && e.bytesReceived === payload.length);
    expect(out).toMatchObject({
      reporter: "source",
      sourcePrincipal: ID_A,
      destinationPrincipal: ID_B,
      destinationService: HOST,
      security: "mutual_tls",
      bytesSent: payload.length,
      upstream: `${B_IP}:${appPort}`,
    });
    const inb = await entry(logB, (e) => e.bytesReceived === payload.length);
    expect(inb).toMatchObject({
      reporter: "destination",
      sourcePrincipal: ID_A,
      sourceWorkload: "client-vm",
      sourceNamespace: "foo",
      destinationPrincipal: ID_B,
      decision: "allow",
      bytesSent: payload.length,
    });
  });

  test("the mesh host name routes like the VIP; an address outside the mesh passes through", async () => {
    const byName = await connectVia(`${HOST}:80`);
    expect(byName.status).toBe(200);
    expect((await roundTrip(byName.socket, Buffer.from("by name"))).toString()).toBe("by name");
    const outside = await connectVia(`127.0.0.4:${otherPort}`);
    expect(outside.status).toBe(200);
    expect((await roundTrip(outside.socket, Buffer.from("plain"))).toString()).toBe("plain");
    await entry(logA, (e) => e.transport === "passthrough" && e.security === "none");
  });

  test("a peer whose identity is not the endpoint's is refused", async () => {
    viewA = clientView([endpoint(B_IP, appPort, { identities: ["spiffe://cluster.local/ns/bar/sa/other"] })]);
    try {
      const before = logB.length;
      const { status, socket } = await connectVia(`${VIP}:80`);
      socket.destroy();
      expect(status).toBe(503);
      const e = await entry(logA, (x) => x.responseFlags === "UF" && (x.error ?? "").includes("not one of"));
      expect(e.error).toContain(ID_B);
      expect(logB.length).toBe(before);
    } finally {
      viewA = clientView([endpoint(B_IP, appPort)]);
    }
  });

  test("the tunnel server refuses a client whose certificate the mesh roots do not trust", async () => {
    const stranger = (await createTestCa()).issue(ID_A);
    const { connect: tlsConnect } = await import("node:tls");
    const [host, port] = proxyB.addrs.tunnel.split(":");
    /** Completes a TLS handshake and an HTTP/2 preface; resolves with the first error, or "open". */
    const attempt = (cert?: CertBundle) =>
      new Promise<string>((resolve) => {
        const s = tlsConnect({
          host: host!,
          port: Number(port),
          ...(cert ? { cert: cert.chainPem, key: cert.keyPem } : {}),
          ca: ca.rootPem,
          ALPNProtocols: ["h2"],
          checkServerIdentity: () => undefined,
        });
        s.on("error", (e: Error) => resolve(e.message));
        s.on("secureConnect", () =>
          s.write("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\x00\x00\x00\x04\x00\x00\x00\x00\x00"));
        s.on("data", () => {
          resolve("open");
          s.destroy();
        });
        s.on("close", () =>
          resolve("closed"));
      });
    expect(await attempt(certA)).toBe("open");
    expect(await attempt(stranger)).not.toBe("open");
    expect(await attempt()).not.toBe("open");
  });

  test("a tunnel cannot reach an address that is not the destination machine's", async () => {
    const tls = createTlsMaterial(() => certA);
    const pool = createHbonePool({ tls, logger: quiet });
    const [, tunnelPort] = proxyB.addrs.tunnel.split(":");
    const open = (authority: string) =>
      pool.connect({
        peer: B_IP,
        peerPort: Number(tunnelPort),
        authority,
        identities: [ID_B],
        timeoutMs: 2000,
      });
    try {
      const ok = await open(`${B_IP}:${appPort}`);
      ok.stream.resume();
      ok.stream.end();
      await new Promise((r) => ok.stream.once("close", r));
      for (let i = 0; i < 3; i++) {
        await expect(open(`127.0.0.4:${otherPort}`)).rejects.toThrow(
          /refused by the destination's policy \(403\)/,
        );
      }
      await expect(open(`127.0.0.4:${otherPort}`)).rejects.toThrow(
        /refused by the destination's policy \(403\)/,
      );
      await entry(logB, (e) => e.reason === "127.0.0.4 is not an address of this machine");
    } finally {
      pool.close();
    }
  });

  test("RBAC on the destination: ALLOW by namespace admits, DENY by principal refuses, AUDIT logs", async () => {
    try {
      viewB = serverView("STRICT", [rbac("ALLOW", "ns[foo]", [fromNamespace("foo")])]);
      const ok = await connectVia(`${VIP}:80`);
      expect(ok.status).toBe(200);
      expect((await roundTrip(ok.socket, Buffer.from("allowed"))).toString()).toBe("allowed");

      viewB = serverView("STRICT", [rbac("ALLOW", "ns[baz]", [fromNamespace("baz")])]);
      const other = await connectVia(`${VIP}:80`);
      other.socket.destroy();
      expect(other.status).toBe(403);
      await entry(logB, (e) => e.decision === "deny" && e.reason === "RBAC: no allow policy matched");

      viewB = serverView("STRICT", [
        rbac("DENY", "deny-client", [fromPrincipal(ID_A)]),
        rbac("ALLOW", "all", [ANY_PRINCIPAL]),
      ]);
      const denied = await connectVia(`${VIP}:80`);
      denied.socket.destroy();
      expect(denied.status).toBe(403);
      await entry(logB, (e) => e.reason === "RBAC: deny deny-client" && e.responseFlags === "UAEX");
      await entry(logA, (e) => e.responseFlags === "UAEX");

      viewB = serverView("STRICT", [rbac("LOG", "audit-all", [ANY_PRINCIPAL])]);
      const audited = await connectVia(`${VIP}:80`);
      expect(audited.status).toBe(200);
      expect((await roundTrip(audited.socket, Buffer.from("audited"))).toString()).toBe("audited");
      await entry(logB, (e) => e.audit === true && e.bytesReceived === 7);
    } finally {
      viewB = serverView("STRICT");
    }
  });

  test("tunnelled connections are accepted under DISABLE too", async () => {
    try {
      viewB = serverView("DISABLE");
      const { status, socket } = await connectVia(`${VIP}:80`);
      expect(status).toBe(200);
      expect((await roundTrip(socket, Buffer.from("disable"))).toString()).toBe("disable");
    } finally {
      viewB = serverView("STRICT");
    }
  });

  test("a dead endpoint is skipped for a live one; Istio mTLS endpoints get the istio ALPN and are verified", async () => {
    const dead = await commonFreePort([B_IP]);
    try {
      viewA = clientView([
        endpoint(B_IP, dead, { transport: "plaintext", identities: [] }),
        endpoint(B_IP, sidecarPort, { transport: "mtls" }),
      ]);
      for (let i = 0; i < 3; i++) {
        const { status, socket } = await connectVia(`${VIP}:80`);
        expect(status).toBe(200);
        expect((await roundTrip(socket, Buffer.from(`try ${i}`))).toString()).toBe(`try ${i}`);
      }
      expect(sidecarAlpn).toContain("istio-peer-exchange");
      await entry(logA, (e) => e.transport === "mtls" && e.destinationPrincipal === ID_B);

      viewA = clientView([endpoint(B_IP, sidecarPort, { transport: "mtls", identities: [ID_A] })]);
      const wrong = await connectVia(`${VIP}:80`);
      wrong.socket.destroy();
      expect(wrong.status).toBe(503);
    } finally {
      viewA = clientView([endpoint(B_IP, appPort)]);
    }
  });

  test("renewal: an open tunnel keeps carrying bytes and new connections present the new certificate", async () => {
    const open = await connectVia(`${VIP}:80`);
    expect(open.status).toBe(200);
    expect(await echoOnce(open.socket, "before")).toBe("before");
    const oldSerial = (await entry(logB, () => true)).sourceCertSerial;
    expect(oldSerial).toBeTruthy();

    const renewed = ca.issue(ID_A);
    certA = renewed;
    proxyA.certificateChanged();
    certB = ca.issue(ID_B);
    proxyB.certificateChanged();

    const fresh = await connectVia(`${VIP}:80`);
    expect(fresh.status).toBe(200);
    expect((await roundTrip(fresh.socket, Buffer.from("new-cert"))).toString()).toBe("new-cert");
    const e = await entry(logB, (x) => x.bytesReceived === 8 && x.sourceCertSerial !== oldSerial);
    const { X509Certificate } = await import("node:crypto");
    expect(e.sourceCertSerial).toBe(new X509Certificate(renewed.chainPem).serialNumber);
    const out = await entry(logA, (x) => x.bytesReceived === 8 && x.transport === "hbone");
    expect(out.destinationPrincipal).toBe(ID_B);

    expect(await echoOnce(open.socket, "still open after renewal")).toBe("still open after renewal");
    const back = await roundTrip(open.socket, Buffer.from("!"));
    expect(back.toString()).toBe("!");
  });

  test("Istio's TCP metrics count connections and bytes with Istio's labels", async () => {
    const text = await metricsA.metrics();
    expect(text).toMatch(
      new RegExp(
        `istio_tcp_connections_opened_total\\{reporter="source",source_workload="client-vm",source_workload_namespace="foo",` +
          `source_principal="${ID_A}",.*destination_principal="${ID_B}",.*destination_service="${HOST}",.*` +
          `connection_security_policy="mutual_tls"\\} \\d+`,
      ),
    );
    const received = [
      ...text.matchAll(
        /istio_tcp_received_bytes_total\{[^}]*connection_security_policy="mutual_tls"\} (\d+)/g,
      ),
    ]
      .reduce((n, m) => n + Number(m[1]), 0);
    expect(received).toBeGreaterThanOrEqual(1 << 20);
    const inbound = await metricsB.metrics();
    expect(inbound).toMatch(
      /istio_tcp_connections_closed_total\{reporter="destination",[^}]*response_flags="UAEX"[^}]*\} \d+/,
    );
    expect(inbound).toMatch(/istio_tcp_sent_bytes_total\{reporter="destination",[^}]*\} \d+/);
  });

  test("the explicit proxy answers 400 to what is not a CONNECT request", async () => {
    const [host, port] = proxyA.addrs.outbound.split(":");
    const s = connect({ host: host!, port: Number(port) });
    s.on("error", () => {});
    const answer = await new Promise<string>((resolve) => {
      let buf = "";
      s.on("data", (c) => (buf += c.toString()));
      s.on("close", () => resolve(buf));
      s.write("GET / HTTP/1.1\r\nHost: x\r\n\r\n");
    });
    expect(answer).toStartWith("HTTP/1.1 400");
  });
});
