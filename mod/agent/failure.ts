/**
 * What a failed call to the control plane (the CA's CreateCertificate, pilot's ADS stream) says
 * about trying again.
 *
 * - Most failures pass by themselves: connection refused or reset, timeouts, DNS, UNAVAILABLE, a
 *   rate limit, a control plane that is restarting. They are retried with backoff.
 * - Pilot refusing the workload's registration (PERMISSION_DENIED, FAILED_PRECONDITION,
 *   UNAUTHENTICATED on the registration stream) is fixed in the mesh's config or by the
 *   operator, not here: retried slowly, and reported.
 * - Some failures never pass without a change of one of the agent's settings: TLS spoken to a
 *   plaintext port, a server certificate the agent's roots do not trust or that is for other
 *   names, the CA refusing the bootstrap token (already redeemed, expired, signed by another
 *   key) or the identity asked for. They become a SettingError naming the setting to change;
 *   `meshd agent` exits with its exit code rather than retrying for ever.
 *
 * @module
 */
import { Code, ConnectError } from "@connectrpc/connect";

/**
 * A failure that only a change of the named setting fixes. `meshd agent` logs its message as
 * one line and exits with `exitCode`.
 */
export class SettingError extends Error {
  override readonly name = "SettingError";
  /** The exit code of `meshd agent` (1). */
  readonly exitCode = 1;
}

/** Where a call went and which settings chose it, so that messages name what to change. */
export interface CallSite {
  /** The CA, or pilot (whose refusals concern the registration, not the agent's settings). */
  readonly service: "ca" | "pilot";
  /** HOST:PORT called. */
  readonly addr: string;
  /** The setting naming the address, with its cluster.env key: "--ca-tls-addr (CA_ADDR)". */
  readonly addrSetting: string;
  /** Over TLS: where the roots that verify the server came from ("--root-cert (CA_ROOT_CA) FILE"). */
  readonly roots?: string;
  /** When the call carried the bootstrap token: where it came from ("--token-file (TOKEN_FILE) FILE"). */
  readonly token?: string;
}

/** What to do after a failed call. */
export type Verdict =
  | { readonly kind: "retry" }
  | { readonly kind: "refused"; readonly code: Code; readonly message: string }
  | { readonly kind: "setting"; readonly error: SettingError };

/** TLS client errors of a server that does not speak TLS (its plaintext answer read as a TLS record). */
const NOT_TLS_CODES = new Set([
  "ERR_SSL_WRONG_VERSION_NUMBER",
  "ERR_SSL_PACKET_LENGTH_TOO_LONG",
  "ERR_SSL_HTTP_REQUEST",
]);
const NOT_TLS_TEXT =
  /WRONG_VERSION_NUMBER|wrong version number|packet length too long|PACKET_LENGTH_TOO_LONG/;

/** Certificate verification errors that mean: the server's chain does not lead to our roots. */
const UNTRUSTED_CODES = new Set([
  "SELF_SIGNED_CERT_IN_CHAIN",
  "DEPTH_ZERO_SELF_SIGNED_CERT",
  "UNABLE_TO_GET_ISSUER_CERT",
  "UNABLE_TO_GET_ISSUER_CERT_LOCALLY",
  "UNABLE_TO_VERIFY_LEAF_SIGNATURE",
  "CERT_SIGNATURE_FAILURE",
  "CERT_UNTRUSTED",
  "CERT_REJECTED",
]);

/** The ConnectError in an error or its causes (ca_client wraps it), else one made from the error. */
function connectErrorOf(err: unknown): ConnectError {
  let e: unknown = err;
  for (let depth = 0; depth < 4 && e instanceof Error; depth++) {
    if (e instanceof ConnectError) return e;
    e = e.cause;
  }
  return ConnectError.from(err);
}

/** The node error code (ECONNREFUSED, ERR_SSL_...) under a ConnectError, if any. */
function systemCode(e: ConnectError): string | undefined {
  const cause = e.cause as { code?: unknown } | undefined;
  return typeof cause?.code === "string" ? cause.code : undefined;
}

