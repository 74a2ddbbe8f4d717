/**
 * End to end, on loopback: certificate rotation under live proxyless gRPC traffic with STRICT
 * mutual TLS. A real `meshd serve` (pilot, citadel), two real node agents (`sa/echo` for the
 * server, `sa/good` for the client) with a 20 s `--cert-ttl` (renewed at half-life ±10 %), an
 * xDS-enabled grpc-js server and a grpc-js-xds client, each its own process. Proves that:
 *
 * - leaves renewed on both sides while calls flow (one every 20 ms on a long-lived channel, plus
 *   a fresh channel, hence a fresh mTLS handshake, every 250 ms) cost no call, and fresh
 *   handshakes present the renewed certificates;
 * - a root rotation (`POST /debug/ca/rotate` and a renewal that spreads the new root,
 *   `POST /debug/ca/activate` and re-issuance under it, then `POST /debug/ca/retire` and the next
 *   renewal) costs no call on the long-lived channel, and no fresh handshake either, and
 *   fresh handshakes work again once both sides hold leaves of the new root.
 *
 * The programs run by this file: `bun security_rotation.test.ts server ADDR NAME` (answers with
 * the serial of the client certificate it saw) and `bun security_rotation.test.ts client TARGET
 * MAX_MS` (calls until SIGTERM or MAX_MS, then prints one JSON summary).
 *
 * The agent's grpc-bootstrap.json asks gRPC's file_watcher to re-read the files every 60 s,
 * longer than these 20 s certificates live; the gRPC processes get a copy with 1 s instead.
 */
import * as grpc from "@grpc/grpc-js";
import * as xds from "@grpc/grpc-js-xds";
import { afterAll, beforeAll, expect, test } from "bun:test";
import { spawn, type Subprocess } from "bun";
import { X509Certificate } from "node:crypto";
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { loadEcho } from "./_grpc_backend.ts";
import { strictEchoMesh } from "./_mtls.ts";

const ECHO = () =>
  (loadEcho() as unknown as { meshd: { test: { Echo: grpc.ServiceClientConstructor } } }).meshd.test.Echo;

type EchoClient = grpc.Client & {
  Call(
    req: unknown,
    md: grpc.Metadata,
    o: grpc.CallOptions,
    cb: grpc.requestCallback<unknown>,
  ): grpc.ClientUnaryCall;
};

/** What the client program prints. */
interface LoopSummary {
  /** Calls on the long-lived channel. */
  ok: number;
  failed: number;
  /** One call each on a fresh channel (fresh subchannel, fresh TLS handshake). */
  freshOk: number;
  freshFailed: number;
  /** The first errors: `time code details` (time in ms since the epoch), per kind. */
  errors: string[];
  freshErrors: string[];
  /** Serials of the server certificate seen, and of the client certificate the server saw. */
  serverSerials: string[];
  clientSerialsAtServer: string[];
  /** Same, on fresh channels only. */
  freshServerSerials: string[];
  freshClientSerialsAtServer: string[];
}

function runServer(addr: string, name: string): void {
  xds.register();
  const server = new xds.XdsServer();
  server.addService(ECHO().service, {
    Call(call: grpc.ServerUnaryCall<{ message: string }, unknown>, cb: grpc.sendUnaryData<unknown>) {
      const peer = call.getAuthContext()?.sslPeerCertificate;
      cb(null, { backend: name, message: peer?.serialNumber?.toLowerCase() ?? "" });
    },
  });
  server.bindAsync(
    addr,
    new xds.XdsServerCredentials(grpc.ServerCredentials.createInsecure()),
    (err, port) => {
      process.stdout.write(
        JSON.stringify({ serving: !err, port, error: err ? String(err) : undefined }) + "\n",
      );
    },
  );
  process.on("SIGTERM", () => {
    server.forceShutdown();
    process.exit(0);
  });
}

