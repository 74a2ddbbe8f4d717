/**
 * A small in-process IstioCertificateService for agent tests: a self-signed root (and an
 * intermediate), a plaintext and a TLS listener on loopback (the shared gRPC server of
 * mod/grpc/server.ts, so peer certificates arrive as in the daemon), bearer-token or
 * client-certificate authentication, and switches to make it fail.
 */
import { create } from "@bufbuild/protobuf";
import { Code, ConnectError } from "@connectrpc/connect";
import { X509Certificate } from "node:crypto";
import { IstioCertificateResponseSchema, IstioCertificateService } from "#gen/istio/v1/auth/ca_pb.ts";
import { createGrpcServer, PEER_CERTIFICATE } from "../../mod/grpc/server.ts";
import { createLogger } from "../../mod/shared/logger.ts";

type X509 = typeof import("@peculiar/x509");

async function lib(): Promise<X509> {
  await import("reflect-metadata");
  return await import("@peculiar/x509");
}

const ALG = { name: "ECDSA", namedCurve: "P-256", hash: "SHA-256" };

async function keyPair(): Promise<CryptoKeyPair> {
  return await crypto.subtle.generateKey(ALG, true, ["sign", "verify"]) as CryptoKeyPair;
}

async function pkcs8Pem(k: CryptoKey): Promise<string> {
  const b64 = Buffer.from(await crypto.subtle.exportKey("pkcs8", k)).toString("base64").replace(
    /(.{64})/g,
    "$1\n",
  );
  return `-----BEGIN PRIVATE KEY-----\n${b64}\n-----END PRIVATE KEY-----\n`;
}

let serial = 1;
const nextSerial = () => (serial++).toString(16).padStart(4, "0");

/** One call the CA answered or refused. */
export interface CaCall {
  readonly via: "token" | "mtls";
  readonly tls: boolean;
  readonly ok: boolean;
  readonly ttlSeconds: number;
}

/** A running fake CA. */
export interface FakeCa {
  readonly plainAddr: string;
  readonly tlsAddr: string;
  /** The root (PEM). */
  readonly rootPem: string;
  readonly calls: CaCall[];
  /** Tokens accepted (each maps to the identity it may request). */
  readonly tokens: Map<string, string>;
  /** While set, every call fails with UNAVAILABLE. */
  down: boolean;
  /** Lifetime of issued leaves (default: what the request asks). */
  leafTtlMs?: number;
  /** Whether answers carry the root at the end (default true). */
  sendRoot: boolean;
  close(): Promise<void>;
}

