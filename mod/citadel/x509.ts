/**
 * The parts of X.509 (RFC 5280) the CA reads and writes by hand: object identifiers, general
 * names, signature algorithms, and the fields of a certificate, on top of the DER reader and
 * writer. Parsing is strict about structure and lenient about extensions it does not need.
 *
 * @module
 */
import type { KeyObject } from "node:crypto";
import { isIPv4, isIPv6 } from "node:net";
import {
  childrenOf,
  decodeIa5,
  decodeTime,
  DER_NULL,
  DerError,
  derOid,
  derSequence,
  derString,
  type DerTree,
  expectTlv,
  readOid,
  readTlv,
  TAG,
  type Tlv,
  tlvBytes,
  tlvValue,
} from "./der.ts";

/** Object identifiers meshd uses. */
export const OID = {
  ecPublicKey: "1.2.840.10045.2.1",
  p256: "1.2.840.10045.3.1.7",
  p384: "1.3.132.0.34",
  p521: "1.3.132.0.35",
  rsaEncryption: "1.2.840.113549.1.1.1",
  rsaPss: "1.2.840.113549.1.1.10",
  ed25519: "1.3.101.112",
  ecdsaSha256: "1.2.840.10045.4.3.2",
  ecdsaSha384: "1.2.840.10045.4.3.3",
  ecdsaSha512: "1.2.840.10045.4.3.4",
  rsaSha256: "1.2.840.113549.1.1.11",
  rsaSha384: "1.2.840.113549.1.1.12",
  rsaSha512: "1.2.840.113549.1.1.13",
  extensionRequest: "1.2.840.113549.1.9.14",
  subjectKeyIdentifier: "2.5.29.14",
  keyUsage: "2.5.29.15",
  subjectAltName: "2.5.29.17",
  basicConstraints: "2.5.29.19",
  authorityKeyIdentifier: "2.5.29.35",
  extKeyUsage: "2.5.29.37",
  serverAuth: "1.3.6.1.5.5.7.3.1",
  clientAuth: "1.3.6.1.5.5.7.3.2",
  organizationName: "2.5.4.10",
  commonName: "2.5.4.3",
} as const;

/** Key usage bits as RFC 5280 numbers them (bit 0 is digitalSignature). */
export const KEY_USAGE = {
  digitalSignature: 1 << 0,
  keyEncipherment: 1 << 2,
  keyCertSign: 1 << 5,
  cRLSign: 1 << 6,
} as const;

/** One subject alternative name. */
export type SubjectAltName =
  | { readonly type: "uri"; readonly value: string }
  | { readonly type: "dns"; readonly value: string }
  | { readonly type: "ip"; readonly value: string }
  | { readonly type: "email"; readonly value: string };

/** The names in a GeneralNames, by kind; `other` counts the kinds meshd never issues. */
export interface DecodedNames {
  readonly uris: string[];
  readonly dns: string[];
  readonly ips: string[];
  readonly emails: string[];
  /** otherName, x400Address, directoryName, ediPartyName, registeredID. */
  other: number;
}

/** The 4 or 16 octets of an IPv4 or IPv6 address (as an iPAddress name holds them). */
export function ipBytes(ip: string): Uint8Array {
  if (isIPv4(ip)) return Uint8Array.from(ip.split(".").map(Number));
  if (!isIPv6(ip)) throw new Error(`${ip} is not an IP address`);
  let text = ip;
  const tail: number[] = [];
  const v4 = /:(\d+\.\d+\.\d+\.\d+)$/.exec(text);
  if (v4) {
    tail.push(...v4[1]!.split(".").map(Number));
    text = text.slice(0, v4.index + 1) + "0:0";
  }
  const [head, rest] = text.split("::") as [string, string | undefined];
  const hs = head === "" ? [] : head.split(":");
  const rs = rest === undefined || rest === "" ? [] : rest.split(":");
  const groups = rest === undefined ? hs : [...hs, ...Array(8 - hs.length - rs.length).fill("0"), ...rs];
  const out = new Uint8Array(16);
  groups.forEach((g, i) => {
    const n = parseInt(g, 16);
    out[i * 2] = n >> 8;
    out[i * 2 + 1] = n & 0xff;
  });
  if (tail.length) out.set(tail, 12);
  return out;
}

function ipText(b: Uint8Array): string {
  if (b.length === 4) return Array.from(b).join(".");
  if (b.length === 16) {
    const groups: string[] = [];
    for (let i = 0; i < 16; i += 2) groups.push(((b[i]! << 8) | b[i + 1]!).toString(16));
    return groups.join(":");
  }
  throw new DerError(`iPAddress of ${b.length} octets`);
}

/** Encodes one GeneralName. */
function encodeGeneralName(n: SubjectAltName): Uint8Array {
  switch (n.type) {
    case "uri":
      return derString(0x86, n.value);
    case "dns":
      return derString(0x82, n.value);
    case "email":
      return derString(0x81, n.value);
    case "ip": {
      const b = ipBytes(n.value);
      const out = new Uint8Array(2 + b.length);
      out[0] = 0x87;
      out[1] = b.length;
      out.set(b, 2);
      return out;
    }
  }
}

