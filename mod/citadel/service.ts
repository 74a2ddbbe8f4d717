/**
 * `istio.v1.auth.IstioCertificateService/CreateCertificate` as a function: authenticate the
 * caller (bootstrap token, or the client certificate of the mTLS connection), apply the policy
 * (exactly one SPIFFE URI SAN, equal to the caller's identity, in the CA's trust domain; a rate
 * per identity; a capped lifetime), sign, and answer with the chain. Every refusal is audited
 * (a warn line with reason, caller and requested identity) and counted; every issued
 * certificate is logged and counted. Hostile input ends in a CaRefusal, never a crash.
 *
 * The answer's `cert_chain` is: the leaf, then each certificate between it and the roots (a
 * `--ca-dir` intermediate and its issuers), then, as the last element, the trust bundle: every
 * trusted root concatenated in one PEM string, the signing root first and the oldest last. An
 * agent writes all elements but the last to cert-chain.pem and the last to root-cert.pem, so
 * during a root rotation both roots reach every workload.
 *
 * @module
 */
import type { CertLog } from "./cert_log.ts";
import { Code } from "@connectrpc/connect";
import type { JsonObject } from "@bufbuild/protobuf";
import { X509Certificate } from "node:crypto";
import { Counter } from "prom-client";
import type { PeerCertificate } from "../grpc/server.ts";
import type { Clock } from "../shared/clock.ts";
import { errorMessage } from "../shared/errors.ts";
import type { Logger } from "../shared/logger.ts";
import type { MetricsRegistry } from "../shared/metrics.ts";
import type { CaMaterial } from "./ca_store.ts";
import { csrDerFromPem, CsrError, parseCsr, readCsr } from "./csr.ts";
import { pemEncode } from "./pem.ts";
import { createRateLimiter } from "../shared/rate_limit.ts";
import { createLeafSigner, type LeafSigner } from "./sign.ts";
import { certificateIdentity, type WorkloadIdentity } from "./spiffe.ts";
import { TokenError, type TokenSigningKey, type UsedTokens, verifyToken } from "./token.ts";
import type { SharedLedger } from "./token_shared.ts";
import { certificateNames, isCaCertificate, parseCertificate } from "./x509.ts";

/** Largest CSR accepted, in characters of PEM. */
export const MAX_CSR_BYTES = 64 * 1024;

/** How far a leaf's notBefore is set in the past, for clock skew between machines. */
export const LEAF_BACKDATE_MS = 60_000;

/** Why a request was refused: the `reason` label of `citadel_csr_refused_total`. */
export type RefusalReason =
  | "unauthenticated"
  | "token_invalid"
  | "token_expired"
  | "token_replayed"
  | "token_used"
  | "store_unavailable"
  | "certificate_untrusted"
  | "certificate_expired"
  | "csr_too_large"
  | "csr_invalid"
  | "csr_names"
  | "identity_mismatch"
  | "trust_domain"
  | "impersonation"
  | "rate_limited"
  | "not_ready"
  | "internal";

const CODES: Record<RefusalReason, Code> = {
  unauthenticated: Code.Unauthenticated,
  token_invalid: Code.Unauthenticated,
  token_expired: Code.Unauthenticated,
  token_replayed: Code.Unauthenticated,
  token_used: Code.PermissionDenied,
  store_unavailable: Code.Unavailable,
  certificate_untrusted: Code.Unauthenticated,
  certificate_expired: Code.Unauthenticated,
  csr_too_large: Code.InvalidArgument,
  csr_invalid: Code.InvalidArgument,
  csr_names: Code.InvalidArgument,
  identity_mismatch: Code.PermissionDenied,
  trust_domain: Code.PermissionDenied,
  impersonation: Code.PermissionDenied,
  rate_limited: Code.ResourceExhausted,
  not_ready: Code.Unavailable,
  internal: Code.Internal,
};