async function runClient(target: string, maxMs: number): Promise<void> {
  xds.register();
  const Echo = ECHO();
  const creds = () => new xds.XdsChannelCredentials(grpc.credentials.createInsecure());
  const r: LoopSummary = {
    ok: 0,
    failed: 0,
    freshOk: 0,
    freshFailed: 0,
    errors: [],
    freshErrors: [],
    serverSerials: [],
    clientSerialsAtServer: [],
    freshServerSerials: [],
    freshClientSerialsAtServer: [],
  };
  const note = (list: string[], s: string | undefined) => {
    if (s && !list.includes(s)) list.push(s);
  };
  const call = (client: EchoClient, fresh: boolean) =>
    new Promise<void>((done) => {
      const c = client.Call(
        { message: "rotation" },
        new grpc.Metadata(),
        { deadline: Date.now() + 3000 },
        (err, reply) => {
          if (err) {
            const e = err as grpc.ServiceError;
            const line = `${Date.now()} ${grpc.status[e.code] ?? e.code} ${e.details}`;
            if (fresh) {
              r.freshFailed++;
              if (r.freshErrors.length < 500) r.freshErrors.push(line);
            } else {
              r.failed++;
              if (r.errors.length < 20) r.errors.push(line);
            }
          } else {
            const serial = c.getAuthContext()?.sslPeerCertificate?.serialNumber?.toLowerCase();
            const seen = (reply as { message: string }).message;
            if (fresh) {
              r.freshOk++;
              note(r.freshServerSerials, serial);
              note(r.freshClientSerialsAtServer, seen);
            } else {
              r.ok++;
            }
            note(r.serverSerials, serial);
            note(r.clientSerialsAtServer, seen);
          }
          done();
        },
      );
    });
  let stop = false;
  const finish = () => {
    stop = true;
  };
  process.on("SIGTERM", finish);
  const end = Date.now() + maxMs;
  const longLived = new Echo(target, creds()) as unknown as EchoClient;
  const steady = (async () => {
    while (!stop && Date.now() < end) {
      await call(longLived, false);
      await Bun.sleep(20);
    }
  })();
  const probes = (async () => {
    while (!stop && Date.now() < end) {
      // A local subchannel pool: the new channel shares no connection with the others.
      const c = new Echo(target, creds(), { "grpc.use_local_subchannel_pool": 1 }) as unknown as EchoClient;
      await call(c, true);
      c.close();
      await Bun.sleep(250);
    }
  })();
  await Promise.all([steady, probes]);
  longLived.close();
  process.stdout.write(JSON.stringify(r) + "\n");
  process.exit(0);
}

/** Whether this process runs one of the programs above rather than the tests. */
const PROGRAM = import.meta.main && ["server", "client"].includes(process.argv[2] ?? "");
if (PROGRAM) {
  const [mode, a, b] = process.argv.slice(2);
  if (mode === "server") runServer(a!, b!);
  else await runClient(a!, Number(b));
}

// ---------------------------------------------------------------------------------------------
// The test.

const NS = "rot";
const HOST = `echo.${NS}.svc.cluster.local`;
const CERT_TTL = "20s";

const configYaml = (p: number) => strictEchoMesh(NS, p);

/** One certificate state observed on disk. */
interface Seen {
  at: number;
  serial: string;
  /** SHA-256 fingerprints of root-cert.pem's certificates, in order. */
  roots: string[];
  /** The fingerprint of the root in root-cert.pem whose key signed the leaf. */
  signedBy: string | undefined;
}

/** Polls an agent's output directory and records every distinct leaf. */
class Watcher {
  readonly history: Seen[] = [];
  private timer: ReturnType<typeof setInterval>;
  constructor(readonly outDir: string) {
    this.poll();
    this.timer = setInterval(() => this.poll(), 100);
  }
  poll(): void {
    try {
      const leaf = new X509Certificate(readFileSync(join(this.outDir, "cert-chain.pem"), "utf8"));
      const rootsPem = readFileSync(join(this.outDir, "root-cert.pem"), "utf8");
      const certs = [...rootsPem.matchAll(/-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/g)]
        .map((m) => new X509Certificate(m[0]));
      const roots = certs.map((c) => c.fingerprint256);
      const serial = leaf.serialNumber.toLowerCase();
      const last = this.history.at(-1);
      if (last?.serial === serial && last.roots.join() === roots.join()) return;
      const signedBy = certs.find((c) => leaf.verify(c.publicKey))?.fingerprint256;
      this.history.push({ at: Date.now(), serial, roots, signedBy });
    } catch {
      // not written yet, or caught between two renames
    }
  }
  current(): Seen | undefined {
    this.poll();
    return this.history.at(-1);
  }
  /** Leaves first seen after `t`. */
  since(t: number): Seen[] {
    this.poll();
    return this.history.filter((s) => s.at > t);
  }
  stop(): void {
    clearInterval(this.timer);
  }
}

