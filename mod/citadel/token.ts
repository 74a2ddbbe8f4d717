/**
 * Bootstrap tokens: ES256 JWTs (RFC 7519) that let a new workload get its first certificate.
 * `meshd token create` and the daemon share one signing key, `<data-dir>/token-signing-key.pem`
 * (mode 0600), made by whichever needs it first. With `--store` the replicas share one key and
 * the single-use ledger in etcd instead (token_shared.ts).
 *
 * Claims: `iss` "meshd", `aud` "meshd-ca", `sub` the SPIFFE ID, `exp`/`iat`/`nbf`, `jti`, and
 * meshd's own `ns` (namespace), `sa` (service account), `wg` (workload group, when given) and
 * `single_use` (true for a token that may be redeemed once). The header carries `kid`, the
 * key's RFC 7638 thumbprint.
 *
 * Verification accepts only ES256 with meshd's key ("none", HS256 and every other algorithm are
 * refused before any key is used), checks exp and nbf with 60 s of clock skew, the issuer and
 * the audience. Replay of a single-use token is stopped by {@link UsedTokens}.
 *
 * @module
 */
import {
  createHash,
  createPrivateKey,
  createPublicKey,
  generateKeyPairSync,
  type KeyObject,
  randomBytes,
  sign,
  verify,
} from "node:crypto";
import { existsSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { errorMessage } from "../shared/errors.ts";
import { createFileExclusive, isGroupOrWorldReadable, writeFileAtomic } from "../shared/state_files.ts";
import { dnsSubdomainProblem, parseWorkloadIdentity, spiffeId, type WorkloadIdentity } from "./spiffe.ts";

/** The `iss` of every meshd token. */
export const TOKEN_ISSUER = "meshd";
/** The `aud` of bootstrap tokens: the CA. */
export const TOKEN_AUDIENCE = "meshd-ca";
/** Clock skew allowed on exp and nbf, in seconds. */
export const TOKEN_CLOCK_SKEW_S = 60;
/** Longest token accepted, in characters. */
export const MAX_TOKEN_LENGTH = 8192;

/** The key that signs and verifies tokens. */
export interface TokenSigningKey {
  readonly privateKey: KeyObject;
  readonly publicKey: KeyObject;
  /** RFC 7638 JWK thumbprint (base64url SHA-256), sent as the header's kid. */
  readonly kid: string;
}

/** The claims of a bootstrap token. */
export interface BootstrapClaims {
  readonly iss: string;
  readonly sub: string;
  readonly aud: string;
  readonly exp: number;
  readonly iat: number;
  readonly nbf: number;
  readonly jti: string;
  readonly ns: string;
  readonly sa: string;
  readonly wg?: string;
  readonly single_use?: boolean;
}

/** Why a token was refused. */
export type TokenFailure =
  | "malformed"
  | "algorithm"
  | "key"
  | "signature"
  | "claims"
  | "expired"
  | "not_yet_valid";

/** A token that failed verification; `failure` classifies it, the message explains. */
export class TokenError extends Error {
  override readonly name = "TokenError";
  /** Creates the error. */
  constructor(readonly failure: TokenFailure, message: string) {
    super(message);
  }
}

/** A token that passed verification. */
export interface VerifiedToken {
  readonly claims: BootstrapClaims;
  readonly identity: WorkloadIdentity;
}

/** Where the token signing key lives under a data directory. */
export function tokenKeyPath(dataDir: string): string {
  return join(dataDir, "token-signing-key.pem");
}

function thumbprint(pub: KeyObject): string {
  const jwk = pub.export({ format: "jwk" }) as { crv: string; kty: string; x: string; y: string };
  const canonical = `{"crv":"${jwk.crv}","kty":"${jwk.kty}","x":"${jwk.x}","y":"${jwk.y}"}`;
  return createHash("sha256").update(canonical).digest("base64url");
}

/** The signing key in PEM `pem`; throws, naming `file` (or where the PEM came from), for any other key. */
export function keyFromPem(pem: string, file: string): TokenSigningKey {
  let privateKey: KeyObject;
  try {
    privateKey = createPrivateKey(pem);
  } catch (err) {
    throw new Error(`${file}: not a PEM private key: ${errorMessage(err)}`);
  }
  if (privateKey.asymmetricKeyType !== "ec" || privateKey.asymmetricKeyDetails?.namedCurve !== "prime256v1") {
    throw new Error(`${file}: the token signing key must be an EC P-256 key`);
  }
  const publicKey = createPublicKey(privateKey);
  return { privateKey, publicKey, kid: thumbprint(publicKey) };
}

/**
 * Loads `<dataDir>/token-signing-key.pem`, creating it (EC P-256, mode 0600) when missing. Two
 * processes creating it at once end up with the same key. `warn` hears about a key file that
 * others can read.
 */
export function loadOrCreateTokenKey(dataDir: string, warn?: (msg: string) => void): TokenSigningKey {
  const file = tokenKeyPath(dataDir);
  if (!existsSync(file)) {
    const { privateKey } = generateKeyPairSync("ec", { namedCurve: "P-256" });
    createFileExclusive(file, privateKey.export({ format: "pem", type: "pkcs8" }) as string, 0o600);
  }
  if (warn && isGroupOrWorldReadable(file)) warn(`${file} is readable by group or others; chmod 600 it`);
  return keyFromPem(readFileSync(file, "utf8"), file);
}

/** What a new token says. */
export interface TokenRequest {
  readonly trustDomain: string;
  readonly namespace: string;
  readonly serviceAccount: string;
  readonly workloadGroup?: string;
  /** Lifetime in milliseconds. */
  readonly ttlMs: number;
  /** May be redeemed once only. */
  readonly singleUse?: boolean;
  /** Epoch milliseconds. */
  readonly now: number;
}

/** Signs a bootstrap token. Throws when a name is malformed or the lifetime is not positive. */
export function createToken(key: TokenSigningKey, req: TokenRequest): string {
  if (!(req.ttlMs >= 1000)) throw new Error("a token lives at least 1s");
  const sub = spiffeId(req.trustDomain, req.namespace, req.serviceAccount);
  const wgProblem = req.workloadGroup === undefined
    ? undefined
    : dnsSubdomainProblem("workload group", req.workloadGroup);
  if (wgProblem) throw new Error(wgProblem);
  const iat = Math.floor(req.now / 1000);
  const claims: BootstrapClaims = {
    iss: TOKEN_ISSUER,
    sub,
    aud: TOKEN_AUDIENCE,
    exp: iat + Math.ceil(req.ttlMs / 1000),
    iat,
    nbf: iat,
    jti: randomBytes(16).toString("base64url"),
    ns: req.namespace,
    sa: req.serviceAccount,
    ...(req.workloadGroup !== undefined ? { wg: req.workloadGroup } : {}),
    ...(req.singleUse ? { single_use: true } : {}),
  };
  const header = { alg: "ES256", typ: "JWT", kid: key.kid };
  const input = `${b64json(header)}.${b64json(claims)}`;
  const sig = sign("sha256", Buffer.from(input), { key: key.privateKey, dsaEncoding: "ieee-p1363" });
  return `${input}.${sig.toString("base64url")}`;
}

function b64json(v: unknown): string {
  return Buffer.from(JSON.stringify(v)).toString("base64url");
}

const B64URL = /^[A-Za-z0-9_-]*$/;

function decodeJson(part: string, what: string): Record<string, unknown> {
  let v: unknown;
  try {
    v = JSON.parse(Buffer.from(part, "base64url").toString("utf8"));
  } catch {
    throw new TokenError("malformed", `token ${what} is not base64url JSON`);
  }
  if (typeof v !== "object" || v === null || Array.isArray(v)) {
    throw new TokenError("malformed", `token ${what} is not a JSON object`);
  }
  return v as Record<string, unknown>;
}

/**
 * Verifies a bootstrap token against `key` at `nowMs`. Throws TokenError; never anything else.
 */
export function verifyToken(key: TokenSigningKey, token: string, nowMs: number): VerifiedToken {
  if (token.length > MAX_TOKEN_LENGTH) {
    throw new TokenError("malformed", `token is longer than ${MAX_TOKEN_LENGTH} characters`);
  }
  const parts = token.split(".");
  if (parts.length !== 3 || !parts.every((p) => B64URL.test(p))) {
    throw new TokenError("malformed", "token is not a compact JWS (three base64url parts)");
  }
  const [h, c, s] = parts as [string, string, string];
  const header = decodeJson(h, "header");
  if (header.alg !== "ES256") {
    throw new TokenError(
      "algorithm",
      `token algorithm ${JSON.stringify(header.alg)} is not accepted; want ES256`,
    );
  }
  if (header.crit !== undefined) {
    throw new TokenError("malformed", "token header has crit parameters meshd does not understand");
  }
  if (header.kid !== undefined && header.kid !== key.kid) {
    throw new TokenError("key", `token is signed by an unknown key (kid ${JSON.stringify(header.kid)})`);
  }
  const sig = Buffer.from(s, "base64url");
  if (sig.length !== 64) {
    throw new TokenError("signature", "token signature is not a 64-byte ES256 signature");
  }
  let ok = false;
  try {
    ok = verify("sha256", Buffer.from(`${h}.${c}`), { key: key.publicKey, dsaEncoding: "ieee-p1363" }, sig);
  } catch {
    ok = false;
  }
  if (!ok) throw new TokenError("signature", "token signature does not verify with meshd's token key");
  const claims = decodeJson(c, "claims");
  const num = (k: string) => {
    const v = claims[k];
    if (typeof v !== "number" || !Number.isFinite(v)) {
      throw new TokenError("claims", `token claim ${k} must be a number`);
    }
    return v;
  };
  const str = (k: string) => {
    const v = claims[k];
    if (typeof v !== "string") throw new TokenError("claims", `token claim ${k} must be a string`);
    return v;
  };
  if (claims.iss !== TOKEN_ISSUER) {
    throw new TokenError("claims", `token issuer ${JSON.stringify(claims.iss)} is not ${TOKEN_ISSUER}`);
  }
  const aud = claims.aud;
  if (!(aud === TOKEN_AUDIENCE || (Array.isArray(aud) && aud.includes(TOKEN_AUDIENCE)))) {
    throw new TokenError("claims", `token audience ${JSON.stringify(aud)} is not ${TOKEN_AUDIENCE}`);
  }
  const exp = num("exp");
  const nbf = claims.nbf === undefined ? num("iat") : num("nbf");
  const iat = num("iat");
  const now = nowMs / 1000;
  if (now > exp + TOKEN_CLOCK_SKEW_S) {
    throw new TokenError("expired", `token expired at ${new Date(exp * 1000).toISOString()}`);
  }
  if (nbf > now + TOKEN_CLOCK_SKEW_S) {
    throw new TokenError("not_yet_valid", `token is not valid before ${new Date(nbf * 1000).toISOString()}`);
  }
  const jti = str("jti");
  if (jti.length < 8 || jti.length > 128) {
    throw new TokenError("claims", "token jti must have 8 to 128 characters");
  }
  const identity = parseWorkloadIdentity(str("sub"));
  if (typeof identity === "string") throw new TokenError("claims", `token subject: ${identity}`);
  if (identity.namespace !== str("ns") || identity.serviceAccount !== str("sa")) {
    throw new TokenError("claims", "token subject does not match its ns and sa claims");
  }
  const wg = claims.wg;
  if (wg !== undefined && (typeof wg !== "string" || dnsSubdomainProblem("workload group", wg))) {
    throw new TokenError("claims", "token claim wg must be a workload group name");
  }
  const single = claims.single_use;
  if (single !== undefined && typeof single !== "boolean") {
    throw new TokenError("claims", "token claim single_use must be a boolean");
  }
  return {
    claims: {
      iss: TOKEN_ISSUER,
      sub: identity.uri,
      aud: TOKEN_AUDIENCE,
      exp,
      iat,
      nbf,
      jti,
      ns: identity.namespace,
      sa: identity.serviceAccount,
      ...(wg !== undefined ? { wg } : {}),
      ...(single !== undefined ? { single_use: single } : {}),
    },
    identity,
  };
}

/** The record of single-use tokens already redeemed. */
export interface UsedTokens {
  /** Whether `jti` was redeemed. */
  has(jti: string): boolean;
  /**
   * Records `jti` (valid until `exp`, epoch seconds) as redeemed and persists the record before
   * returning. Throws when it cannot be persisted: the caller must then not honour the token.
   */
  add(jti: string, exp: number): void;
  /** Number of records kept. */
  size(): number;
}

/**
 * Opens the used-token record at `file` (JSON `{"jti": exp, ...}`), dropping entries whose token
 * has expired (with the clock skew). Throws, naming the file, when it exists but cannot be read.
 */
export function openUsedTokens(file: string, now: () => number): UsedTokens {
  const used = new Map<string, number>();
  if (existsSync(file)) {
    let data: unknown;
    try {
      data = JSON.parse(readFileSync(file, "utf8"));
    } catch (err) {
      throw new Error(`${file}: cannot read the used-token record: ${errorMessage(err)}`);
    }
    if (typeof data !== "object" || data === null || Array.isArray(data)) {
      throw new Error(`${file}: the used-token record must be a JSON object of jti to expiry`);
    }
    for (const [jti, exp] of Object.entries(data)) if (typeof exp === "number") used.set(jti, exp);
  }
  const prune = () => {
    const cutoff = now() / 1000 - TOKEN_CLOCK_SKEW_S;
    for (const [jti, exp] of used) if (exp < cutoff) used.delete(jti);
  };
  prune();
  return {
    has: (jti) => used.has(jti),
    add(jti, exp) {
      prune();
      const next = new Map(used).set(jti, exp);
      writeFileAtomic(file, JSON.stringify(Object.fromEntries(next)) + "\n", 0o600);
      used.set(jti, exp);
    },
    size: () => used.size,
  };
}
