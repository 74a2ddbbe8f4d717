/**
 * The real citadel CA for agent tests, in-process: the CA store of mod/citadel/ca_store.ts in a
 * temporary data directory (a self-signed root made by initCa, or with `intermediate: true` a
 * `--ca-dir` intermediate under an offline root made with openssl), the real CA service of
 * mod/citadel/service.ts on the shared gRPC server of mod/grpc/server.ts (a plaintext listener
 * and a TLS listener with a CA-issued server certificate, as the citadel module sets them up),
 * and bootstrap tokens signed with the data directory's real token key.
 *
 * Failures are real: `stop()` shuts the gRPC server down (the CA is unreachable), `restart()`
 * starts a new one on the same ports from the same data directory; refusals come from the real
 * policy (bad token, wrong identity, ...).
 */
import { Code, ConnectError } from "@connectrpc/connect";
import { generateKeyPairSync, type KeyObject } from "node:crypto";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { IstioCertificateService } from "#gen/istio/v1/auth/ca_pb.ts";
import { type CaStore, initCa, loadCa } from "../../mod/citadel/ca_store.ts";
import { pemEncode } from "../../mod/citadel/pem.ts";
import { CaRefusal, createCaService, createIssuer, LEAF_BACKDATE_MS } from "../../mod/citadel/service.ts";
import { createLeafSigner } from "../../mod/citadel/sign.ts";
import { createToken, loadOrCreateTokenKey, openUsedTokens } from "../../mod/citadel/token.ts";
import {
  createGrpcServer,
  type GrpcServer,
  PEER_CERTIFICATE,
  type TlsMaterial,
} from "../../mod/grpc/server.ts";
import { systemClock } from "../../mod/shared/clock.ts";
import { createLogger } from "../../mod/shared/logger.ts";
import { createMetricsRegistry } from "../../mod/shared/metrics.ts";
import { makeOfflineCa } from "../citadel/_ca.ts";

/** One call the CA answered or refused. */
export interface CaCall {
  /** How the real CA authenticated the caller ("token" also when authentication failed without a certificate). */
  readonly via: "token" | "mtls";
  readonly tls: boolean;
  readonly ok: boolean;
  /** The lifetime the request asked for. */
  readonly ttlSeconds: number;
}

/** Options of startCitadel. */
export interface CitadelOptions {
  /** Default cluster.local. */
  readonly trustDomain?: string;
  /** Sign with an intermediate from a `--ca-dir` under an offline root (default: self-signed root). */
  readonly intermediate?: boolean;
  /** `--csr-rate-per-identity` (default 0: disabled, tests renew often). */
  readonly ratePerMinute?: number;
  /** `--workload-cert-ttl`, ms (default 24 h). */
  readonly defaultTtlMs?: number;
  /** `--max-workload-cert-ttl`, ms (default 90 days). */
  readonly maxTtlMs?: number;
}

/** A running citadel. */
export interface Citadel {
  readonly plainAddr: string;
  readonly tlsAddr: string;
  /** The trust bundle (PEM): the last element of every answer, what agents write to root-cert.pem. */
  readonly rootPem: string;
  /** `--data-dir` of the CA. */
  readonly dataDir: string;
  readonly trustDomain: string;
  /** Every call since start (across restarts). */
  readonly calls: CaCall[];
  /** A bootstrap token for `ns/<namespace>/sa/<serviceAccount>`, signed with the CA's token key. */
  token(namespace: string, serviceAccount: string, opts?: { ttlMs?: number; singleUse?: boolean }): string;
  /** Shuts the gRPC server down: both addresses refuse connections until `restart()`. */
  stop(): Promise<void>;
  /** Starts a new gRPC server on the same ports with the CA loaded again from the data directory. */
  restart(): Promise<void>;
  /** Stops the server and removes the data directory. */
  close(): Promise<void>;
}

const quiet = () => createLogger({ write: () => {} });

