/**
 * A Kubernetes API server for tests, on 127.0.0.1 over HTTP or HTTPS, written from the Kubernetes API
 * documentation ("API Concepts": efficient detection of changes, watch bookmarks, resource
 * versions, 410 Gone with reason `Expired`, retrieving large results in chunks; "Kubernetes API
 * reference": the Status kind; RFC 7386 merge patch and RFC 6902 JSON patch as the API accepts them).
 *
 * It is a generic object store keyed by path: any core (`/api/v1/...`) or group
 * (`/apis/GROUP/VERSION/...`) resource, namespaced (`/api/v1/namespaces/NS/pods/NAME`) or
 * cluster-wide (`/api/v1/pods` lists every namespace, `/api/v1/nodes/NAME`), with one
 * resourceVersion counter for every write as etcd's revision is. Lists carry
 * `metadata.resourceVersion` and honour `labelSelector`, `fieldSelector` (metadata.name,
 * metadata.namespace), `limit` and `continue`; `?watch=1` streams JSON lines of `{type, object}`
 * (ADDED, MODIFIED, DELETED, BOOKMARK, ERROR) from the given resourceVersion, with BOOKMARKs when
 * `allowWatchBookmarks=true`, and closes after `timeoutSeconds`. A resourceVersion older than the
 * last `compact()` is answered with 410 `Expired` (an ERROR event in a watch, or a 410 response to
 * a list with `resourceVersionMatch=Exact` or an expired `continue`). Writes: POST, PUT (409
 * `Conflict` on a stale metadata.resourceVersion), PATCH (merge, strategic-merge read as merge,
 * JSON patch), DELETE, and the `/status` subresource (a PUT or PATCH to the object itself leaves
 * its status alone, a write to `/status` changes only the status). Every request needs
 * `Authorization: Bearer TOKEN` (401 `Unauthorized` otherwise).
 *
 * Over HTTPS (`tls`: a serving certificate and key) it authenticates as the API server does: a
 * client certificate that chains to `tls.clientCa` is enough on its own, else the bearer token
 * must match; `setToken()` changes the accepted token (a rotated service account token, or an
 * expired one when the client keeps the old).
 *
 * Limits: no discovery documents, no OpenAPI, no admission or validation, no server-side
 * apply, no protobuf; `resourceVersion` on a list is served as "not older than" (the current
 * state), `resourceVersionMatch=Exact` only for the current version or an expired one.
 *
 * Controls for tests: `restart()` (every connection dropped, the port listened on again, the
 * store kept as etcd keeps it), `down()`/`up()`, `slow(ms)` (every answer delayed), `fail(n,
 * code)` (the next n requests answered with an error Status), `closeWatches()`, `expireWatches()`
 * (an ERROR 410 to every open watch), `compact()`, `bookmark()`.
 *
 * @module
 */
import { mkdtempSync, writeFileSync } from "node:fs";
import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import { createServer as createHttpsServer } from "node:https";
import type { AddressInfo, Socket } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";

/** A Kubernetes object as stored: at least apiVersion, kind and metadata. */
export interface KubeObject {
  apiVersion?: string;
  kind?: string;
  metadata: {
    name?: string;
    generateName?: string;
    namespace?: string;
    resourceVersion?: string;
    uid?: string;
    labels?: Record<string, string>;
    annotations?: Record<string, string>;
    [k: string]: unknown;
  };
  [k: string]: unknown;
}

/** One request the server answered, for assertions. */
export interface KubeRequest {
  readonly method: string;
  readonly path: string;
  readonly query: Readonly<Record<string, string>>;
  readonly status: number;
  /** How the request authenticated: a verified client certificate, the bearer token, or neither. */
  readonly auth: "certificate" | "token" | "none";
}

/** The serving side of HTTPS: PEM certificate (chain) and key, and the CA of client certificates. */
export interface KubeServerTls {
  readonly cert: string;
  readonly key: string;
  /** Client certificates chaining to this CA authenticate without a token. */
  readonly clientCa?: string;
}

/** Options for startKubeServer. */
export interface KubeServerOptions {
  /** The bearer token every request must carry (default a random one); null accepts any request. */
  readonly token?: string | null;
  /** Port to listen on (default any free one). */
  readonly port?: number;
  /** Interval between BOOKMARK events on watches that allow them (default 1000 ms; 0 for none). */
  readonly bookmarkIntervalMs?: number;
  /**
   * How a watch from a compacted resourceVersion is refused: `event` (200 and an ERROR event, as
   * the API server's watch cache does, the default) or `status` (a 410 response).
   */
  readonly expiredWatch?: "event" | "status";
  /** Serve HTTPS with this certificate instead of HTTP. */
  readonly tls?: KubeServerTls;
}

