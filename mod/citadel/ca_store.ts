/**
 * The CA's keys and certificates: a self-signed root made on first start and kept under
 * `<data-dir>/ca/`, or a bring-your-own intermediate from `--ca-dir`; checked at start
 * (key matches certificate, chain reaches a trusted root, CA flags, validity), and rotated.
 *
 * Self-signed layout (directories 0700, keys 0600):
 *
 * ```
 * <data-dir>/ca/state.json            {"signing": ID, "trusted": [ID, ...]}  newest first
 * <data-dir>/ca/roots/ID/ca-cert.pem  one root
 * <data-dir>/ca/roots/ID/ca-key.pem   its key
 * <data-dir>/ca/root-cert.pem         the trust bundle (every trusted root), for operators
 * ```
 *
 * A rotation writes the new root's directory first and then replaces state.json in one rename,
 * so a crash leaves either the old state or the new one, never a mixture.
 *
 * @module
 */
import { createHash, createPrivateKey, type KeyObject, X509Certificate } from "node:crypto";
import { existsSync, readFileSync, rmSync } from "node:fs";
import { join } from "node:path";
import type { Clock } from "../shared/clock.ts";
import { errorMessage } from "../shared/errors.ts";
import type { Logger } from "../shared/logger.ts";
import {
  createFileExclusive,
  ensurePrivateDir,
  isGroupOrWorldReadable,
  removeLeftoverTempFiles,
  writeFileAtomic,
} from "../shared/state_files.ts";
import { pemDecodeAll, pemEncode } from "./pem.ts";
import { isCaCertificate, KEY_USAGE, keyUsageOf, parseCertificate, signatureSchemeFor } from "./x509.ts";

/** Key types of a root meshd makes. */
export const CA_KEY_TYPES = ["ec-p256", "rsa-2048", "rsa-4096"] as const;
/** One of CA_KEY_TYPES. */
export type CaKeyType = (typeof CA_KEY_TYPES)[number];

/** How long a root meshd makes is valid. */
export const ROOT_VALIDITY_MS = 10 * 365 * 24 * 3600_000;

/** At most this many roots are trusted at once (the signing root and the ones it replaced). */
export const MAX_TRUSTED_ROOTS = 3;

/** The CA's material at one moment. Immutable; a rotation produces a new one. */
export interface CaMaterial {
  /** Self-signed root under `--data-dir`, or an intermediate (or root) from `--ca-dir`. */
  readonly mode: "self-signed" | "byo";
  readonly signingCertPem: string;
  readonly signingCertDer: Uint8Array;
  readonly signingKey: KeyObject;
  /**
   * The certificates between a leaf and the roots, PEM, issuer order: the signing certificate
   * when it is not itself a root, then its issuers up to (not including) the root. Empty for a
   * self-signed CA.
   */
  readonly chain: readonly string[];
  /** Every trusted root, PEM: the root the signing chain ends at first, the oldest last. */
  readonly roots: readonly string[];
  /** `roots` concatenated: what agents write to root-cert.pem. */
  readonly trustBundle: string;
  /** The earliest expiry of the signing certificate and its chain; leaves must not outlive it. */
  readonly notAfter: number;
  /** SHA-256 fingerprints (hex) of the roots, in `roots` order. */
  readonly rootFingerprints: readonly string[];
  /**
   * What signs the certificate of the TLS listener: during a self-signed rotation the oldest
   * trusted root (every agent trusts it, also those that have not renewed since the rotation),
   * otherwise the signing certificate. `chain` sits between its leaves and the roots.
   */
  readonly tlsIssuer: {
    readonly certDer: Uint8Array;
    readonly key: KeyObject;
    readonly chain: readonly string[];
  };
}

/** Inputs to the CA loaders. */
export interface CaStoreOptions {
  /** `--data-dir`; the self-signed CA lives in its `ca/` directory. */
  readonly dataDir: string;
  /** `--ca-dir`: bring-your-own CA files; when set the data directory holds no CA. */
  readonly caDir?: string;
  /** Key type of roots meshd makes. */
  readonly keyType: CaKeyType;
  readonly clock: Clock;
  readonly logger: Logger;
}

