/**
 * The assembled agent (startAgent) against the real citadel CA (in-process), with real time and
 * short lifetimes:
 * token bootstrap, files and modes, renewal over mutual TLS without the token, restart from the
 * data directory, SDS, readiness while the CA is down, and the failures only a setting fixes.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { create } from "@bufbuild/protobuf";
import { anyUnpack } from "@bufbuild/protobuf/wkt";
import { createClient } from "@connectrpc/connect";
import { createGrpcTransport } from "@connectrpc/connect-node";
import { X509Certificate } from "node:crypto";
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import { connect as netConnect } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { DiscoveryRequestSchema } from "#gen/envoy/service/discovery/v3/discovery_pb.ts";
import { SecretDiscoveryService } from "#gen/envoy/service/secret/v3/sds_pb.ts";
import { SecretSchema } from "#gen/envoy/extensions/transport_sockets/tls/v3/secret_pb.ts";
import { type Agent, startAgent } from "../../mod/agent/agent.ts";
import { spiffeId } from "../../mod/agent/certs.ts";
import { SettingError } from "../../mod/agent/failure.ts";
import { SECRET_TYPE_URL } from "../../mod/agent/sds_server.ts";
import type { AgentConfig } from "../../mod/agent/settings.ts";
import { systemClock } from "../../mod/shared/clock.ts";
import { createLogger } from "../../mod/shared/logger.ts";
import { createMetricsRegistry } from "../../mod/shared/metrics.ts";
import { eventually } from "../e2e/_meshd.ts";
import { type Citadel, startCitadel } from "./_citadel.ts";

const ID = spiffeId("cluster.local", "vms", "app");
const logs: Array<Record<string, unknown>> = [];
const logger = createLogger({
  format: "json",
  write: (l) => logs.push(JSON.parse(l) as Record<string, unknown>),
});
let ca: Citadel;
let dir: string;

beforeAll(async () => {
  ca = await startCitadel();
  dir = mkdtempSync(join(tmpdir(), "meshd-agent-run-"));
});
afterAll(async () => {
  await ca.close();
  rmSync(dir, { recursive: true, force: true });
});

function config(name: string, over: Partial<AgentConfig> = {}): AgentConfig {
  const base = join(dir, name);
  return {
    caAddr: ca.plainAddr,
    caTlsAddr: ca.tlsAddr,
    controlPlaneAuth: "MUTUAL_TLS",
    tokenFile: join(base, "token"),
    workload: {
      ip: "127.0.0.1",
      name: "vm",
      namespace: "vms",
      serviceAccount: "app",
      trustDomain: "cluster.local",
      labels: {},
    },
    outputDir: join(base, "out"),
    dataDir: join(base, "data"),
    sdsSocket: join(base, "out", "sds.sock"),
    certTtlMs: 4000,
    adminAddr: "127.0.0.1:0",
    logLevel: "info",
    logFormat: "json",
    ...over,
  };
}

const start = (cfg: AgentConfig) =>
  startAgent(cfg, {
    clock: systemClock,
    logger,
    metrics: createMetricsRegistry(),
    backoff: { initialMs: 100, maxMs: 400 },
  });

const serial = (path: string) => new X509Certificate(readFileSync(path)).serialNumber;

describe("the agent", () => {
  test("bootstraps with the token, writes the files, renews over mTLS after the token is gone", async () => {
    const cfg = config("renew");
    const token = ca.token("vms", "app");
    mkdirSync(join(dir, "renew"), { recursive: true });
    writeFileSync(cfg.tokenFile!, token + "\n");
    const before = ca.calls.length;
    const agent = await start(cfg);
    try {
      expect(await eventually(() => agent.ready(), 5000)).toBe(true);
      expect(ca.calls.slice(before)).toEqual([{ via: "token", tls: false, ok: true, ttlSeconds: 4 }]);
      for (const d of [cfg.outputDir, cfg.dataDir]) {
        expect(statSync(join(d, "key.pem")).mode & 0o777).toBe(0o600);
        expect(readFileSync(join(d, "root-cert.pem"), "utf8")).toBe(ca.rootPem);
        expect(new X509Certificate(readFileSync(join(d, "cert-chain.pem"))).subjectAltName).toBe(`URI:${ID}`);
      }
      expect(statSync(cfg.outputDir).mode & 0o777).toBe(0o750);
      expect(statSync(cfg.dataDir).mode & 0o777).toBe(0o700);
      const first = serial(join(cfg.outputDir, "cert-chain.pem"));
      rmSync(cfg.tokenFile!);
      // Renewal at half of 4 s (±10 %), over mutual TLS.
      expect(await eventually(() => serial(join(cfg.outputDir, "cert-chain.pem")) !== first, 6000)).toBe(
        true,
      );
      expect(ca.calls.slice(before + 1).every((c) => c.via === "mtls" && c.tls && c.ok)).toBe(true);
      expect(serial(join(cfg.dataDir, "cert-chain.pem"))).toBe(serial(join(cfg.outputDir, "cert-chain.pem")));
      const ready = await fetch(`http://${agent.adminAddr}/healthz/ready`);
      expect(ready.status).toBe(200);
      const metrics = await (await fetch(`http://${agent.adminAddr}/metrics`)).text();
      expect(metrics).toMatch(/meshd_agent_certificate_requests_total\{via="mtls",result="success"\} [1-9]/);
      expect(metrics).toContain("meshd_agent_certificate_valid 1");
      const certz = await (await fetch(`http://${agent.adminAddr}/debug/certz`)).json() as {
        identity: string;
        valid: boolean;
      };
      expect(certz).toMatchObject({ identity: ID, valid: true });
    } finally {
      await agent.stop();
    }
    expect(existsSync(cfg.sdsSocket)).toBe(false);
  });

  test("a restart with the output directory wiped renews from the data directory over mTLS, without a token", async () => {
    // The restarted agents ask for 30 s. The CA backdates notBefore by a minute, so counted
    // from notBefore the renewed certificate would be past half of its life at once; counted
    // from when it was received (recorded in the data directory) it is not due when a3 starts.
    const cfg = config("restart", { certTtlMs: 30_000 });
    mkdirSync(join(dir, "restart"), { recursive: true });
    writeFileSync(cfg.tokenFile!, ca.token("vms", "app"));
    // A short-lived first certificate: the first run asks the CA for 3 s.
    const a1 = await start({ ...cfg, certTtlMs: 3000 });
    try {
      expect(await eventually(() => a1.ready(), 5000)).toBe(true);
    } finally {
      await a1.stop();
    }
    const stored = serial(join(cfg.dataDir, "cert-chain.pem"));
    rmSync(cfg.outputDir, { recursive: true });
    rmSync(cfg.tokenFile!);
    // Near or past half of its life but not expired: the restarted agent serves it and renews
    // within moments.
    await Bun.sleep(1200);
    const mark = ca.calls.length;
    const a2 = await start(cfg);
    try {
      expect(a2.ready()).toBe(true);
      expect(serial(join(cfg.outputDir, "cert-chain.pem"))).toBe(stored);
      expect(await eventually(() => ca.calls.length > mark, 3000)).toBe(true);
      expect(ca.calls[mark]).toEqual({ via: "mtls", tls: true, ok: true, ttlSeconds: 30 });
      expect(await eventually(() => serial(join(cfg.outputDir, "cert-chain.pem")) !== stored, 3000)).toBe(
        true,
      );
      expect(serial(join(cfg.dataDir, "cert-chain.pem"))).toBe(serial(join(cfg.outputDir, "cert-chain.pem")));
    } finally {
      await a2.stop();
    }
    // A valid stored certificate not yet due is served without calling the CA at all.
    const mark2 = ca.calls.length;
    const renewed = serial(join(cfg.dataDir, "cert-chain.pem"));
    rmSync(cfg.outputDir, { recursive: true });
    const logMark = logs.length;
    const a3 = await start(cfg);
    try {
      expect(a3.ready()).toBe(true);
      expect(serial(join(cfg.outputDir, "cert-chain.pem"))).toBe(renewed);
      const loaded = logs.slice(logMark).find((l) => l.msg === "loaded the stored certificate");
      expect(loaded?.receivedAt).toEqual(expect.any(String));
      await Bun.sleep(300);
      expect(ca.calls.length).toBe(mark2);
    } finally {
      await a3.stop();
    }
  });

  test("at start, removes the temporary files a crash left in the output and data directories", async () => {
    const cfg = config("leftovers");
    mkdirSync(cfg.outputDir, { recursive: true });
    mkdirSync(cfg.dataDir, { recursive: true });
    writeFileSync(cfg.tokenFile!, ca.token("vms", "app"));
    const dead = Bun.spawnSync(["true"]).pid;
    const left = [
      join(cfg.outputDir, `.key.pem.${dead}.1f.tmp`),
      join(cfg.outputDir, `.envoy-bootstrap.json.${dead}.2f.tmp`),
      join(cfg.dataDir, `.key.pem.${dead}.3f.tmp`),
    ];
    for (const f of left) writeFileSync(f, "-----BEGIN PRIVATE KEY-----\n");
    const mark = logs.length;
    const agent = await start(cfg);
    try {
      for (const f of left) expect(existsSync(f)).toBe(false);
      const removed = logs.slice(mark).filter((l) =>
        l.msg === "removed a temporary file left by an interrupted write"
      );
      expect(removed.map((l) => l.path).sort()).toEqual([...left].sort());
      expect(await eventually(() => agent.ready(), 5000)).toBe(true);
    } finally {
      await agent.stop();
    }
  });

  test("serves default and ROOTCA over SDS and pushes the renewed certificate", async () => {
    const cfg = config("sds", { certTtlMs: 3000 });
    mkdirSync(join(dir, "sds"), { recursive: true });
    writeFileSync(cfg.tokenFile!, ca.token("vms", "app"));
    const agent: Agent = await start(cfg);
    try {
      const client = createClient(
        SecretDiscoveryService,
        createGrpcTransport({
          baseUrl: "http://localhost",
          nodeOptions: { createConnection: () => netConnect(agent.sdsSocket) } as never,
        }),
      );
      const { createChannel } = await import("../../mod/shared/channel.ts");
      const req = createChannel<ReturnType<typeof create<typeof DiscoveryRequestSchema>>>();
      req.push(create(DiscoveryRequestSchema, {
        node: { id: "sidecar~127.0.0.1~vm.vms~vms.svc.cluster.local" },
        typeUrl: SECRET_TYPE_URL,
        resourceNames: ["default", "ROOTCA"],
      }));
      const seen: string[] = [];
      const chains = new Set<string>();
      for await (const res of client.streamSecrets(req)) {
        for (const a of res.resources) {
          const s = anyUnpack(a, SecretSchema)!;
          seen.push(s.name);
          if (s.type.case === "tlsCertificate") {
            chains.add(
              new TextDecoder().decode(s.type.value.certificateChain!.specifier.value as Uint8Array),
            );
          }
        }
        req.push(
          create(DiscoveryRequestSchema, {
            typeUrl: SECRET_TYPE_URL,
            resourceNames: ["default", "ROOTCA"],
            responseNonce: res.nonce,
            versionInfo: res.versionInfo,
          }),
        );
        if (chains.size >= 2) break;
      }
      req.close();
      expect(seen.slice(0, 2).sort()).toEqual(["ROOTCA", "default"]);
      expect(chains.size).toBe(2);
    } finally {
      await agent.stop();
    }
  });

  test("while the CA is down it keeps the old certificate and reports not ready once it expired", async () => {
    // 3 s: certificates carry whole seconds, so at least 2 s are left, renewed from 1 s on.
    const cfg = config("down", { certTtlMs: 3000 });
    mkdirSync(join(dir, "down"), { recursive: true });
    writeFileSync(cfg.tokenFile!, ca.token("vms", "app"));
    const agent = await start(cfg);
    try {
      expect(await eventually(() => agent.ready(), 5000)).toBe(true);
      const held = agent.certificate();
      const issuedAt = Date.now();
      // The CA goes away: its gRPC server is shut down, both ports refuse connections.
      await ca.stop();
      // Renewal fails from ~1 s on; the certificate expires 2–3 s after issuance.
      expect(await eventually(() => !agent.ready(), 5000)).toBe(true);
      expect(Date.now() - issuedAt).toBeGreaterThan(1500);
      expect(agent.certificate()).toBe(held);
      expect((await fetch(`http://${agent.adminAddr}/healthz/ready`)).status).toBe(503);
      expect(
        logs.some((l) =>
          l.msg === "certificate request failed; retrying" &&
          String(l.err).includes(`CreateCertificate at ${ca.tlsAddr} (mutual TLS): unavailable`)
        ),
      )
        .toBe(true);
      // A new server on the same ports from the same data directory.
      await ca.restart();
      // Expired: the next attempt goes back to the token, which is still there.
      expect(await eventually(() => agent.ready(), 5000)).toBe(true);
      expect(ca.calls.at(-1)).toMatchObject({ via: "token", ok: true });
    } finally {
      await agent.stop();
    }
  });

  test("without a token and without a stored certificate it does not start, naming --token-file", async () => {
    const cfg = config("notoken", { tokenFile: undefined });
    const before = ca.calls.length;
    const err = await start(cfg).then(() => undefined, (e: unknown) => e);
    expect(err).toBeInstanceOf(SettingError);
    expect((err as SettingError).exitCode).toBe(1);
    expect((err as Error).message).toContain(
      `no valid certificate in --data-dir ${cfg.dataDir} and no --token-file (TOKEN_FILE)`,
    );
    expect(ca.calls.length).toBe(before);
    expect(existsSync(cfg.sdsSocket)).toBe(false);
  });

  test("a token the CA already redeemed ends the agent after one call, naming --token-file; no retries", async () => {
    const cfg = config("redeemed");
    mkdirSync(join(dir, "redeemed"), { recursive: true });
    const token = ca.token("vms", "app", { singleUse: true });
    writeFileSync(cfg.tokenFile!, token);
    // The first agent redeems it.
    const first = await start(config("redeemer", { tokenFile: cfg.tokenFile }));
    expect(await eventually(() => first.ready(), 5000)).toBe(true);
    await first.stop();
    const before = ca.calls.length;
    const seen = logs.length;
    const agent = await start(cfg);
    try {
      const fatal = await Promise.race([agent.fatal, Bun.sleep(5000).then(() => undefined)]);
      expect(fatal).toBeInstanceOf(SettingError);
      expect(fatal!.message).toContain(`refused the token in --token-file (TOKEN_FILE) ${cfg.tokenFile}`);
      expect(fatal!.message).toContain("this single-use token was already redeemed");
      // Backoff starts at 100 ms: a retrying agent would have called again by now.
      await Bun.sleep(500);
      expect(ca.calls.slice(before)).toEqual([{ via: "token", tls: false, ok: false, ttlSeconds: 4 }]);
      expect(logs.slice(seen).some((l) => l.msg === "certificate request failed; retrying")).toBe(false);
      expect(agent.ready()).toBe(false);
    } finally {
      await agent.stop();
    }
  });

  test("a setting failure while the certificate is valid is retried; once it expired, the agent ends", async () => {
    // Renewals go to the plaintext port as if it spoke TLS. The stored certificate keeps the
    // workload working until it expires; then nothing the agent can do helps.
    const boot = config("plain-tls", { certTtlMs: 3000 });
    mkdirSync(join(dir, "plain-tls"), { recursive: true });
    writeFileSync(boot.tokenFile!, ca.token("vms", "app"));
    const a = await start(boot);
    expect(await eventually(() => a.ready(), 5000)).toBe(true);
    await a.stop();
    const seen = logs.length;
    const agent = await start({ ...boot, caTlsAddr: ca.plainAddr });
    try {
      expect(agent.ready()).toBe(true);
      const fatal = await Promise.race([agent.fatal, Bun.sleep(8000).then(() => undefined)]);
      expect(fatal).toBeInstanceOf(SettingError);
      expect(fatal!.message).toContain(
        `${ca.plainAddr} is plaintext, not TLS (error:100000f7:SSL routines:OPENSSL_internal:WRONG_VERSION_NUMBER): ` +
          "set --ca-tls-addr (CA_ADDR) to the TLS port",
      );
      const retried = logs.slice(seen).filter((l) => l.msg === "certificate request failed; retrying");
      expect(retried.length).toBeGreaterThan(0);
      expect(retried.every((l) => l.via === "mtls")).toBe(true);
      expect(agent.certificate()!.notAfter).toBeLessThanOrEqual(Date.now());
    } finally {
      await agent.stop();
    }
  });
});
