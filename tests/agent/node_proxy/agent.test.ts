/**
 * `meshd agent --node-proxy` in process, with the real citadel CA (tests/agent/_citadel.ts) and
 * `--capture=none` (no rules on this machine): the node proxy starts once the first certificate
 * is issued, serves HBONE with the agent's certificate and follows its renewal, passes a
 * destination outside the mesh through its explicit CONNECT proxy, reports Istio's TCP metrics on
 * the agent's admin server and its state on /debug/nodeproxyz, and stops with the agent.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { connect, createServer, type Server } from "node:net";
import { connect as tlsConnect } from "node:tls";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { X509Certificate } from "node:crypto";
import { type Agent, startAgent } from "../../../mod/agent/agent.ts";
import type { AgentConfig } from "../../../mod/agent/settings.ts";
import { systemClock } from "../../../mod/shared/clock.ts";
import { createLogger } from "../../../mod/shared/logger.ts";
import { createMetricsRegistry } from "../../../mod/shared/metrics.ts";
import { type Citadel, startCitadel } from "../_citadel.ts";
import { commonFreePort } from "./_mesh.ts";

const HOST = "127.0.0.5";
let ca: Citadel;
let dir: string;
let agent: Agent;
let echo: Server;
let echoPort: number;
let ports: { outbound: number; inbound: number; tunnel: number; dns: number };
const lines: Array<Record<string, unknown>> = [];

beforeAll(async () => {
  ca = await startCitadel();
  dir = mkdtempSync(join(tmpdir(), "meshd-agent-node-proxy-"));
  echo = createServer({ allowHalfOpen: true }, (s) => s.pipe(s));
  await new Promise<void>((r) => echo.listen(0, HOST, () => r()));
  echoPort = (echo.address() as { port: number }).port;
  ports = {
    outbound: await commonFreePort([HOST]),
    inbound: await commonFreePort([HOST]),
    tunnel: await commonFreePort([HOST]),
    dns: await commonFreePort([HOST]),
  };
  mkdirSync(join(dir, "in"), { recursive: true });
  writeFileSync(join(dir, "in", "token"), ca.token("vms", "app"));
  const cfg: AgentConfig = {
    caAddr: ca.plainAddr,
    caTlsAddr: ca.tlsAddr,
    controlPlaneAuth: "MUTUAL_TLS",
    tokenFile: join(dir, "in", "token"),
    workload: {
      ip: HOST,
      name: "vm",
      namespace: "vms",
      serviceAccount: "app",
      trustDomain: "cluster.local",
      labels: { "networking.istio.io/tunnel": "http" },
    },
    outputDir: join(dir, "out"),
    dataDir: join(dir, "data"),
    sdsSocket: join(dir, "out", "sds.sock"),
    certTtlMs: 4000,
    adminAddr: "127.0.0.1:0",
    nodeProxy: {
      capture: "none",
      captureBackend: "auto",
      excludePorts: [],
      excludeCidrs: [],
      excludeUids: [],
      bindAddress: HOST,
      outboundPort: ports.outbound,
      inboundPort: ports.inbound,
      tunnelPort: ports.tunnel,
      dnsAddr: `${HOST}:${ports.dns}`,
      dnsCapture: false,
      dnsUpstreams: ["127.0.0.1:9"],
    },
    logLevel: "info",
    logFormat: "json",
  };
  agent = await startAgent(cfg, {
    clock: systemClock,
    logger: createLogger({ format: "json", write: (l) => lines.push(JSON.parse(l)) }),
    metrics: createMetricsRegistry(),
    backoff: { initialMs: 100, maxMs: 400 },
  });
});

afterAll(async () => {
  await agent?.stop();
  echo?.close();
  await ca?.close();
  rmSync(dir, { recursive: true, force: true });
});

async function until<T>(fn: () => T | undefined, what: string, ms = 10_000): Promise<T> {
  const end = Date.now() + ms;
  for (;;) {
    const v = fn();
    if (v !== undefined) return v;
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await Bun.sleep(20);
  }
}

/** The serial of the certificate the HBONE port presents. */
function tunnelSerial(): Promise<string> {
  const cert = agent.certificate()!;
  return new Promise((resolve, reject) => {
    const s = tlsConnect({
      host: HOST,
      port: ports.tunnel,
      cert: cert.chainPem,
      key: cert.keyPem,
      ca: cert.rootPem,
      ALPNProtocols: ["h2"],
      checkServerIdentity: () => undefined,
    }, () => {
      resolve(s.getPeerX509Certificate()!.serialNumber);
      s.destroy();
    });
    s.on("error", reject);
  });
}

describe("meshd agent --node-proxy", () => {
  test("starts after the first certificate and serves HBONE with it, following renewal", async () => {
    await until(() => lines.find((l) => l.msg === "node proxy started"), "the node proxy to start");
    const first = agent.certificate()!;
    expect(await tunnelSerial()).toBe(new X509Certificate(first.chainPem).serialNumber);
    // certTtlMs 4 s: renewed at about 2 s.
    const renewed = await until(
      () => (agent.certificate()!.chainPem !== first.chainPem ? agent.certificate() : undefined),
      "a renewal",
    );
    expect(await tunnelSerial()).toBe(new X509Certificate(renewed.chainPem).serialNumber);
  });

  test("passes a destination outside the mesh through the explicit proxy and counts it", async () => {
    const s = connect({ host: HOST, port: ports.outbound, allowHalfOpen: true });
    let got = "";
    s.on("data", (c) => (got += c.toString()));
    const closed = new Promise<void>((r) => s.on("close", () => r()));
    s.write(`CONNECT ${HOST}:${echoPort} HTTP/1.1\r\n\r\n`);
    await until(() => (got.includes("\r\n\r\n") ? true : undefined), "the CONNECT answer");
    expect(got).toStartWith("HTTP/1.1 200");
    s.end("through");
    await closed;
    expect(got.endsWith("through")).toBe(true);
    const access = await until(
      () => lines.find((l) => l.msg === "tcp" && l.transport === "passthrough"),
      "an access log line",
    );
    expect(access).toMatchObject({ component: "access", reporter: "source", bytesReceived: 7, bytesSent: 7 });
    const metrics = await (await fetch(`http://${agent.adminAddr}/metrics`)).text();
    expect(metrics).toMatch(
      /istio_tcp_connections_closed_total\{reporter="source",source_workload="vm",[^}]*\} 1/,
    );
    const debug = await (await fetch(`http://${agent.adminAddr}/debug/nodeproxyz`)).json() as Record<
      string,
      unknown
    >;
    expect(debug).toMatchObject({
      enabled: true,
      running: true,
      addrs: { tunnel: `${HOST}:${ports.tunnel}` },
    });
  });

  test("stops with the agent: its ports are free again", async () => {
    await agent.stop();
    const free = await new Promise<boolean>((resolve) => {
      const srv = createServer();
      srv.once("error", () => resolve(false));
      srv.listen(ports.tunnel, HOST, () => srv.close(() => resolve(true)));
    });
    expect(free).toBe(true);
  });
});
