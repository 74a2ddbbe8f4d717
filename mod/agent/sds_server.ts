/**
 * SDS for the local Envoy: envoy.service.secret.v3.SecretDiscoveryService (StreamSecrets in
 * State of the World, DeltaSecrets, and FetchSecrets) on a Unix socket (mode 0600; its directory
 * is made 0750 when the server creates it), serving two secrets as Istio names them: `default` (the workload certificate
 * chain and key, inline) and `ROOTCA` (the trusted roots as a validation context). A rotation
 * pushes both to every stream that asked for them.
 *
 * Gateway credentials (a Gateway server's `credentialName` / `credentialNames`, which pilot
 * renders as SDS secrets of the same name, see mod/pilot/translate/tls.ts) come from a
 * credential directory, laid out like a Kubernetes TLS secret per credential so one exported
 * from a cluster can be copied as it is:
 *
 * ```
 * DIR/NAME/tls.crt   certificate chain   -> secret NAME
 * DIR/NAME/tls.key   private key         -> secret NAME
 * DIR/NAME/ca.crt    client CA bundle    -> secret NAME-cacert
 * ```
 *
 * (Istio's generic secret keys `cert`, `key` and `cacert` are read too.) Files are read when a
 * secret is asked for and on {@link SdsServer.refresh}; a secret whose files are missing is not
 * sent, so Envoy keeps waiting for it, as with Istio's missing Kubernetes secrets.
 *
 * Streams reuse the ADS server's session logic (mod/xds/server.ts): nonces, ACK/NACK, stale
 * nonces and versions by content hash behave as they do for pilot's clients. Its handlers are
 * registered under the SDS service, whose streaming methods carry the same messages as ADS.
 *
 * @module
 */
import { create } from "@bufbuild/protobuf";
import { anyPack } from "@bufbuild/protobuf/wkt";
import { Code, ConnectError, type ServiceImpl } from "@connectrpc/connect";
import http2 from "node:http2";
import { connect as netConnect } from "node:net";
import { chmodSync, existsSync, lstatSync, readdirSync, readFileSync, rmSync } from "node:fs";
import { dirname, join } from "node:path";
import { DataSourceSchema } from "#gen/envoy/config/core/v3/base_pb.ts";
import { DiscoveryResponseSchema } from "#gen/envoy/service/discovery/v3/discovery_pb.ts";
import { SecretDiscoveryService } from "#gen/envoy/service/secret/v3/sds_pb.ts";
import { SecretSchema } from "#gen/envoy/extensions/transport_sockets/tls/v3/secret_pb.ts";
import {
  CertificateValidationContextSchema,
  TlsCertificateSchema,
} from "#gen/envoy/extensions/transport_sockets/tls/v3/common_pb.ts";
import { createConnectHandler } from "../grpc/connect_handler.ts";
import { applyHttp2Limits, http2Settings } from "../grpc/h2_limits.ts";
import { type GrpcStream, methodPath, serveGrpcStreams } from "../grpc/raw.ts";
import { DEFAULT_GRPC_LIMITS } from "../grpc/server.ts";
import { createConnectionGuard } from "../shared/conn_guard.ts";
import type { Logger } from "../shared/logger.ts";
import { createAdsServer, type StreamStatus } from "../xds/mod.ts";
import type { ResourceProvider, XdsResource } from "../xds/mod.ts";
import { contentVersion, setVersion } from "../shared/content_version.ts";
import type { CertBundle } from "./certs.ts";
import { ensureDir } from "./files.ts";

/** The type URL of SDS secrets. */
export const SECRET_TYPE_URL = "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.Secret";
/** The workload certificate secret. */
export const DEFAULT_SECRET = "default";
/** The trusted roots secret. */
export const ROOT_SECRET = "ROOTCA";

const bytes = (s: string) =>
  create(DataSourceSchema, { specifier: { case: "inlineBytes", value: new TextEncoder().encode(s) } });

/** The two secrets of a bundle, as SDS resources. */
export function secretResources(b: CertBundle): Map<string, XdsResource> {
  const tls = create(SecretSchema, {
    name: DEFAULT_SECRET,
    type: {
      case: "tlsCertificate",
      value: create(TlsCertificateSchema, {
        certificateChain: bytes(b.chainPem),
        privateKey: bytes(b.keyPem),
      }),
    },
  });
  const roots = create(SecretSchema, {
    name: ROOT_SECRET,
    type: {
      case: "validationContext",
      value: create(CertificateValidationContextSchema, { trustedCa: bytes(b.rootPem) }),
    },
  });
  return new Map([
    [DEFAULT_SECRET, {
      name: DEFAULT_SECRET,
      version: contentVersion(b.chainPem + "\u0000" + b.keyPem),
      resource: anyPack(SecretSchema, tls),
    }],
    [ROOT_SECRET, {
      name: ROOT_SECRET,
      version: contentVersion(b.rootPem),
      resource: anyPack(SecretSchema, roots),
    }],
  ]);
}

