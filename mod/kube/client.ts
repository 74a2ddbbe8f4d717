/**
 * A small Kubernetes API client: where the API server is and how to authenticate (a kubeconfig
 * file, or the pod's service account when running in a cluster), JSON requests with timeouts,
 * and an informer (`listWatch`) that lists a collection, watches it from the list's
 * resourceVersion with bookmarks, lists again on 410 Gone, backs off on errors and keeps its
 * last good cache meanwhile. Shared by the Kubernetes service registry and the Kubernetes config
 * source.
 *
 * Over HTTPS the server's certificate is checked against the connection's CA (a refusal names the
 * CA's file and the server); a token file is read again as soon as it changes (the kubelet
 * rotates service account tokens) and after a 401, whose message names the credentials refused.
 *
 * @module
 */
import { readFileSync, statSync } from "node:fs";
import { dirname, isAbsolute, join } from "node:path";
import { parse as parseYaml } from "yaml";
import { createBackoff } from "../shared/backoff.ts";
import { type Clock, sleep } from "../shared/clock.ts";
import { errorMessage } from "../shared/errors.ts";
import type { Logger } from "../shared/logger.ts";

/** Where the API server is and the credentials for it. */
export interface KubeConnection {
  /** Base URL of the API server, without a trailing slash. */
  readonly server: string;
  /** A bearer token given inline. */
  readonly token?: string;
  /** A file holding the bearer token, read again each minute (service account tokens rotate). */
  readonly tokenFile?: string;
  /** PEM of the CA that signs the server's certificate. */
  readonly ca?: string;
  /**
   * Where `ca` was read from, for messages: a file, or `certificate-authority-data of kubeconfig
   * FILE`. Without `ca`, the system's trust store is used.
   */
  readonly caSource?: string;
  /** PEM client certificate and key, for certificate authentication. */
  readonly cert?: string;
  readonly key?: string;
  /** Skip server certificate verification (kubeconfig `insecure-skip-tls-verify`). */
  readonly insecureSkipTlsVerify?: boolean;
  /** The default namespace (the context's, or the service account's). */
  readonly namespace?: string;
  /** Where this came from, for messages: `kubeconfig FILE (context NAME)` or `in-cluster`. */
  readonly origin: string;
}

type Yaml = Record<string, unknown>;

function field(obj: unknown, key: string): unknown {
  return obj !== null && typeof obj === "object" ? (obj as Yaml)[key] : undefined;
}

function str(obj: unknown, key: string): string | undefined {
  const v = field(obj, key);
  return typeof v === "string" && v !== "" ? v : undefined;
}

function named(list: unknown, name: string, what: string, file: string): Yaml {
  const found = Array.isArray(list) ? list.find((e) => field(e, "name") === name) : undefined;
  if (!found) throw new Error(`${file}: ${what} ${JSON.stringify(name)} is not defined`);
  return (field(found, what === "context" ? "context" : what) ?? {}) as Yaml;
}

/** Options for parseKubeconfig. */
export interface KubeconfigParseOptions {
  /** The file's path: names it in errors and anchors relative file references. */
  readonly path: string;
  /** The context to use (default the file's current-context). */
  readonly context?: string;
  /** Reads a referenced file (default readFileSync as UTF-8). */
  readonly readFile?: (path: string) => string;
}

/**
 * Reads a kubeconfig's context: the cluster's server and CA (`certificate-authority-data` or
 * `certificate-authority`), the user's `token`, `tokenFile` or client certificate, the
 * context's namespace. Relative file references are read from the kubeconfig's directory, as
 * kubectl does. Throws an error naming the file and field for anything missing or not served
 * (exec plugins, auth providers, basic auth).
 */
