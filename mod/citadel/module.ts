/**
 * The citadel module: the mesh's certificate authority. Loads (or on first start makes) the CA,
 * serves `istio.v1.auth.IstioCertificateService` on the shared gRPC server (15010 with a
 * bootstrap token; 15012 over TLS with a meshd-issued server certificate, where a workload
 * renews with its current certificate), offers the {@link CA} link, and rotates roots through
 * the admin server: `POST /debug/ca/rotate`, `/debug/ca/activate` and `/debug/ca/retire` with the
 * admin token (what `meshd ca` does).
 *
 * With `--store` the CA and the token key live in etcd, sealed under `--ca-kek-file`
 * (ca_shared.ts, token_shared.ts): loaded (or created) at start, rotation steps written there by
 * whichever replica takes them, and followed by every replica from its watch.
 *
 * Root rotation, self-signed mode, in three steps so that no mTLS call fails:
 * 1. `rotate` makes a new root and adds it to the trust bundle (the last element of every
 *    answer's cert_chain, and the `ca` of the TLS listener) while the old root keeps signing.
 *    Every workload learns the new root at its next renewal, before any leaf of it exists.
 * 2. Once every workload has renewed, `activate` makes the new root sign; leaves are re-issued
 *    under it as workloads renew, and both roots verify everywhere meanwhile. The TLS listener's
 *    own certificate stays signed by the old root until `retire`.
 * 3. Once every leaf has been re-issued, `retire` drops the old roots (and their keys): the
 *    bundle, the listener's trust and its certificate then carry only the new root.
 *
 * @module
 */
import { IstioCertificateService } from "#gen/istio/v1/auth/ca_pb.ts";
import { Code, ConnectError } from "@connectrpc/connect";
import { createHash, generateKeyPairSync, type KeyObject, X509Certificate } from "node:crypto";
import { join } from "node:path";
import { Gauge } from "prom-client";
import type { SettingSpec } from "../cli/setting.ts";
import { defaultMeshConfig, mergeMeshConfig } from "../api/kinds/mesh_config.ts";
import { CONFIG_READY, CONFIG_STORE } from "../galley/mod.ts";
import { GRPC_SERVER, PEER_CERTIFICATE, type TlsMaterial } from "../grpc/server.ts";
import type { ModuleDefinition } from "../runtime/module.ts";
import type { Timer } from "../shared/clock.ts";
import { errorMessage } from "../shared/errors.ts";
import { CA_KEY_TYPES, type CaKeyType, type CaMaterial, type CaStore, initCa, loadCa } from "./ca_store.ts";
import { ensurePrivateDir, writeFileAtomic } from "../shared/state_files.ts";
import { CA, type CertificateAuthority } from "./links.ts";
import { pemEncode } from "./pem.ts";
import { CERT_LOG_SIZE, createCertLog } from "./cert_log.ts";
import { CaRefusal, createCaService, createIssuer, type Issuer, LEAF_BACKDATE_MS } from "./service.ts";
import { checkIpList, DEFAULT_SERVER_DNS_NAMES, SERVER_CERT_FILE, serverCertNames } from "./server_names.ts";
import { createLeafSigner } from "./sign.ts";
import { trustDomainProblem } from "./spiffe.ts";
import { loadOrCreateTokenKey, openUsedTokens, type TokenSigningKey } from "./token.ts";
import { STORE } from "../store/mod.ts";
import { readKekFile } from "./kek.ts";
import { openSharedCa, type SharedCa } from "./ca_shared.ts";
import { loadOrCreateSharedTokenKey, sharedLedger } from "./token_shared.ts";

/** The file under `--data-dir` where the daemon records its trust domain (read by `meshd token`). */
export const TRUST_DOMAIN_FILE = "trust-domain";