/** The CA's keys and certificates, and the operations that change them. */
export interface CaStore {
  /** The material in force. */
  current(): CaMaterial;
  /**
   * Phase 1 of a rotation: makes a new root and adds it to the trust bundle, while the current
   * root keeps signing, so every workload learns to trust the new root at its next renewal
   * before any leaf of it exists. Self-signed mode only (a `--ca-dir` CA is rotated by
   * replacing its files). Persists before it resolves.
   */
  rotate(trustDomain: string): Promise<CaMaterial>;
  /**
   * Phase 2: the newest trusted root becomes the signing root (leaves are re-issued under it
   * as workloads renew); the previous one stays trusted. Throws when no root was prepared.
   */
  activate(): CaMaterial;
  /**
   * Phase 3: stops trusting every root but the signing one, and deletes their keys. Throws while
   * a prepared root is not yet active. Self-signed only.
   */
  retire(): CaMaterial;
}

/** Thrown when the CA's files are unusable; the message names the file. */
export class CaLoadError extends Error {
  override readonly name = "CaLoadError";
}

/** Which self-signed roots are trusted (IDs, newest first) and which one signs. */
export interface RootState {
  readonly signing: string;
  readonly trusted: readonly string[];
}
type State = RootState;

interface ParsedCert {
  readonly pem: string;
  readonly der: Uint8Array;
  readonly x509: X509Certificate;
  readonly notBefore: number;
  readonly notAfter: number;
  readonly fingerprint: string;
}

function caDirOf(dataDir: string): string {
  return join(dataDir, "ca");
}

function readText(file: string): string {
  try {
    return readFileSync(file, "utf8");
  } catch (err) {
    throw new CaLoadError(`${file}: cannot read: ${errorMessage(err)}`);
  }
}

function parseCerts(file: string, text: string): ParsedCert[] {
  let blocks;
  try {
    blocks = pemDecodeAll(text);
  } catch (err) {
    throw new CaLoadError(`${file}: ${errorMessage(err)}`);
  }
  const certs = blocks.filter((b) => b.label === "CERTIFICATE");
  if (certs.length === 0) throw new CaLoadError(`${file}: no PEM CERTIFICATE found`);
  return certs.map((b, i) => {
    try {
      const x509 = new X509Certificate(b.der);
      const f = parseCertificate(b.der);
      return {
        pem: pemEncode("CERTIFICATE", b.der),
        der: b.der,
        x509,
        notBefore: f.notBefore,
        notAfter: f.notAfter,
        fingerprint: createHash("sha256").update(b.der).digest("hex"),
      };
    } catch (err) {
      throw new CaLoadError(`${file}: certificate ${i + 1} cannot be parsed: ${errorMessage(err)}`);
    }
  });
}

/** Parses a CA's PEM private key; throws CaLoadError naming `where`. */
export function parseCaKey(text: string, where: string): KeyObject {
  if (text.includes("ENCRYPTED")) throw new CaLoadError(`${where}: encrypted private keys are not supported`);
  let key: KeyObject;
  try {
    key = createPrivateKey(text);
  } catch (err) {
    throw new CaLoadError(`${where}: not a PEM private key: ${errorMessage(err)}`);
  }
  try {
    signatureSchemeFor(key);
  } catch (err) {
    throw new CaLoadError(`${where}: ${errorMessage(err)}`);
  }
  return key;
}

function readKey(file: string, logger: Logger): KeyObject {
  const key = parseCaKey(readText(file), file);
  if (isGroupOrWorldReadable(file)) {
    logger.warn("CA private key is readable by group or others; chmod 600 it", { file });
  }
  return key;
}

/** Checks that `c` may sign certificates now: a CA with keyCertSign, within its validity. */
function checkCaCert(file: string, c: ParsedCert, now: number, what: string): void {
  const f = parseCertificate(c.der);
  if (!isCaCertificate(f)) {
    throw new CaLoadError(`${file}: ${what} is not a CA certificate (basicConstraints CA:TRUE)`);
  }
  const ku = keyUsageOf(f);
  if (ku !== undefined && (ku & KEY_USAGE.keyCertSign) === 0) {
    throw new CaLoadError(`${file}: ${what} lacks the keyCertSign key usage`);
  }
  if (c.notAfter <= now) {
    throw new CaLoadError(`${file}: ${what} expired at ${new Date(c.notAfter).toISOString()}`);
  }
  if (c.notBefore > now + 5 * 60_000) {
    throw new CaLoadError(`${file}: ${what} is not valid until ${new Date(c.notBefore).toISOString()}`);
  }
}