export function parseKubeconfig(text: string, opts: KubeconfigParseOptions): KubeConnection {
  const file = opts.path;
  const read = opts.readFile ?? ((p: string) => readFileSync(p, "utf8"));
  const resolve = (p: string) => isAbsolute(p) ? p : join(dirname(file), p);
  let doc: unknown;
  try {
    doc = parseYaml(text);
  } catch (e) {
    throw new Error(`${file}: not YAML: ${errorMessage(e)}`);
  }
  const contextName = opts.context ?? str(doc, "current-context");
  if (!contextName) throw new Error(`${file}: current-context is not set and no context was named`);
  const context = named(field(doc, "contexts"), contextName, "context", file);
  const clusterName = str(context, "cluster");
  if (!clusterName) throw new Error(`${file}: context ${JSON.stringify(contextName)} names no cluster`);
  const cluster = named(field(doc, "clusters"), clusterName, "cluster", file);
  const server = str(cluster, "server");
  if (!server) throw new Error(`${file}: cluster ${JSON.stringify(clusterName)} has no server`);
  try {
    new URL(server);
  } catch {
    throw new Error(
      `${file}: cluster ${JSON.stringify(clusterName)}: server ${JSON.stringify(server)} is not a URL`,
    );
  }
  const userName = str(context, "user");
  const user = userName ? named(field(doc, "users"), userName, "user", file) : {};
  const pem = (dataKey: string, fileKey: string, where: Yaml): string | undefined => {
    const data = str(where, dataKey);
    if (data) return Buffer.from(data, "base64").toString("utf8");
    const ref = str(where, fileKey);
    if (!ref) return undefined;
    try {
      return read(resolve(ref));
    } catch (e) {
      throw new Error(`${file}: ${fileKey} ${resolve(ref)}: ${errorMessage(e)}`);
    }
  };
  const caData = str(cluster, "certificate-authority-data");
  const caRef = str(cluster, "certificate-authority");
  for (const unsupported of ["exec", "auth-provider", "username", "password"]) {
    if (field(user, unsupported) !== undefined) {
      throw new Error(
        `${file}: user ${
          JSON.stringify(userName)
        }: ${unsupported} is not supported; use token, tokenFile or a client certificate`,
      );
    }
  }
  const token = str(user, "token");
  const tokenFile = str(user, "tokenFile");
  const ca = pem("certificate-authority-data", "certificate-authority", cluster);
  const cert = pem("client-certificate-data", "client-certificate", user);
  const key = pem("client-key-data", "client-key", user);
  const namespace = str(context, "namespace");
  return {
    server: server.replace(/\/+$/, ""),
    ...(token ? { token } : {}),
    ...(tokenFile ? { tokenFile: resolve(tokenFile) } : {}),
    ...(ca
      ? { ca, caSource: caData ? `certificate-authority-data of kubeconfig ${file}` : resolve(caRef!) }
      : {}),
    ...(cert ? { cert } : {}),
    ...(key ? { key } : {}),
    ...(field(cluster, "insecure-skip-tls-verify") === true ? { insecureSkipTlsVerify: true } : {}),
    ...(namespace ? { namespace } : {}),
    origin: `kubeconfig ${file} (context ${contextName})`,
  };
}

/** Reads a kubeconfig file; see parseKubeconfig. */
export function loadKubeconfig(path: string, context?: string): KubeConnection {
  let text: string;
  try {
    text = readFileSync(path, "utf8");
  } catch (e) {
    throw new Error(`kubeconfig ${path}: ${errorMessage(e)}`);
  }
  return parseKubeconfig(text, { path, ...(context ? { context } : {}) });
}

/** Where a pod's service account credentials are mounted. */
export const SERVICE_ACCOUNT_DIR = "/var/run/secrets/kubernetes.io/serviceaccount";

/** Options for inClusterConfig. */
export interface InClusterOptions {
  /** Environment to read KUBERNETES_SERVICE_HOST/PORT from (default process.env). */
  readonly env?: Readonly<Record<string, string | undefined>>;
  /** The service account directory (default SERVICE_ACCOUNT_DIR). */
  readonly dir?: string;
}

/**
 * The connection a pod has to its cluster: `https://KUBERNETES_SERVICE_HOST:KUBERNETES_SERVICE_PORT`
 * with the service account's token (file, re-read as it rotates), ca.crt and namespace. Throws
 * when not in a pod.
 */