/** A running test API server. */
export interface KubeServer {
  /** `http://127.0.0.1:PORT`, or `https://...` when serving TLS. */
  readonly url: string;
  readonly port: number;
  /** The accepted bearer token (empty when any is accepted). */
  readonly token: string;
  /** Accepts `token` from now on and refuses the old one (null: accept any request). */
  setToken(token: string | null): void;
  /** The current resourceVersion (the last write's). */
  readonly resourceVersion: number;
  /** Requests answered so far, oldest first. */
  readonly requests: readonly KubeRequest[];
  /** Number of watch streams open now. */
  readonly openWatches: number;
  /**
   * Creates or replaces the object at `collection` (e.g. `/api/v1/namespaces/default/pods`),
   * named by its metadata.name; returns it as stored. Watches see ADDED or MODIFIED.
   */
  put(collection: string, obj: KubeObject): KubeObject;
  /** Merges `patch` (RFC 7386) into the object at `path`; returns it as stored. */
  patch(path: string, patch: Record<string, unknown>): KubeObject;
  /** Deletes the object at `path` (e.g. `/api/v1/namespaces/default/pods/a`); false when absent. */
  remove(path: string): boolean;
  /** The object at `path`, or undefined. */
  get(path: string): KubeObject | undefined;
  /** Objects in a collection (all namespaces when the path has none). */
  list(collection: string): KubeObject[];
  /** Forgets the history up to now: watches and continues from older versions get 410 Expired. */
  compact(): void;
  /** Sends a BOOKMARK at the current resourceVersion to every watch that allows them. */
  bookmark(): void;
  /** Ends every open watch stream (as a load balancer's idle timeout would). */
  closeWatches(): void;
  /** Sends ERROR 410 Expired to every open watch and ends it (as a watch cache that fell behind). */
  expireWatches(): void;
  /** Delays every answer by `ms` from now on (0 to stop). */
  slow(ms: number): void;
  /** Answers the next `count` requests with `code` (default 500); Infinity until `fail(0)`. */
  fail(count: number, code?: number): void;
  /** Stops listening and drops every connection; the store is kept. */
  down(): Promise<void>;
  /** Listens again on the same port. */
  up(): Promise<void>;
  /** down() then up(). */
  restart(): Promise<void>;
  /** Stops the server for good. */
  close(): Promise<void>;
}

/** Where a path points: a collection or one object, maybe its status subresource. */
interface Target {
  /** `v1` or `GROUP/VERSION`. */
  readonly apiVersion: string;
  readonly resource: string;
  /** Empty for cluster-wide lists and cluster-scoped objects. */
  readonly namespace: string;
  readonly name?: string;
  readonly status: boolean;
}

interface Stored {
  readonly target: Target;
  readonly obj: KubeObject;
}

interface Change {
  readonly rv: number;
  readonly type: "ADDED" | "MODIFIED" | "DELETED";
  readonly prev?: KubeObject;
  readonly obj: KubeObject;
  readonly apiVersion: string;
  readonly resource: string;
}

interface Watcher {
  readonly target: Target;
  readonly filter: (o: KubeObject) => boolean;
  readonly bookmarks: boolean;
  send(type: string, obj: unknown): void;
  close(): void;
}

/** Kinds of the resources tests use (core, coordination, Istio's); others are named from their objects or their plural. */
const KINDS: Record<string, string> = {
  pods: "Pod",
  services: "Service",
  endpoints: "Endpoints",
  endpointslices: "EndpointSlice",
  nodes: "Node",
  namespaces: "Namespace",
  leases: "Lease",
  configmaps: "ConfigMap",
  secrets: "Secret",
  serviceaccounts: "ServiceAccount",
  events: "Event",
  customresourcedefinitions: "CustomResourceDefinition",
  virtualservices: "VirtualService",
  destinationrules: "DestinationRule",
  gateways: "Gateway",
  serviceentries: "ServiceEntry",
  sidecars: "Sidecar",
  workloadentries: "WorkloadEntry",
  workloadgroups: "WorkloadGroup",
  envoyfilters: "EnvoyFilter",
  peerauthentications: "PeerAuthentication",
  requestauthentications: "RequestAuthentication",
  authorizationpolicies: "AuthorizationPolicy",
  telemetries: "Telemetry",
};

/** Parses an API path; undefined when it is not one. */
export function parseKubePath(path: string): Target | undefined {
  const parts = path.split("/").filter((s) => s !== "").map(decodeURIComponent);
  let apiVersion: string;
  let rest: string[];
  if (parts[0] === "api" && parts[1] === "v1") {
    apiVersion = "v1";
    rest = parts.slice(2);
  } else if (parts[0] === "apis" && parts.length >= 3) {
    apiVersion = `${parts[1]}/${parts[2]}`;
    rest = parts.slice(3);
  } else return undefined;
  let namespace = "";
  if (rest[0] === "namespaces" && rest.length >= 3) {
    namespace = rest[1]!;
    rest = rest.slice(2);
  }
  if (rest.length === 0 || rest.length > 3) return undefined;
  if (rest.length === 3 && rest[2] !== "status") return undefined;
  return {
    apiVersion,
    resource: rest[0]!,
    namespace,
    ...(rest[1] !== undefined ? { name: rest[1] } : {}),
    status: rest[2] === "status",
  };
}