/** GeneralNames (a SEQUENCE) as a tree, for encoding inside a larger structure. */
export function generalNamesTree(names: readonly SubjectAltName[]): DerTree {
  return { tag: TAG.SEQUENCE, children: names.map(encodeGeneralName) };
}

/** Encodes GeneralNames (a SEQUENCE) for a subjectAltName extension. */
export function encodeGeneralNames(names: readonly SubjectAltName[]): Uint8Array {
  return derSequence(...names.map(encodeGeneralName));
}

/** Decodes the GeneralNames SEQUENCE in `buf` (the content of a subjectAltName extension). */
export function decodeGeneralNames(buf: Uint8Array): DecodedNames {
  const seq = expectTlv(buf, 0, buf.length, TAG.SEQUENCE, "GeneralNames");
  if (seq.end !== buf.length) throw new DerError("trailing bytes after GeneralNames");
  const out: DecodedNames = { uris: [], dns: [], ips: [], emails: [], other: 0 };
  for (const n of childrenOf(buf, seq, 1000)) {
    const v = tlvValue(buf, n);
    switch (n.tag) {
      case 0x86:
        out.uris.push(decodeIa5(v));
        break;
      case 0x82:
        out.dns.push(decodeIa5(v));
        break;
      case 0x81:
        out.emails.push(decodeIa5(v));
        break;
      case 0x87:
        out.ips.push(ipText(v));
        break;
      default:
        out.other++;
    }
  }
  return out;
}

/** How a key signs, and the AlgorithmIdentifier that names it. */
export interface SignatureScheme {
  /** The hash for node:crypto's sign/verify; null for Ed25519. */
  readonly hash: string | null;
  /** The DER AlgorithmIdentifier. */
  readonly algorithmId: Uint8Array;
}

const schemes = {
  ecdsaSha256: { hash: "sha256", algorithmId: derSequence(derOid(OID.ecdsaSha256)) },
  ecdsaSha384: { hash: "sha384", algorithmId: derSequence(derOid(OID.ecdsaSha384)) },
  ecdsaSha512: { hash: "sha512", algorithmId: derSequence(derOid(OID.ecdsaSha512)) },
  rsaSha256: { hash: "sha256", algorithmId: derSequence(derOid(OID.rsaSha256), DER_NULL) },
  ed25519: { hash: null, algorithmId: derSequence(derOid(OID.ed25519)) },
} satisfies Record<string, SignatureScheme>;

/**
 * The scheme a private key signs certificates with: ECDSA with the hash matching its curve,
 * RSA PKCS#1 v1.5 with SHA-256, or Ed25519. Throws for other key types.
 */
export function signatureSchemeFor(key: KeyObject): SignatureScheme {
  switch (key.asymmetricKeyType) {
    case "ec": {
      const curve = key.asymmetricKeyDetails?.namedCurve;
      if (curve === "prime256v1" || curve === "P-256") return schemes.ecdsaSha256;
      if (curve === "secp384r1" || curve === "P-384") return schemes.ecdsaSha384;
      if (curve === "secp521r1" || curve === "P-521") return schemes.ecdsaSha512;
      throw new Error(`EC curve ${curve} is not supported for signing`);
    }
    case "rsa":
      return schemes.rsaSha256;
    case "ed25519":
      return schemes.ed25519;
    default:
      throw new Error(`${key.asymmetricKeyType} keys are not supported for signing`);
  }
}

/** The hash a signature algorithm OID implies, or undefined for algorithms meshd does not accept. */
export function hashOfSignatureAlgorithm(oid: string): { hash: string | null; keyType: string } | undefined {
  switch (oid) {
    case OID.ecdsaSha256:
      return { hash: "sha256", keyType: "ec" };
    case OID.ecdsaSha384:
      return { hash: "sha384", keyType: "ec" };
    case OID.ecdsaSha512:
      return { hash: "sha512", keyType: "ec" };
    case OID.rsaSha256:
      return { hash: "sha256", keyType: "rsa" };
    case OID.rsaSha384:
      return { hash: "sha384", keyType: "rsa" };
    case OID.rsaSha512:
      return { hash: "sha512", keyType: "rsa" };
    case OID.ed25519:
      return { hash: null, keyType: "ed25519" };
    default:
      return undefined;
  }
}

/** One extension of a certificate. */
export interface Extension {
  readonly critical: boolean;
  /** The content of extnValue (the DER of the extension's own structure). */
  readonly value: Uint8Array;
}

/** The fields of a certificate meshd reads. Byte arrays are views into the input. */
export interface CertificateFields {
  /** Serial number as lower-case hex of its content octets. */
  readonly serialHex: string;
  /** The DER of the issuer Name. */
  readonly issuer: Uint8Array;
  /** The DER of the subject Name. */
  readonly subject: Uint8Array;
  readonly notBefore: number;
  readonly notAfter: number;
  /** The DER of the SubjectPublicKeyInfo. */
  readonly spki: Uint8Array;
  /** Extensions by OID; a certificate naming one OID twice is refused. */
  readonly extensions: ReadonlyMap<string, Extension>;
}