/** A refused request; `code` is the gRPC status to answer with. */
export class CaRefusal extends Error {
  override readonly name = "CaRefusal";
  /** The gRPC status code. */
  readonly code: Code;
  /** Creates the refusal. */
  constructor(readonly reason: RefusalReason, message: string) {
    super(message);
    this.code = CODES[reason];
  }
}

/** The CA material in force with what signing and verifying need, prepared once. */
export interface Issuer {
  readonly material: CaMaterial;
  readonly signer: LeafSigner;
  /** The chain and the roots, parsed, for verifying client certificates. */
  readonly chainCerts: readonly X509Certificate[];
  readonly rootCerts: readonly X509Certificate[];
}

/** Prepares `material` for issuing. */
export function createIssuer(material: CaMaterial): Issuer {
  return {
    material,
    signer: createLeafSigner({ certDer: material.signingCertDer, key: material.signingKey }),
    chainCerts: material.chain.map((p) => new X509Certificate(p)),
    rootCerts: material.roots.map((p) => new X509Certificate(p)),
  };
}

/** What the transport knows about the caller. */
export interface CallerCredentials {
  /** The `authorization` header ("Bearer <jwt>"). */
  readonly authorization?: string | null;
  /** The client certificate of a TLS connection. */
  readonly peer?: PeerCertificate;
}

/** An authenticated caller. */
export interface Caller {
  readonly identity: WorkloadIdentity;
  readonly method: "token" | "certificate";
  /** For audit lines: how the caller proved who it is. */
  readonly description: string;
  /** Set for a single-use token: redeemed when a certificate is issued. */
  readonly singleUse?: { readonly jti: string; readonly exp: number };
}

/** One CreateCertificate request. */
export interface CertificateRequest {
  /** PEM PKCS#10. */
  readonly csr: string;
  /** Requested lifetime in seconds; 0 or less asks for the default. */
  readonly validityDuration: bigint | number;
  readonly metadata?: JsonObject;
}

/** What was issued. */
export interface IssuedCertificate {
  /** Leaf first, then intermediates, then the trust bundle as one element. */
  readonly certChain: string[];
  readonly serialHex: string;
  readonly identity: string;
  readonly notAfter: number;
}

/** Inputs to createCaService. */
export interface CaServiceOptions {
  /** The issuer in force (changes on rotation); undefined before the CA has loaded (not ready). */
  issuer(): Issuer | undefined;
  /** The trust domain identities must belong to; undefined while not known yet (not ready). */
  trustDomain(): string | undefined;
  /** The token signing key, or where to get it (the shared one is loaded at start). */
  readonly tokenKey: TokenSigningKey | (() => TokenSigningKey);
  readonly usedTokens: UsedTokens;
  /**
   * The single-use ledger shared by replicas (`--store`); when set, createCertificateAsync
   * records single-use tokens there instead of in `usedTokens`.
   */
  readonly sharedLedger?: SharedLedger;
  readonly clock: Clock;
  readonly logger: Logger;
  readonly metrics: MetricsRegistry;
  /** Lifetime when the request asks for none, in ms. */
  readonly defaultTtlMs: number;
  /** Longest lifetime; longer requests are capped to it, in ms. */
  readonly maxTtlMs: number;
  /** Certificates per identity per minute (burst the same); 0 disables. */
  readonly ratePerMinute: number;
  /** Called after each issued certificate (for bookkeeping such as rotation status). */
  onIssued?(cert: IssuedCertificate, issuer: Issuer): void;
  /** Keeps the recent certificates issued and requests refused (for /debug/certz). */
  readonly certLog?: CertLog;
}