/** Starts a fake CA on 127.0.0.1 with an intermediate under a self-signed root. */
export async function startFakeCa(): Promise<FakeCa> {
  const x509 = await lib();
  const rootKeys = await keyPair();
  const now = Date.now();
  const root = await x509.X509CertificateGenerator.createSelfSigned({
    serialNumber: nextSerial(),
    name: "O=fake mesh, CN=fake root",
    notBefore: new Date(now - 3600_000),
    notAfter: new Date(now + 24 * 3600_000),
    keys: rootKeys,
    signingAlgorithm: ALG,
    extensions: [
      new x509.BasicConstraintsExtension(true, undefined, true),
      new x509.KeyUsagesExtension(x509.KeyUsageFlags.keyCertSign | x509.KeyUsageFlags.cRLSign, true),
    ],
  });
  const interKeys = await keyPair();
  const inter = await x509.X509CertificateGenerator.create({
    serialNumber: nextSerial(),
    subject: "O=fake mesh, CN=fake intermediate",
    issuer: root.subject,
    notBefore: new Date(now - 3600_000),
    notAfter: new Date(now + 24 * 3600_000),
    publicKey: interKeys.publicKey,
    signingKey: rootKeys.privateKey,
    signingAlgorithm: ALG,
    extensions: [
      new x509.BasicConstraintsExtension(true, 0, true),
      new x509.KeyUsagesExtension(x509.KeyUsageFlags.keyCertSign | x509.KeyUsageFlags.cRLSign, true),
    ],
  });
  const serverKeys = await keyPair();
  const server = await x509.X509CertificateGenerator.create({
    serialNumber: nextSerial(),
    subject: "CN=fake ca",
    issuer: inter.subject,
    notBefore: new Date(now - 3600_000),
    notAfter: new Date(now + 24 * 3600_000),
    publicKey: serverKeys.publicKey,
    signingKey: interKeys.privateKey,
    signingAlgorithm: ALG,
    extensions: [
      new x509.ExtendedKeyUsageExtension([x509.ExtendedKeyUsage.serverAuth]),
      new x509.SubjectAlternativeNameExtension([{ type: "dns", value: "localhost" }, {
        type: "ip",
        value: "127.0.0.1",
      }]),
    ],
  });
  const rootPem = root.toString("pem") + "\n";
  const interPem = inter.toString("pem") + "\n";
  const calls: CaCall[] = [];
  const tokens = new Map<string, string>();

  const grpc = createGrpcServer({ logger: createLogger({ write: () => {} }) });
  const ca: FakeCa = {
    plainAddr: "",
    tlsAddr: "",
    rootPem,
    calls,
    tokens,
    down: false,
    sendRoot: true,
    close: () => grpc.shutdown(500),
  };
  grpc.service(IstioCertificateService, {
    async createCertificate(req, ctx) {
      const peer = ctx.values.get(PEER_CERTIFICATE);
      const auth = ctx.requestHeader.get("authorization") ?? "";
      const tls = ctx.url.startsWith("https:") || peer !== undefined;
      const via = peer ? "mtls" as const : "token" as const;
      const record = (ok: boolean) => calls.push({ via, tls, ok, ttlSeconds: Number(req.validityDuration) });
      if (ca.down) {
        record(false);
        throw new ConnectError("fake CA is down", Code.Unavailable);
      }
      const csr = new x509.Pkcs10CertificateRequest(req.csr);
      const san = csr.getExtension("2.5.29.17") as
        | InstanceType<typeof x509.SubjectAlternativeNameExtension>
        | null;
      const wanted = san?.names.items.filter((n) => n.type === "url").map((n) => n.value) ?? [];
      let allowed: string | undefined;
      if (peer) {
        if (!peer.authorized) {
          record(false);
          throw new ConnectError(
            `client certificate not trusted: ${peer.authorizationError}`,
            Code.Unauthenticated,
          );
        }
        const leaf = new X509Certificate(Buffer.from(peer.der));
        allowed = (leaf.subjectAltName ?? "").replace(/^URI:/, "");
      } else {
        allowed = tokens.get(auth.replace(/^Bearer /, ""));
        if (allowed === undefined) {
          record(false);
          throw new ConnectError("bad or missing token", Code.Unauthenticated);
        }
      }
      if (wanted.length !== 1 || wanted[0] !== allowed) {
        record(false);
        throw new ConnectError(
          `CSR asks for ${wanted.join(",")}, caller is ${allowed}`,
          Code.PermissionDenied,
        );
      }
      if (!(await csr.verify())) {
        record(false);
        throw new ConnectError("CSR signature does not verify", Code.InvalidArgument);
      }
      const t = Date.now();
      const ttl = ca.leafTtlMs ?? Number(req.validityDuration) * 1000;
      const leaf = await x509.X509CertificateGenerator.create({
        serialNumber: nextSerial(),
        subject: "",
        issuer: inter.subject,
        notBefore: new Date(t - 1000),
        notAfter: new Date(t + ttl),
        publicKey: csr.publicKey,
        signingKey: interKeys.privateKey,
        signingAlgorithm: ALG,
        extensions: [
          new x509.ExtendedKeyUsageExtension([
            x509.ExtendedKeyUsage.serverAuth,
            x509.ExtendedKeyUsage.clientAuth,
          ]),
          new x509.SubjectAlternativeNameExtension([{ type: "url", value: allowed }], true),
        ],
      });
      record(true);
      return create(IstioCertificateResponseSchema, {
        certChain: [leaf.toString("pem") + "\n", interPem, ...(ca.sendRoot ? [rootPem] : [])],
      });
    },
  });
  const p = await grpc.listen("127.0.0.1:0");
  const t = await grpc.listenTls("127.0.0.1:0", {
    cert: server.toString("pem") + "\n" + interPem,
    key: await pkcs8Pem(serverKeys.privateKey),
    ca: rootPem,
  });
  Object.assign(ca, { plainAddr: `127.0.0.1:${p.port}`, tlsAddr: `127.0.0.1:${t.port}` });
  return ca;
}