/** Parses a certificate's DER. Throws DerError with what is wrong. */
export function parseCertificate(buf: Uint8Array): CertificateFields {
  const cert = expectTlv(buf, 0, buf.length, TAG.SEQUENCE, "Certificate");
  if (cert.end !== buf.length) throw new DerError("trailing bytes after the certificate");
  const tbs = expectTlv(buf, cert.valueStart, cert.end, TAG.SEQUENCE, "TBSCertificate");
  const f = childrenOf(buf, tbs, 20);
  let i = 0;
  if (f[0]?.tag === 0xa0) i++;
  const [serial, , issuer, validity, subject, spki] = f.slice(i) as (Tlv | undefined)[];
  if (!serial || serial.tag !== TAG.INTEGER || !issuer || !validity || !subject || !spki) {
    throw new DerError("TBSCertificate is missing fields");
  }
  const times = childrenOf(buf, validity, 2);
  if (times.length !== 2) throw new DerError("Validity must hold two times");
  const extensions = new Map<string, Extension>();
  const extField = f.slice(i + 6).find((t) => t.tag === 0xa3);
  if (extField) {
    const list = expectTlv(buf, extField.valueStart, extField.end, TAG.SEQUENCE, "Extensions");
    for (const e of childrenOf(buf, list, 100)) {
      const parts = childrenOf(buf, e, 3);
      const { oid } = readOid(buf, parts[0]?.start ?? e.end, e.end, "extnID");
      const critical = parts.length === 3 && parts[1]!.tag === TAG.BOOLEAN && buf[parts[1]!.valueStart] !== 0;
      const valueTlv = parts[parts.length - 1]!;
      if (valueTlv.tag !== TAG.OCTET_STRING) {
        throw new DerError(`extension ${oid}: extnValue is not an OCTET STRING`);
      }
      if (extensions.has(oid)) throw new DerError(`extension ${oid} appears twice`);
      extensions.set(oid, { critical, value: tlvValue(buf, valueTlv) });
    }
  }
  return {
    serialHex: Buffer.from(tlvValue(buf, serial)).toString("hex"),
    issuer: tlvBytes(buf, issuer),
    subject: tlvBytes(buf, subject),
    notBefore: decodeTime(buf, times[0]!),
    notAfter: decodeTime(buf, times[1]!),
    spki: tlvBytes(buf, spki),
    extensions,
  };
}

/** The names in a certificate's subjectAltName extension (empty when it has none). */
export function certificateNames(c: CertificateFields): DecodedNames {
  const ext = c.extensions.get(OID.subjectAltName);
  return ext ? decodeGeneralNames(ext.value) : { uris: [], dns: [], ips: [], emails: [], other: 0 };
}

/** basicConstraints: whether the certificate is a CA (false when the extension is absent). */
export function isCaCertificate(c: CertificateFields): boolean {
  const ext = c.extensions.get(OID.basicConstraints);
  if (!ext) return false;
  const seq = expectTlv(ext.value, 0, ext.value.length, TAG.SEQUENCE, "BasicConstraints");
  const first = childrenOf(ext.value, seq, 2)[0];
  return first !== undefined && first.tag === TAG.BOOLEAN && ext.value[first.valueStart] !== 0;
}

/** The key usage bits (KEY_USAGE), or undefined when the extension is absent. */
export function keyUsageOf(c: CertificateFields): number | undefined {
  const ext = c.extensions.get(OID.keyUsage);
  if (!ext) return undefined;
  const t = expectTlv(ext.value, 0, ext.value.length, TAG.BIT_STRING, "KeyUsage");
  const v = tlvValue(ext.value, t);
  let bits = 0;
  for (let i = 1; i < v.length && i < 3; i++) {
    for (let b = 0; b < 8; b++) if (v[i]! & (0x80 >> b)) bits |= 1 << ((i - 1) * 8 + b);
  }
  return bits;
}

/** The subjectKeyIdentifier's octets, or undefined when absent. */
export function subjectKeyIdentifierOf(c: CertificateFields): Uint8Array | undefined {
  const ext = c.extensions.get(OID.subjectKeyIdentifier);
  if (!ext) return undefined;
  return tlvValue(
    ext.value,
    expectTlv(ext.value, 0, ext.value.length, TAG.OCTET_STRING, "SubjectKeyIdentifier"),
  );
}

/** The BIT STRING content (without the unused-bits octet) of a SubjectPublicKeyInfo's key. */
export function publicKeyBits(spki: Uint8Array): Uint8Array {
  const seq = expectTlv(spki, 0, spki.length, TAG.SEQUENCE, "SubjectPublicKeyInfo");
  const alg = readTlv(spki, seq.valueStart, seq.end);
  const bits = expectTlv(spki, alg.end, seq.end, TAG.BIT_STRING, "subjectPublicKey");
  return spki.subarray(bits.valueStart + 1, bits.end);
}