export function inClusterConfig(opts: InClusterOptions = {}): KubeConnection {
  const env = opts.env ?? process.env;
  const dir = opts.dir ?? SERVICE_ACCOUNT_DIR;
  const host = env.KUBERNETES_SERVICE_HOST;
  const port = env.KUBERNETES_SERVICE_PORT;
  if (!host || !port) {
    throw new Error(
      "kubernetes: not running in a pod (KUBERNETES_SERVICE_HOST and KUBERNETES_SERVICE_PORT are unset); use kubernetes://?kubeconfig=FILE",
    );
  }
  const tokenFile = join(dir, "token");
  try {
    readFileSync(tokenFile, "utf8");
  } catch (e) {
    throw new Error(`kubernetes: the service account token ${tokenFile} cannot be read: ${errorMessage(e)}`);
  }
  let ca: string | undefined;
  let namespace: string | undefined;
  const caFile = join(dir, "ca.crt");
  try {
    ca = readFileSync(caFile, "utf8");
  } catch {
    ca = undefined;
  }
  try {
    namespace = readFileSync(join(dir, "namespace"), "utf8").trim() || undefined;
  } catch {
    namespace = undefined;
  }
  const h = host.includes(":") ? `[${host}]` : host;
  return {
    server: `https://${h}:${port}`,
    tokenFile,
    ...(ca ? { ca, caSource: caFile } : {}),
    ...(namespace ? { namespace } : {}),
    origin: "in-cluster",
  };
}

/** An error Status from the API server (or a transport failure, code 0). */
export class KubeApiError extends Error {
  constructor(
    message: string,
    /** HTTP status, or 0 when no answer came. */
    readonly code: number,
    /** The Status reason (`Expired`, `Conflict`, `NotFound`, ...), when the server gave one. */
    readonly reason?: string,
  ) {
    super(message);
    this.name = "KubeApiError";
  }
}

/** True for a 410 Gone (`Expired` or `Gone`): the resourceVersion is too old; list again. */
export function isExpired(e: unknown): boolean {
  return e instanceof KubeApiError && e.code === 410;
}

/** Options of one request. */
export interface KubeRequestOptions {
  readonly query?: Readonly<Record<string, string | undefined>>;
  readonly body?: unknown;
  /** Content type of the body (default application/json; merge patches want application/merge-patch+json). */
  readonly contentType?: string;
  readonly signal?: AbortSignal;
  /** Give up after this long (default the client's requestTimeoutMs). */
  readonly timeoutMs?: number;
}

/** Calls one API server. */
export interface KubeClient {
  /** The connection it uses. */
  readonly connection: KubeConnection;
  /**
   * Sends a request and returns the decoded JSON answer. Throws KubeApiError for an error Status
   * (with its code and reason), a timeout or a transport failure (code 0).
   */
  request<T = unknown>(method: string, path: string, opts?: KubeRequestOptions): Promise<T>;
  /**
   * Opens a streaming GET (a watch): resolves with the response once its headers came within the
   * timeout; the body is the caller's to read and the `signal` ends it. Throws like request().
   */
  stream(path: string, opts?: KubeRequestOptions): Promise<Response>;
}

/** Options for createKubeClient. */
export interface KubeClientOptions {
  readonly clock: Clock;
  readonly fetch?: typeof fetch;
  /** Timeout of a request, or of a stream's headers (default 10 s). */
  readonly requestTimeoutMs?: number;
}

const TOKEN_REREAD_MS = 60_000;

/** The bearer token of a connection: inline, or read from its file as that file changes. */
interface TokenSource {
  /** The token to send now; throws (code 0) when the file was never readable. */
  current(): string | undefined;
  /** Reads the file again before the next request (the server refused the token). */
  invalidate(): void;
}

/** What tells a token file's versions apart: a rotation replaces the file (or its symlink's target). */
function fileVersion(path: string): string | undefined {
  try {
    const st = statSync(path);
    return `${st.ino}|${st.size}|${st.mtimeMs}`;
  } catch {
    return undefined;
  }
}

/**
 * Reads `conn.tokenFile` again whenever the file changed (the kubelet swaps a projected token in
 * by renaming a symlink), each minute in any case, and after the server refused it; between
 * reads, and when a read fails, the last token read stays in use.
 */
function tokenSource(conn: KubeConnection, clock: Clock): TokenSource {
  let token = conn.token;
  const file = conn.tokenFile;
  if (file === undefined) return { current: () => token, invalidate: () => {} };
  let readAt = -Infinity;
  let version: string | undefined;
  return {
    current() {
      const v = fileVersion(file);
      if (v === version && clock.now() - readAt < TOKEN_REREAD_MS) return token;
      try {
        token = readFileSync(file, "utf8").trim();
        readAt = clock.now();
        version = v;
      } catch (e) {
        if (token === undefined) throw new KubeApiError(`token file ${file}: ${errorMessage(e)}`, 0);
      }
      return token;
    },
    invalidate() {
      readAt = -Infinity;
      version = undefined;
    },
  };
}