function storeKey(apiVersion: string, resource: string, namespace: string, name: string): string {
  return `${apiVersion}|${resource}|${namespace}|${name}`;
}

/** A Status object, as the API server answers failures. */
export function kubeStatus(code: number, reason: string, message: string, details?: object): KubeObject {
  return {
    kind: "Status",
    apiVersion: "v1",
    metadata: {},
    status: code < 400 ? "Success" : "Failure",
    message,
    reason,
    ...(details ? { details } : {}),
    code,
  };
}

/** One requirement of a label selector. */
type Requirement = (labels: Record<string, string>) => boolean;

/**
 * Parses the label selector forms the API documents: `k=v`, `k==v`, `k!=v`, `k`, `!k`,
 * `k in (a,b)`, `k notin (a,b)`, joined by commas. Throws on anything else.
 */
export function parseLabelSelector(sel: string): (labels: Record<string, string> | undefined) => boolean {
  const reqs: Requirement[] = [];
  const text = sel.trim();
  let i = 0;
  const terms: string[] = [];
  let depth = 0;
  let start = 0;
  for (; i < text.length; i++) {
    if (text[i] === "(") depth++;
    else if (text[i] === ")") depth--;
    else if (text[i] === "," && depth === 0) {
      terms.push(text.slice(start, i));
      start = i + 1;
    }
  }
  if (text !== "") terms.push(text.slice(start));
  for (const raw of terms) {
    const term = raw.trim();
    let m: RegExpMatchArray | null;
    if ((m = term.match(/^([\w./-]+)\s+(in|notin)\s+\(([^)]*)\)$/))) {
      const key = m[1]!;
      const values = m[3]!.split(",").map((s) => s.trim());
      const not = m[2] === "notin";
      reqs.push((l) => not ? !(key in l) || !values.includes(l[key]!) : key in l && values.includes(l[key]!));
    } else if ((m = term.match(/^([\w./-]+)\s*(==|=|!=)\s*([\w.-]*)$/))) {
      const [, key, op, value] = m as unknown as [string, string, string, string];
      reqs.push((l) => op === "!=" ? l[key] !== value : l[key] === value);
    } else if ((m = term.match(/^!([\w./-]+)$/))) {
      const key = m[1]!;
      reqs.push((l) => !(key in l));
    } else if ((m = term.match(/^([\w./-]+)$/))) {
      const key = m[1]!;
      reqs.push((l) => key in l);
    } else throw new Error(`labelSelector: cannot read ${JSON.stringify(term)}`);
  }
  return (labels) => reqs.every((r) => r(labels ?? {}));
}

/** Reads `metadata.name=x,metadata.namespace!=y`; other fields throw. */
function parseFieldSelector(sel: string): (o: KubeObject) => boolean {
  const reqs = sel.split(",").filter((s) => s.trim() !== "").map((term) => {
    const m = term.trim().match(/^(metadata\.name|metadata\.namespace)\s*(==|=|!=)\s*(.*)$/);
    if (!m) {
      throw new Error(`fieldSelector: only metadata.name and metadata.namespace are served, got ${term}`);
    }
    const field = m[1] === "metadata.name" ? "name" : "namespace";
    const not = m[2] === "!=";
    const value = m[3]!;
    return (o: KubeObject) => (o.metadata[field] === value) !== not;
  });
  return (o) => reqs.every((r) => r(o));
}

/** RFC 7386 JSON merge patch. */
export function mergePatch(target: unknown, patch: unknown): unknown {
  if (patch === null || typeof patch !== "object" || Array.isArray(patch)) return patch;
  const out: Record<string, unknown> = target !== null && typeof target === "object" && !Array.isArray(target)
    ? { ...(target as Record<string, unknown>) }
    : {};
  for (const [k, v] of Object.entries(patch as Record<string, unknown>)) {
    if (v === null) delete out[k];
    else out[k] = mergePatch(out[k], v);
  }
  return out;
}

interface JsonPatchOp {
  op: string;
  path: string;
  value?: unknown;
}

