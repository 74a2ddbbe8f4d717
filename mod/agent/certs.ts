/**
 * The workload's identity material: a fresh EC P-256 key and a CSR naming only the SPIFFE ID,
 * and the issued bundle (chain, key, trusted roots) checked before it is used: the leaf must
 * carry the expected SPIFFE ID and match the key, and the roots are the self-signed
 * certificates at the end of the CA's answer.
 *
 * @module
 */
import { createHash, createPrivateKey, generateKeyPairSync, X509Certificate } from "node:crypto";

/** A certificate, its key and the roots to trust, as the agent writes and serves them. */
export interface CertBundle {
  /** The leaf, then intermediates (PEM); no roots. */
  readonly chainPem: string;
  /** PKCS#8 PEM private key of the leaf. */
  readonly keyPem: string;
  /** Every trusted root (PEM), concatenated. */
  readonly rootPem: string;
  /** Validity of the leaf, milliseconds since the epoch. */
  readonly notBefore: number;
  readonly notAfter: number;
  /** The leaf's SPIFFE URI SAN. */
  readonly identity: string;
  /**
   * When the agent received the bundle (clock milliseconds). CAs backdate notBefore against
   * clock skew (meshd's by a minute), so the lifetime that renewal divides is counted from here
   * when known. Kept on disk next to the certificate (see receiptRecord) so that it survives a
   * restart; absent for a bundle stored without that record (by an older agent, or by hand).
   */
  readonly receivedAt?: number;
}

/** A key and the CSR that proves it, before the CA signed anything. */
export interface PendingIdentity {
  /** PEM PKCS#10 request with the SPIFFE ID as its only SAN and an empty subject. */
  readonly csrPem: string;
  /** PKCS#8 PEM; never leaves the machine. */
  readonly keyPem: string;
}

/** `spiffe://TRUST_DOMAIN/ns/NAMESPACE/sa/SERVICE_ACCOUNT`. */
export function spiffeId(trustDomain: string, namespace: string, serviceAccount: string): string {
  return `spiffe://${trustDomain}/ns/${namespace}/sa/${serviceAccount}`;
}

const PEM_BLOCK = /-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/g;

/** Every CERTIFICATE block in `text`, normalised to end with a newline. */
export function splitPem(text: string): string[] {
  return [...text.matchAll(PEM_BLOCK)].map((m) => m[0] + "\n");
}

/** Generates a P-256 key and a CSR for `identity` (a SPIFFE URI). */
export async function createCsr(identity: string): Promise<PendingIdentity> {
  const { privateKey, publicKey } = generateKeyPairSync("ec", { namedCurve: "P-256" });
  await import("reflect-metadata");
  const x509 = await import("@peculiar/x509");
  const alg = { name: "ECDSA", namedCurve: "P-256" };
  const subtle = globalThis.crypto.subtle;
  const keys = {
    privateKey: await subtle.importKey(
      "pkcs8",
      privateKey.export({ type: "pkcs8", format: "der" }),
      alg,
      false,
      [
        "sign",
      ],
    ),
    publicKey: await subtle.importKey("spki", publicKey.export({ type: "spki", format: "der" }), alg, true, [
      "verify",
    ]),
  };
  const csr = await x509.Pkcs10CertificateRequestGenerator.create({
    keys,
    signingAlgorithm: { name: "ECDSA", hash: "SHA-256" },
    extensions: [new x509.SubjectAlternativeNameExtension([{ type: "url", value: identity }])],
  });
  return {
    csrPem: csr.toString("pem") + "\n",
    keyPem: privateKey.export({ type: "pkcs8", format: "pem" }).toString(),
  };
}

function parseCert(pem: string, what: string): X509Certificate {
  try {
    return new X509Certificate(pem);
  } catch (err) {
    throw new Error(`${what}: not a certificate: ${(err as Error).message}`);
  }
}

function isSelfSigned(c: X509Certificate): boolean {
  try {
    return c.checkIssued(c) && c.verify(c.publicKey);
  } catch {
    return false;
  }
}

function uriSans(c: X509Certificate): string[] {
  return (c.subjectAltName ?? "").split(/,\s*/).filter((s) => s.startsWith("URI:")).map((s) => s.slice(4));
}

/**
 * Checks a leaf against its key and identity and returns the bundle. `what` names the source in
 * errors (a file, or "the CA's answer"). Throws when the key does not match the leaf, the leaf
 * lacks `expectedIdentity` (when given), or there is no root.
 */
export function makeBundle(
  chain: readonly string[],
  keyPem: string,
  roots: readonly string[],
  opts: { what: string; expectedIdentity?: string },
): CertBundle {
  if (chain.length === 0) throw new Error(`${opts.what}: no certificate`);
  if (roots.length === 0) throw new Error(`${opts.what}: no trusted root certificate`);
  const leaf = parseCert(chain[0]!, opts.what);
  for (const r of roots) parseCert(r, `${opts.what} (root)`);
  let key;
  try {
    key = createPrivateKey(keyPem);
  } catch (err) {
    throw new Error(`${opts.what}: the private key cannot be read: ${(err as Error).message}`);
  }
  if (!leaf.checkPrivateKey(key)) {
    throw new Error(`${opts.what}: the certificate does not match the private key`);
  }
  const ids = uriSans(leaf).filter((u) => u.startsWith("spiffe://"));
  if (ids.length === 0) throw new Error(`${opts.what}: the certificate has no SPIFFE URI SAN`);
  if (opts.expectedIdentity !== undefined && !ids.includes(opts.expectedIdentity)) {
    throw new Error(`${opts.what}: the certificate is for ${ids.join(", ")}, want ${opts.expectedIdentity}`);
  }
  return {
    chainPem: chain.join(""),
    keyPem,
    rootPem: roots.join(""),
    notBefore: Date.parse(leaf.validFrom),
    notAfter: Date.parse(leaf.validTo),
    identity: opts.expectedIdentity ?? ids[0]!,
  };
}