function isSelfSigned(c: ParsedCert): boolean {
  return c.x509.checkIssued(c.x509) && c.x509.verify(c.x509.publicKey);
}

function issuedBy(child: ParsedCert, parent: ParsedCert): boolean {
  return child.x509.checkIssued(parent.x509) && child.x509.verify(parent.x509.publicKey);
}

function material(
  mode: CaMaterial["mode"],
  signing: ParsedCert,
  key: KeyObject,
  chain: readonly ParsedCert[],
  roots: readonly ParsedCert[],
  tlsIssuer?: CaMaterial["tlsIssuer"],
): CaMaterial {
  return {
    tlsIssuer: tlsIssuer ?? { certDer: signing.der, key, chain: chain.map((c) => c.pem) },
    mode,
    signingCertPem: signing.pem,
    signingCertDer: signing.der,
    signingKey: key,
    chain: chain.map((c) => c.pem),
    roots: roots.map((r) => r.pem),
    trustBundle: roots.map((r) => r.pem).join(""),
    notAfter: Math.min(signing.notAfter, ...chain.map((c) => c.notAfter)),
    rootFingerprints: roots.map((r) => r.fingerprint),
  };
}

/**
 * Loads a bring-your-own CA from `dir`: ca-cert.pem (the signing certificate), ca-key.pem (its
 * key), cert-chain.pem (the signing certificate's chain towards the root, in either order; the
 * root may be included) and root-cert.pem (the trusted roots). Throws CaLoadError naming the
 * file for a key that does not match, a chain that does not reach a root in root-cert.pem, a
 * certificate that is not a CA, or one outside its validity.
 */
export function loadCaDir(dir: string, opts: { now: number; logger: Logger }): CaMaterial {
  const f = (name: string) => join(dir, name);
  const signing = parseCerts(f("ca-cert.pem"), readText(f("ca-cert.pem")));
  if (signing.length !== 1) {
    throw new CaLoadError(`${f("ca-cert.pem")}: want one certificate, found ${signing.length}`);
  }
  const cert = signing[0]!;
  checkCaCert(f("ca-cert.pem"), cert, opts.now, "the signing certificate");
  const key = readKey(f("ca-key.pem"), opts.logger);
  if (!cert.x509.checkPrivateKey(key)) {
    throw new CaLoadError(
      `${f("ca-key.pem")}: the key does not match the certificate in ${f("ca-cert.pem")}`,
    );
  }
  const roots = parseCerts(f("root-cert.pem"), readText(f("root-cert.pem")));
  roots.forEach((r, i) => {
    if (!isSelfSigned(r)) {
      throw new CaLoadError(`${f("root-cert.pem")}: certificate ${i + 1} is not a self-signed root`);
    }
    checkCaCert(f("root-cert.pem"), r, opts.now, `root ${i + 1} (${r.x509.subject.replaceAll("\n", ", ")})`);
  });
  const pool = parseCerts(f("cert-chain.pem"), readText(f("cert-chain.pem")));
  const chain: ParsedCert[] = [];
  let current = cert;
  let root: ParsedCert | undefined = roots.find((r) => r.fingerprint === cert.fingerprint);
  if (!root && isSelfSigned(cert)) {
    throw new CaLoadError(
      `${f("ca-cert.pem")}: a self-signed signing certificate must also be in ${f("root-cert.pem")}`,
    );
  }
  if (!root) chain.push(cert);
  for (let depth = 0; !root; depth++) {
    if (depth > 8) throw new CaLoadError(`${f("cert-chain.pem")}: the chain is longer than 8 certificates`);
    root = roots.find((r) => issuedBy(current, r));
    if (root) break;
    const next = pool.find((c) => c.fingerprint !== current.fingerprint && issuedBy(current, c));
    const name = current === cert
      ? "ca-cert.pem"
      : `certificate ${current.x509.subject.replaceAll("\n", ", ")}`;
    if (!next) {
      throw new CaLoadError(
        `${f("cert-chain.pem")}: broken chain: nothing in cert-chain.pem or root-cert.pem issued ${name} ` +
          `(issuer ${current.x509.issuer.replaceAll("\n", ", ")})`,
      );
    }
    if (isSelfSigned(next)) {
      throw new CaLoadError(
        `${f("cert-chain.pem")}: the chain ends at a root that is not in ${f("root-cert.pem")}`,
      );
    }
    checkCaCert(
      f("cert-chain.pem"),
      next,
      opts.now,
      `intermediate ${next.x509.subject.replaceAll("\n", ", ")}`,
    );
    chain.push(next);
    current = next;
  }
  const ordered = [root, ...roots.filter((r) => r !== root)];
  return material("byo", cert, key, chain, ordered);
}