/** "HOST:15012" for an address on meshd's plaintext port, else a reminder of the default. */
function tlsPortHint(addr: string): string {
  const colon = addr.lastIndexOf(":");
  return addr.slice(colon + 1) === "15010"
    ? `${addr.slice(0, colon)}:15012`
    : "meshd's TLS port, 15012 by default";
}

/** Judges a failed call. */
export function judgeFailure(err: unknown, site: CallSite): Verdict {
  const e = connectErrorOf(err);
  const code = systemCode(e);
  const raw = e.rawMessage;
  const setting = (message: string): Verdict => ({ kind: "setting", error: new SettingError(message) });

  if ((code !== undefined && NOT_TLS_CODES.has(code)) || NOT_TLS_TEXT.test(raw)) {
    return setting(
      `${site.addr} is plaintext, not TLS (${raw}): set ${site.addrSetting} to the TLS port (${
        tlsPortHint(site.addr)
      })`,
    );
  }
  if (code !== undefined && UNTRUSTED_CODES.has(code)) {
    return setting(
      `the server certificate of ${site.addr} is not signed by ${
        site.roots ?? "the mesh's roots"
      } (${raw}): ` +
        `set --root-cert (CA_ROOT_CA) to this mesh's root certificate, or ${site.addrSetting} to this mesh's address`,
    );
  }
  if (code === "ERR_TLS_CERT_ALTNAME_INVALID") {
    return setting(
      `the server certificate of ${site.addr} is for other names (${raw}): ` +
        "set --ca-server-name (MESHD_CA_SERVER_NAME) to one of its names",
    );
  }
  if (site.service === "pilot") {
    if (
      e.code === Code.PermissionDenied || e.code === Code.FailedPrecondition ||
      e.code === Code.Unauthenticated
    ) {
      return { kind: "refused", code: e.code, message: raw };
    }
    return { kind: "retry" };
  }
  if (e.code === Code.Unauthenticated && site.token) {
    return setting(
      `the CA at ${site.addr} refused the token in ${site.token}: ${raw}; ` +
        "put a new token there (meshd token create, or a new meshd vm bundle)",
    );
  }
  if (e.code === Code.Unauthenticated) {
    return setting(
      `the CA at ${site.addr} does not accept the workload certificate: ${raw}; remove the stored ` +
        "certificate from --data-dir and bootstrap again with --token-file (TOKEN_FILE)",
    );
  }
  if (e.code === Code.PermissionDenied) {
    return setting(
      `the CA at ${site.addr} refused the certificate request: ${raw}; --namespace, --service-account ` +
        `and --trust-domain must be the identity of the ${site.token ? "token" : "certificate"}`,
    );
  }
  return { kind: "retry" };
}

/** Node error codes of a connection that could not be made or broke. */
const NETWORK_CODES = new Set([
  "ECONNREFUSED",
  "ECONNRESET",
  "ECONNABORTED",
  "ETIMEDOUT",
  "EHOSTUNREACH",
  "ENETUNREACH",
  "EHOSTDOWN",
  "EPIPE",
  "ENOTFOUND",
  "EAI_AGAIN",
  "ERR_HTTP2_SESSION_ERROR",
  "ERR_HTTP2_STREAM_ERROR",
  "ERR_HTTP2_GOAWAY_SESSION",
]);

/**
 * Whether a failure that judgeFailure says to retry concerns the replica called rather than the
 * request: UNAVAILABLE or a network error (refused, reset, unreachable, DNS). Only such a failure
 * moves the next attempt to another replica (endpoints.ts) at once.
 */
export function failsOver(err: unknown): boolean {
  const e = connectErrorOf(err);
  if (e.code === Code.Unavailable) return true;
  const code = systemCode(e) ?? (err as { code?: unknown } | undefined)?.code;
  return typeof code === "string" && NETWORK_CODES.has(code);
}