/** Verification failures of the server's certificate, as node:tls and Bun name them. */
const UNTRUSTED_CERT_CODES = new Set([
  "UNABLE_TO_GET_ISSUER_CERT",
  "UNABLE_TO_GET_ISSUER_CERT_LOCALLY",
  "UNABLE_TO_VERIFY_LEAF_SIGNATURE",
  "SELF_SIGNED_CERT_IN_CHAIN",
  "DEPTH_ZERO_SELF_SIGNED_CERT",
  "CERT_SIGNATURE_FAILURE",
  "CERT_UNTRUSTED",
  "CERT_REJECTED",
  "CERT_HAS_EXPIRED",
  "CERT_NOT_YET_VALID",
  "ERR_TLS_CERT_ALTNAME_INVALID",
  "HOSTNAME_MISMATCH",
]);

/**
 * Explains a failed verification of the server's certificate: which CA it was checked against
 * (the file, or the system's trust store) and which server sent it; undefined for other errors.
 */
export function untrustedServerMessage(e: unknown, conn: KubeConnection): string | undefined {
  const code = (e as { code?: unknown } | null)?.code;
  if (typeof code !== "string" || !UNTRUSTED_CERT_CODES.has(code)) return undefined;
  const against = conn.ca
    ? `the CA in ${conn.caSource ?? "the connection"}`
    : "the system's trust store (no CA given)";
  return `the certificate of ${conn.server} is not trusted by ${against}: ${errorMessage(e)} (${code})`;
}

function queryString(q: KubeRequestOptions["query"]): string {
  if (!q) return "";
  const p = new URLSearchParams();
  for (const [k, v] of Object.entries(q)) if (v !== undefined) p.set(k, v);
  const s = p.toString();
  return s ? `?${s}` : "";
}

/** The credentials a connection presents, for messages about a refusal. */
export function credentialsOf(conn: KubeConnection): string {
  const parts = [
    ...(conn.tokenFile
      ? [`the bearer token in ${conn.tokenFile}`]
      : conn.token
      ? [`the bearer token of ${conn.origin}`]
      : []),
    ...(conn.cert ? [`the client certificate of ${conn.origin}`] : []),
  ];
  return parts.length > 0 ? parts.join(" and ") : "no credentials";
}

async function errorFrom(
  res: Response,
  method: string,
  path: string,
  conn: KubeConnection,
): Promise<KubeApiError> {
  let reason: string | undefined;
  let message = `${res.status} ${res.statusText}`;
  try {
    const body = await res.json() as { kind?: string; reason?: string; message?: string };
    if (body?.kind === "Status") {
      reason = body.reason;
      if (body.message) message = `${res.status} ${body.reason ?? ""}: ${body.message}`;
    }
  } catch {
    // Not a Status: the status line says enough.
  }
  // A 401 is about who is calling: say what was presented (an expired or rotated token shows here).
  if (res.status === 401) message += ` (${conn.server} refused ${credentialsOf(conn)})`;
  return new KubeApiError(`${method} ${path}: ${message}`, res.status, reason);
}

