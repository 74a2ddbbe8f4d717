/**
 * The CA and bootstrap tokens shared through etcd, end to end: a real three-member etcd
 * (Debian's etcd-server on loopback), `meshd serve --modules=citadel --store etcd://...`
 * replicas as processes, a KEK made by `meshd ca kek create`, tokens made by
 * `meshd token create --store`, and real clients: Connect for CreateCertificate, node:tls for the
 * replicas' 15012 certificates, and grpc-js with mutual TLS between two workloads whose
 * certificates come from different replicas.
 */
import * as grpc from "@grpc/grpc-js";
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { Code, ConnectError, createClient } from "@connectrpc/connect";
import { createHash, X509Certificate } from "node:crypto";
import { mkdtempSync, rmSync } from "node:fs";
import { connect } from "node:tls";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { IstioCertificateService } from "#gen/istio/v1/auth/ca_pb.ts";
import { createGrpcTransport, Http2SessionManager } from "@connectrpc/connect-node";
import { pemDecodeAll, pemEncode } from "../../mod/citadel/pem.ts";
import { caClient, csrFor, keyPem } from "../citadel/_ca.ts";
import { type EtcdCluster, startEtcd } from "../store/_etcd.ts";
import { loadEcho } from "./_grpc_backend.ts";
import { adminPost, eventually, type MeshdProcess, runMeshdCommand, startMeshd } from "./_meshd.ts";

const TD = "cluster.local";
const ROUNDS = 20;

/** A replica and its 15012 address. */
interface Replica {
  readonly meshd: MeshdProcess;
  readonly tlsAddr: string;
}

interface CaStatus {
  roots: Array<{ fingerprint: string; signing: boolean }>;
  signing: { fingerprint: string };
}

const fingerprint = (pem: string) => createHash("sha256").update(new X509Certificate(pem).raw).digest("hex");
const pemsOf = (bundle: string) => pemDecodeAll(bundle).map((b) => pemEncode("CERTIFICATE", b.der));

