/**
 * The Kubernetes config source (`--config-source kubernetes` in a pod, or
 * `kubernetes://?kubeconfig=FILE[&context=NAME]`): Istio's custom resources read from the API
 * server, in all namespaces, for every Istio kind galley knows (kube_kinds.ts).
 *
 * Each kind is read at the first version the server serves among those meshd accepts (v1 before
 * v1beta1 before v1alpha3; a 404 moves to the next), by list-then-watch with bookmarks, listing
 * again on 410 Gone (the informer in mod/kube). A kind the server serves at no such version (its
 * CRD is not installed) holds no config and is looked for again every `absentRecheckMs`.
 *
 * Every object is one origin, named by its API path, holding the object as a file would give
 * it: apiVersion, kind, metadata (name, namespace, labels, annotations) and spec, as JSON. So
 * it is parsed and validated exactly as a file is, and an invalid object is rejected alone,
 * naming its kind, namespace and name, while the others apply. Status, resourceVersion and the
 * server's bookkeeping are left out, so a status write is not a config change.
 *
 * The first listing is delivered once every kind is listed (or known absent); then each change
 * is delivered as it is watched. While the server is unreachable or failing, nothing is delivered
 * and galley keeps the last good config; the informers retry with backoff. A change galley
 * refused as a whole is followed by a full listing.
 *
 * @module
 */
import { type Clock, sleep } from "../shared/clock.ts";
import { errorMessage } from "../shared/errors.ts";
import type { Logger } from "../shared/logger.ts";
import type {
  ConfigSource,
  OriginChange,
  OriginContent,
  OriginError,
  SinkVerdict,
  SourceSink,
} from "../runtime/config_source.ts";
import {
  type Informer,
  type InformerEvent,
  KubeApiError,
  type KubeClient,
  type KubeObject,
  listWatch,
} from "../kube/mod.ts";
import { type CrdKind, crdPath, ISTIO_CRDS } from "./kube_kinds.ts";

/** Where a `--config-source kubernetes...` value says to connect. */
export interface KubeSourceTarget {
  /** The value as given, for messages and as the source's name. */
  readonly name: string;
  /** A kubeconfig file; absent: the pod's service account. */
  readonly kubeconfig?: string;
  /** The kubeconfig context (default its current-context). */
  readonly context?: string;
  /** Namespace of the Lease that picks the replica writing status (default the connection's). */
  readonly leaseNamespace?: string;
}

const URL_PARAMS = ["kubeconfig", "context", "lease-namespace"];

/** True when a `--config-source` value names the Kubernetes API. */
export function isKubeSourceUrl(text: string): boolean {
  return text === "kubernetes" || text.startsWith("kubernetes:");
}

/**
 * Reads `kubernetes` (in-cluster) or `kubernetes://?kubeconfig=FILE[&context=NAME]
 * [&lease-namespace=NS]`; throws naming the value and what is wrong.
 */
export function parseKubeSourceUrl(text: string): KubeSourceTarget {
  const bad = (why: string): never => {
    throw new Error(`--config-source ${text}: ${why}`);
  };
  if (text === "kubernetes") return { name: text };
  let url: URL;
  try {
    url = new URL(text);
  } catch {
    return bad("want kubernetes or kubernetes://?kubeconfig=FILE");
  }
  if (url.protocol !== "kubernetes:") bad("want kubernetes or kubernetes://?kubeconfig=FILE");
  if (url.host !== "" || (url.pathname !== "" && url.pathname !== "/")) {
    bad("the API server comes from the pod's service account or from ?kubeconfig=FILE, not the URL");
  }
  for (const key of url.searchParams.keys()) {
    if (!URL_PARAMS.includes(key)) bad(`unknown parameter ${key}; want ${URL_PARAMS.join(", ")}`);
  }
  const get = (key: string): string | undefined => {
    const v = url.searchParams.get(key);
    if (v === "") bad(`${key}= needs a value`);
    return v ?? undefined;
  };
  const kubeconfig = get("kubeconfig");
  const context = get("context");
  const leaseNamespace = get("lease-namespace");
  if (context !== undefined && kubeconfig === undefined) bad("context= needs kubeconfig=FILE");
  return {
    name: text,
    ...(kubeconfig === undefined ? {} : { kubeconfig }),
    ...(context === undefined ? {} : { context }),
    ...(leaseNamespace === undefined ? {} : { leaseNamespace }),
  };
}

