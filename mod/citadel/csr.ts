/**
 * PKCS#10 certificate signing requests (RFC 2986): parsing with proof of possession (the
 * request's signature checked with the public key it carries), and building them, for agents
 * and tests.
 *
 * @module
 */
import { createPublicKey, type KeyObject, sign, verify } from "node:crypto";
import {
  childrenOf,
  der,
  derBitString,
  DerError,
  derOctetString,
  derOid,
  derSequence,
  derSmallInteger,
  derString,
  expectTlv,
  readOid,
  TAG,
  type Tlv,
  tlvBytes,
  tlvEquals,
  tlvValue,
} from "./der.ts";
import { pemDecodeOne, pemEncode } from "./pem.ts";
import {
  type DecodedNames,
  decodeGeneralNames,
  encodeGeneralNames,
  hashOfSignatureAlgorithm,
  OID,
  signatureSchemeFor,
  type SubjectAltName,
} from "./x509.ts";

/** A CSR that was refused; the message says why, for the caller. */
export class CsrError extends Error {
  override readonly name = "CsrError";
}

/** What a valid CSR asks for. */
export interface ParsedCsr {
  /** The DER SubjectPublicKeyInfo, to be copied into the certificate. */
  readonly spki: Uint8Array;
  /** The requested subject alternative names. */
  readonly names: DecodedNames;
  /** "ec P-256", "rsa 2048", "ed25519". */
  readonly keyDescription: string;
}

/** Limits on what a CSR may hold. */
export interface CsrPolicy {
  /** Smallest RSA modulus accepted, in bits (default 2048). */
  readonly minRsaBits?: number;
}

const CSR_LABELS = ["CERTIFICATE REQUEST", "NEW CERTIFICATE REQUEST"];
const EXTENSION_REQUEST = derOid(OID.extensionRequest);
const SUBJECT_ALT_NAME = derOid(OID.subjectAltName);
/** The common signature algorithms by encoded OID, so the hot path never decodes one. */
const KNOWN_SIGNATURE_OIDS = [OID.ecdsaSha256, OID.ecdsaSha384, OID.rsaSha256, OID.ed25519].map((oid) => ({
  oid,
  der: derOid(oid),
}));
/** A P-256 SubjectPublicKeyInfo up to the point's first octet (uncompressed form). */
const P256_SPKI_PREFIX = Uint8Array.from(
  Buffer.from("3059301306072a8648ce3d020106082a8648ce3d030107034200", "hex"),
);

/** Decodes the PEM of a CSR. Throws CsrError. */
export function csrDerFromPem(pem: string): Uint8Array {
  try {
    return pemDecodeOne(pem, CSR_LABELS);
  } catch (err) {
    throw new CsrError(`CSR is not a PEM CERTIFICATE REQUEST: ${(err as Error).message}`);
  }
}

/** A CSR's structure, read without any cryptography. */
export interface CsrStructure {
  /** The DER SubjectPublicKeyInfo. */
  readonly spki: Uint8Array;
  /** The requested subject alternative names. */
  readonly names: DecodedNames;
  /** The signed part (CertificationRequestInfo), DER. */
  readonly info: Uint8Array;
  readonly signatureAlgorithm: string;
  /** The signature octets. */
  readonly signature: Uint8Array;
}

/**
 * Reads a DER CSR's structure (subject public key, requested names, signature) without checking
 * the signature: cheap, for audit logs of requests refused before their CSR is looked at.
 * Throws CsrError saying what is wrong; never anything else.
 */
export function readCsr(buf: Uint8Array): CsrStructure {
  try {
    return readCsrUnchecked(buf);
  } catch (err) {
    if (err instanceof CsrError) throw err;
    if (err instanceof DerError) throw new CsrError(`CSR is not valid DER: ${err.message}`);
    throw new CsrError(`CSR is not valid: ${(err as Error).message}`);
  }
}

/**
 * Parses a DER CSR and checks its proof of possession: the signature over the request info must
 * verify with the request's own public key. Accepts EC P-256 and P-384, RSA of at least
 * `minRsaBits`, and Ed25519 keys. Throws CsrError saying what is wrong; never anything else.
 */