/** RFC 6902 JSON patch: add, replace, remove, test. Throws on a failed test or a bad path. */
export function jsonPatch(doc: unknown, ops: readonly JsonPatchOp[]): unknown {
  let root = structuredClone(doc);
  for (const op of ops) {
    const tokens = op.path.split("/").slice(1).map((t) => t.replaceAll("~1", "/").replaceAll("~0", "~"));
    if (tokens.length === 0) {
      if (op.op === "test") {
        if (JSON.stringify(root) !== JSON.stringify(op.value)) throw new Error(`test failed at ${op.path}`);
      } else root = op.value;
      continue;
    }
    let parent: Record<string, unknown> | unknown[] = root as Record<string, unknown>;
    for (const t of tokens.slice(0, -1)) {
      const next: unknown = Array.isArray(parent) ? parent[Number(t)] : parent?.[t];
      if (next === null || typeof next !== "object") throw new Error(`path ${op.path} does not exist`);
      parent = next as Record<string, unknown>;
    }
    const last = tokens[tokens.length - 1]!;
    if (Array.isArray(parent)) {
      const idx = last === "-" ? parent.length : Number(last);
      if (op.op === "add") parent.splice(idx, 0, op.value);
      else if (op.op === "replace") parent[idx] = op.value;
      else if (op.op === "remove") parent.splice(idx, 1);
      else if (op.op === "test") {
        if (JSON.stringify(parent[idx]) !== JSON.stringify(op.value)) {
          throw new Error(`test failed at ${op.path}`);
        }
      } else throw new Error(`op ${op.op} is not served`);
    } else {
      if ((op.op === "replace" || op.op === "remove") && !(last in parent)) {
        throw new Error(`path ${op.path} does not exist`);
      }
      if (op.op === "add" || op.op === "replace") parent[last] = op.value;
      else if (op.op === "remove") delete parent[last];
      else if (op.op === "test") {
        if (JSON.stringify(parent[last]) !== JSON.stringify(op.value)) {
          throw new Error(`test failed at ${op.path}`);
        }
      } else throw new Error(`op ${op.op} is not served`);
    }
  }
  return root;
}

class HttpError extends Error {
  constructor(readonly status: KubeObject) {
    super(String(status.message));
  }
}

function fail(code: number, reason: string, message: string, details?: object): never {
  throw new HttpError(kubeStatus(code, reason, message, details));
}

function singular(resource: string): string {
  const s = resource.endsWith("ies")
    ? resource.slice(0, -3) + "y"
    : resource.endsWith("ses")
    ? resource.slice(0, -2)
    : resource.replace(/s$/, "");
  return s.charAt(0).toUpperCase() + s.slice(1);
}