/** A running client program. */
interface Loop {
  proc: Subprocess<"ignore", "pipe", "pipe">;
  /** SIGTERM, then the summary. */
  finish(): Promise<LoopSummary>;
}

let root: string;
let dataDir: string;
let meshd: import("./_meshd.ts").MeshdProcess;
let port: number;
let server: Subprocess<"ignore", "pipe", "pipe"> | undefined;
let serverOut = "";
const agents: import("../agent/_agent_proc.ts").AgentProcess[] = [];
const boots: Record<string, string> = {};
const watchers: Record<string, Watcher> = {};
const loops: Loop[] = [];

function envFor(bootstrap: string): Record<string, string | undefined> {
  const env: Record<string, string | undefined> = { ...process.env, GRPC_XDS_BOOTSTRAP: bootstrap };
  delete env.GRPC_XDS_BOOTSTRAP_CONFIG;
  return env;
}

function startLoop(maxMs: number): Loop {
  const proc = spawn(
    [process.execPath, import.meta.path, "client", `xds:///${HOST}:${port}`, String(maxMs)],
    {
      stdin: "ignore",
      stdout: "pipe",
      stderr: "pipe",
      env: envFor(boots.good!),
    },
  );
  const out = new Response(proc.stdout).text();
  const err = new Response(proc.stderr).text();
  const loop: Loop = {
    proc,
    async finish() {
      if (proc.exitCode === null) proc.kill("SIGTERM");
      const t = setTimeout(() => proc.kill("SIGKILL"), 8000);
      const code = await proc.exited;
      clearTimeout(t);
      const text = await out;
      try {
        return JSON.parse(text.trim().split("\n").pop() ?? "") as LoopSummary;
      } catch {
        throw new Error(`client exited ${code} without a summary:\n${text}\n${(await err).slice(-5000)}`);
      }
    },
  };
  loops.push(loop);
  return loop;
}

async function agentFor(sa: string, ip: string, labels: string): Promise<void> {
  const { meshdCli, startAgentProcess } = await import("../agent/_agent_proc.ts");
  const { eventually } = await import("./_meshd.ts");
  const base = join(root, `agent-${sa}`);
  mkdirSync(base, { recursive: true });
  const tokenFile = join(base, "token");
  writeFileSync(
    tokenFile,
    meshdCli([
      "token",
      "create",
      `--data-dir=${dataDir}`,
      `--namespace=${NS}`,
      `--service-account=${sa}`,
      "--ttl=1h",
    ]).trim(),
  );
  const tlsAddr = await meshd.addrOf("citadel TLS listening");
  const out = join(base, "out");
  const a = startAgentProcess([
    `--ca-addr=${meshd.grpcAddr}`,
    `--ca-tls-addr=${tlsAddr}`,
    `--discovery-addr=${meshd.grpcAddr}`,
    "--control-plane-auth=NONE",
    `--namespace=${NS}`,
    `--service-account=${sa}`,
    `--token-file=${tokenFile}`,
    `--instance-ip=${ip}`,
    `--workload-name=${sa}`,
    `--labels=${labels}`,
    `--output-dir=${out}`,
    `--data-dir=${join(base, "data")}`,
    `--cert-ttl=${CERT_TTL}`,
  ]);
  agents.push(a);
  await a.waitFor((l) => l.msg === "certificate issued" && l.via === "token", 20_000);
  const path = join(out, "grpc-bootstrap.json");
  let boot: { certificate_providers?: Record<string, { config: Record<string, unknown> }> } | undefined;
  await eventually(() => {
    try {
      boot = JSON.parse(readFileSync(path, "utf8"));
      return true;
    } catch {
      return false;
    }
  }, 10_000);
  const cfg = boot?.certificate_providers?.default?.config;
  if (!cfg) throw new Error(`no file_watcher provider in ${path}`);
  cfg.refresh_interval = "1s";
  boots[sa] = join(base, "grpc-bootstrap-1s.json");
  writeFileSync(boots[sa]!, JSON.stringify(boot));
  watchers[sa] = new Watcher(out);
}