describe("the CA and tokens shared through etcd by replicas", () => {
  const root = mkdtempSync(join(tmpdir(), "meshd-e2e-store-ca-"));
  const kekFile = join(root, "kek");
  let etcd: EtcdCluster;
  const running: MeshdProcess[] = [];

  const storeUrl = (prefix: string) => `etcd://${etcd.endpoints}${prefix}`;
  async function startReplicas(prefix: string, n: number): Promise<Replica[]> {
    const args = [
      "--modules=citadel",
      `--store=${storeUrl(prefix)}`,
      `--ca-kek-file=${kekFile}`,
      `--trust-domain=${TD}`,
      "--etcd-timeout=2s",
      "--csr-rate-per-identity=100000",
      "--shutdown-grace=1s",
    ];
    // Started together: each finds no CA in etcd and races to create one.
    const ms = await Promise.all(Array.from({ length: n }, () => startMeshd({ args, timeoutMs: 60_000 })));
    running.push(...ms);
    const tls = (m: MeshdProcess) => m.logs.find((l) => l.msg === "citadel TLS listening")?.addr as string;
    for (const m of ms) {
      const ok = await eventually(() => tls(m) !== undefined || m.proc.exitCode !== null, 60_000);
      if (!ok || tls(m) === undefined) {
        throw new Error(`replica did not open 15012: ${JSON.stringify(m.logs.slice(-5))}`);
      }
    }
    return ms.map((meshd) => ({ meshd, tlsAddr: tls(meshd) }));
  }
  async function stopAll(rs: readonly Replica[]): Promise<void> {
    await Promise.all(rs.map((r) => r.meshd.stop()));
  }
  const caStatus = async (r: Replica) =>
    (await (await fetch(`http://${r.meshd.adminAddr}/debug/ca`)).json()) as CaStatus;
  const etcdState = async (prefix: string) =>
    JSON.parse(await etcd.ctl(["get", `${prefix}/ca/state`, "--print-value-only"])) as {
      mode: string;
      signing: string;
      trusted: string[];
      roots: Record<string, { cert: string; key: string }>;
    };
  /** The server certificate a replica's 15012 presents, and whether it verifies with `ca` alone. */
  function serverCert(r: Replica, ca: string): Promise<{ authorized: boolean; error?: string; pem: string }> {
    const [host, port] = [r.tlsAddr.slice(0, r.tlsAddr.lastIndexOf(":")), Number(r.tlsAddr.split(":").pop())];
    return new Promise((resolve, reject) => {
      const s = connect({
        host,
        port,
        ca,
        servername: "localhost",
        rejectUnauthorized: false,
        ALPNProtocols: ["h2"],
      });
      s.once("secureConnect", () => {
        const raw = s.getPeerCertificate().raw;
        const pem = pemEncode("CERTIFICATE", new Uint8Array(raw));
        resolve({ authorized: s.authorized, error: s.authorizationError?.toString(), pem });
        s.destroy();
      });
      s.once("error", reject);
    });
  }
  async function token(prefix: string, sa: string, singleUse: boolean): Promise<string> {
    const r = await runMeshdCommand([
      "token",
      "create",
      "--namespace=app",
      `--service-account=${sa}`,
      `--trust-domain=${TD}`,
      "--ttl=10m",
      `--store=${storeUrl(prefix)}`,
      `--ca-kek-file=${kekFile}`,
      ...(singleUse ? ["--single-use"] : []),
    ]);
    if (r.code !== 0) throw new Error(`meshd token create failed: ${r.stderr}`);
    return r.stdout.trim();
  }
  const bearer = (t: string) => ({ headers: { authorization: `Bearer ${t}` } });
  async function refusal(p: Promise<unknown>): Promise<{ code: Code | "ok"; message: string }> {
    try {
      await p;
      return { code: "ok", message: "" };
    } catch (err) {
      const e = ConnectError.from(err);
      return { code: e.code, message: e.rawMessage };
    }
  }

  beforeAll(async () => {
    etcd = await startEtcd(3);
    const made = await runMeshdCommand(["ca", "kek", "create", `--out=${kekFile}`]);
    if (made.code !== 0) throw new Error(made.stderr);
  }, 60_000);
  afterAll(async () => {
    await Promise.all(running.map((m) => m.stop()));
    await etcd?.stop();
    rmSync(root, { recursive: true, force: true });
  });

  test(
    `three replicas started at once on an empty prefix make exactly one root, ${ROUNDS} times, and every 15012 certificate chains to it`,
    async () => {
      let losers = 0;
      for (let round = 0; round < ROUNDS; round++) {
        const prefix = `/race${round}`;
        const rs = await startReplicas(prefix, 3);
        try {
          const state = await etcdState(prefix);
          expect(state.mode).toBe("self-signed");
          expect(state.trusted).toEqual([state.signing]);
          expect(Object.keys(state.roots)).toEqual([state.signing]);
          expect(state.roots[state.signing]!.key).toStartWith("aes256gcm:");
          const rootPem = state.roots[state.signing]!.cert;
          const created = rs.filter((r) =>
            r.meshd.logs.some((l) => l.msg === "created a self-signed root in etcd")
          );
          expect(created).toHaveLength(1);
          losers += rs.filter((r) =>
            r.meshd.logs.some((l) => l.msg === "another replica created the CA first")
          ).length;
          for (const r of rs) {
            expect((await caStatus(r)).roots.map((x) => x.fingerprint)).toEqual([fingerprint(rootPem)]);
            const seen = await serverCert(r, rootPem);
            expect(seen.error).toBeUndefined();
            expect(seen.authorized).toBe(true);
            expect(new X509Certificate(seen.pem).verify(new X509Certificate(rootPem).publicKey)).toBe(true);
          }
        } finally {
          await stopAll(rs);
          running.length = 0;
        }
      }
      // Some replicas found a CA another had just written, so the race was run, not sidestepped.
      console.log(`creation race: ${losers} of ${ROUNDS * 3} replicas lost the create-if-absent write`);
    },
    900_000,
  );

  test("a replica with another KEK, or none, does not start, and says why", async () => {
    const prefix = "/kek";
    const [first] = await startReplicas(prefix, 1);
    const otherKek = join(root, "other-kek");
    expect((await runMeshdCommand(["ca", "kek", "create", `--out=${otherKek}`])).code).toBe(0);
    const serve = (...extra: string[]) =>
      runMeshdCommand([
        "serve",
        "--modules=citadel",
        `--store=${storeUrl(prefix)}`,
        `--trust-domain=${TD}`,
        "--etcd-timeout=2s",
        "--grpc-addr=127.0.0.1:0",
        "--admin-addr=127.0.0.1:0",
        "--grpc-tls-addr=127.0.0.1:0",
        `--data-dir=${join(root, "refused")}`,
        ...extra,
      ]);
    const wrong = await serve(`--ca-kek-file=${otherKek}`);
    expect(wrong.code).not.toBe(0);
    expect(wrong.stderr).toContain(
      `the CA key in etcd does not decrypt with --ca-kek-file ${otherKek}: wrong key-encryption key?`,
    );
    const none = await serve();
    expect(none.code).not.toBe(0);
    expect(none.stderr).toContain("--ca-kek-file is required with --store");
    await stopAll([first!]);
  }, 120_000);

  describe("three replicas on one prefix", () => {
    const prefix = "/shared";
    let rs: Replica[];
    let rootPem: string;
    let leaf: { chain: string[]; key: string };

    beforeAll(async () => {
      rs = await startReplicas(prefix, 3);
      const state = await etcdState(prefix);
      rootPem = state.roots[state.signing]!.cert;
    }, 120_000);
    afterAll(async () => {
      await stopAll(rs ?? []);
    });

    test("a single-use token redeemed at one replica is refused at the two others", async () => {
      const t = await token(prefix, "web", true);
      const jti = JSON.parse(Buffer.from(t.split(".")[1]!, "base64url").toString()).jti as string;
      const { csr, key } = csrFor(`spiffe://${TD}/ns/app/sa/web`);
      const res = await caClient(rs[0]!.meshd.grpcAddr).createCertificate(
        { csr, validityDuration: 3600n },
        bearer(t),
      );
      leaf = { chain: res.certChain.slice(0, -1), key: keyPem(key) };
      expect(new X509Certificate(res.certChain[0]!).verify(new X509Certificate(rootPem).publicKey)).toBe(
        true,
      );
      for (const r of rs.slice(1)) {
        const again = await refusal(caClient(r.meshd.grpcAddr).createCertificate({ csr }, bearer(t)));
        expect(again).toEqual({ code: Code.PermissionDenied, message: "token already used" });
      }
      // And again at the first one.
      expect((await refusal(caClient(rs[0]!.meshd.grpcAddr).createCertificate({ csr }, bearer(t)))).code)
        .toBe(
          Code.PermissionDenied,
        );
      // The ledger entry expires with the token.
      const kv = JSON.parse(
        await etcd.ctl(["get", `${prefix}/tokens/used/${encodeURIComponent(jti)}`, "-w", "json"]),
      ) as { kvs: Array<{ lease?: number | string }> };
      expect(kv.kvs).toHaveLength(1);
      expect(String(kv.kvs[0]!.lease ?? "0")).not.toBe("0");
    }, 60_000);

    test(
      "with etcd down, redeeming a single-use token fails closed with UNAVAILABLE while renewals over mTLS and other tokens work",
      async () => {
        const single = await token(prefix, "web", true);
        const plain = await token(prefix, "web", false);
        const leader = await etcd.leader();
        await etcd.kill(leader);
        await etcd.kill((leader + 1) % 3);
        try {
          const { csr } = csrFor(`spiffe://${TD}/ns/app/sa/web`);
          const refused = await refusal(
            caClient(rs[1]!.meshd.grpcAddr).createCertificate({ csr }, bearer(single)),
          );
          expect(refused.code).toBe(Code.Unavailable);
          expect(refused.message).toStartWith(
            "cannot record the single-use token: the store is unreachable (",
          );
          const renewed = await caClient(rs[2]!.tlsAddr, {
            ca: rootPem,
            cert: leaf.chain.join(""),
            key: leaf.key,
          })
            .createCertificate({ csr, validityDuration: 0n });
          expect(new X509Certificate(renewed.certChain[0]!).subjectAltName).toContain(`/ns/app/sa/web`);
          const other = await caClient(rs[0]!.meshd.grpcAddr).createCertificate({ csr }, bearer(plain));
          expect(other.certChain).toHaveLength(2);
          // A rotation step needs etcd: refused, saying why.
          const step = await adminPost(rs[0]!.meshd, "/debug/ca/rotate");
          expect(step.status).toBe(409);
          expect(((await step.json()) as { error: string }).error).toStartWith(
            "cannot rotate the CA root: the store is unreachable (",
          );
        } finally {
          for (let i = 0; i < 3; i++) if (!etcd.members[i]!.running()) await etcd.restart(i);
          await etcd.healthy();
        }
        // Back: the token nobody redeemed works now, once.
        const { csr } = csrFor(`spiffe://${TD}/ns/app/sa/web`);
        expect(
          await eventually(
            async () =>
              (await refusal(caClient(rs[1]!.meshd.grpcAddr).createCertificate({ csr }, bearer(single))))
                .code === "ok",
            30_000,
          ),
        ).toBe(true);
      },
      90_000,
    );

    test(
      "a rotation driven through one replica is followed by the others, with 0 failed calls and 0 failed handshakes between workloads of two replicas",
      async () => {
        // The echo server's certificate comes from replica 0, its client's from replica 1; the
        // operator drives the rotation through replica 2.
        const server = await workload(rs[0]!, "echo");
        const client = await workload(rs[1]!, "good");
        const traffic = await startTraffic(server, client);
        try {
          await traffic.until((t) => t.ok >= 20 && t.freshOk >= 2);
          const bundleSize = (w: Workload) => pemsOf(w.bundle()).length;
          const step = async (path: string) => {
            const res = await adminPost(rs[2]!.meshd, path);
            expect(res.status).toBe(200);
            return (await res.json()) as CaStatus;
          };
          const old = fingerprint(rootPem);

          const rotated = await step("/debug/ca/rotate");
          const fresh = rotated.roots.map((r) => r.fingerprint).find((f) => f !== old)!;
          for (const r of rs) {
            expect(await eventually(async () => (await caStatus(r)).roots.length === 2, 30_000)).toBe(true);
          }
          // Every workload learns the new root at its next renewal.
          expect(await eventually(() => bundleSize(server) === 2 && bundleSize(client) === 2, 30_000)).toBe(
            true,
          );
          await traffic.more();

          await step("/debug/ca/activate");
          for (const r of rs) {
            expect(await eventually(async () => (await caStatus(r)).signing.fingerprint === fresh, 30_000))
              .toBe(true);
          }
          const newRoot = pemsOf(server.bundle()).find((p) => fingerprint(p) === fresh)!;
          const underNew = (w: Workload) =>
            new X509Certificate(w.leaf()).verify(new X509Certificate(newRoot).publicKey);
          expect(await eventually(() => underNew(server) && underNew(client), 30_000)).toBe(true);
          await traffic.more();

          await step("/debug/ca/retire");
          for (const r of rs) {
            expect(
              await eventually(async () => {
                const st = await caStatus(r);
                return st.roots.length === 1 && st.roots[0]!.fingerprint === fresh;
              }, 30_000),
            ).toBe(true);
          }
          expect(await eventually(() => bundleSize(server) === 1 && bundleSize(client) === 1, 30_000)).toBe(
            true,
          );
          // Every replica's 15012 certificate now chains to the new root alone.
          for (const r of rs) {
            expect(await eventually(async () => (await serverCert(r, newRoot)).authorized, 30_000)).toBe(
              true,
            );
          }
          const before = traffic.now();
          await traffic.until((t) => t.ok >= before.ok + 20 && t.freshOk >= before.freshOk + 4);
        } finally {
          await traffic.stop();
          server.stop();
          client.stop();
        }
        const t = traffic.now();
        console.log(
          `rotation across replicas: ${t.ok} calls on one channel, ${t.freshOk} fresh handshakes, ` +
            `${
              server.renewals() + client.renewals()
            } renewals; failed: ${t.failed} calls, ${t.freshFailed} handshakes, ` +
            `${server.renewalFailures() + client.renewalFailures()} renewals`,
        );
        expect(t.errors).toEqual([]);
        expect(t.failed).toBe(0);
        expect(t.freshFailed).toBe(0);
        expect(server.renewalFailures() + client.renewalFailures()).toBe(0);
      },
      240_000,
    );

    /** A workload: its key, certificate and trust bundle in memory, renewed over mTLS at its replica. */
    interface Workload extends grpc.experimental.CertificateProvider {
      readonly uri: string;
      leaf(): string;
      bundle(): string;
      renewals(): number;
      renewalFailures(): number;
      stop(): void;
    }

    async function workload(r: Replica, sa: string): Promise<Workload> {
      const uri = `spiffe://${TD}/ns/app/sa/${sa}`;
      const first = csrFor(uri);
      const got = await caClient(r.meshd.grpcAddr).createCertificate(
        { csr: first.csr, validityDuration: 3600n },
        bearer(await token(prefix, sa, false)),
      );
      let chain = got.certChain.slice(0, -1).join("");
      let bundle = got.certChain.at(-1)!;
      let key = keyPem(first.key);
      let renewals = 0;
      let failures = 0;
      let stopped = false;
      const caListeners = new Set<grpc.experimental.CaCertificateUpdateListener>();
      const idListeners = new Set<grpc.experimental.IdentityCertificateUpdateListener>();
      const publish = () => {
        for (const l of caListeners) l({ caCertificate: Buffer.from(bundle) });
        for (const l of idListeners) l({ certificate: Buffer.from(chain), privateKey: Buffer.from(key) });
      };
      const renew = async () => {
        while (!stopped) {
          const next = csrFor(uri);
          const manager = new Http2SessionManager(`https://${r.tlsAddr}`, {}, {
            ca: bundle,
            cert: chain,
            key,
            servername: "localhost",
          });
          try {
            const res = await createClient(
              IstioCertificateService,
              createGrpcTransport({ baseUrl: `https://${r.tlsAddr}`, sessionManager: manager }),
            ).createCertificate({ csr: next.csr, validityDuration: 3600n }, { timeoutMs: 10_000 });
            chain = res.certChain.slice(0, -1).join("");
            bundle = res.certChain.at(-1)!;
            key = keyPem(next.key);
            renewals++;
            publish();
          } catch (err) {
            failures++;
            console.log(`renewal of ${uri} at ${r.tlsAddr} failed: ${(err as Error).message}`);
          } finally {
            manager.abort();
          }
          await Bun.sleep(200);
        }
      };
      void renew();
      return {
        uri,
        leaf: () => pemsOf(chain)[0]!,
        bundle: () => bundle,
        renewals: () => renewals,
        renewalFailures: () => failures,
        stop: () => (stopped = true),
        addCaCertificateListener(l) {
          caListeners.add(l);
          l({ caCertificate: Buffer.from(bundle) });
        },
        removeCaCertificateListener: (l) => caListeners.delete(l),
        addIdentityCertificateListener(l) {
          idListeners.add(l);
          l({ certificate: Buffer.from(chain), privateKey: Buffer.from(key) });
        },
        removeIdentityCertificateListener: (l) => idListeners.delete(l),
      };
    }

    interface TrafficCounts {
      ok: number;
      failed: number;
      freshOk: number;
      freshFailed: number;
      errors: string[];
    }

    /**
     * An echo server with `server`'s identity and a client with `client`'s: calls every 20 ms on
     * one long-lived channel, and one call on a fresh channel (a fresh mTLS handshake) every 250 ms.
     */
    async function startTraffic(server: Workload, client: Workload) {
      const Echo =
        (loadEcho() as unknown as { meshd: { test: { Echo: grpc.ServiceClientConstructor } } }).meshd
          .test.Echo;
      const srv = new grpc.Server();
      srv.addService(Echo.service, {
        Call(_call: grpc.ServerUnaryCall<unknown, unknown>, cb: grpc.sendUnaryData<unknown>) {
          cb(null, { backend: "echo", message: "ok" });
        },
      });
      const port = await new Promise<number>((resolve, reject) =>
        srv.bindAsync(
          "127.0.0.1:0",
          grpc.experimental.createCertificateProviderServerCredentials(server, server, true),
          (err, p) => (err ? reject(err) : resolve(p)),
        )
      );
      const creds = () =>
        grpc.experimental.createCertificateProviderChannelCredentials(client, client, {
          // Workload certificates name a SPIFFE identity, not a host.
          checkServerIdentity: (_host, cert) =>
            cert.subjectaltname?.split(", ").includes(`URI:${server.uri}`)
              ? undefined
              : new Error(`server is not ${server.uri}: ${cert.subjectaltname}`),
        });
      const counts: TrafficCounts = { ok: 0, failed: 0, freshOk: 0, freshFailed: 0, errors: [] };
      let stopped = false;
      type EchoClient = grpc.Client & {
        Call(req: unknown, o: grpc.CallOptions, cb: grpc.requestCallback<unknown>): void;
      };
      const call = (c: EchoClient) =>
        new Promise<string | undefined>((done) =>
          c.Call(
            { message: "x" },
            { deadline: Date.now() + 10_000 },
            (err) => done(err ? `${grpc.status[err.code]} ${err.details}` : undefined),
          )
        );
      const target = `127.0.0.1:${port}`;
      // A name to send in the handshake (the runtime refuses an IP address as server name).
      const options = { "grpc.ssl_target_name_override": "echo.app" };
      const steady = new Echo(target, creds(), options) as unknown as EchoClient;
      // The server's TLS context is set up a moment after it listens: the mesh must work before
      // the counting starts.
      const warm = await eventually(async () => (await call(steady)) === undefined, 30_000, 100);
      if (!warm) throw new Error("the echo server never answered over mTLS");
      const loops = [
        (async () => {
          while (!stopped) {
            const err = await call(steady);
            if (err) {
              counts.failed++;
              if (counts.errors.length < 20) counts.errors.push(`steady after ${counts.ok} ok: ${err}`);
            } else counts.ok++;
            await Bun.sleep(20);
          }
        })(),
        (async () => {
          while (!stopped) {
            const c = new Echo(target, creds(), options) as unknown as EchoClient;
            const err = await call(c);
            c.close();
            if (err) {
              counts.freshFailed++;
              if (counts.errors.length < 20) counts.errors.push(`fresh after ${counts.freshOk} ok: ${err}`);
            } else counts.freshOk++;
            await Bun.sleep(250);
          }
        })(),
      ];
      return {
        now: () => ({ ...counts, errors: [...counts.errors] }),
        /** Waits (bounded) for two more fresh handshakes and ten more calls. */
        async more() {
          const from = { ...counts };
          await this.until((t) => t.freshOk >= from.freshOk + 2 && t.ok >= from.ok + 10);
        },
        /** Waits (bounded) until `cond` holds of the counts. */
        async until(cond: (t: TrafficCounts) => boolean) {
          if (!(await eventually(() => cond(counts), 60_000))) {
            throw new Error(`traffic did not get there: ${JSON.stringify(counts)}`);
          }
        },
        async stop() {
          stopped = true;
          await Promise.all(loops);
          steady.close();
          srv.forceShutdown();
        },
      };
    }
  });
});