/** Options for createKubeSource. */
export interface KubeSourceOptions {
  readonly client: KubeClient;
  /** The source's name (its `--config-source` value). */
  readonly name: string;
  readonly logger: Logger;
  readonly clock: Clock;
  /** The kinds to read (default every Istio kind galley knows). */
  readonly kinds?: readonly CrdKind[];
  /** Objects larger than this (as JSON) are refused without being parsed. */
  readonly maxBytes?: number;
  /** How often a kind the server does not serve is looked for again (default 60 s). */
  readonly absentRecheckMs?: number;
  /** Retry delays of the informers and the version probes (default 500 ms to 30 s). */
  readonly backoff?: { readonly initialMs: number; readonly maxMs: number };
  /** The server ends each watch after this many seconds (default 300). */
  readonly watchTimeoutS?: number;
}

/** One object the source holds, as the status writer needs it. */
export interface KubeConfigObject {
  readonly origin: string;
  readonly crd: CrdKind;
  /** The version it was read at. */
  readonly version: string;
  /** The object as the server last sent it (status included). */
  readonly object: KubeObject;
  /** The document delivered to galley, or why it was refused unread. */
  readonly content?: string;
  readonly error?: string;
}

/** How each kind is being read, for /debug/configz and the tests. */
export interface KubeKindStatus {
  readonly kind: string;
  readonly group: string;
  /** The version read; absent while probing or when the server serves none. */
  readonly version?: string;
  readonly state: "probing" | "absent" | "watching";
  readonly objects: number;
  readonly synced: boolean;
  readonly stale: boolean;
  readonly resourceVersion?: string;
  readonly lists: number;
  readonly lastError?: string;
}

/** The Kubernetes config source, with what the status writer reads. */
export interface KubeSource extends ConfigSource {
  /** Every object read, by origin. */
  objects(): ReadonlyMap<string, KubeConfigObject>;
  /** Calls `listener` after each delivery to galley. Returns an unsubscribe function. */
  onDelivered(listener: () => void): () => void;
  status(): { readonly name: string; readonly synced: boolean; readonly kinds: readonly KubeKindStatus[] };
}

/** The fields of an object that make up its config, as a file would hold them. */
export function configDocument(crd: CrdKind, version: string, o: KubeObject): string {
  const m = o.metadata;
  return JSON.stringify({
    apiVersion: `${crd.group}/${version}`,
    kind: crd.kind,
    metadata: {
      name: m.name,
      ...(m.namespace === undefined ? {} : { namespace: m.namespace }),
      ...(m.labels === undefined ? {} : { labels: m.labels }),
      ...(m.annotations === undefined ? {} : { annotations: m.annotations }),
    },
    ...("spec" in o ? { spec: o.spec } : {}),
  });
}

/** The origin of an object: its API path. */
export function objectOrigin(crd: CrdKind, version: string, o: KubeObject): string {
  return crdPath(crd, version, o.metadata.namespace, o.metadata.name);
}

interface KindState {
  readonly crd: CrdKind;
  state: KubeKindStatus["state"];
  version?: string;
  informer?: Informer;
  lastError?: string;
}