export function parseCsr(buf: Uint8Array, policy: CsrPolicy = {}): ParsedCsr {
  const csr = readCsr(buf);
  const scheme = hashOfSignatureAlgorithm(csr.signatureAlgorithm);
  if (!scheme) {
    throw new CsrError(
      `CSR signature algorithm ${csr.signatureAlgorithm} is not accepted (ECDSA, RSA PKCS#1 v1.5 with SHA-2, Ed25519)`,
    );
  }
  let key: KeyObject;
  try {
    const spki = Buffer.isBuffer(csr.spki) ? csr.spki : Buffer.from(csr.spki);
    key = createPublicKey({ key: spki, format: "der", type: "spki" });
  } catch (err) {
    throw new CsrError(`CSR public key cannot be read: ${(err as Error).message}`);
  }
  const keyDescription = isP256Spki(csr.spki) ? "ec P-256" : describeKey(key, policy);
  if (key.asymmetricKeyType !== scheme.keyType) {
    throw new CsrError(
      `CSR is signed with ${csr.signatureAlgorithm} but holds a ${key.asymmetricKeyType} key`,
    );
  }
  let ok: boolean;
  try {
    ok = verify(scheme.hash, csr.info, key, csr.signature);
  } catch (err) {
    throw new CsrError(`CSR signature cannot be checked: ${(err as Error).message}`);
  }
  if (!ok) {
    throw new CsrError("CSR signature does not verify with its own public key (no proof of possession)");
  }
  return { spki: csr.spki, names: csr.names, keyDescription };
}

function readCsrUnchecked(buf: Uint8Array): CsrStructure {
  const outer = expectTlv(buf, 0, buf.length, TAG.SEQUENCE, "CertificationRequest");
  if (outer.end !== buf.length) throw new CsrError("CSR has trailing bytes after its DER");
  const info = expectTlv(buf, outer.valueStart, outer.end, TAG.SEQUENCE, "CertificationRequestInfo");
  const sigAlg = expectTlv(buf, info.end, outer.end, TAG.SEQUENCE, "signatureAlgorithm");
  const sig = expectTlv(buf, sigAlg.end, outer.end, TAG.BIT_STRING, "signature");
  if (sig.end !== outer.end) throw new CsrError("CSR has extra fields after its signature");

  const version = expectTlv(buf, info.valueStart, info.end, TAG.INTEGER, "version");
  if (version.end - version.valueStart !== 1 || buf[version.valueStart] !== 0) {
    throw new CsrError("CSR version must be 1 (encoded 0)");
  }
  const subject = expectTlv(buf, version.end, info.end, TAG.SEQUENCE, "subject");
  const spkiTlv = expectTlv(buf, subject.end, info.end, TAG.SEQUENCE, "subjectPKInfo");
  let names: DecodedNames = { uris: [], dns: [], ips: [], emails: [], other: 0 };
  if (spkiTlv.end < info.end) {
    const attrs = expectTlv(buf, spkiTlv.end, info.end, 0xa0, "attributes");
    if (attrs.end !== info.end) throw new CsrError("CSR request info has extra fields");
    let sawSan = false;
    for (const attr of childrenOf(buf, attrs, 50)) {
      const type = expectTlv(buf, attr.valueStart, attr.end, TAG.OID, "attribute type");
      if (!tlvEquals(buf, type, EXTENSION_REQUEST)) continue;
      const values = expectTlv(buf, type.end, attr.end, TAG.SET, "extensionRequest values");
      for (const exts of childrenOf(buf, values, 4)) {
        if (exts.tag !== TAG.SEQUENCE) throw new CsrError("extensionRequest does not hold Extensions");
        for (const ext of childrenOf(buf, exts, 100)) {
          const parts = childrenOf(buf, ext, 3);
          const id = expectTlv(buf, parts[0]?.start ?? ext.end, ext.end, TAG.OID, "extnID");
          if (!tlvEquals(buf, id, SUBJECT_ALT_NAME)) continue;
          if (sawSan) throw new CsrError("CSR requests subjectAltName twice");
          sawSan = true;
          const value = parts[parts.length - 1]!;
          if (value.tag !== TAG.OCTET_STRING) {
            throw new CsrError("subjectAltName extnValue is not an OCTET STRING");
          }
          names = decodeGeneralNames(tlvValue(buf, value));
        }
      }
    }
  }
  const sigBits = tlvValue(buf, sig);
  if (sigBits.length < 2 || sigBits[0] !== 0) throw new CsrError("CSR signature BIT STRING is malformed");
  return {
    spki: tlvBytes(buf, spkiTlv),
    names,
    info: tlvBytes(buf, info),
    signatureAlgorithm: signatureOid(buf, sigAlg),
    signature: sigBits.subarray(1),
  };
}