/** Creates a client for `conn`. */
export function createKubeClient(conn: KubeConnection, opts: KubeClientOptions): KubeClient {
  const doFetch = opts.fetch ?? fetch;
  const timeoutDefault = opts.requestTimeoutMs ?? 10_000;
  const tokens = tokenSource(conn, opts.clock);
  const tls = conn.server.startsWith("https:")
    ? {
      tls: {
        ...(conn.ca ? { ca: conn.ca } : {}),
        ...(conn.cert ? { cert: conn.cert } : {}),
        ...(conn.key ? { key: conn.key } : {}),
        ...(conn.insecureSkipTlsVerify ? { rejectUnauthorized: false } : {}),
      },
    }
    : {};

  async function send(
    method: string,
    path: string,
    ro: KubeRequestOptions,
    streaming: boolean,
  ): Promise<Response> {
    const headers: Record<string, string> = { accept: "application/json" };
    const t = tokens.current();
    if (t) headers.authorization = `Bearer ${t}`;
    if (ro.body !== undefined) headers["content-type"] = ro.contentType ?? "application/json";
    const ctl = new AbortController();
    const outer = ro.signal;
    const onAbort = () => ctl.abort(outer?.reason);
    if (outer?.aborted) ctl.abort(outer.reason);
    outer?.addEventListener("abort", onAbort, { once: true });
    const ms = ro.timeoutMs ?? timeoutDefault;
    let timedOut = false;
    const timer = opts.clock.setTimer(ms, () => {
      timedOut = true;
      ctl.abort(new Error("timeout"));
    });
    const url = `${conn.server}${path}${queryString(ro.query)}`;
    try {
      const res = await doFetch(url, {
        method,
        headers,
        signal: ctl.signal,
        ...(ro.body !== undefined ? { body: JSON.stringify(ro.body) } : {}),
        ...tls,
      } as RequestInit);
      // A refused token may have been rotated since it was read: read the file before the next request.
      if (res.status === 401) tokens.invalidate();
      if (!streaming) return new Response(await res.arrayBuffer(), res);
      return res;
    } catch (e) {
      if (timedOut) {
        throw new KubeApiError(`${method} ${path}: no answer from ${conn.server} within ${ms} ms`, 0);
      }
      if (outer?.aborted) throw new KubeApiError(`${method} ${path}: cancelled`, 0, "Cancelled");
      const untrusted = untrustedServerMessage(e, conn);
      if (untrusted !== undefined) throw new KubeApiError(`${method} ${path}: ${untrusted}`, 0);
      throw new KubeApiError(`${method} ${path}: ${conn.server}: ${errorMessage(e)}`, 0);
    } finally {
      timer.cancel();
      if (!streaming) outer?.removeEventListener("abort", onAbort);
    }
  }

  return {
    connection: conn,
    async request<T>(method: string, path: string, ro: KubeRequestOptions = {}): Promise<T> {
      const res = await send(method, path, ro, false);
      if (!res.ok) throw await errorFrom(res, method, path, conn);
      try {
        return await res.json() as T;
      } catch {
        throw new KubeApiError(`${method} ${path}: the answer is not JSON`, res.status);
      }
    },
    async stream(path, ro = {}) {
      const res = await send("GET", path, ro, true);
      if (!res.ok) throw await errorFrom(res, "GET", path, conn);
      return res;
    },
  };
}

/** The object shapes the informer reads. */
export interface KubeObject {
  readonly apiVersion?: string;
  readonly kind?: string;
  readonly metadata: {
    readonly name: string;
    readonly namespace?: string;
    readonly resourceVersion?: string;
    readonly uid?: string;
    readonly labels?: Readonly<Record<string, string>>;
    readonly annotations?: Readonly<Record<string, string>>;
    readonly [k: string]: unknown;
  };
  readonly [k: string]: unknown;
}

/** The cache key of an object: `NAMESPACE/NAME`, or `NAME` for cluster-scoped ones. */
export function objectKey(o: Pick<KubeObject, "metadata">): string {
  return o.metadata.namespace ? `${o.metadata.namespace}/${o.metadata.name}` : o.metadata.name;
}

/** A change to an informer's cache. */
export interface InformerEvent<T extends KubeObject = KubeObject> {
  readonly type: "ADDED" | "MODIFIED" | "DELETED";
  /** The object (for DELETED, its last known state). */
  readonly object: T;
}

/** How an informer's sync stands. */
export interface InformerStatus {
  /** True once a first list was read. */
  readonly synced: boolean;
  /** True while the last attempt failed (the cache is the last good view). */
  readonly stale: boolean;
  /** The resourceVersion the cache is at. */
  readonly resourceVersion: string;
  readonly lastSyncMs?: number;
  readonly lastError?: string;
  readonly lastErrorMs?: number;
  /** Full lists done (the first and every relist after 410 Gone or an error). */
  readonly lists: number;
}

/** A cache of one collection kept up to date by list and watch. */
export interface Informer<T extends KubeObject = KubeObject> {
  /** The cached objects by objectKey; a new map after each change. */
  items(): ReadonlyMap<string, T>;
  status(): InformerStatus;
  /** Stops watching; the cache stays as it was. */
  stop(): Promise<void>;
}