/** The CA service. */
export interface CaService {
  /**
   * Authenticates a caller: a valid client certificate wins; otherwise a bearer token. Throws
   * an audited CaRefusal. `requested` names the requested identity for the audit line.
   */
  authenticate(creds: CallerCredentials, requested?: () => string | undefined): Caller;
  /** Applies the policy to an authenticated request and signs. Throws an audited CaRefusal. */
  issue(req: CertificateRequest, caller: Caller): IssuedCertificate;
  /** authenticate, then issue. */
  createCertificate(req: CertificateRequest, creds: CallerCredentials): IssuedCertificate;
  /**
   * createCertificate, recording a single-use token in the shared ledger when there is one:
   * PERMISSION_DENIED when it was redeemed before (at any replica), UNAVAILABLE when the ledger
   * cannot be reached (nothing is issued then).
   */
  createCertificateAsync(req: CertificateRequest, creds: CallerCredentials): Promise<IssuedCertificate>;
}

/** Best-effort: the URI a CSR asks for, without checking anything (for audit lines). */
function requestedIdentityOf(csr: string): string | undefined {
  if (csr.length > MAX_CSR_BYTES) return undefined;
  try {
    return readCsr(csrDerFromPem(csr)).names.uris.join(",") || undefined;
  } catch {
    return undefined;
  }
}