function signatureOid(buf: Uint8Array, sigAlg: Tlv): string {
  const t = expectTlv(buf, sigAlg.valueStart, sigAlg.end, TAG.OID, "signature algorithm");
  for (const k of KNOWN_SIGNATURE_OIDS) if (tlvEquals(buf, t, k.der)) return k.oid;
  return readOid(buf, sigAlg.valueStart, sigAlg.end, "signature algorithm").oid;
}

function isP256Spki(spki: Uint8Array): boolean {
  if (spki.length !== 91) return false;
  for (let i = 0; i < P256_SPKI_PREFIX.length; i++) if (spki[i] !== P256_SPKI_PREFIX[i]) return false;
  return true;
}

function describeKey(key: KeyObject, policy: CsrPolicy): string {
  const d = key.asymmetricKeyDetails ?? {};
  switch (key.asymmetricKeyType) {
    case "ec": {
      const curve = d.namedCurve === "prime256v1"
        ? "P-256"
        : d.namedCurve === "secp384r1"
        ? "P-384"
        : undefined;
      if (!curve) throw new CsrError(`CSR EC key on curve ${d.namedCurve} is not accepted (P-256, P-384)`);
      return `ec ${curve}`;
    }
    case "rsa": {
      const bits = d.modulusLength ?? 0;
      const min = policy.minRsaBits ?? 2048;
      if (bits < min || bits > 8192) {
        throw new CsrError(`CSR RSA key of ${bits} bits is not accepted (${min} to 8192)`);
      }
      return `rsa ${bits}`;
    }
    case "ed25519":
      return "ed25519";
    default:
      throw new CsrError(`CSR ${key.asymmetricKeyType} key is not accepted (EC P-256/P-384, RSA, Ed25519)`);
  }
}

/** Inputs to createCsr. */
export interface CsrOptions {
  /** The private key that signs the request; its public key goes in. */
  readonly key: KeyObject;
  /** Subject alternative names to request. */
  readonly names?: readonly SubjectAltName[];
  /** Subject organization (O); the subject is empty when unset. */
  readonly organization?: string;
}

/**
 * Builds a PEM CSR signed by `key` (EC, RSA or Ed25519), requesting `names` through an
 * extensionRequest attribute. Agents use it to ask for their certificate.
 */
export function createCsr(opts: CsrOptions): string {
  return pemEncode("CERTIFICATE REQUEST", createCsrDer(opts));
}

/** As createCsr, returning DER. */
export function createCsrDer(opts: CsrOptions): Uint8Array {
  const pub = createPublicKey(opts.key);
  const spki = new Uint8Array(pub.export({ format: "der", type: "spki" }));
  const subject = opts.organization === undefined ? derSequence() : derSequence(
    der(TAG.SET, derSequence(derOid(OID.organizationName), derString(TAG.UTF8_STRING, opts.organization))),
  );
  const attrs = opts.names && opts.names.length > 0
    ? der(
      0xa0,
      derSequence(
        derOid(OID.extensionRequest),
        der(
          TAG.SET,
          derSequence(
            derSequence(derOid(OID.subjectAltName), derOctetString(encodeGeneralNames(opts.names))),
          ),
        ),
      ),
    )
    : der(0xa0);
  const info = derSequence(derSmallInteger(0), subject, spki, attrs);
  const scheme = signatureSchemeFor(opts.key);
  const signature = sign(scheme.hash, info, opts.key);
  return derSequence(info, scheme.algorithmId, derBitString(new Uint8Array(signature)));
}
