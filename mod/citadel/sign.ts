/**
 * Fast issuance: leaf certificates built as DER from a fixed template and signed with
 * node:crypto. Everything that depends only on the issuer (its name, key identifier, signature
 * algorithm, the fixed extensions) is encoded once per issuer; per certificate only the serial,
 * validity, public key and names are written.
 *
 * Every leaf has: version 3, a random positive 128-bit serial, an empty subject, keyUsage
 * digitalSignature + keyEncipherment (critical), extKeyUsage serverAuth + clientAuth,
 * basicConstraints CA:false (critical), authorityKeyIdentifier, and subjectAltName (critical,
 * as the subject is empty; RFC 5280 section 4.2.1.6).
 *
 * @module
 */
import { createHash, type KeyObject, randomBytes, sign } from "node:crypto";
import {
  der,
  DER_TRUE,
  derBitString,
  derOctetString,
  derOid,
  derSequence,
  derTime,
  type DerTree,
  derUnsignedInteger,
  encodeTree,
  TAG,
} from "./der.ts";
import {
  generalNamesTree,
  OID,
  parseCertificate,
  publicKeyBits,
  signatureSchemeFor,
  type SubjectAltName,
  subjectKeyIdentifierOf,
} from "./x509.ts";

/** The certificate and key that sign leaves. */
export interface IssuerMaterial {
  /** DER of the issuing (signing) certificate. */
  readonly certDer: Uint8Array;
  /** Its private key. */
  readonly key: KeyObject;
}

/** What one leaf certifies. */
export interface LeafRequest {
  /** DER SubjectPublicKeyInfo (from the CSR). */
  readonly spki: Uint8Array;
  /** Subject alternative names (at least one). */
  readonly names: readonly SubjectAltName[];
  /** Epoch milliseconds. */
  readonly notBefore: number;
  readonly notAfter: number;
}

/** A signed leaf. */
export interface IssuedLeaf {
  readonly der: Uint8Array;
  /** Lower-case hex of the serial's content octets. */
  readonly serialHex: string;
}

/** Signs leaves under one issuer. Stateless apart from a pool of random bytes; safe to share. */
export interface LeafSigner {
  /** When the issuing certificate expires; leaves must not outlive it. */
  readonly issuerNotAfter: number;
  /** Builds and signs one leaf. Throws only on a bug or a broken key. */
  sign(req: LeafRequest): IssuedLeaf;
}

const VERSION_3 = der(0xa0, Uint8Array.of(0x02, 0x01, 0x02));
const EMPTY_NAME = derSequence();

/** keyUsage digitalSignature (bit 0) + keyEncipherment (bit 2): 0xa0 with 5 unused bits. */
const KEY_USAGE_EXT = derSequence(
  derOid(OID.keyUsage),
  DER_TRUE,
  derOctetString(derBitString(Uint8Array.of(0xa0), 5)),
);
const EXT_KEY_USAGE_EXT = derSequence(
  derOid(OID.extKeyUsage),
  derOctetString(derSequence(derOid(OID.serverAuth), derOid(OID.clientAuth))),
);
const BASIC_CONSTRAINTS_EXT = derSequence(
  derOid(OID.basicConstraints),
  DER_TRUE,
  derOctetString(derSequence()),
);
const SAN_OID = derOid(OID.subjectAltName);
const NO_UNUSED_BITS = Uint8Array.of(0);

const POOL_SIZE = 16 * 512;
let pool = randomBytes(POOL_SIZE);
let poolPos = 0;

function randomSerial(): Uint8Array {
  if (poolPos + 16 > POOL_SIZE) {
    pool = randomBytes(POOL_SIZE);
    poolPos = 0;
  }
  const s = new Uint8Array(pool.subarray(poolPos, poolPos + 16));
  poolPos += 16;
  if (s.every((b) => b === 0)) s[15] = 1;
  return s;
}

/**
 * Creates a signer for `issuer`. Reads the issuer's subject, key identifier and expiry once.
 * Throws when the issuer's certificate cannot be parsed or its key type cannot sign.
 */
export function createLeafSigner(issuer: IssuerMaterial): LeafSigner {
  const fields = parseCertificate(issuer.certDer);
  const scheme = signatureSchemeFor(issuer.key);
  const issuerName = new Uint8Array(fields.subject);
  const keyId = subjectKeyIdentifierOf(fields) ??
    new Uint8Array(createHash("sha1").update(publicKeyBits(fields.spki)).digest());
  const akiExt = derSequence(
    derOid(OID.authorityKeyIdentifier),
    derOctetString(derSequence(der(0x80, keyId))),
  );
  const fixedExts = Buffer.concat([KEY_USAGE_EXT, EXT_KEY_USAGE_EXT, BASIC_CONSTRAINTS_EXT, akiExt]);
  const algorithmAndIssuer = Buffer.concat([scheme.algorithmId, issuerName]);
  const key = issuer.key;
  const hash = scheme.hash;
  const algorithmId = scheme.algorithmId;
  // Requests in the same second with the same lifetime share their encoded validity.
  let lastValidity: { notBefore: number; notAfter: number; der: Uint8Array } = {
    notBefore: NaN,
    notAfter: NaN,
    der: new Uint8Array(0),
  };
  const validity = (notBefore: number, notAfter: number) => {
    const nb = Math.floor(notBefore / 1000);
    const na = Math.floor(notAfter / 1000);
    if (nb !== lastValidity.notBefore || na !== lastValidity.notAfter) {
      lastValidity = { notBefore: nb, notAfter: na, der: derSequence(derTime(notBefore), derTime(notAfter)) };
    }
    return lastValidity.der;
  };
  return {
    issuerNotAfter: fields.notAfter,
    sign(req) {
      if (req.names.length === 0) throw new Error("a leaf needs at least one subject alternative name");
      const serial = randomSerial();
      const exts: DerTree = {
        tag: 0xa3,
        children: [{
          tag: TAG.SEQUENCE,
          children: [fixedExts, {
            tag: TAG.SEQUENCE,
            children: [SAN_OID, DER_TRUE, { tag: TAG.OCTET_STRING, children: [generalNamesTree(req.names)] }],
          }],
        }],
      };
      const tbs = encodeTree({
        tag: TAG.SEQUENCE,
        children: [
          VERSION_3,
          derUnsignedInteger(serial),
          algorithmAndIssuer,
          validity(req.notBefore, req.notAfter),
          EMPTY_NAME,
          req.spki,
          exts,
        ],
      });
      const signature = sign(hash, tbs, key);
      const certDer = encodeTree({
        tag: TAG.SEQUENCE,
        children: [tbs, algorithmId, { tag: TAG.BIT_STRING, children: [NO_UNUSED_BITS, signature] }],
      });
      let i = 0;
      while (i < 15 && serial[i] === 0) i++;
      const serialHex = Buffer.from(serial.subarray(i)).toString("hex");
      return { der: certDer, serialHex: serial[i]! & 0x80 ? "00" + serialHex : serialHex };
    },
  };
}