/** Creates the service. */
export function createCaService(opts: CaServiceOptions): CaService {
  const log = opts.logger;
  const issued = new Counter({
    name: "citadel_certs_issued_total",
    help: "Workload certificates issued",
    registers: [opts.metrics],
  });
  const refused = new Counter({
    name: "citadel_csr_refused_total",
    help: "Certificate requests refused, by reason",
    labelNames: ["reason"],
    registers: [opts.metrics],
  });
  const limiter = createRateLimiter({ perMinute: opts.ratePerMinute, now: () => opts.clock.now() });

  const refuse = (reason: RefusalReason, message: string, caller: string, requested: string | undefined) => {
    refused.inc({ reason });
    log.warn("certificate request refused", { reason, caller, requested: requested ?? "(unknown)", message });
    opts.certLog?.refused({
      at: new Date(opts.clock.now()).toISOString(),
      reason,
      caller,
      requested: requested ?? "(unknown)",
      message,
    });
    return new CaRefusal(reason, message);
  };

  function verifyPeer(
    peer: PeerCertificate,
    iss: Issuer,
    now: number,
  ): Caller | { fail: RefusalReason; message: string; description: string } {
    let fields;
    let x509: X509Certificate;
    try {
      fields = parseCertificate(peer.der);
      x509 = new X509Certificate(peer.der);
    } catch {
      return {
        fail: "certificate_untrusted",
        message: "client certificate cannot be parsed",
        description: "certificate (unparsable)",
      };
    }
    const description = `certificate serial=${fields.serialHex}`;
    const bad = (fail: RefusalReason, message: string) => ({ fail, message, description });
    if (!peer.authorized) {
      return bad(
        "certificate_untrusted",
        `client certificate is not trusted: ${peer.authorizationError ?? "no reason given"}`,
      );
    }
    if (now > fields.notAfter) {
      return bad(
        "certificate_expired",
        `client certificate expired at ${new Date(fields.notAfter).toISOString()}`,
      );
    }
    if (now < fields.notBefore) return bad("certificate_untrusted", "client certificate is not valid yet");
    let isCa: boolean;
    let names;
    try {
      isCa = isCaCertificate(fields);
      names = certificateNames(fields);
    } catch {
      return bad("certificate_untrusted", "client certificate extensions cannot be parsed");
    }
    if (isCa) return bad("certificate_untrusted", "a CA certificate cannot authenticate a workload");
    let current = x509;
    let trusted = false;
    for (let depth = 0; depth < 8 && !trusted; depth++) {
      const cur = current;
      if (iss.rootCerts.some((r) => cur.checkIssued(r) && cur.verify(r.publicKey))) trusted = true;
      else {
        const next = iss.chainCerts.find((c) => c !== cur && cur.checkIssued(c) && cur.verify(c.publicKey));
        if (!next) break;
        current = next;
      }
    }
    if (!trusted) {
      return bad("certificate_untrusted", "client certificate was not issued by this CA's trusted roots");
    }
    const identity = certificateIdentity(names.uris);
    if (typeof identity === "string") return bad("certificate_untrusted", identity);
    return { identity, method: "certificate", description: `${description} ${identity.uri}` };
  }

  const authenticate: CaService["authenticate"] = (creds, requested = () => undefined) => {
    const now = opts.clock.now();
    const iss = opts.issuer();
    if (!iss) throw refuse("not_ready", "the CA is not ready yet", "(not authenticated)", requested());
    let certFailure: { fail: RefusalReason; message: string; description: string } | undefined;
    if (creds.peer) {
      const r = verifyPeer(creds.peer, iss, now);
      if ("identity" in r) return r;
      certFailure = r;
    }
    const auth = creds.authorization ?? "";
    const m = /^Bearer[ ]+(\S+)$/i.exec(auth.trim());
    if (!m) {
      if (certFailure) {
        throw refuse(certFailure.fail, certFailure.message, certFailure.description, requested());
      }
      const message = auth === ""
        ? "no credentials: send a bootstrap token (authorization: Bearer <jwt>) or a client certificate over TLS"
        : 'the authorization header is not "Bearer <token>"';
      throw refuse("unauthenticated", message, "anonymous", requested());
    }
    let verified;
    try {
      verified = verifyToken(
        typeof opts.tokenKey === "function" ? opts.tokenKey() : opts.tokenKey,
        m[1]!,
        now,
      );
    } catch (err) {
      const e = err as TokenError;
      const reason = e.failure === "expired" || e.failure === "not_yet_valid"
        ? "token_expired"
        : "token_invalid";
      throw refuse(
        reason,
        e instanceof TokenError ? e.message : "token cannot be verified",
        "token (unverified)",
        requested(),
      );
    }
    const description = `token jti=${verified.claims.jti} sub=${verified.claims.sub}`;
    if (verified.claims.single_use && opts.usedTokens.has(verified.claims.jti)) {
      throw refuse("token_replayed", "this single-use token was already redeemed", description, requested());
    }
    return {
      identity: verified.identity,
      method: "token",
      description,
      ...(verified.claims.single_use
        ? { singleUse: { jti: verified.claims.jti, exp: verified.claims.exp } }
        : {}),
    };
  };

  /** Applies the policy; what signing then needs. */
  const check = (req: CertificateRequest, caller: Caller) => {
    const now = opts.clock.now();
    const who = caller.description;
    if (req.csr.length > MAX_CSR_BYTES) {
      throw refuse(
        "csr_too_large",
        `CSR of ${req.csr.length} bytes is larger than ${MAX_CSR_BYTES}`,
        who,
        undefined,
      );
    }
    const td = opts.trustDomain();
    const iss = opts.issuer();
    if (td === undefined || !iss) {
      throw refuse("not_ready", "the CA is not ready yet (CA or mesh config still loading)", who, undefined);
    }
    const impersonated = req.metadata?.ImpersonatedIdentity;
    if (impersonated !== undefined && impersonated !== "") {
      throw refuse(
        "impersonation",
        "impersonation (metadata ImpersonatedIdentity) is not supported",
        who,
        String(impersonated),
      );
    }
    if (!limiter.take(caller.identity.uri)) {
      throw refuse(
        "rate_limited",
        `more than ${opts.ratePerMinute} certificate requests per minute for ${caller.identity.uri}`,
        who,
        caller.identity.uri,
      );
    }
    let csr;
    try {
      csr = parseCsr(csrDerFromPem(req.csr));
    } catch (err) {
      const message = err instanceof CsrError ? err.message : "CSR cannot be parsed";
      throw refuse("csr_invalid", message, who, requestedIdentityOf(req.csr));
    }
    const n = csr.names;
    const requested = n.uris.join(",") || undefined;
    if (n.uris.length !== 1 || n.dns.length || n.ips.length || n.emails.length || n.other) {
      const found = [
        `${n.uris.length} URI`,
        ...(n.dns.length ? [`${n.dns.length} DNS`] : []),
        ...(n.ips.length ? [`${n.ips.length} IP`] : []),
        ...(n.emails.length ? [`${n.emails.length} email`] : []),
        ...(n.other ? [`${n.other} other`] : []),
      ].join(", ");
      throw refuse(
        "csr_names",
        `CSR must request exactly one spiffe:// URI SAN and nothing else; found ${found}`,
        who,
        requested,
      );
    }
    if (n.uris[0] !== caller.identity.uri) {
      throw refuse(
        "identity_mismatch",
        `CSR asks for ${n.uris[0]} but the caller is ${caller.identity.uri}`,
        who,
        requested,
      );
    }
    if (caller.identity.trustDomain !== td) {
      throw refuse(
        "trust_domain",
        `identity ${caller.identity.uri} is not in the CA's trust domain ${td}`,
        who,
        requested,
      );
    }
    const asked = Number(req.validityDuration) * 1000;
    const ttl = asked > 0 ? Math.min(asked, opts.maxTtlMs) : opts.defaultTtlMs;
    const notAfter = Math.min(now + ttl, iss.signer.issuerNotAfter, iss.material.notAfter);
    return { now, who, iss, csr, requested, notAfter };
  };

  const sign = (caller: Caller, c: ReturnType<typeof check>): IssuedCertificate => {
    const { now, iss, csr, notAfter } = c;
    const leaf = iss.signer.sign({
      spki: csr.spki,
      names: [{ type: "uri", value: caller.identity.uri }],
      notBefore: now - LEAF_BACKDATE_MS,
      notAfter,
    });
    const out: IssuedCertificate = {
      certChain: [pemEncode("CERTIFICATE", leaf.der), ...iss.material.chain, iss.material.trustBundle],
      serialHex: leaf.serialHex,
      identity: caller.identity.uri,
      notAfter,
    };
    issued.inc();
    log.info("certificate issued", {
      serial: leaf.serialHex,
      identity: caller.identity.uri,
      notAfter: new Date(notAfter).toISOString(),
      via: caller.method,
    });
    opts.certLog?.issued({
      identity: caller.identity.uri,
      serial: leaf.serialHex,
      issuedAt: new Date(now).toISOString(),
      notAfter: new Date(notAfter).toISOString(),
      via: caller.method,
    });
    opts.onIssued?.(out, iss);
    return out;
  };

  const issue: CaService["issue"] = (req, caller) => {
    const c = check(req, caller);
    if (caller.singleUse) {
      if (opts.usedTokens.has(caller.singleUse.jti)) {
        throw refuse("token_replayed", "this single-use token was already redeemed", c.who, c.requested);
      }
      try {
        opts.usedTokens.add(caller.singleUse.jti, caller.singleUse.exp);
      } catch (err) {
        log.error("cannot record a redeemed single-use token", { err: (err as Error).message });
        throw refuse(
          "internal",
          "cannot record the single-use token as redeemed; nothing issued",
          c.who,
          c.requested,
        );
      }
    }
    return sign(caller, c);
  };

  return {
    authenticate,
    issue,
    createCertificate(req, creds) {
      const caller = authenticate(creds, () => requestedIdentityOf(req.csr));
      return issue(req, caller);
    },
    async createCertificateAsync(req, creds) {
      const caller = authenticate(creds, () => requestedIdentityOf(req.csr));
      const ledger = opts.sharedLedger;
      if (!caller.singleUse || !ledger) return issue(req, caller);
      const c = check(req, caller);
      let claimed: boolean;
      try {
        claimed = await ledger.claim(caller.singleUse.jti, caller.singleUse.exp);
      } catch (err) {
        throw refuse(
          "store_unavailable",
          `cannot record the single-use token: the store is unreachable (${
            errorMessage(err)
          }); nothing issued`,
          c.who,
          c.requested,
        );
      }
      if (!claimed) throw refuse("token_used", "token already used", c.who, c.requested);
      return sign(caller, c);
    },
  };
}