function readState(dir: string): State {
  const file = join(dir, "state.json");
  let state: unknown;
  try {
    state = JSON.parse(readText(file));
  } catch (err) {
    if (err instanceof CaLoadError) throw err;
    throw new CaLoadError(`${file}: not JSON: ${errorMessage(err)}`);
  }
  const s = state as Partial<State>;
  const idOk = (x: unknown) => typeof x === "string" && /^[A-Za-z0-9-]{1,64}$/.test(x);
  if (
    !idOk(s.signing) || !Array.isArray(s.trusted) || !s.trusted.every(idOk) || !s.trusted.includes(s.signing!)
  ) {
    throw new CaLoadError(`${file}: want {"signing": ID, "trusted": [ID, ...]} with the signing ID trusted`);
  }
  return { signing: s.signing!, trusted: s.trusted };
}

/** Where the roots of a self-signed CA come from: files in the data directory, or etcd. */
export interface RootSource {
  /** The root's certificate (PEM) and where it is, for errors. */
  cert(id: string): { readonly text: string; readonly where: string };
  /** The root's private key and where it is; throws CaLoadError. */
  key(id: string): { readonly key: KeyObject; readonly where: string };
}

function fileRoots(dir: string, logger: Logger): RootSource {
  return {
    cert(id) {
      const where = join(dir, "roots", id, "ca-cert.pem");
      return { text: readText(where), where };
    },
    key(id) {
      const where = join(dir, "roots", id, "ca-key.pem");
      return { key: readKey(where, logger), where };
    },
  };
}

function loadSelfSigned(opts: CaStoreOptions, state: State): CaMaterial {
  return selfSignedMaterial(state, fileRoots(caDirOf(opts.dataDir), opts.logger), opts);
}

/**
 * The material of a self-signed CA in `state`, its roots read from `source`. Throws CaLoadError
 * naming where a root is unusable (not self-signed, not a CA, expired, key not matching).
 */
export function selfSignedMaterial(
  state: RootState,
  source: RootSource,
  opts: { readonly clock: Clock; readonly logger: Logger },
): CaMaterial {
  const now = opts.clock.now();
  const roots: ParsedCert[] = [];
  const fingerprints = new Map<string, string>();
  let signing: ParsedCert | undefined;
  for (const id of state.trusted) {
    const { text, where: certFile } = source.cert(id);
    const certs = parseCerts(certFile, text);
    if (certs.length !== 1) throw new CaLoadError(`${certFile}: want one certificate, found ${certs.length}`);
    const c = certs[0]!;
    if (!isSelfSigned(c)) throw new CaLoadError(`${certFile}: not a self-signed root`);
    if (id !== state.signing && c.notAfter <= now) {
      opts.logger.warn("an old trusted root has expired; it is no longer trusted", { file: certFile });
      continue;
    }
    checkCaCert(certFile, c, now, "the root");
    roots.push(c);
    fingerprints.set(id, c.fingerprint);
    if (id === state.signing) signing = c;
  }
  const { key, where: keyFile } = source.key(state.signing);
  if (!signing!.x509.checkPrivateKey(key)) {
    throw new CaLoadError(
      `${keyFile}: the key does not match the certificate in ${source.cert(state.signing).where}`,
    );
  }
  const ordered = [signing!, ...roots.filter((r) => r !== signing)];
  let tlsIssuer: CaMaterial["tlsIssuer"] | undefined;
  for (const id of [...state.trusted].reverse()) {
    const root = ordered.find((r) => r.fingerprint === fingerprints.get(id));
    if (id === state.signing) break;
    if (!root) continue;
    try {
      const oldKey = source.key(id).key;
      if (root.x509.checkPrivateKey(oldKey)) {
        tlsIssuer = { certDer: root.der, key: oldKey, chain: [] };
        break;
      }
    } catch (err) {
      opts.logger.warn("cannot use an old root's key for the TLS certificate", {
        root: id,
        err: errorMessage(err),
      });
    }
  }
  return material("self-signed", signing!, key, [], ordered, tlsIssuer);
}

