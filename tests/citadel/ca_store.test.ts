import { afterEach, describe, expect, test } from "bun:test";
import { createPrivateKey, X509Certificate } from "node:crypto";
import { existsSync, readdirSync, readFileSync, statSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import {
  CaLoadError,
  type CaStoreOptions,
  initCa,
  loadCa,
  loadCaDir,
  MAX_TRUSTED_ROOTS,
} from "../../mod/citadel/ca_store.ts";
import { isCaCertificate, KEY_USAGE, keyUsageOf, parseCertificate } from "../../mod/citadel/x509.ts";
import { systemClock } from "../../mod/shared/clock.ts";
import { createLogger } from "../../mod/shared/logger.ts";
import { ecKey, keyPem, makeOfflineCa, tempDir } from "./_ca.ts";

const quiet = createLogger({ write: () => {} });
const dirs: Array<{ cleanup(): void }> = [];
afterEach(() => dirs.splice(0).forEach((d) => d.cleanup()));
function dir() {
  const d = tempDir();
  dirs.push(d);
  return d.path;
}
function opts(dataDir: string, extra: Partial<CaStoreOptions> = {}): CaStoreOptions {
  return { dataDir, keyType: "ec-p256", clock: systemClock, logger: quiet, ...extra };
}
const fp = (pem: string) => new X509Certificate(pem).fingerprint256;

describe("self-signed CA in the data directory", () => {
  test("initCa() makes a 10-year CA root for the trust domain, private on disk, and loadCa() reuses it", async () => {
    const data = dir();
    expect(loadCa(opts(data))).toBeUndefined();
    const store = await initCa(opts(data), "example.org");
    const m = store.current();
    expect(m.mode).toBe("self-signed");
    expect(m.chain).toEqual([]);
    expect(m.roots).toHaveLength(1);
    const root = new X509Certificate(m.signingCertPem);
    expect(root.subject).toBe("O=example.org");
    expect(root.ca).toBe(true);
    const years = (Date.parse(root.validTo) - Date.now()) / (365 * 24 * 3600_000);
    expect(years).toBeGreaterThan(9.9);
    const fields = parseCertificate(m.signingCertDer);
    expect(isCaCertificate(fields)).toBe(true);
    expect(fields.extensions.get("2.5.29.19")!.critical).toBe(true);
    expect(keyUsageOf(fields)).toBe(KEY_USAGE.keyCertSign | KEY_USAGE.cRLSign);
    expect(fields.extensions.has("2.5.29.14")).toBe(true);
    expect(root.publicKey.asymmetricKeyDetails?.namedCurve).toBe("prime256v1");

    const caDir = join(data, "ca");
    expect(statSync(caDir).mode & 0o777).toBe(0o700);
    const [id] = readdirSync(join(caDir, "roots"));
    expect(statSync(join(caDir, "roots", id!, "ca-key.pem")).mode & 0o777).toBe(0o600);
    expect(readFileSync(join(caDir, "root-cert.pem"), "utf8")).toBe(m.trustBundle);

    const again = loadCa(opts(data))!;
    expect(fp(again.current().signingCertPem)).toBe(fp(m.signingCertPem));
    expect(again.current().signingKey.export({ format: "pem", type: "pkcs8" }))
      .toEqual(m.signingKey.export({ format: "pem", type: "pkcs8" }));
  });

  test("--ca-key-type rsa-2048 makes an RSA root", async () => {
    const store = await initCa(opts(dir(), { keyType: "rsa-2048" }), "cluster.local");
    const root = new X509Certificate(store.current().signingCertPem);
    expect(root.publicKey.asymmetricKeyDetails?.modulusLength).toBe(2048);
    expect(root.verify(root.publicKey)).toBe(true);
  });

  test("two processes initialising at once end up with one root", async () => {
    const data = dir();
    const [a, b] = await Promise.all([
      initCa(opts(data), "cluster.local"),
      initCa(opts(data), "cluster.local"),
    ]);
    expect(fp(a.current().signingCertPem)).toBe(fp(b.current().signingCertPem));
    expect(readdirSync(join(data, "ca", "roots"))).toHaveLength(1);
  });

  test("rotate() adds a trusted root that signs only after activate(); retire() then drops the old one", async () => {
    const data = dir();
    const store = await initCa(opts(data), "cluster.local");
    const first = store.current();
    const prepared = await store.rotate("cluster.local");
    expect(prepared.roots).toHaveLength(2);
    // The old root keeps signing (and signing the TLS certificate); the new one is only trusted.
    expect(fp(prepared.signingCertPem)).toBe(fp(first.signingCertPem));
    expect(fp(prepared.roots[0]!)).toBe(fp(first.signingCertPem));
    expect(Buffer.from(prepared.tlsIssuer.certDer)).toEqual(Buffer.from(first.signingCertDer));
    expect(prepared.trustBundle).toBe(prepared.roots.join(""));
    const newRoot = prepared.roots[1]!;
    expect(() => store.retire()).toThrow(/activate it before retiring/);

    const rotated = store.activate();
    expect(fp(rotated.signingCertPem)).toBe(fp(newRoot));
    expect(rotated.roots.map(fp)).toEqual([fp(newRoot), fp(first.signingCertPem)]);
    expect(Buffer.from(rotated.tlsIssuer.certDer)).toEqual(Buffer.from(first.signingCertDer));
    expect(() => store.activate()).toThrow(/rotate first/);
    // Persisted: a restart sees the same state.
    const reloaded = loadCa(opts(data))!.current();
    expect(reloaded.roots.map(fp)).toEqual(rotated.roots.map(fp));
    expect(reloaded.rootFingerprints).toEqual(rotated.rootFingerprints);

    const retired = store.retire();
    expect(retired.roots.map(fp)).toEqual([fp(newRoot)]);
    expect(Buffer.from(retired.tlsIssuer.certDer)).toEqual(Buffer.from(retired.signingCertDer));
    expect(readdirSync(join(data, "ca", "roots"))).toHaveLength(1);
    expect(loadCa(opts(data))!.current().roots).toHaveLength(1);
    expect(() => store.retire()).toThrow(/nothing to retire/);
  });

  test(`rotate() refuses to trust more than ${MAX_TRUSTED_ROOTS} roots`, async () => {
    const store = await initCa(opts(dir()), "cluster.local");
    for (let i = 1; i < MAX_TRUSTED_ROOTS; i++) await store.rotate("cluster.local");
    expect(store.current().roots).toHaveLength(MAX_TRUSTED_ROOTS);
    await expect(store.rotate("cluster.local")).rejects.toThrow(/retire the old ones/);
  });

  test("a damaged state is refused naming the file", async () => {
    const data = dir();
    await initCa(opts(data), "cluster.local");
    const [id] = readdirSync(join(data, "ca", "roots"));
    const keyFile = join(data, "ca", "roots", id!, "ca-key.pem");
    writeFileSync(keyFile, keyPem(ecKey()));
    expect(() => loadCa(opts(data))).toThrow(`${keyFile}: the key does not match`);
    writeFileSync(join(data, "ca", "state.json"), "{not json");
    expect(() => loadCa(opts(data))).toThrow(CaLoadError);
    expect(() => loadCa(opts(data))).toThrow(join(data, "ca", "state.json"));
  });
});

describe("leftovers of interrupted writes", () => {
  test("loadCa() first removes the temporary files a crash left under ca/, a copy of a root's key included", async () => {
    const data = dir();
    await initCa(opts(data), "example.org");
    const [id] = readdirSync(join(data, "ca", "roots"));
    const dead = Bun.spawnSync(["true"]).pid;
    const keyCopy = join(data, "ca", "roots", id!, `.ca-key.pem.${dead}.0a1b2c3d4e5f.tmp`);
    const state = join(data, "ca", `.state.json.${dead}.01.tmp`);
    writeFileSync(keyCopy, readFileSync(join(data, "ca", "roots", id!, "ca-key.pem")));
    writeFileSync(state, "{");
    const lines: Array<Record<string, unknown>> = [];
    const logger = createLogger({ format: "json", write: (l) => lines.push(JSON.parse(l)) });
    expect(loadCa(opts(data, { logger }))!.current().roots).toHaveLength(1);
    expect(existsSync(keyCopy)).toBe(false);
    expect(existsSync(state)).toBe(false);
    const removed = lines.filter((l) => l.msg === "removed a temporary file left by an interrupted write");
    expect(removed.map((l) => l.path).sort()).toEqual([keyCopy, state].sort());
  });
});

describe("loadCaDir()", () => {
  test("loads an intermediate under an offline root: the chain holds the intermediate, the roots the offline root", () => {
    const d = dir();
    makeOfflineCa(d);
    const m = loadCaDir(d, { now: Date.now(), logger: quiet });
    expect(m.mode).toBe("byo");
    expect(m.chain.map(fp)).toEqual([fp(readFileSync(join(d, "ca-cert.pem"), "utf8"))]);
    expect(m.roots.map(fp)).toEqual([fp(readFileSync(join(d, "root-cert.pem"), "utf8"))]);
    expect(m.notAfter).toBe(Date.parse(new X509Certificate(m.chain[0]!).validTo));
    // cert-chain.pem in root-first order works as well.
    writeFileSync(
      join(d, "cert-chain.pem"),
      readFileSync(join(d, "root-cert.pem"), "utf8") + readFileSync(join(d, "ca-cert.pem"), "utf8"),
    );
    expect(loadCaDir(d, { now: Date.now(), logger: quiet }).chain).toHaveLength(1);
  });

  test("refuses a key that does not match, naming ca-key.pem", () => {
    const d = dir();
    makeOfflineCa(d);
    writeFileSync(join(d, "ca-key.pem"), keyPem(ecKey()));
    expect(() => loadCaDir(d, { now: Date.now(), logger: quiet })).toThrow(
      `${join(d, "ca-key.pem")}: the key does not match the certificate in ${join(d, "ca-cert.pem")}`,
    );
  });

  test("refuses a broken chain, naming cert-chain.pem", () => {
    const d = dir();
    const other = dir();
    makeOfflineCa(d);
    makeOfflineCa(other);
    const makeOfflineCaRoot = (x: string) => readFileSync(join(x, "offline-root.pem"), "utf8");
    writeFileSync(join(d, "offline-root.pem"), readFileSync(join(d, "root-cert.pem")));
    writeFileSync(join(d, "root-cert.pem"), readFileSync(join(other, "root-cert.pem")));
    writeFileSync(join(d, "cert-chain.pem"), readFileSync(join(d, "ca-cert.pem")));
    expect(() => loadCaDir(d, { now: Date.now(), logger: quiet })).toThrow(
      new RegExp(`^${join(d, "cert-chain.pem")}: broken chain`),
    );
    // A chain that ends at a root missing from root-cert.pem.
    const ownRoot = makeOfflineCaRoot(d);
    writeFileSync(join(d, "cert-chain.pem"), readFileSync(join(d, "ca-cert.pem"), "utf8") + ownRoot);
    expect(() => loadCaDir(d, { now: Date.now(), logger: quiet })).toThrow(
      `${join(d, "cert-chain.pem")}: the chain ends at a root that is not in ${join(d, "root-cert.pem")}`,
    );
  });

  test("refuses a signing certificate that is not a CA, naming ca-cert.pem", () => {
    const d = dir();
    makeOfflineCa(d, { intermediateCa: false });
    expect(() => loadCaDir(d, { now: Date.now(), logger: quiet })).toThrow(
      `${join(d, "ca-cert.pem")}: the signing certificate is not a CA certificate`,
    );
  });

  test("refuses an expired intermediate and a missing file, naming them", () => {
    const d = dir();
    makeOfflineCa(d, { intermediateDays: 1 });
    const twoDaysOn = Date.now() + 2 * 24 * 3600_000;
    expect(() => loadCaDir(d, { now: twoDaysOn, logger: quiet })).toThrow(
      new RegExp(`^${join(d, "ca-cert.pem")}: the signing certificate expired at`),
    );
    const e = dir();
    makeOfflineCa(e);
    writeFileSync(join(e, "root-cert.pem"), "no certificates here\n");
    expect(() => loadCaDir(e, { now: Date.now(), logger: quiet })).toThrow(
      `${join(e, "root-cert.pem")}: no PEM CERTIFICATE found`,
    );
    expect(() => loadCaDir(join(e, "missing"), { now: Date.now(), logger: quiet })).toThrow(
      /ca-cert.pem: cannot read/,
    );
  });

  test("a data directory CA is not touched when --ca-dir is given", () => {
    const d = dir();
    const data = dir();
    makeOfflineCa(d);
    const store = loadCa(opts(data, { caDir: d }))!;
    expect(store.current().mode).toBe("byo");
    expect(existsSync(join(data, "ca"))).toBe(false);
    expect(() => store.retire()).toThrow(/--ca-dir/);
    expect(createPrivateKey(readFileSync(join(d, "ca-key.pem"))).asymmetricKeyType).toBe("ec");
  });
});