const SETTINGS: readonly SettingSpec[] = [
  {
    name: "trust-domain",
    kind: { type: "string" },
    help:
      "SPIFFE trust domain of workload identities; wins over MeshConfig's trustDomain (default cluster.local)",
  },
  {
    name: "grpc-tls-addr",
    kind: { type: "addr" },
    default: "0.0.0.0:15012",
    help: "gRPC TLS address (meshd-issued server certificate; workloads renew with their client certificate)",
  },
  {
    name: "ca-dir",
    kind: { type: "path" },
    help:
      "bring-your-own CA: directory with ca-cert.pem, ca-key.pem, cert-chain.pem and root-cert.pem (an intermediate under an offline root)",
  },
  {
    name: "ca-kek-file",
    kind: { type: "path" },
    help:
      "with --store: the key-encryption key (from meshd ca kek create) that seals the CA and token keys kept in etcd",
  },
  {
    name: "ca-key-type",
    kind: { type: "enum", values: CA_KEY_TYPES },
    default: "ec-p256",
    help: "key type of the self-signed root made on first start and on rotation (kept in --data-dir/ca)",
  },
  {
    name: "ca-server-dns-names",
    kind: { type: "list" },
    default: DEFAULT_SERVER_DNS_NAMES,
    help:
      "DNS names in the certificate of --grpc-tls-addr (127.0.0.1, ::1 and the host's non-loopback addresses are always in it)",
  },
  {
    name: "ca-server-ips",
    kind: { type: "list" },
    default: [],
    help:
      "more IP addresses in the certificate of --grpc-tls-addr, e.g. the address VMs reach it at through NAT or a load balancer",
  },
  {
    name: "workload-cert-ttl",
    kind: { type: "duration", min: 60_000 },
    default: 24 * 3600_000,
    help: "lifetime of workload certificates when the request asks for none",
  },
  {
    name: "max-workload-cert-ttl",
    kind: { type: "duration", min: 60_000 },
    default: 90 * 24 * 3600_000,
    help: "longest workload certificate lifetime; longer requests are capped to it",
  },
  {
    name: "csr-rate-per-identity",
    kind: { type: "int", min: 0 },
    default: 10,
    help: "certificate requests per identity per minute, in bursts of as many (0 disables)",
  },
];

/** How long start waits for galley's config before making a root with the default trust domain. */
const CONFIG_WAIT_MS = 10_000;

function formatAddr(a: { host: string; port: number }): string {
  return `${a.host.includes(":") ? `[${a.host}]` : a.host}:${a.port}`;
}

function describeCert(pem: string) {
  const x = new X509Certificate(pem);
  return {
    subject: x.subject.replaceAll("\n", ", "),
    serial: x.serialNumber.toLowerCase(),
    notAfter: new Date(x.validTo).toISOString(),
    fingerprint: createHash("sha256").update(x.raw).digest("hex"),
  };
}

