/**
 * The admission webhook: HTTPS `/validate` answering Kubernetes admission.k8s.io/v1
 * AdmissionReview requests with galley's validation, so `kubectl apply` of a bad resource is
 * denied with the same message `meshd validate` prints.
 */
import { readFileSync } from "node:fs";
import { splitHostPort } from "../cli/setting.ts";
import { type ConnectionLimits, DEFAULT_CONNECTION_LIMITS } from "../shared/conn_guard.ts";
import { errorMessage } from "../shared/errors.ts";
import { startFetchListener } from "../shared/fetch_listener.ts";
import type { Logger } from "../shared/logger.ts";
import type { MetricsRegistry } from "../shared/metrics.ts";
import { parseConfig } from "./parse.ts";
import { formatDiagnostic } from "../api/resource.ts";
import { validateResource } from "./validate.ts";

/** Options for startWebhookServer. */
export interface WebhookOptions {
  addr: string;
  /** PEM files; when both are unset a self-signed certificate is made for localhost. */
  certFile?: string;
  keyFile?: string;
  logger: Logger;
  /** Largest request body accepted. */
  maxBytes: number;
  /** DNS names of the self-signed certificate. */
  dnsNames?: readonly string[];
  /** Limits on the listener's connections. */
  limits?: ConnectionLimits;
  /** Where limit hits and open connections are counted. */
  metrics?: MetricsRegistry;
}

/** A running webhook server. */
export interface WebhookServer {
  readonly addr: string;
  /** PEM certificate served (for a Kubernetes caBundle). */
  readonly certPem: string;
  stop(): Promise<void>;
}

/** The outcome of reviewing one object. */
export interface AdmissionVerdict {
  readonly allowed: boolean;
  /** One line per problem, when denied. */
  readonly messages: readonly string[];
}

/**
 * Validates one Kubernetes object (as JSON data) the way galley validates files. `namespace`
 * fills metadata.namespace when the object leaves it out (Kubernetes sends it beside the object).
 */
export function reviewObject(object: unknown, namespace?: string): AdmissionVerdict {
  if (typeof object !== "object" || object === null || Array.isArray(object)) {
    return { allowed: false, messages: ["request.object: want a Kubernetes object"] };
  }
  const o = object as { metadata?: { namespace?: string } };
  const withNs = namespace && o.metadata && o.metadata.namespace === undefined
    ? { ...o, metadata: { ...o.metadata, namespace } }
    : o;
  const parsed = parseConfig(JSON.stringify(withNs), "admission");
  const diags = [...parsed.diagnostics, ...parsed.resources.flatMap((r) => validateResource(r))]
    .filter((d) => d.severity === "error");
  return {
    allowed: diags.length === 0,
    messages: diags.map((d) => formatDiagnostic({ ...d, pos: undefined })),
  };
}

interface AdmissionRequest {
  uid?: unknown;
  operation?: unknown;
  namespace?: unknown;
  object?: unknown;
}

/** Answers one AdmissionReview body; returns the HTTP status and the response body. */
export function handleAdmissionReview(body: unknown): { status: number; body: unknown } {
  const review = body as { apiVersion?: unknown; kind?: unknown; request?: AdmissionRequest };
  if (typeof review !== "object" || review === null || review.kind !== "AdmissionReview" || !review.request) {
    return { status: 400, body: { error: "want an admission.k8s.io/v1 AdmissionReview with a request" } };
  }
  if (review.apiVersion !== "admission.k8s.io/v1") {
    return {
      status: 400,
      body: { error: `apiVersion ${String(review.apiVersion)} is not supported; want admission.k8s.io/v1` },
    };
  }
  const req = review.request;
  if (typeof req.uid !== "string" || req.uid === "") {
    return { status: 400, body: { error: "request.uid is required" } };
  }
  const verdict = req.operation === "DELETE" || req.operation === "CONNECT"
    ? { allowed: true, messages: [] }
    : reviewObject(req.object, typeof req.namespace === "string" ? req.namespace : undefined);
  return {
    status: 200,
    body: {
      apiVersion: "admission.k8s.io/v1",
      kind: "AdmissionReview",
      response: {
        uid: req.uid,
        allowed: verdict.allowed,
        ...(verdict.allowed
          ? {}
          : { status: { code: 400, reason: "Invalid", message: verdict.messages.join("\n") } }),
      },
    },
  };
}

