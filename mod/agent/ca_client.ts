/**
 * The client side of istio.v1.auth.IstioCertificateService: one CreateCertificate call over a
 * fresh HTTP/2 connection (plaintext with a bearer token, TLS with a bearer token, or mutual
 * TLS with the current certificate), closed when the call ends.
 *
 * @module
 */
import { Code, ConnectError, createClient } from "@connectrpc/connect";
import { createGrpcTransport, Http2SessionManager } from "@connectrpc/connect-node";
import { IstioCertificateService } from "#gen/istio/v1/auth/ca_pb.ts";

/** TLS for the connection to the CA. */
export interface CaTls {
  /** PEM roots that the CA's server certificate must chain to. */
  readonly ca: string;
  /** Client certificate chain and key (PEM), for mutual TLS. */
  readonly cert?: string;
  readonly key?: string;
  /** Name to verify the server certificate against (and send as SNI); default: the address's host. */
  readonly serverName?: string;
}

/** One CreateCertificate call. */
export interface CreateCertificateOptions {
  /** HOST:PORT of the CA. */
  readonly addr: string;
  /** Absent: plaintext (h2c). */
  readonly tls?: CaTls;
  /** Sent as `authorization: Bearer <token>`. */
  readonly token?: string;
  readonly csrPem: string;
  /** Requested lifetime; sent in whole seconds. */
  readonly ttlMs: number;
  /** Deadline of the call. */
  readonly timeoutMs: number;
  readonly signal?: AbortSignal;
}

/** How a call authenticated, for messages and metrics. */
export function describeCall(o: Pick<CreateCertificateOptions, "tls" | "token">): string {
  if (!o.tls) return "token over plaintext";
  if (o.tls.cert) return "mutual TLS";
  return "token over TLS";
}

/**
 * Calls CreateCertificate and returns the answer's cert_chain. Errors say where, how and why
 * ("CreateCertificate at 10.0.0.1:15012 (mutual TLS): unavailable: connect ECONNREFUSED"), and
 * carry the ConnectError as their cause (for failure.ts).
 */
export async function createCertificate(o: CreateCertificateOptions): Promise<string[]> {
  const scheme = o.tls ? "https" : "http";
  const url = `${scheme}://${o.addr}`;
  const sessionOptions = o.tls
    ? {
      ca: o.tls.ca,
      cert: o.tls.cert,
      key: o.tls.key,
      ALPNProtocols: ["h2"],
      ...(o.tls.serverName ? { servername: o.tls.serverName } : {}),
    }
    : {};
  const manager = new Http2SessionManager(url, {}, sessionOptions);
  const client = createClient(
    IstioCertificateService,
    createGrpcTransport({ baseUrl: url, sessionManager: manager }),
  );
  try {
    const res = await client.createCertificate(
      { csr: o.csrPem, validityDuration: BigInt(Math.max(1, Math.round(o.ttlMs / 1000))) },
      {
        headers: o.token ? { authorization: `Bearer ${o.token}` } : undefined,
        timeoutMs: o.timeoutMs,
        signal: o.signal,
      },
    );
    if (res.certChain.length === 0) throw new Error("the answer holds no certificate");
    return res.certChain;
  } catch (err) {
    const e = ConnectError.from(err);
    const name = Code[e.code]?.replace(/([a-z])([A-Z])/g, "$1_$2").toLowerCase() ?? String(e.code);
    const code = e.code === Code.Unknown ? "" : `${name}: `;
    throw new Error(`CreateCertificate at ${o.addr} (${describeCall(o)}): ${code}${e.rawMessage}`, {
      cause: e,
    });
  } finally {
    manager.abort();
  }
}