/** Options for listWatch. */
export interface ListWatchOptions<T extends KubeObject> {
  readonly clock: Clock;
  readonly logger: Logger;
  /** Called after each change to the cache (on a relist, once per object that differs). */
  readonly onEvent?: (ev: InformerEvent<T>) => void;
  /** Called when the status changes (synced, stale, error). */
  readonly onStatus?: () => void;
  readonly labelSelector?: string;
  readonly fieldSelector?: string;
  /** Objects per list page (default 500). */
  readonly pageSize?: number;
  /** The server ends each watch after this long (`timeoutSeconds`, default 300). */
  readonly watchTimeoutS?: number;
  /**
   * A watch that passes this long without a line (event or bookmark) is dropped and opened
   * again (default watchTimeoutS + 30 s).
   */
  readonly watchIdleMs?: number;
  /** Retry delays after failures (default 500 ms growing to 30 s). */
  readonly backoff?: { readonly initialMs: number; readonly maxMs: number };
}

interface ListAnswer<T> {
  readonly metadata?: { readonly resourceVersion?: string; readonly continue?: string };
  readonly items?: T[];
}

interface WatchLine<T> {
  readonly type?: string;
  readonly object?: T & { code?: number; reason?: string; message?: string; kind?: string };
}

/** Reads JSON lines from a stream, calling `onLine` for each; resolves at the end. */
async function readLines(body: ReadableStream<Uint8Array>, onLine: (line: string) => void): Promise<void> {
  const reader = body.getReader();
  const dec = new TextDecoder();
  let buf = "";
  try {
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      buf += dec.decode(value, { stream: true });
      let nl: number;
      while ((nl = buf.indexOf("\n")) >= 0) {
        const line = buf.slice(0, nl).trim();
        buf = buf.slice(nl + 1);
        if (line !== "") onLine(line);
      }
    }
    const rest = (buf + dec.decode()).trim();
    if (rest !== "") onLine(rest);
  } finally {
    reader.releaseLock();
  }
}

/**
 * Keeps a cache of the collection at `path` (e.g. `/api/v1/pods`,
 * `/apis/discovery.k8s.io/v1/namespaces/NS/endpointslices`): lists it (in pages), then watches
 * from the list's resourceVersion with bookmarks, following each watch's end with a new one from
 * the last resourceVersion seen. On 410 Gone it lists again and reports the difference as events,
 * so nothing is lost; on other failures it keeps the cache, marks itself stale and retries with
 * backoff. Starts at once; `onEvent` runs synchronously as changes arrive.
 */