/**
 * Makes a self-signed root (subject O=`trustDomain`, valid 10 years, basicConstraints CA,
 * keyCertSign and cRLSign) in memory, with its ID (time and certificate hash).
 */
export async function makeRoot(
  keyType: CaKeyType,
  trustDomain: string,
  now: number,
): Promise<{ id: string; certPem: string; keyPem: string }> {
  // Loaded on demand: the X.509 library is large and only needed to make a root.
  await import("reflect-metadata");
  const x509 = await import("@peculiar/x509");
  const alg = keyType === "ec-p256" ? { name: "ECDSA", namedCurve: "P-256", hash: "SHA-256" } : {
    name: "RSASSA-PKCS1-v1_5",
    modulusLength: keyType === "rsa-2048" ? 2048 : 4096,
    publicExponent: new Uint8Array([1, 0, 1]),
    hash: "SHA-256",
  };
  const keys = await crypto.subtle.generateKey(alg, true, ["sign", "verify"]) as CryptoKeyPair;
  const serial = crypto.getRandomValues(new Uint8Array(16));
  serial[0] = (serial[0]! & 0x7f) | 0x01;
  const cert = await x509.X509CertificateGenerator.createSelfSigned({
    serialNumber: Buffer.from(serial).toString("hex"),
    name: `O=${trustDomain}`,
    notBefore: new Date(now - 5 * 60_000),
    notAfter: new Date(now + ROOT_VALIDITY_MS),
    keys,
    signingAlgorithm: alg,
    extensions: [
      new x509.BasicConstraintsExtension(true, undefined, true),
      new x509.KeyUsagesExtension(x509.KeyUsageFlags.keyCertSign | x509.KeyUsageFlags.cRLSign, true),
      await x509.SubjectKeyIdentifierExtension.create(keys.publicKey),
    ],
  });
  const pkcs8 = new Uint8Array(await crypto.subtle.exportKey("pkcs8", keys.privateKey));
  const certPem = cert.toString("pem") + "\n";
  return { id: rootId(now, certPem), certPem, keyPem: pemEncode("PRIVATE KEY", pkcs8) };
}

/** Makes a root and writes its key and certificate under `dir`/roots/ID; returns the ID and that folder. */
async function writeNewRoot(
  dir: string,
  opts: CaStoreOptions,
  trustDomain: string,
): Promise<{ id: string; rootDir: string }> {
  const now = opts.clock.now();
  const made = await makeRoot(opts.keyType, trustDomain, now);
  const id = made.id;
  const rootDir = join(dir, "roots", id);
  ensurePrivateDir(rootDir);
  writeFileAtomic(join(rootDir, "ca-key.pem"), made.keyPem, 0o600);
  writeFileAtomic(join(rootDir, "ca-cert.pem"), made.certPem, 0o644);
  return { id, rootDir };
}

function rootId(now: number, certPem: string): string {
  const stamp = new Date(now).toISOString().replace(/[-:]/g, "").replace(/\.\d+Z$/, "Z");
  return `${stamp}-${createHash("sha256").update(certPem).digest("hex").slice(0, 8)}`;
}

function writeBundle(dir: string, m: CaMaterial): void {
  writeFileAtomic(join(dir, "root-cert.pem"), m.trustBundle, 0o644);
}