/** Makes a self-signed ECDSA P-256 certificate for the webhook. */
export async function selfSignedCertificate(
  dnsNames: readonly string[],
): Promise<{ certPem: string; keyPem: string }> {
  // Loaded on demand: the X.509 library is large and only needed when no certificate is given.
  await import("reflect-metadata");
  const x509 = await import("@peculiar/x509");
  const alg = { name: "ECDSA", namedCurve: "P-256", hash: "SHA-256" };
  const keys = await crypto.subtle.generateKey(alg, true, ["sign", "verify"]) as CryptoKeyPair;
  const now = Date.now();
  const cert = await x509.X509CertificateGenerator.createSelfSigned({
    serialNumber: crypto.getRandomValues(new Uint8Array(16)).reduce(
      (s, b) => s + b.toString(16).padStart(2, "0"),
      "7",
    ),
    name: `CN=${dnsNames[0] ?? "localhost"}, O=meshd`,
    notBefore: new Date(now - 60_000),
    notAfter: new Date(now + 365 * 24 * 3600_000),
    keys,
    signingAlgorithm: alg,
    extensions: [
      new x509.BasicConstraintsExtension(false, undefined, true),
      new x509.KeyUsagesExtension(
        x509.KeyUsageFlags.digitalSignature | x509.KeyUsageFlags.keyEncipherment,
        true,
      ),
      new x509.ExtendedKeyUsageExtension([x509.ExtendedKeyUsage.serverAuth]),
      new x509.SubjectAlternativeNameExtension([
        ...dnsNames.map((value) => ({ type: "dns" as const, value })),
        { type: "ip", value: "127.0.0.1" },
      ]),
    ],
  });
  const pkcs8 = await crypto.subtle.exportKey("pkcs8", keys.privateKey);
  const b64 = Buffer.from(pkcs8).toString("base64").replace(/(.{64})/g, "$1\n");
  return {
    certPem: cert.toString("pem"),
    keyPem: `-----BEGIN PRIVATE KEY-----\n${b64}\n-----END PRIVATE KEY-----\n`,
  };
}

/** Starts the webhook's HTTPS server. */
export async function startWebhookServer(opts: WebhookOptions): Promise<WebhookServer> {
  const hp = splitHostPort(opts.addr);
  if (!hp) throw new Error(`bad webhook address ${opts.addr}`);
  let certPem: string;
  let keyPem: string;
  if (opts.certFile || opts.keyFile) {
    if (!opts.certFile || !opts.keyFile) throw new Error("--webhook-cert and --webhook-key go together");
    try {
      certPem = readFileSync(opts.certFile, "utf8");
      keyPem = readFileSync(opts.keyFile, "utf8");
    } catch (err) {
      throw new Error(`webhook certificate: ${errorMessage(err)}`);
    }
  } else {
    ({ certPem, keyPem } = await selfSignedCertificate(
      opts.dnsNames ?? ["localhost", "meshd.istio-system.svc"],
    ));
  }
  const log = opts.logger;
  // On node:http behind a connection guard: Bun.serve cannot cap connections (fetch_listener.ts).
  const server = await startFetchListener({
    name: "webhook",
    host: hp.host || "0.0.0.0",
    port: hp.port,
    tls: { cert: certPem, key: keyPem },
    maxBodyBytes: opts.maxBytes,
    limits: opts.limits ?? DEFAULT_CONNECTION_LIMITS,
    logger: log,
    metrics: opts.metrics,
    async fetch(req) {
      const path = new URL(req.url).pathname;
      if (path !== "/validate") {
        return Response.json({ error: "not found; the webhook serves /validate" }, { status: 404 });
      }
      if (req.method !== "POST") return Response.json({ error: "use POST" }, { status: 405 });
      // Only JSON is parsed as JSON: a text/plain body is what a web page can send anywhere.
      const type = (req.headers.get("content-type") ?? "").split(";")[0]!.trim().toLowerCase();
      if (type !== "application/json") {
        return Response.json({
          error: `Content-Type ${type || "(none)"} is not accepted: /validate takes an AdmissionReview ` +
            "as application/json",
        }, { status: 415 });
      }
      let body: unknown;
      try {
        body = await req.json();
      } catch (err) {
        return Response.json({ error: `body is not JSON: ${errorMessage(err)}` }, { status: 400 });
      }
      const res = handleAdmissionReview(body);
      const verdict = (res.body as { response?: { allowed: boolean; uid: string } }).response;
      if (verdict && !verdict.allowed) log.info("admission denied", { uid: verdict.uid });
      return Response.json(res.body, { status: res.status });
    },
    onError(err) {
      log.warn("webhook request failed", { err: errorMessage(err) });
      return Response.json({ error: "internal error" }, { status: 500 });
    },
  });
  return {
    addr: `${hp.host || "0.0.0.0"}:${server.port}`,
    certPem,
    stop: () => server.stop(),
  };
}