export function listWatch<T extends KubeObject = KubeObject>(
  client: KubeClient,
  path: string,
  opts: ListWatchOptions<T>,
): Informer<T> {
  const clock = opts.clock;
  const log = opts.logger.child({ watch: path });
  const backoff = createBackoff(opts.backoff ?? { initialMs: 500, maxMs: 30_000 });
  const pageSize = opts.pageSize ?? 500;
  const watchTimeoutS = opts.watchTimeoutS ?? 300;
  const idleMs = opts.watchIdleMs ?? (watchTimeoutS + 30) * 1000;
  const stopper = new AbortController();
  let cache = new Map<string, T>();
  let rv = "";
  let synced = false;
  let stale = false;
  let lists = 0;
  let lastSyncMs: number | undefined;
  let lastError: string | undefined;
  let lastErrorMs: number | undefined;
  const selectors = {
    labelSelector: opts.labelSelector,
    fieldSelector: opts.fieldSelector,
  };

  const statusChanged = () => opts.onStatus?.();
  const emit = (ev: InformerEvent<T>) => {
    try {
      opts.onEvent?.(ev);
    } catch (e) {
      log.error("informer listener failed", { error: errorMessage(e) });
    }
  };
  const fresh = () => {
    lastSyncMs = clock.now();
    if (stale || lastError !== undefined) {
      stale = false;
      lastError = undefined;
      lastErrorMs = undefined;
      statusChanged();
    }
  };

  async function list(): Promise<void> {
    const items = new Map<string, T>();
    let cont: string | undefined;
    let listRv = "";
    do {
      const page: ListAnswer<T> = await client.request<ListAnswer<T>>("GET", path, {
        query: { ...selectors, limit: String(pageSize), continue: cont },
        signal: stopper.signal,
      });
      for (const o of page.items ?? []) items.set(objectKey(o), o);
      cont = page.metadata?.continue || undefined;
      listRv = page.metadata?.resourceVersion ?? "";
    } while (cont);
    const before = cache;
    cache = items;
    rv = listRv;
    lists++;
    for (const [k, o] of before) if (!items.has(k)) emit({ type: "DELETED", object: o });
    for (const [k, o] of items) {
      const old = before.get(k);
      if (!old) emit({ type: "ADDED", object: o });
      else if (old.metadata.resourceVersion !== o.metadata.resourceVersion) {
        emit({ type: "MODIFIED", object: o });
      }
    }
    const first = !synced;
    synced = true;
    fresh();
    if (first) statusChanged();
  }

  function apply(line: string): void {
    let ev: WatchLine<T>;
    try {
      ev = JSON.parse(line) as WatchLine<T>;
    } catch {
      throw new KubeApiError(`watch ${path}: a line is not JSON: ${line.slice(0, 100)}`, 0);
    }
    const obj = ev.object;
    if (ev.type === "ERROR") {
      const code = Number(obj?.code ?? 0);
      throw new KubeApiError(
        `watch ${path}: ${code} ${obj?.reason ?? ""}: ${obj?.message ?? ""}`,
        code,
        obj?.reason,
      );
    }
    if (!obj?.metadata) throw new KubeApiError(`watch ${path}: a ${ev.type} event has no object`, 0);
    if (obj.metadata.resourceVersion) rv = obj.metadata.resourceVersion;
    lastSyncMs = clock.now();
    if (ev.type === "BOOKMARK") return;
    const key = objectKey(obj);
    const next = new Map(cache);
    if (ev.type === "DELETED") {
      if (!next.delete(key)) return;
      cache = next;
      emit({ type: "DELETED", object: obj });
    } else if (ev.type === "ADDED" || ev.type === "MODIFIED") {
      const had = next.has(key);
      next.set(key, obj);
      cache = next;
      emit({ type: had ? "MODIFIED" : "ADDED", object: obj });
    }
  }

  /** One watch; resolves with the number of lines read when the server ends it. */
  async function watchOnce(): Promise<number> {
    const ctl = new AbortController();
    const onStop = () => ctl.abort();
    stopper.signal.addEventListener("abort", onStop, { once: true });
    let idle = clock.setTimer(idleMs, () => ctl.abort());
    let lines = 0;
    try {
      const res = await client.stream(path, {
        query: {
          ...selectors,
          watch: "1",
          resourceVersion: rv,
          allowWatchBookmarks: "true",
          timeoutSeconds: String(watchTimeoutS),
        },
        signal: ctl.signal,
      });
      fresh();
      if (!res.body) return 0;
      await readLines(res.body, (line) => {
        idle.cancel();
        idle = clock.setTimer(idleMs, () => ctl.abort());
        lines++;
        apply(line);
      }).catch((e) => {
        if (e instanceof KubeApiError) throw e;
        if (ctl.signal.aborted) return;
        throw new KubeApiError(`watch ${path}: ${errorMessage(e)}`, 0);
      });
      return lines;
    } finally {
      idle.cancel();
      ctl.abort();
      stopper.signal.removeEventListener("abort", onStop);
    }
  }

  const failed = (e: unknown) => {
    lastError = errorMessage(e);
    lastErrorMs = clock.now();
    stale = true;
    statusChanged();
  };

  async function run(): Promise<void> {
    let needList = true;
    while (!stopper.signal.aborted) {
      let listing = false;
      try {
        if (needList) {
          listing = true;
          await list();
          listing = false;
          needList = false;
          backoff.reset();
        }
        const startedAt = clock.now();
        const lines = await watchOnce();
        // A watch the server ends at once with nothing in it must not become a busy loop.
        if (lines === 0 && clock.now() - startedAt < 1000) await sleep(clock, backoff.next(), stopper.signal);
        else backoff.reset();
      } catch (e) {
        if (stopper.signal.aborted) break;
        // A 410 to a watch means list again now; a 410 to the list itself is a failure like any other.
        if (isExpired(e) && !listing) {
          log.info("resourceVersion expired; listing again", { resourceVersion: rv });
          needList = true;
          continue;
        }
        log.warn("kubernetes API failed; keeping the last good view", { error: errorMessage(e) });
        failed(e);
        await sleep(clock, backoff.next(), stopper.signal);
      }
    }
  }

  const running = run();
  return {
    items: () => cache,
    status: () => ({
      synced,
      stale,
      resourceVersion: rv,
      lists,
      ...(lastSyncMs !== undefined ? { lastSyncMs } : {}),
      ...(lastError !== undefined ? { lastError, lastErrorMs: lastErrorMs! } : {}),
    }),
    async stop() {
      stopper.abort();
      await running;
    },
  };
}