function selfSignedStore(opts: CaStoreOptions, initial: CaMaterial, initialState: State): CaStore {
  const dir = caDirOf(opts.dataDir);
  let state = initialState;
  let current = initial;
  const commit = (next: State) => {
    writeFileAtomic(join(dir, "state.json"), JSON.stringify(next, null, 2) + "\n", 0o600);
    state = next;
    current = loadSelfSigned(opts, state);
    writeBundle(dir, current);
  };
  return {
    current: () => current,
    async rotate(trustDomain) {
      rotatedState(state, "");
      const { id } = await writeNewRoot(dir, opts, trustDomain);
      commit(rotatedState(state, id));
      return current;
    },
    activate() {
      commit(activatedState(state));
      return current;
    },
    retire() {
      const next = retiredState(state);
      const old = state.trusted.filter((id) => id !== state.signing);
      commit(next);
      for (const id of old) rmSync(join(dir, "roots", id), { recursive: true, force: true });
      return current;
    },
  };
}

/** Rotation phase 1 as a state change: `id` joins the trusted roots. Throws when too many are. */
export function rotatedState(state: RootState, id: string): RootState {
  if (state.trusted.length >= MAX_TRUSTED_ROOTS) {
    throw new Error(
      `${state.trusted.length} roots are trusted already; retire the old ones before rotating again`,
    );
  }
  return { signing: state.signing, trusted: [id, ...state.trusted] };
}

/** Rotation phase 2: the newest trusted root signs. Throws when none was prepared. */
export function activatedState(state: RootState): RootState {
  const newest = state.trusted[0]!;
  if (newest === state.signing) throw new Error("no new root is prepared; rotate first");
  return { signing: newest, trusted: state.trusted };
}

/** Rotation phase 3: only the signing root stays trusted. Throws while a prepared root waits. */
export function retiredState(state: RootState): RootState {
  if (state.trusted[0] !== state.signing) {
    throw new Error(
      "a new root is prepared but not signing yet; activate it before retiring the old one",
    );
  }
  if (state.trusted.length === 1) {
    throw new Error("only the signing root is trusted; there is nothing to retire");
  }
  return { signing: state.signing, trusted: [state.signing] };
}

function byoStore(m: CaMaterial): CaStore {
  const why = "the CA comes from --ca-dir; rotate it by replacing the files there and restarting";
  return {
    current: () => m,
    rotate: () => Promise.reject(new Error(why)),
    activate() {
      throw new Error(why);
    },
    retire() {
      throw new Error(why);
    },
  };
}

/**
 * Loads the CA that already exists: the `--ca-dir` files, or the self-signed root persisted in
 * the data directory. Returns undefined when neither exists yet (see {@link initCa}). Throws
 * CaLoadError naming the file when the CA exists but is unusable. First removes the temporary
 * files an interrupted write left under `<dataDir>/ca` (one may be a copy of a root's key).
 */
export function loadCa(opts: CaStoreOptions): CaStore | undefined {
  removeLeftoverTempFiles(caDirOf(opts.dataDir), { logger: opts.logger, depth: 2 });
  if (opts.caDir !== undefined) {
    return byoStore(loadCaDir(opts.caDir, { now: opts.clock.now(), logger: opts.logger }));
  }
  const dir = caDirOf(opts.dataDir);
  if (!existsSync(join(dir, "state.json"))) return undefined;
  const state = readState(dir);
  return selfSignedStore(opts, loadSelfSigned(opts, state), state);
}

/**
 * Makes the first self-signed root (subject O=`trustDomain`, valid 10 years, basicConstraints
 * CA, keyCertSign and cRLSign) and persists it. When another process created one at the same
 * moment, that one is loaded instead.
 */
export async function initCa(opts: CaStoreOptions, trustDomain: string): Promise<CaStore> {
  const dir = caDirOf(opts.dataDir);
  ensurePrivateDir(dir);
  const { id, rootDir } = await writeNewRoot(dir, opts, trustDomain);
  const state: State = { signing: id, trusted: [id] };
  if (!createFileExclusive(join(dir, "state.json"), JSON.stringify(state, null, 2) + "\n", 0o600)) {
    rmSync(rootDir, { recursive: true, force: true });
    return loadCa(opts)!;
  }
  const m = loadSelfSigned(opts, state);
  writeBundle(dir, m);
  opts.logger.info("created a self-signed root", { trustDomain, keyType: opts.keyType, dir });
  return selfSignedStore(opts, m, state);
}