/** Suffix of the secret holding a credential's CA bundle. */
export const CA_CERT_SUFFIX = "-cacert";

/** File names of a credential's parts, in order of preference (Kubernetes TLS keys, then Istio's). */
const CREDENTIAL_FILES = {
  cert: ["tls.crt", "cert"],
  key: ["tls.key", "key"],
  ca: ["ca.crt", "cacert"],
} as const;

/** A credential name that is one path segment: letters, digits, `.`, `_`, `-`, no leading dot. */
const CREDENTIAL_NAME = /^[A-Za-z0-9_-][A-Za-z0-9._-]*$/;

function readFirst(dir: string, names: readonly string[]): string | undefined {
  for (const n of names) {
    try {
      return readFileSync(join(dir, n), "utf8");
    } catch {
      // try the next name
    }
  }
  return undefined;
}

/**
 * The SDS resource for secret `name` from the credential directory `dir`, or undefined when
 * the name is not a credential's or its files are missing (see the module comment for the layout).
 */
export function credentialSecret(dir: string, name: string): XdsResource | undefined {
  const ca = name.endsWith(CA_CERT_SUFFIX);
  const base = ca ? name.slice(0, -CA_CERT_SUFFIX.length) : name;
  if (!CREDENTIAL_NAME.test(base) || base === DEFAULT_SECRET || base === ROOT_SECRET) return undefined;
  const at = join(dir, base);
  if (ca) {
    const pem = readFirst(at, CREDENTIAL_FILES.ca);
    if (pem === undefined) return undefined;
    const secret = create(SecretSchema, {
      name,
      type: {
        case: "validationContext",
        value: create(CertificateValidationContextSchema, { trustedCa: bytes(pem) }),
      },
    });
    return { name, version: contentVersion(pem), resource: anyPack(SecretSchema, secret) };
  }
  const chain = readFirst(at, CREDENTIAL_FILES.cert);
  const key = readFirst(at, CREDENTIAL_FILES.key);
  if (chain === undefined || key === undefined) return undefined;
  const secret = create(SecretSchema, {
    name,
    type: {
      case: "tlsCertificate",
      value: create(TlsCertificateSchema, { certificateChain: bytes(chain), privateKey: bytes(key) }),
    },
  });
  return { name, version: contentVersion(chain + "\u0000" + key), resource: anyPack(SecretSchema, secret) };
}

/** Every secret the credential directory holds (for wildcard requests): NAME and NAME-cacert. */
export function credentialSecrets(dir: string): Map<string, XdsResource> {
  const out = new Map<string, XdsResource>();
  let entries: string[];
  try {
    entries = readdirSync(dir).sort();
  } catch {
    return out;
  }
  for (const e of entries) {
    for (const name of [e, e + CA_CERT_SUFFIX]) {
      const r = credentialSecret(dir, name);
      if (r) out.set(name, r);
    }
  }
  return out;
}

/** Options for startSdsServer. */
export interface SdsServerOptions {
  /** The Unix socket path; its directory is created with mode 0750. */
  readonly path: string;
  readonly logger: Logger;
  /** The bundle to serve from the start, if there is one already. */
  readonly initial?: CertBundle;
  /** Directory of gateway credentials (see the module comment); none are served without it. */
  readonly credentialDir?: string;
  /** Clock for stream status. */
  readonly now?: () => number;
}

/** A running SDS server. */
export interface SdsServer {
  readonly path: string;
  /** Serves a new bundle and pushes it to every stream. Before the first one, streams wait. */
  update(b: CertBundle): void;
  /** Re-reads the credential directory and pushes what changed (call when its files change). */
  refresh(): void;
  /** Open SDS streams. */
  streams(): StreamStatus[];
  /** Ends every stream, stops listening and removes the socket. */
  close(): Promise<void>;
}

/** Refuses to take over a socket another process still answers on; removes a stale one. */
async function clearStaleSocket(path: string): Promise<void> {
  let st;
  try {
    st = lstatSync(path);
  } catch {
    return;
  }
  if (!st.isSocket()) throw new Error(`--sds-socket ${path} exists and is not a socket`);
  const alive = await new Promise<boolean>((resolve) => {
    const s = netConnect(path);
    const done = (v: boolean) => {
      s.destroy();
      resolve(v);
    };
    s.once("connect", () => done(true));
    s.once("error", () => done(false));
    setTimeout(() => done(false), 1000).unref?.();
  });
  if (alive) throw new Error(`--sds-socket ${path}: another process is serving on it`);
  rmSync(path, { force: true });
}