/**
 * Reads IstioCertificateService's answer (leaf first, then intermediates, then every trusted
 * root; an element may hold several PEM blocks): the trailing self-signed certificates are the
 * roots. When the CA sent no root, `fallbackRootPem` (what the agent already trusts) is used.
 */
export function bundleFromIssued(
  certChain: readonly string[],
  keyPem: string,
  opts: { expectedIdentity: string; fallbackRootPem?: string },
): CertBundle {
  const all = certChain.flatMap(splitPem);
  let split = all.length;
  while (split > 1 && isSelfSigned(parseCert(all[split - 1]!, "the CA's answer"))) split--;
  const roots = split < all.length ? all.slice(split) : splitPem(opts.fallbackRootPem ?? "");
  return makeBundle(all.slice(0, split), keyPem, roots, { what: "the CA's answer", ...opts });
}

/** SHA-256 of the first certificate's DER in `chainPem`, lower-case hex: names the leaf. */
export function leafSha256(chainPem: string): string {
  const first = splitPem(chainPem)[0];
  if (first === undefined) throw new Error("no certificate in the chain");
  return createHash("sha256").update(new X509Certificate(first).raw).digest("hex");
}

/**
 * The record of when `b` was received, as stored next to it: JSON naming the leaf by its
 * SHA-256 (so a record left over from another certificate is not applied to this one) and the
 * time in ISO 8601. Undefined when `b` has no receivedAt.
 */
export function receiptRecord(b: Pick<CertBundle, "chainPem" | "receivedAt">): string | undefined {
  if (b.receivedAt === undefined || !Number.isFinite(b.receivedAt)) return undefined;
  const record = { leafSha256: leafSha256(b.chainPem), receivedAt: new Date(b.receivedAt).toISOString() };
  return JSON.stringify(record) + "\n";
}

const ISO_UTC = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(?:\.\d{1,3})?Z$/;

/**
 * Reads a record written by receiptRecord for `b`. Returns `b` with receivedAt set, clamped to
 * [notBefore, notAfter] (a clock behind the CA's, or a certificate read back after it expired);
 * or, with `problem` saying why, `b` unchanged when the record is garbled, belongs to another
 * certificate, or lies after `now` (a time not yet reached cannot be when it was received).
 */
export function applyReceiptRecord(
  b: CertBundle,
  text: string,
  now: number,
): { bundle: CertBundle; problem?: string } {
  let rec: unknown;
  try {
    rec = JSON.parse(text);
  } catch {
    return { bundle: b, problem: "not JSON" };
  }
  if (typeof rec !== "object" || rec === null || Array.isArray(rec)) {
    return { bundle: b, problem: "not a JSON object" };
  }
  const { leafSha256: leaf, receivedAt } = rec as Record<string, unknown>;
  if (typeof leaf !== "string" || leaf !== leafSha256(b.chainPem)) {
    return { bundle: b, problem: "it is for another certificate" };
  }
  const at = typeof receivedAt === "string" && ISO_UTC.test(receivedAt) ? Date.parse(receivedAt) : NaN;
  // Date.parse rolls an impossible date (February 30) over; such a record is garbled too.
  if (
    !Number.isFinite(at) || new Date(at).toISOString().slice(0, 19) !== (receivedAt as string).slice(0, 19)
  ) {
    return { bundle: b, problem: `receivedAt ${JSON.stringify(receivedAt)} is not an ISO 8601 UTC time` };
  }
  if (at > now) {
    return {
      bundle: b,
      problem: `receivedAt ${receivedAt} is in the future (now ${new Date(now).toISOString()})`,
    };
  }
  return { bundle: { ...b, receivedAt: Math.min(Math.max(at, b.notBefore), b.notAfter) } };
}

/**
 * The delay until a renewal is due: `ratio` of the lifetime, moved by up to ±`jitter` of that
 * (so a fleet issued at once does not renew at once). The lifetime starts at receivedAt, kept
 * within [notBefore, notAfter] and not after `now`, or at notBefore when receivedAt is not
 * known. Zero when overdue.
 */
export function renewalDelay(
  b: Pick<CertBundle, "notBefore" | "notAfter" | "receivedAt">,
  now: number,
  random: () => number,
  opts: { ratio?: number; jitter?: number } = {},
): number {
  const ratio = opts.ratio ?? 0.5;
  const jitter = opts.jitter ?? 0.1;
  const start = Math.max(b.notBefore, Math.min(b.receivedAt ?? b.notBefore, b.notAfter, now));
  const due = start + (b.notAfter - start) * ratio * (1 + jitter * (2 * random() - 1));
  return Math.max(0, Math.round(due - now));
}