/** The citadel module definition. */
export const citadelModule: ModuleDefinition = {
  name: "citadel",
  summary: "certificate authority: SPIFFE workload certificates, bootstrap tokens, root rotation",
  settings: SETTINGS,
  create(ctx) {
    const s = ctx.settings;
    const log = ctx.logger;
    const dataDir = s.string("data-dir");
    const flagTrustDomain = s.optionalString("trust-domain");
    const tdProblem = flagTrustDomain === undefined ? undefined : trustDomainProblem(flagTrustDomain);
    if (tdProblem) throw new Error(`--trust-domain: ${tdProblem}`);
    const defaultTtlMs = s.number("workload-cert-ttl");
    const maxTtlMs = s.number("max-workload-cert-ttl");
    if (defaultTtlMs > maxTtlMs) {
      throw new Error("--workload-cert-ttl is longer than --max-workload-cert-ttl");
    }
    const storeOpts = {
      dataDir,
      caDir: s.optionalString("ca-dir"),
      keyType: s.string("ca-key-type") as CaKeyType,
      clock: ctx.clock,
      logger: log,
    };
    // With --store the CA and the token key live in etcd, sealed under the KEK, and are loaded at
    // start; without it an existing CA is checked now, before any port opens, and a new root is
    // made at start, once the trust domain is known.
    const etcd = ctx.links.find(STORE);
    const kekFile = s.optionalString("ca-kek-file");
    if (etcd && kekFile === undefined) {
      throw new Error(
        "--ca-kek-file is required with --store: the CA's key is kept in etcd sealed under it (make one with meshd ca kek create --out FILE)",
      );
    }
    if (!etcd && kekFile !== undefined) throw new Error("--ca-kek-file needs --store etcd://HOST:PORT");
    const kek = kekFile === undefined ? undefined : readKekFile(kekFile, (msg) => log.warn(msg));
    let store: CaStore | SharedCa | undefined = etcd ? undefined : loadCa(storeOpts);
    let shared: SharedCa | undefined;
    let tokenKey: TokenSigningKey | undefined;
    let usedTokens;
    try {
      ensurePrivateDir(dataDir);
      if (!etcd) tokenKey = loadOrCreateTokenKey(dataDir, (msg) => log.warn(msg));
      usedTokens = openUsedTokens(join(dataDir, "used-tokens.json"), () => ctx.clock.now());
    } catch (err) {
      throw new Error(`--data-dir ${dataDir}: ${errorMessage(err)}`);
    }

    const configStore = ctx.links.find(CONFIG_STORE);
    const configReady = ctx.links.find(CONFIG_READY);
    const meshTrustDomain = () => {
      const list = configStore?.snapshot().list("config.meshd.io", "MeshConfig") ?? [];
      return list.length > 0 ? mergeMeshConfig(list[0]).trustDomain : defaultMeshConfig.trustDomain;
    };
    /** Unknown (undefined) only while galley's config is still loading. */
    let trustDomain: string | undefined = flagTrustDomain ??
      (configReady ? undefined : defaultMeshConfig.trustDomain);
    let issuer: Issuer | undefined;
    const listeners = new Set<() => void>();
    const notify = () => {
      for (const fn of listeners) {
        try {
          fn();
        } catch (err) {
          log.error("a CA change listener failed", { err: errorMessage(err) });
        }
      }
    };
    const recordTrustDomain = () => {
      if (trustDomain === undefined) return;
      try {
        writeFileAtomic(join(dataDir, TRUST_DOMAIN_FILE), trustDomain + "\n", 0o644);
      } catch (err) {
        log.warn("cannot record the trust domain in the data directory", { err: errorMessage(err) });
      }
    };
    const refreshTrustDomain = () => {
      if (flagTrustDomain !== undefined || !configReady?.now()) return;
      const td = meshTrustDomain();
      if (td === trustDomain) return;
      const previous = trustDomain;
      trustDomain = td;
      log.info("trust domain from MeshConfig", { trustDomain: td, ...(previous ? { previous } : {}) });
      recordTrustDomain();
      notify();
    };
    const unsubscribe = configStore?.subscribe(refreshTrustDomain);
    configReady?.promise.then(refreshTrustDomain);

    const rootExpiry = new Gauge({
      name: "citadel_root_cert_expiry_timestamp",
      help: "When the signing root (or --ca-dir signing certificate) expires, Unix seconds",
      registers: [ctx.metrics],
    });
    /** Per root fingerprint: the latest notAfter of a leaf it issued (for retire's warning). */
    const leavesValidUntil = new Map<string, number>();
    const certLog = createCertLog();
    const service = createCaService({
      certLog,
      issuer: () => issuer,
      trustDomain: () => trustDomain,
      tokenKey: () => tokenKey!,
      usedTokens,
      ...(etcd ? { sharedLedger: sharedLedger(etcd, ctx.clock) } : {}),
      clock: ctx.clock,
      logger: log,
      metrics: ctx.metrics,
      defaultTtlMs,
      maxTtlMs,
      ratePerMinute: s.number("csr-rate-per-identity"),
      onIssued(cert, iss) {
        const fp = iss.material.rootFingerprints[0]!;
        leavesValidUntil.set(fp, Math.max(leavesValidUntil.get(fp) ?? 0, cert.notAfter));
      },
    });
    ctx.grpc.service(IstioCertificateService, {
      async createCertificate(req, hctx) {
        try {
          const out = await service.createCertificateAsync(
            { csr: req.csr, validityDuration: req.validityDuration, metadata: req.metadata },
            {
              authorization: hctx.requestHeader.get("authorization"),
              peer: hctx.values.get(PEER_CERTIFICATE),
            },
          );
          return { certChain: out.certChain };
        } catch (err) {
          if (err instanceof CaRefusal) throw new ConnectError(err.message, err.code);
          log.error("certificate request failed", { err: errorMessage(err) });
          throw new ConnectError("internal error while issuing the certificate", Code.Internal);
        }
      },
    });

    const ca: CertificateAuthority = {
      trustBundle: () => issuer?.material.trustBundle ?? "",
      trustDomain: () => trustDomain ?? flagTrustDomain ?? meshTrustDomain(),
      onChange(fn) {
        const wrapped = () => fn();
        listeners.add(wrapped);
        return () => listeners.delete(wrapped);
      },
    };
    ctx.links.offer(CA, ca);

    // The TLS listener: a server certificate from the CA, renewed at half its life and whenever
    // the roots change.
    const grpcServer = ctx.links.find(GRPC_SERVER);
    const dnsNames = s.list("ca-server-dns-names");
    const serverIps = checkIpList(s.list("ca-server-ips"), "--ca-server-ips");
    let tlsListening = false;
    let renewTimer: Timer | undefined;
    let stopped = false;
    const tlsMaterial = (
      m: CaMaterial,
    ): { tls: TlsMaterial; lifetimeMs: number; leafPem: string; names: string[] } => {
      const now = ctx.clock.now();
      const { privateKey, publicKey } = generateKeyPairSync("ec", { namedCurve: "P-256" }) as {
        privateKey: KeyObject;
        publicKey: KeyObject;
      };
      const signer = createLeafSigner({ certDer: m.tlsIssuer.certDer, key: m.tlsIssuer.key });
      const names = serverCertNames({ dnsNames, ips: serverIps });
      const notAfter = Math.min(now + defaultTtlMs, signer.issuerNotAfter, m.notAfter);
      const leaf = signer.sign({
        spki: new Uint8Array(publicKey.export({ format: "der", type: "spki" })),
        names,
        notBefore: now - LEAF_BACKDATE_MS,
        notAfter,
      });
      const leafPem = pemEncode("CERTIFICATE", leaf.der);
      return {
        leafPem,
        names: names.map((n) => n.value),
        tls: {
          cert: leafPem + m.tlsIssuer.chain.join(""),
          key: privateKey.export({ format: "pem", type: "pkcs8" }) as string,
          ca: m.trustBundle + m.chain.join(""),
        },
        lifetimeMs: notAfter - now,
      };
    };
    const scheduleRenewal = (lifetimeMs: number) => {
      renewTimer?.cancel();
      if (stopped) return;
      renewTimer = ctx.clock.setTimer(Math.max(60_000, lifetimeMs / 2), () => {
        try {
          refreshTls();
        } catch (err) {
          log.error("cannot renew the TLS certificate", { err: errorMessage(err) });
          scheduleRenewal(120_000);
        }
      });
    };
    /** Keeps the served certificate in the data dir, where `meshd vm bundle` reads its names. */
    const recordServerCert = (leafPem: string) => {
      try {
        writeFileAtomic(join(dataDir, SERVER_CERT_FILE), leafPem, 0o644);
      } catch (err) {
        log.warn("cannot record the TLS certificate in the data directory", { err: errorMessage(err) });
      }
    };
    const refreshTls = () => {
      if (!issuer || !grpcServer || !tlsListening) return;
      const t = tlsMaterial(issuer.material);
      grpcServer.updateTls(t.tls);
      recordServerCert(t.leafPem);
      scheduleRenewal(t.lifetimeMs);
      log.debug("TLS certificate renewed");
    };
    const install = (m: CaMaterial) => {
      issuer = createIssuer(m);
      rootExpiry.set(Math.floor(Date.parse(new X509Certificate(m.signingCertPem).validTo) / 1000));
    };

    const status = () => {
      const m = issuer?.material;
      if (!m) return { ready: false };
      return {
        mode: m.mode,
        trustDomain: trustDomain ?? null,
        signing: describeCert(m.signingCertPem),
        chain: m.chain.map(describeCert),
        roots: m.roots.map((pem, i) => ({
          ...describeCert(pem),
          signing: i === 0,
          leavesValidUntil: leavesValidUntil.has(m.rootFingerprints[i]!)
            ? new Date(leavesValidUntil.get(m.rootFingerprints[i]!)!).toISOString()
            : null,
        })),
      };
    };
    let changing = false;
    const change = async (what: "rotate" | "activate" | "retire"): Promise<Response> => {
      if (!store || !issuer) return Response.json({ error: "the CA has not started yet" }, { status: 503 });
      if (changing) return Response.json({ error: "a root change is in progress" }, { status: 409 });
      changing = true;
      try {
        const before = issuer.material;
        const m = what === "rotate"
          ? await store.rotate(ca.trustDomain())
          : what === "activate"
          ? await store.activate()
          : await store.retire();
        install(m);
        try {
          refreshTls();
        } catch (err) {
          log.error("cannot renew the TLS certificate after a root change", { err: errorMessage(err) });
        }
        const oldLeaves = before.rootFingerprints
          .filter((fp) => !m.rootFingerprints.includes(fp))
          .map((fp) => leavesValidUntil.get(fp) ?? 0)
          .filter((t) => t > ctx.clock.now());
        if (what === "retire" && oldLeaves.length > 0) {
          log.warn("retired a root whose leaves are still valid; their holders must renew", {
            validUntil: new Date(Math.max(...oldLeaves)).toISOString(),
          });
        }
        log.info(
          what === "rotate"
            ? "new CA root prepared (trusted, not signing yet)"
            : what === "activate"
            ? "new CA root activated (signing)"
            : "old CA roots retired",
          {
            signing: describeCert(m.signingCertPem).fingerprint,
            roots: m.roots.length,
          },
        );
        notify();
        return Response.json(status());
      } catch (err) {
        log.warn(`CA ${what} refused`, { err: errorMessage(err) });
        return Response.json({ error: errorMessage(err) }, { status: 409 });
      } finally {
        changing = false;
      }
    };
    ctx.debug({
      path: "certz",
      description:
        `the last ${CERT_LOG_SIZE} workload certificates issued and requests refused, newest first`,
      handle: () => Response.json(certLog.view()),
    });
    ctx.debug({
      path: "ca",
      description:
        "the CA: mode, trust domain, signing certificate, trusted roots (POST ca/rotate, ca/activate, ca/retire)",
      handle: () => Response.json(status()),
    });
    ctx.debug({
      path: "ca/rotate",
      description: "POST: prepare a new root: trusted at once, signing only after ca/activate",
      mutates: true,
      handle: () => change("rotate"),
    });
    ctx.debug({
      path: "ca/activate",
      description: "POST: the prepared root starts signing (once every workload trusts it)",
      mutates: true,
      handle: () => change("activate"),
    });
    ctx.debug({
      path: "ca/retire",
      description: "POST: stop trusting every root but the signing one (after leaves were re-issued)",
      mutates: true,
      handle: () => change("retire"),
    });

    const waitForConfig = async () => {
      if (!configReady || configReady.now()) return;
      let timer: Timer | undefined;
      await Promise.race([
        configReady.promise,
        new Promise<void>((resolve) => (timer = ctx.clock.setTimer(CONFIG_WAIT_MS, resolve))),
      ]);
      timer?.cancel();
      if (!configReady.now()) {
        log.warn("mesh config not loaded yet; the new root is made for the default trust domain");
      }
    };

    return {
      async start() {
        if (etcd) {
          shared = await openSharedCa({ ...storeOpts, store: etcd, kek: kek! }, async () => {
            if (flagTrustDomain === undefined) await waitForConfig();
            refreshTrustDomain();
            return trustDomain ?? ca.trustDomain();
          });
          tokenKey = await loadOrCreateSharedTokenKey(etcd, kek!);
          store = shared;
          log.info("loaded the CA from etcd", { mode: shared.current().mode, revision: shared.revision() });
          shared.follow((m) => {
            install(m);
            try {
              refreshTls();
            } catch (err) {
              log.error("cannot renew the TLS certificate after a root change", { err: errorMessage(err) });
            }
            notify();
          });
        } else if (!store) {
          if (flagTrustDomain === undefined) await waitForConfig();
          refreshTrustDomain();
          store = await initCa(storeOpts, trustDomain ?? ca.trustDomain());
        } else {
          const m = store.current();
          log.info("loaded the CA", {
            mode: m.mode,
            roots: m.roots.length,
            signing: describeCert(m.signingCertPem).subject,
          });
        }
        install(store.current());
        recordTrustDomain();
        notify();
        if (!grpcServer) {
          log.warn("no shared gRPC server in this process; the TLS listener is not opened");
          return;
        }
        const t = tlsMaterial(store.current());
        const addr = await grpcServer.listenTls(s.string("grpc-tls-addr"), t.tls);
        tlsListening = true;
        recordServerCert(t.leafPem);
        scheduleRenewal(t.lifetimeMs);
        log.info("citadel TLS listening", { addr: formatAddr(addr), names: t.names });
      },
      ready: () => issuer !== undefined && trustDomain !== undefined && (tlsListening || !grpcServer),
      stop() {
        stopped = true;
        shared?.close();
        renewTimer?.cancel();
        unsubscribe?.();
        listeners.clear();
        return Promise.resolve();
      },
    };
  },
};