/** Starts the SDS server. Rejects, naming the socket, when it cannot listen. */
export async function startSdsServer(o: SdsServerOptions): Promise<SdsServer> {
  let resources: Map<string, XdsResource> | undefined = o.initial ? secretResources(o.initial) : undefined;
  const listeners = new Set<(t: ReadonlySet<string>) => void>();
  /** The workload's secrets, and the credentials among `names` (all of them for "*"). */
  const lookup = (names: ReadonlySet<string> | "*"): Map<string, XdsResource> => {
    const out = new Map(resources ?? []);
    if (!o.credentialDir) return out;
    if (names === "*") {
      for (const [n, r] of credentialSecrets(o.credentialDir)) if (!out.has(n)) out.set(n, r);
      return out;
    }
    for (const n of names) {
      if (out.has(n)) continue;
      const r = credentialSecret(o.credentialDir, n);
      if (r) out.set(n, r);
    }
    return out;
  };
  const provider: ResourceProvider = {
    typeUrls: [SECRET_TYPE_URL],
    ready: () => resources !== undefined,
    resources: (_client, _typeUrl, names) => lookup(names),
    watch(l) {
      listeners.add(l);
      return () => listeners.delete(l);
    },
  };
  const ads = createAdsServer({ logger: o.logger, now: o.now });
  ads.addProvider(provider);
  const sds: Partial<ServiceImpl<typeof SecretDiscoveryService>> = {
    fetchSecrets(req) {
      if (req.typeUrl !== "" && req.typeUrl !== SECRET_TYPE_URL) {
        throw new ConnectError(`type URL ${req.typeUrl} is not served here`, Code.InvalidArgument);
      }
      if (!resources) throw new ConnectError("no certificate yet", Code.Unavailable);
      const all = lookup(req.resourceNames.length === 0 ? "*" : new Set(req.resourceNames));
      const picked = req.resourceNames.length === 0
        ? [...all.values()]
        : req.resourceNames.map((n) => all.get(n)).filter((r): r is XdsResource => r !== undefined);
      return create(DiscoveryResponseSchema, {
        versionInfo: setVersion(picked),
        typeUrl: SECRET_TYPE_URL,
        resources: picked.map((r) => r.resource),
      });
    },
  };

  // A directory of our own is made 0750; an existing one (the output directory, already 0750,
  // or one the operator chose) keeps its mode: the socket itself is 0600.
  if (!existsSync(dirname(o.path))) ensureDir(dirname(o.path), 0o750, "--sds-socket directory");
  await clearStaleSocket(o.path);
  const shutdown = new AbortController();
  const handler = createConnectHandler({
    routes: (router) => router.service(SecretDiscoveryService, sds),
    grpc: true,
    grpcWeb: false,
    connect: false,
    shutdownSignal: shutdown.signal,
  }, o.logger);
  // The socket is the local Envoy's alone, but it gets the same limits as every listener.
  const limits = DEFAULT_GRPC_LIMITS;
  const guard = createConnectionGuard("sds", { limits, logger: o.logger });
  const srv = http2.createServer({ settings: http2Settings(limits) }, handler.handle);
  applyHttp2Limits(srv, guard, { limits });
  const calls = new Set<GrpcStream>();
  serveGrpcStreams(
    srv,
    new Map([
      [methodPath(SecretDiscoveryService.method.streamSecrets), ads.handlers.sotw],
      [methodPath(SecretDiscoveryService.method.deltaSecrets), ads.handlers.delta],
    ]),
    {
      readMaxBytes: 4 * 1024 * 1024,
      calls,
      maxQueuedBytesPerConnection: limits.maxUnreadOutputPerConnection,
      onUnreadLimit: (_session, queued) => guard.hit("unread_output", "local", { unreadBytes: queued }),
    },
  );
  const sessions = new Set<http2.ServerHttp2Session>();
  srv.on("session", (s: http2.ServerHttp2Session) => {
    sessions.add(s);
    s.on("close", () => sessions.delete(s));
    s.on("error", (err) => o.logger.debug("SDS session error", { err }));
  });
  const oldMask = process.umask(0o177);
  try {
    await guard.listen({ path: o.path }, (socket) => srv.emit("connection", socket)).catch((err: Error) => {
      throw new Error(`--sds-socket ${o.path}: cannot listen: ${err.message}`);
    });
  } finally {
    process.umask(oldMask);
  }
  chmodSync(o.path, 0o600);
  o.logger.info("SDS server listening", { path: o.path });

  let closing: Promise<void> | undefined;
  return {
    path: o.path,
    update(b) {
      resources = secretResources(b);
      for (const l of listeners) l(new Set([SECRET_TYPE_URL]));
    },
    refresh() {
      for (const l of listeners) l(new Set([SECRET_TYPE_URL]));
    },
    streams: () => ads.streams(),
    close() {
      closing ??= (async () => {
        const closed = guard.close();
        shutdown.abort();
        for (const c of calls) c.end(0);
        for (const s of sessions) if (!s.closed) s.close();
        let timer: ReturnType<typeof setTimeout> | undefined;
        const grace = new Promise<void>((resolve) => (timer = setTimeout(resolve, 1000)));
        await Promise.race([closed, grace]);
        clearTimeout(timer);
        for (const s of sessions) s.destroy();
        guard.destroyAll();
        rmSync(o.path, { force: true });
      })();
      return closing;
    },
  };
}