/** Starts a test API server on 127.0.0.1. */
export async function startKubeServer(opts: KubeServerOptions = {}): Promise<KubeServer> {
  let token = opts.token === null ? "" : opts.token ?? crypto.randomUUID();
  const bookmarkEvery = opts.bookmarkIntervalMs ?? 1000;
  const expiredAs = opts.expiredWatch ?? "event";
  const store = new Map<string, Stored>();
  const kinds = new Map<string, string>();
  let history: Change[] = [];
  let rv = 1;
  let compactedRv = 0;
  const watchers = new Set<Watcher>();
  const requests: KubeRequest[] = [];
  const pages = new Map<string, { rv: number; items: KubeObject[] }>();
  let delayMs = 0;
  let failures = 0;
  let failCode = 500;
  let uidSeq = 0;

  const kindOf = (t: Pick<Target, "apiVersion" | "resource">): string =>
    kinds.get(`${t.apiVersion}|${t.resource}`) ?? KINDS[t.resource] ?? singular(t.resource);

  const inScope = (t: Target, apiVersion: string, resource: string, o: KubeObject): boolean =>
    t.apiVersion === apiVersion && t.resource === resource &&
    (t.namespace === "" || o.metadata.namespace === t.namespace);

  function notify(change: Change): void {
    for (const w of watchers) {
      if (!inScope(w.target, change.apiVersion, change.resource, change.obj)) continue;
      const now = w.filter(change.obj);
      const before = change.prev ? w.filter(change.prev) : false;
      if (change.type === "MODIFIED") {
        // As the watch cache does for a filtered watch: entering the filter is ADDED, leaving it DELETED.
        if (now && before) w.send("MODIFIED", change.obj);
        else if (now) w.send("ADDED", change.obj);
        else if (before) w.send("DELETED", change.obj);
      } else if (now) w.send(change.type, change.obj);
    }
  }

  function write(t: Target, name: string, type: Change["type"], obj: KubeObject | undefined): KubeObject {
    const key = storeKey(t.apiVersion, t.resource, t.namespace, name);
    const prev = store.get(key)?.obj;
    rv++;
    let stored: KubeObject;
    if (type === "DELETED") {
      stored = structuredClone(prev!);
      stored.metadata.resourceVersion = String(rv);
      store.delete(key);
    } else {
      stored = structuredClone(obj!);
      stored.apiVersion = t.apiVersion;
      stored.kind = stored.kind ?? kindOf(t);
      kinds.set(`${t.apiVersion}|${t.resource}`, stored.kind);
      const meta = stored.metadata;
      meta.name = name;
      if (t.namespace !== "") meta.namespace = t.namespace;
      else delete meta.namespace;
      meta.resourceVersion = String(rv);
      meta.uid = prev?.metadata.uid ?? `00000000-0000-4000-8000-${String(++uidSeq).padStart(12, "0")}`;
      meta.creationTimestamp = prev?.metadata.creationTimestamp ??
        new Date().toISOString().replace(/\.\d+Z$/, "Z");
      const specChanged = !prev || JSON.stringify(prev.spec) !== JSON.stringify(stored.spec);
      meta.generation = prev ? Number(prev.metadata.generation ?? 1) + (specChanged ? 1 : 0) : 1;
      delete meta.generateName;
      store.set(key, { target: { ...t, name, status: false }, obj: stored });
    }
    const change: Change = {
      rv,
      type,
      ...(prev ? { prev } : {}),
      obj: stored,
      apiVersion: t.apiVersion,
      resource: t.resource,
    };
    history.push(change);
    notify(change);
    return structuredClone(stored);
  }

  function current(t: Target, name: string): KubeObject | undefined {
    return store.get(storeKey(t.apiVersion, t.resource, t.namespace, name))?.obj;
  }

  function mustGet(t: Target): KubeObject {
    const o = current(t, t.name!);
    if (!o) fail(404, "NotFound", `${t.resource} "${t.name}" not found`, { name: t.name, kind: t.resource });
    return o;
  }

  function listItems(t: Target): KubeObject[] {
    const out: KubeObject[] = [];
    for (const s of store.values()) {
      if (inScope(t, s.target.apiVersion, s.target.resource, s.obj)) out.push(s.obj);
    }
    return out.sort((a, b) =>
      `${a.metadata.namespace ?? ""}/${a.metadata.name}`.localeCompare(
        `${b.metadata.namespace ?? ""}/${b.metadata.name}`,
      )
    );
  }

  function expired(message: string): KubeObject {
    return kubeStatus(410, "Expired", message);
  }

  /** Applies a write to the object or its status, keeping the other part as stored. */
  function splitStatus(t: Target, prev: KubeObject, next: KubeObject): KubeObject {
    if (t.status) return { ...prev, status: next.status, metadata: prev.metadata };
    const out = { ...next };
    if ("status" in prev) out.status = prev.status;
    else delete out.status;
    return out;
  }

  function checkVersion(t: Target, prev: KubeObject, body: KubeObject): void {
    const want = body.metadata?.resourceVersion;
    if (want !== undefined && want !== "" && want !== prev.metadata.resourceVersion) {
      fail(
        409,
        "Conflict",
        `Operation cannot be fulfilled on ${t.resource} "${t.name}": the object has been modified; please apply your changes to the latest version and try again`,
        { name: t.name, kind: t.resource },
      );
    }
  }

  function selectors(q: URLSearchParams): (o: KubeObject) => boolean {
    try {
      const labels = parseLabelSelector(q.get("labelSelector") ?? "");
      const fields = parseFieldSelector(q.get("fieldSelector") ?? "");
      return (o) => labels(o.metadata.labels) && fields(o);
    } catch (e) {
      fail(400, "BadRequest", (e as Error).message);
    }
  }

  function list(t: Target, q: URLSearchParams): KubeObject {
    const filter = selectors(q);
    const listMeta = (itemsRv: number, cont?: string, remaining?: number) => ({
      resourceVersion: String(itemsRv),
      ...(cont ? { continue: cont, remainingItemCount: remaining } : {}),
    });
    let items: KubeObject[];
    let atRv = rv;
    const cont = q.get("continue");
    if (cont) {
      const page = pages.get(cont);
      if (!page || page.rv <= compactedRv) {
        throw new HttpError(
          expired("The provided continue parameter is too old to display a consistent list result."),
        );
      }
      pages.delete(cont);
      items = page.items;
      atRv = page.rv;
    } else {
      const want = q.get("resourceVersion");
      if (q.get("resourceVersionMatch") === "Exact" && want) {
        const n = Number(want);
        if (n <= compactedRv) {
          throw new HttpError(expired(`too old resource version: ${n} (${compactedRv + 1})`));
        }
        if (n !== rv) fail(504, "Timeout", `resourceVersion ${n} is not served exactly by this test server`);
      }
      items = listItems(t).filter(filter).map((o) => structuredClone(o));
    }
    const limit = Number(q.get("limit") ?? "0");
    let next: string | undefined;
    let remaining: number | undefined;
    if (limit > 0 && items.length > limit) {
      next = crypto.randomUUID();
      pages.set(next, { rv: atRv, items: items.slice(limit) });
      remaining = items.length - limit;
      items = items.slice(0, limit);
    }
    return {
      kind: `${kindOf(t)}List`,
      apiVersion: t.apiVersion,
      metadata: listMeta(atRv, next, remaining),
      items,
    } as unknown as KubeObject;
  }

  function startWatch(t: Target, q: URLSearchParams, req: Request): Response {
    const filter = selectors(q);
    const fromRaw = q.get("resourceVersion") ?? "";
    const bookmarks = q.get("allowWatchBookmarks") === "true" || q.get("allowWatchBookmarks") === "1";
    const timeoutS = Number(q.get("timeoutSeconds") ?? "0");
    const from = fromRaw === "" || fromRaw === "0" ? undefined : Number(fromRaw);
    if (from !== undefined && !(from >= 0)) {
      fail(400, "BadRequest", `resourceVersion ${fromRaw} is not a number`);
    }
    const tooOld = from !== undefined && from < compactedRv;
    if (tooOld && expiredAs === "status") {
      throw new HttpError(expired(`too old resource version: ${from} (${compactedRv + 1})`));
    }
    const enc = new TextEncoder();
    let ctl!: ReadableStreamDefaultController<Uint8Array>;
    let closed = false;
    const timers: ReturnType<typeof setTimeout>[] = [];
    const watcher: Watcher = {
      target: t,
      filter,
      bookmarks,
      send(type, obj) {
        if (closed) return;
        try {
          ctl.enqueue(enc.encode(JSON.stringify({ type, object: obj }) + "\n"));
        } catch {
          watcher.close();
        }
      },
      close() {
        if (closed) return;
        closed = true;
        watchers.delete(watcher);
        for (const tm of timers) clearTimeout(tm);
        try {
          ctl.close();
        } catch {
          // Already closed by the client.
        }
      },
    };
    const stream = new ReadableStream<Uint8Array>({
      start(c) {
        ctl = c;
        if (tooOld) {
          watcher.send("ERROR", expired(`too old resource version: ${from} (${compactedRv + 1})`));
          closed = true;
          c.close();
          return;
        }
        watchers.add(watcher);
        if (from === undefined) {
          // "Get State and Start at Most Recent": synthetic ADDED events for what exists now.
          for (const o of listItems(t)) if (filter(o)) watcher.send("ADDED", o);
        } else {
          for (const ch of history) {
            if (ch.rv <= from || !inScope(t, ch.apiVersion, ch.resource, ch.obj)) continue;
            const now = filter(ch.obj);
            const before = ch.prev ? filter(ch.prev) : false;
            if (ch.type === "MODIFIED") {
              if (now && before) watcher.send("MODIFIED", ch.obj);
              else if (now) watcher.send("ADDED", ch.obj);
              else if (before) watcher.send("DELETED", ch.obj);
            } else if (now) watcher.send(ch.type, ch.obj);
          }
        }
        if (bookmarks && bookmarkEvery > 0) {
          const tick = () => {
            sendBookmark(watcher);
            timers.push(setTimeout(tick, bookmarkEvery));
          };
          timers.push(setTimeout(tick, bookmarkEvery));
        }
        if (timeoutS > 0) timers.push(setTimeout(() => watcher.close(), timeoutS * 1000));
        req.signal.addEventListener("abort", () => watcher.close(), { once: true });
      },
      cancel() {
        watcher.close();
      },
    });
    return new Response(stream, { status: 200, headers: { "content-type": "application/json" } });
  }

  function sendBookmark(w: Watcher): void {
    if (!w.bookmarks) return;
    w.send("BOOKMARK", {
      kind: kindOf(w.target),
      apiVersion: w.target.apiVersion,
      metadata: { resourceVersion: String(rv), annotations: {} },
    });
  }

  async function readBody(req: Request): Promise<unknown> {
    try {
      return await req.json();
    } catch {
      fail(400, "BadRequest", "the request body is not JSON");
    }
  }

  async function handleWrite(req: Request, t: Target): Promise<Response> {
    const method = req.method;
    if (method === "DELETE") {
      if (!t.name) fail(405, "MethodNotAllowed", "deleting a collection is not served");
      const prev = mustGet(t);
      void prev;
      return json(200, write(t, t.name, "DELETED", undefined));
    }
    const body = await readBody(req) as KubeObject;
    if (method === "POST") {
      if (t.name || t.status) fail(405, "MethodNotAllowed", "POST is served on collections only");
      if (body === null || typeof body !== "object" || typeof body.metadata !== "object") {
        fail(400, "BadRequest", "the object has no metadata");
      }
      const name = body.metadata.name ??
        (body.metadata.generateName
          ? body.metadata.generateName + Math.random().toString(36).slice(2, 7)
          : "");
      if (!name) fail(422, "Invalid", "metadata.name: Required value: name or generateName is required");
      if (current(t, name)) {
        fail(409, "AlreadyExists", `${t.resource} "${name}" already exists`, { name, kind: t.resource });
      }
      const created = { ...body };
      if (kindOf(t) !== "Namespace") delete created.status;
      return json(201, write(t, name, "ADDED", created));
    }
    if (!t.name) fail(405, "MethodNotAllowed", `${method} is served on objects only`);
    const prev = mustGet(t);
    let next: KubeObject;
    if (method === "PUT") {
      if (body === null || typeof body !== "object" || typeof body.metadata !== "object") {
        fail(400, "BadRequest", "the object has no metadata");
      }
      checkVersion(t, prev, body);
      next = body;
    } else if (method === "PATCH") {
      const type = (req.headers.get("content-type") ?? "").split(";")[0]!.trim();
      try {
        if (type === "application/merge-patch+json" || type === "application/strategic-merge-patch+json") {
          checkVersion(t, prev, body);
          next = mergePatch(prev, body) as KubeObject;
        } else if (type === "application/json-patch+json") {
          next = jsonPatch(prev, body as unknown as JsonPatchOp[]) as KubeObject;
        } else {
          fail(415, "UnsupportedMediaType", `the body of the request was in an unknown format: ${type}`);
        }
      } catch (e) {
        if (e instanceof HttpError) throw e;
        fail(422, "Invalid", (e as Error).message);
      }
    } else fail(405, "MethodNotAllowed", `${method} is not served`);
    const merged = splitStatus(t, prev, next);
    if (JSON.stringify(merged) === JSON.stringify(prev)) return json(200, prev);
    return json(200, write(t, t.name, "MODIFIED", merged));
  }

  function json(code: number, body: unknown): Response {
    return new Response(JSON.stringify(body), {
      status: code,
      headers: { "content-type": "application/json" },
    });
  }

  async function handle(req: Request, certified: boolean): Promise<Response> {
    const url = new URL(req.url);
    const q = url.searchParams;
    const auth = certified
      ? "certificate"
      : token !== "" && req.headers.get("authorization") === `Bearer ${token}`
      ? "token"
      : "none";
    const log = (status: number) =>
      requests.push({ method: req.method, path: url.pathname, query: Object.fromEntries(q), status, auth });
    if (delayMs > 0) await Bun.sleep(delayMs);
    if (failures > 0) {
      failures--;
      log(failCode);
      return json(
        failCode,
        kubeStatus(failCode, "InternalError", "Internal error occurred: injected by the test"),
      );
    }
    if (token !== "" && auth === "none") {
      log(401);
      return json(401, kubeStatus(401, "Unauthorized", "Unauthorized"));
    }
    try {
      const t = parseKubePath(url.pathname);
      if (!t) fail(404, "NotFound", `the server could not find the requested resource ${url.pathname}`);
      let res: Response;
      if (req.method === "GET") {
        if (q.get("watch") === "1" || q.get("watch") === "true") {
          if (t.name) fail(400, "BadRequest", "watch a collection with a fieldSelector on metadata.name");
          res = startWatch(t, q, req);
        } else if (t.name) res = json(200, mustGet(t));
        else res = json(200, list(t, q));
      } else res = await handleWrite(req, t);
      log(res.status);
      return res;
    } catch (e) {
      const status = e instanceof HttpError ? e.status : kubeStatus(500, "InternalError", String(e));
      log(Number(status.code));
      return json(Number(status.code), status);
    }
  }

  let server: Server | undefined;
  let port = opts.port ?? 0;
  const sockets = new Set<Socket>();
  async function up(): Promise<void> {
    if (server) return;
    const tls = opts.tls;
    const s = tls
      ? createHttpsServer({
        cert: tls.cert,
        key: tls.key,
        ...(tls.clientCa ? { ca: tls.clientCa, requestCert: true, rejectUnauthorized: false } : {}),
      }, (req, res) => void serveNode(req, res))
      : createServer((req, res) => void serveNode(req, res));
    s.on("connection", (sock) => {
      sockets.add(sock);
      sock.on("close", () => sockets.delete(sock));
    });
    server = s;
    await new Promise<void>((resolve, reject) => {
      s.once("error", reject);
      s.listen(port, "127.0.0.1", () => resolve());
    });
    port = (s.address() as AddressInfo).port;
  }
  async function down(): Promise<void> {
    for (const w of [...watchers]) w.close();
    const s = server;
    server = undefined;
    if (!s) return;
    const closed = new Promise<void>((resolve) => s.close(() => resolve()));
    for (const sock of sockets) sock.destroy();
    await closed;
  }

  /**
   * Serves one request through `handle`, writing the status line and headers at once (as the API
   * server flushes a watch's headers before its first event).
   */
  async function serveNode(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const abort = new AbortController();
    res.on("close", () => abort.abort());
    const chunks: Buffer[] = [];
    for await (const c of req) chunks.push(c as Buffer);
    const method = req.method ?? "GET";
    const headers = new Headers();
    for (const [k, v] of Object.entries(req.headers)) if (typeof v === "string") headers.set(k, v);
    const request = new Request(`http://127.0.0.1:${port}${req.url ?? "/"}`, {
      method,
      headers,
      signal: abort.signal,
      ...(method === "GET" || method === "HEAD" ? {} : { body: Buffer.concat(chunks) }),
    });
    // A client certificate the TLS layer verified against tls.clientCa (never over plain HTTP).
    const certified = opts.tls?.clientCa !== undefined &&
      (req.socket as { authorized?: boolean }).authorized === true;
    const answer = await handle(request, certified);
    if (res.destroyed) return;
    res.writeHead(answer.status, Object.fromEntries(answer.headers));
    res.flushHeaders();
    if (!answer.body) {
      res.end();
      return;
    }
    const reader = answer.body.getReader();
    try {
      for (;;) {
        const { value, done } = await reader.read();
        if (done || res.destroyed) break;
        res.write(value);
      }
    } finally {
      res.end();
    }
  }
  await up();

  function targetOf(path: string, what: string): Target {
    const t = parseKubePath(path);
    if (!t) throw new Error(`kube test server: ${what} ${path} is not an API path`);
    return t;
  }

  return {
    get url() {
      return `${opts.tls ? "https" : "http"}://127.0.0.1:${port}`;
    },
    get port() {
      return port;
    },
    get token() {
      return token;
    },
    setToken(next) {
      token = next ?? "";
    },
    get resourceVersion() {
      return rv;
    },
    requests,
    get openWatches() {
      return watchers.size;
    },
    put(collection, obj) {
      const t = targetOf(collection, "collection");
      const name = obj.metadata.name;
      if (!name || t.name) {
        throw new Error(`kube test server: put ${collection} needs a collection and a named object`);
      }
      const ns = t.namespace || obj.metadata.namespace || "";
      const at = { ...t, namespace: ns };
      return write(at, name, current(at, name) ? "MODIFIED" : "ADDED", obj);
    },
    patch(path, p) {
      const t = targetOf(path, "object");
      const prev = current(t, t.name ?? "");
      if (!prev) throw new Error(`kube test server: patch ${path}: no such object`);
      return write(t, t.name!, "MODIFIED", mergePatch(prev, p) as KubeObject);
    },
    remove(path) {
      const t = targetOf(path, "object");
      if (!t.name || !current(t, t.name)) return false;
      write(t, t.name, "DELETED", undefined);
      return true;
    },
    get(path) {
      const t = targetOf(path, "object");
      const o = t.name ? current(t, t.name) : undefined;
      return o ? structuredClone(o) : undefined;
    },
    list(collection) {
      return listItems(targetOf(collection, "collection")).map((o) => structuredClone(o));
    },
    compact() {
      compactedRv = rv;
      history = [];
      for (const [k, p] of pages) if (p.rv <= compactedRv) pages.delete(k);
    },
    bookmark() {
      for (const w of watchers) sendBookmark(w);
    },
    closeWatches() {
      for (const w of [...watchers]) w.close();
    },
    expireWatches() {
      for (const w of [...watchers]) {
        w.send("ERROR", expired("The resourceVersion for the provided watch is too old."));
        w.close();
      }
    },
    slow(ms) {
      delayMs = ms;
    },
    fail(count, code = 500) {
      failures = count;
      failCode = code;
    },
    down,
    up,
    async restart() {
      await down();
      await up();
    },
    async close() {
      await down();
      pages.clear();
    },
  };
}