/** Starts the real CA on 127.0.0.1 (ports chosen by the system). */
export async function startCitadel(opts: CitadelOptions = {}): Promise<Citadel> {
  const trustDomain = opts.trustDomain ?? "cluster.local";
  const root = mkdtempSync(join(tmpdir(), "meshd-agent-citadel-"));
  const dataDir = join(root, "data");
  let caDir: string | undefined;
  if (opts.intermediate) {
    caDir = mkdtempSync(join(root, "ca-dir-"));
    makeOfflineCa(caDir);
  }
  const storeOpts = { dataDir, caDir, keyType: "ec-p256" as const, clock: systemClock, logger: quiet() };
  const first: CaStore = loadCa(storeOpts) ?? await initCa(storeOpts, trustDomain);
  const tokenKey = loadOrCreateTokenKey(dataDir);
  const calls: CaCall[] = [];
  let server: GrpcServer | undefined;
  let plainPort = 0;
  let tlsPort = 0;

  const serve = async (store: CaStore) => {
    const material = store.current();
    const issuer = createIssuer(material);
    const service = createCaService({
      issuer: () => issuer,
      trustDomain: () => trustDomain,
      tokenKey: loadOrCreateTokenKey(dataDir),
      usedTokens: openUsedTokens(join(dataDir, "used-tokens.json"), () => systemClock.now()),
      clock: systemClock,
      logger: quiet(),
      metrics: createMetricsRegistry(),
      defaultTtlMs: opts.defaultTtlMs ?? 24 * 3600_000,
      maxTtlMs: opts.maxTtlMs ?? 90 * 24 * 3600_000,
      ratePerMinute: opts.ratePerMinute ?? 0,
    });
    const grpc = createGrpcServer({ logger: quiet() });
    grpc.service(IstioCertificateService, {
      createCertificate(req, ctx) {
        const peer = ctx.values.get(PEER_CERTIFICATE);
        const tls = peer !== undefined || ctx.url.startsWith("https:");
        let via: CaCall["via"] = peer?.authorized ? "mtls" : "token";
        const record = (ok: boolean) =>
          calls.push({ via, tls, ok, ttlSeconds: Number(req.validityDuration) });
        try {
          const caller = service.authenticate({
            authorization: ctx.requestHeader.get("authorization"),
            peer,
          });
          via = caller.method === "certificate" ? "mtls" : "token";
          const out = service.issue(
            { csr: req.csr, validityDuration: req.validityDuration, metadata: req.metadata },
            caller,
          );
          record(true);
          return { certChain: out.certChain };
        } catch (err) {
          record(false);
          if (err instanceof CaRefusal) throw new ConnectError(err.message, err.code);
          throw new ConnectError("internal error while issuing the certificate", Code.Internal);
        }
      },
    });
    // The TLS listener's certificate, made as the citadel module makes it.
    const now = systemClock.now();
    const { privateKey, publicKey } = generateKeyPairSync("ec", { namedCurve: "P-256" }) as {
      privateKey: KeyObject;
      publicKey: KeyObject;
    };
    const signer = createLeafSigner({ certDer: material.tlsIssuer.certDer, key: material.tlsIssuer.key });
    const leaf = signer.sign({
      spki: new Uint8Array(publicKey.export({ format: "der", type: "spki" })),
      names: [{ type: "dns", value: "localhost" }, { type: "ip", value: "127.0.0.1" }],
      notBefore: now - LEAF_BACKDATE_MS,
      notAfter: Math.min(now + 24 * 3600_000, signer.issuerNotAfter, material.notAfter),
    });
    const tlsMaterial: TlsMaterial = {
      cert: pemEncode("CERTIFICATE", leaf.der) + material.tlsIssuer.chain.join(""),
      key: privateKey.export({ format: "pem", type: "pkcs8" }) as string,
      ca: material.trustBundle + material.chain.join(""),
    };
    const p = await grpc.listen(`127.0.0.1:${plainPort}`);
    const t = await grpc.listenTls(`127.0.0.1:${tlsPort}`, tlsMaterial);
    plainPort = p.port;
    tlsPort = t.port;
    server = grpc;
  };
  await serve(first);

  const stop = async () => {
    const s = server;
    server = undefined;
    await s?.shutdown(500);
  };
  return {
    plainAddr: `127.0.0.1:${plainPort}`,
    tlsAddr: `127.0.0.1:${tlsPort}`,
    rootPem: first.current().trustBundle,
    dataDir,
    trustDomain,
    calls,
    token: (namespace, serviceAccount, t = {}) =>
      createToken(tokenKey, {
        trustDomain,
        namespace,
        serviceAccount,
        ttlMs: t.ttlMs ?? 3600_000,
        singleUse: t.singleUse,
        now: systemClock.now(),
      }),
    stop,
    async restart() {
      await stop();
      const store = loadCa(storeOpts);
      if (!store) throw new Error(`no CA in ${dataDir}`);
      await serve(store);
    },
    async close() {
      await stop();
      rmSync(root, { recursive: true, force: true });
    },
  };
}