async function admin(path: string): Promise<Record<string, unknown>> {
  const { adminPost } = await import("./_meshd.ts");
  const res = await adminPost(meshd, path);
  const body = (await res.json()) as Record<string, unknown>;
  if (res.status !== 200) throw new Error(`POST ${path}: ${res.status} ${JSON.stringify(body)}`);
  return body;
}

/** Fingerprint (SHA-256, colon hex as node:crypto prints it) of the CA's signing root. */
async function signingRoot(): Promise<{ fingerprint: string; subject: string }> {
  const ca = (await (await fetch(`http://${meshd.adminAddr}/debug/ca`)).json()) as {
    roots: Array<{ fingerprint: string; subject: string; signing: boolean }>;
  };
  const r = ca.roots.find((x) => x.signing)!;
  return {
    fingerprint: r.fingerprint.toUpperCase().match(/../g)!.join(":"),
    subject: r.subject,
  };
}

if (!PROGRAM) {
  beforeAll(async () => {
    const { freePort } = await import("./_grpc.ts");
    const { eventually, startMeshd } = await import("./_meshd.ts");
    root = mkdtempSync(join(tmpdir(), "meshd-e2e-rotation-"));
    dataDir = join(root, "meshd-data");
    const dir = join(root, "config");
    mkdirSync(dir);
    port = await freePort();
    writeFileSync(join(dir, "mesh.yaml"), configYaml(port));
    meshd = await startMeshd({
      args: [
        "--modules=pilot,citadel",
        `--config-dir=${dir}`,
        `--data-dir=${dataDir}`,
        "--push-debounce=10ms",
      ],
    });
    await Promise.all([agentFor("echo", "127.0.0.1", "app=echo"), agentFor("good", "127.0.0.2", "app=good")]);
    server = spawn([process.execPath, import.meta.path, "server", `127.0.0.1:${port}`, "echo-1"], {
      stdin: "ignore",
      stdout: "pipe",
      stderr: "pipe",
      env: envFor(boots.echo!),
    });
    (async () => {
      for await (const chunk of server!.stdout) serverOut += new TextDecoder().decode(chunk);
    })();
    const serving = await eventually(
      () => serverOut.includes('"serving":true') || server!.exitCode !== null,
      20_000,
    );
    if (!serving || !serverOut.includes('"serving":true')) {
      throw new Error(`xDS server not serving: ${serverOut}\n${await new Response(server.stderr).text()}`);
    }
  }, 40_000);
}

if (!PROGRAM) {
  afterAll(async () => {
    for (const l of loops) if (l.proc.exitCode === null) l.proc.kill("SIGKILL");
    for (const w of Object.values(watchers)) w.stop();
    if (server && server.exitCode === null) {
      server.kill("SIGTERM");
      const t = setTimeout(() => server!.kill("SIGKILL"), 1000);
      await server.exited;
      clearTimeout(t);
    }
    await Promise.all(agents.map((a) => a.stop()));
    await meshd?.stop();
    if (root) rmSync(root, { recursive: true, force: true });
  });
}

if (!PROGRAM) {
  test("leaves renewed on both sides under traffic cost no call", async () => {
    const { eventually } = await import("./_meshd.ts");
    const start = Date.now();
    const first = { echo: watchers.echo!.current()!, good: watchers.good!.current()! };
    const loop = startLoop(40_000);
    // Both leaves renewed, and each renewal in service for a few seconds of traffic.
    const renewed = await eventually(
      () =>
        watchers.echo!.since(start).some((s) => s.serial !== first.echo.serial && Date.now() - s.at > 3000) &&
        watchers.good!.since(start).some((s) => s.serial !== first.good.serial && Date.now() - s.at > 3000),
      30_000,
      100,
    );
    const r = await loop.finish();
    const elapsed = Date.now() - start;
    const ctx = JSON.stringify({ elapsed, r, echo: watchers.echo!.history, good: watchers.good!.history });
    expect(renewed, ctx).toBe(true);
    expect(r.failed, ctx).toBe(0);
    expect(r.freshFailed, ctx).toBe(0);
    expect(r.ok, ctx).toBeGreaterThan(200);
    expect(r.freshOk, ctx).toBeGreaterThan(20);
    // Fresh handshakes presented the renewed certificates, in both directions.
    const echoSerials = watchers.echo!.history.map((s) => s.serial);
    const goodSerials = watchers.good!.history.map((s) => s.serial);
    expect(r.freshServerSerials.filter((s) => s !== first.echo.serial && echoSerials.includes(s)).length, ctx)
      .toBeGreaterThan(0);
    expect(
      r.freshClientSerialsAtServer.filter((s) => s !== first.good.serial && goodSerials.includes(s)).length,
      ctx,
    ).toBeGreaterThan(0);
  }, 40_000);
}