/** Options for writeKubeconfig. */
export interface KubeconfigOptions {
  /** Directory to write into (default a new temporary one). */
  readonly dir?: string;
  /** Write the token to this file and name it with `tokenFile` instead of inline. */
  readonly tokenFile?: boolean;
  /** The context's default namespace. */
  readonly namespace?: string;
  /** PEM of the CA to trust, written as `certificate-authority-data`. */
  readonly ca?: string;
  /** A client certificate and key, written as `client-certificate-data` and `client-key-data`. */
  readonly clientCert?: { readonly cert: string; readonly key: string };
  /** Leave the bearer token out (with `clientCert`: certificate authentication alone). */
  readonly noToken?: boolean;
}

/** Writes a kubeconfig whose current context points at `server` with its bearer token; returns its path. */
export function writeKubeconfig(
  server: Pick<KubeServer, "url" | "token">,
  opts: KubeconfigOptions = {},
): string {
  const dir = opts.dir ?? mkdtempSync(join(tmpdir(), "meshd-kubeconfig-"));
  const b64 = (pem: string) => Buffer.from(pem).toString("base64");
  const user: string[] = [];
  if (opts.noToken) {
    // Certificate authentication only.
  } else if (opts.tokenFile) {
    const tokenPath = join(dir, "token");
    writeFileSync(tokenPath, server.token + "\n");
    user.push(`    tokenFile: ${tokenPath}`);
  } else user.push(`    token: ${server.token}`);
  if (opts.clientCert) {
    user.push(`    client-certificate-data: ${b64(opts.clientCert.cert)}`);
    user.push(`    client-key-data: ${b64(opts.clientCert.key)}`);
  }
  const text = [
    "apiVersion: v1",
    "kind: Config",
    "clusters:",
    "- name: other",
    "  cluster:",
    "    server: http://127.0.0.1:1",
    "- name: test",
    "  cluster:",
    `    server: ${server.url}`,
    ...(opts.ca ? [`    certificate-authority-data: ${b64(opts.ca)}`] : []),
    "contexts:",
    "- name: other",
    "  context: {cluster: other, user: nobody}",
    "- name: test",
    "  context:",
    "    cluster: test",
    "    user: tester",
    ...(opts.namespace ? [`    namespace: ${opts.namespace}`] : []),
    "current-context: test",
    "users:",
    "- name: nobody",
    "  user: {token: wrong}",
    "- name: tester",
    user.length > 0 ? "  user:" : "  user: {}",
    ...user,
    "",
  ].join("\n");
  const path = join(dir, "kubeconfig");
  writeFileSync(path, text);
  return path;
}