/** Creates the source; nothing is read until start(). */
export function createKubeSource(opts: KubeSourceOptions): KubeSource {
  const { client, clock } = opts;
  const log = opts.logger.child({ source: opts.name });
  const kinds: KindState[] = (opts.kinds ?? ISTIO_CRDS).map((crd) => ({ crd, state: "probing" }));
  const maxBytes = opts.maxBytes ?? 8 * 1024 * 1024;
  const absentRecheckMs = opts.absentRecheckMs ?? 60_000;
  const backoff = opts.backoff ?? { initialMs: 500, maxMs: 30_000 };
  const stopper = new AbortController();
  const objects = new Map<string, KubeConfigObject>();
  const listeners = new Set<() => void>();
  /** Changes watched since the last delivery, by origin (the last one wins). */
  let pending = new Map<string, OriginChange>();
  let flushQueued = false;
  let sink: SourceSink | undefined;
  let synced = false;
  let needReplace = false;
  let reported = "[]";
  const loops: Promise<void>[] = [];

  function delivered(verdict: SinkVerdict): void {
    needReplace = !verdict.applied;
    if (!verdict.applied) {
      log.warn("galley refused the config from the Kubernetes API as a whole; keeping the last good config", {
        reason: verdict.reason,
      });
    }
    for (const l of listeners) {
      try {
        l();
      } catch (e) {
        log.error("kubernetes source listener failed", { err: errorMessage(e) });
      }
    }
  }

  /** The origin change an object becomes, recording it. */
  function record(k: KindState, o: KubeObject): OriginContent | OriginError {
    const origin = objectOrigin(k.crd, k.version!, o);
    const content = configDocument(k.crd, k.version!, o);
    const bytes = Buffer.byteLength(content);
    if (bytes > maxBytes) {
      const error = `${k.crd.kind} ${o.metadata.namespace ?? ""}/${o.metadata.name} is ${bytes} bytes; ` +
        `the limit is ${maxBytes} bytes (--config-max-file-size)`;
      objects.set(origin, { origin, crd: k.crd, version: k.version!, object: o, error });
      return { origin, error };
    }
    objects.set(origin, { origin, crd: k.crd, version: k.version!, object: o, content });
    return {
      origin,
      content,
      ...(o.metadata.resourceVersion ? { version: o.metadata.resourceVersion } : {}),
    };
  }

  function allSynced(): boolean {
    return kinds.every((k) =>
      k.state === "absent" || (k.state === "watching" && k.informer!.status().synced)
    );
  }

  /** Delivers what is pending: the first listing once every kind is read, then the changes. */
  function flush(): void {
    flushQueued = false;
    if (stopper.signal.aborted || sink === undefined) return;
    reportProblems(sink);
    if (!synced || needReplace) {
      if (!allSynced()) return;
      pending = new Map();
      const all: (OriginContent | OriginError)[] = [];
      for (const o of objects.values()) {
        all.push(
          o.content === undefined ? { origin: o.origin, error: o.error ?? "unread" } : {
            origin: o.origin,
            content: o.content,
          },
        );
      }
      const first = !synced;
      synced = true;
      delivered(sink.replace(all));
      if (first) log.info("config listed from the Kubernetes API", { resources: all.length });
      return;
    }
    if (pending.size === 0) return;
    const changes = [...pending.values()];
    pending = new Map();
    delivered(sink.update(changes));
  }

  /** Tells galley which kinds are not being read now (their last good config stays). */
  function reportProblems(to: SourceSink): void {
    const warnings: string[] = [];
    for (const k of kinds) {
      const err = k.informer?.status().lastError ?? k.lastError;
      if (err !== undefined) {
        warnings.push(`${k.crd.kind}.${k.crd.group}: ${err}; serving the last config read`);
      }
    }
    const text = JSON.stringify(warnings);
    if (text === reported) return;
    reported = text;
    to.report({ warnings });
  }

  function queueFlush(): void {
    if (flushQueued) return;
    flushQueued = true;
    queueMicrotask(flush);
  }

  function onEvent(k: KindState, ev: InformerEvent): void {
    if (ev.type === "DELETED") {
      const origin = objectOrigin(k.crd, k.version!, ev.object);
      objects.delete(origin);
      pending.set(origin, { origin, deleted: true });
    } else {
      const before = objects.get(objectOrigin(k.crd, k.version!, ev.object));
      const change = record(k, ev.object);
      // A status write or a bookkeeping change is not a config change.
      if (before?.content === undefined || !("content" in change) || before.content !== change.content) {
        pending.set(change.origin, change);
      }
    }
    queueFlush();
  }

  /** The first version of `k` the server serves, or undefined when it serves none. */
  async function probe(k: KindState): Promise<string | undefined> {
    for (const version of k.crd.versions) {
      try {
        await client.request("GET", crdPath(k.crd, version), {
          query: { limit: "1" },
          signal: stopper.signal,
        });
        return version;
      } catch (e) {
        if (e instanceof KubeApiError && e.code === 404) continue;
        throw e;
      }
    }
    return undefined;
  }

  /** Finds the kind's version (retrying while the server fails), then keeps it watched. */
  async function runKind(k: KindState): Promise<void> {
    let delay = backoff.initialMs;
    while (!stopper.signal.aborted) {
      let version: string | undefined;
      try {
        version = await probe(k);
        if (k.lastError !== undefined) queueFlush();
        k.lastError = undefined;
      } catch (e) {
        if (stopper.signal.aborted) return;
        k.lastError = errorMessage(e);
        queueFlush();
        log.warn("cannot read a kind from the Kubernetes API; keeping the last good config", {
          kind: k.crd.kind,
          err: k.lastError,
        });
        await sleep(clock, delay, stopper.signal);
        delay = Math.min(backoff.maxMs, delay * 2);
        continue;
      }
      delay = backoff.initialMs;
      if (version === undefined) {
        if (k.state !== "absent") {
          log.info("the Kubernetes API serves no version of this kind; its CRD is not installed", {
            kind: `${k.crd.kind}.${k.crd.group}`,
            versions: k.crd.versions,
          });
        }
        k.state = "absent";
        queueFlush();
        await sleep(clock, absentRecheckMs, stopper.signal);
        continue;
      }
      k.version = version;
      k.state = "watching";
      k.informer = listWatch(client, crdPath(k.crd, version), {
        clock,
        logger: log,
        backoff,
        ...(opts.watchTimeoutS === undefined ? {} : { watchTimeoutS: opts.watchTimeoutS }),
        onEvent: (ev) => onEvent(k, ev),
        onStatus: queueFlush,
      });
      return;
    }
  }

  return {
    name: opts.name,
    synced: () => synced,
    start(s) {
      sink = s;
      for (const k of kinds) loops.push(runKind(k));
      return Promise.resolve();
    },
    async stop() {
      stopper.abort();
      await Promise.all(loops);
      await Promise.all(kinds.map((k) => k.informer?.stop()));
    },
    objects: () => objects,
    onDelivered(listener) {
      listeners.add(listener);
      return () => listeners.delete(listener);
    },
    status: () => ({
      name: opts.name,
      synced,
      kinds: kinds.map((k) => {
        const st = k.informer?.status();
        const err = st?.lastError ?? k.lastError;
        let count = 0;
        if (k.version !== undefined) {
          const prefix = `/apis/${k.crd.group}/${k.version}/`;
          for (const o of objects.values()) if (o.crd === k.crd && o.origin.startsWith(prefix)) count++;
        }
        return {
          kind: k.crd.kind,
          group: k.crd.group,
          ...(k.version === undefined ? {} : { version: k.version }),
          state: k.state,
          objects: count,
          synced: st?.synced ?? false,
          stale: st?.stale ?? k.lastError !== undefined,
          ...(st?.resourceVersion ? { resourceVersion: st.resourceVersion } : {}),
          lists: st?.lists ?? 0,
          ...(err === undefined ? {} : { lastError: err }),
        };
      }),
    }),
  };
}