if (!PROGRAM) {
  test(
    "a root rotation (prepare, activate, retire) under traffic costs no call, not even a fresh handshake",
    async () => {
      const { eventually } = await import("./_meshd.ts");
      const oldRoot = await signingRoot();
      const loop = startLoop(80_000);
      await Bun.sleep(500);
      // 1. Prepare: the new root joins the trust bundle; the old one keeps signing.
      const preparedAt = Date.now();
      const prepared = await admin("/debug/ca/rotate");
      expect((prepared.roots as unknown[]).length).toBe(2);
      const trustsBoth = (sa: string) => {
        const s = watchers[sa]!.current();
        return s !== undefined && s.at > preparedAt && s.roots.length === 2 &&
          s.signedBy === oldRoot.fingerprint;
      };
      const learned = await eventually(() => trustsBoth("echo") && trustsBoth("good"), 25_000, 100);
      // Let both gRPC processes re-read the files (every second) before anything is signed by the new root.
      await Bun.sleep(1500);
      // 2. Activate: leaves are re-issued under the new root as the agents renew.
      const activatedAt = Date.now();
      const activated = learned ? await admin("/debug/ca/activate") : undefined;
      const newRoot = await signingRoot();
      const underNew = (sa: string) => {
        const s = watchers[sa]!.current();
        return s !== undefined && s.at > activatedAt && s.signedBy === newRoot.fingerprint &&
          s.roots.includes(newRoot.fingerprint) && s.roots.includes(oldRoot.fingerprint);
      };
      const reissued = activated !== undefined &&
        await eventually(() => underNew("echo") && underNew("good"), 25_000, 100);
      await Bun.sleep(1500);
      // 3. Retire the old root.
      const retiredAt = Date.now();
      const retired = reissued ? await admin("/debug/ca/retire") : undefined;
      const onlyNew = (sa: string) => {
        const s = watchers[sa]!.current();
        return s !== undefined && s.at > retiredAt && s.signedBy === newRoot.fingerprint &&
          s.roots.length === 1 && s.roots[0] === newRoot.fingerprint;
      };
      const renewedAfterRetire = reissued &&
        await eventually(() => onlyNew("echo") && onlyNew("good"), 25_000, 100);
      // Long enough for both gRPC processes to re-read the files and probe again.
      await Bun.sleep(2500);
      const r = await loop.finish();
      const ctx = JSON.stringify({
        preparedAt,
        activatedAt,
        retiredAt,
        oldRoot,
        newRoot,
        r,
        echo: watchers.echo!.history,
        good: watchers.good!.history,
      });
      expect(learned, ctx).toBe(true);
      expect(newRoot.fingerprint, ctx).not.toBe(oldRoot.fingerprint);
      expect(reissued, ctx).toBe(true);
      expect((retired?.roots as unknown[] | undefined)?.length, ctx).toBe(1);
      expect(renewedAfterRetire, ctx).toBe(true);
      expect(r.failed, ctx).toBe(0);
      expect(r.ok, ctx).toBeGreaterThan(200);
      expect(r.freshFailed, ctx).toBe(0);
      expect(r.freshOk, ctx).toBeGreaterThan(20);
      // Fresh handshakes after the retirement presented leaves of the new root only.
      const last = { echo: watchers.echo!.current()!, good: watchers.good!.current()! };
      expect(r.freshServerSerials, ctx).toContain(last.echo.serial);
      expect(r.freshClientSerialsAtServer, ctx).toContain(last.good.serial);
    },
    90_000,
  );
}
