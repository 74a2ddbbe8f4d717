/**
 * The ADS stream server: State-of-the-World and Delta streams of
 * envoy.service.discovery.v3.AggregatedDiscoveryService, over resources from providers.
 *
 * Per stream and type URL it keeps the subscription, the last version and nonce sent, and what
 * the client ACKed or NACKed. Requests carrying a stale nonce are ignored. A NACK is recorded
 * and nothing is re-sent until the resources change, so a rejected version never loops.
 * Pushes caused by changes go through a queue that merges them per stream and orders types
 * make-before-break (clusters, endpoints, listeners, routes). In State of the World, listeners
 * and clusters are always sent whole; routes, endpoints and secrets only where they changed, as
 * the protocol allows.
 *
 * The streams are served straight on HTTP/2 (mod/grpc/raw.ts). Streams whose subscriptions and
 * provider answers are equal share the work: subscriptions are interned, selections and
 * differences are computed once per distinct input, and each distinct response is encoded once;
 * a stream writes only its own nonce in front of the shared bytes.
 *
 * A response larger than a client will likely accept (gRPC clients refuse messages over 4 MiB
 * by default, and then NACK or disconnect without saying why) is warned about once per type and
 * version, naming the proxies it went to, counted, and shown in the streams' status.
 */
import { create, toBinary } from "@bufbuild/protobuf";
import { BinaryWriter, WireType } from "@bufbuild/protobuf/wire";
import { AnySchema } from "@bufbuild/protobuf/wkt";
import { Code, ConnectError } from "@connectrpc/connect";
import { Counter } from "prom-client";
import type { Node } from "#gen/envoy/config/core/v3/base_pb.ts";
import { AggregatedDiscoveryService } from "#gen/envoy/service/discovery/v3/ads_pb.ts";
import {
  DeltaDiscoveryRequestSchema,
  DiscoveryRequestSchema,
  ResourceSchema,
} from "#gen/envoy/service/discovery/v3/discovery_pb.ts";
import { decodeRequest, type GrpcStream, type GrpcStreamHandler, methodPath } from "../grpc/raw.ts";
import type { GrpcRegistrar } from "../runtime/module.ts";
import { errorMessage } from "../shared/errors.ts";
import type { Logger } from "../shared/logger.ts";
import type { MetricsRegistry } from "../shared/metrics.ts";
import type { ResourceProvider, XdsClient, XdsObserver, XdsResource } from "./provider.ts";
import { createPushQueue } from "./push_queue.ts";
import { setVersion } from "../shared/content_version.ts";

const T = "type.googleapis.com/";
/** Make-before-break order of Envoy's types; others come after. */
const TYPE_ORDER = [
  `${T}envoy.config.cluster.v3.Cluster`,
  `${T}envoy.config.endpoint.v3.ClusterLoadAssignment`,
  `${T}envoy.config.listener.v3.Listener`,
  `${T}envoy.config.route.v3.RouteConfiguration`,
  `${T}envoy.extensions.transport_sockets.tls.v3.Secret`,
];
/** Types whose State-of-the-World responses need carry only what changed. */
const INCREMENTAL = new Set(TYPE_ORDER.filter((t) => !t.endsWith(".Cluster") && !t.endsWith(".Listener")));

const typeRank = (t: string) => {
  const i = TYPE_ORDER.indexOf(t);
  return i < 0 ? TYPE_ORDER.length : i;
};

/** Per type URL state of one stream, as debug pages show it. */
export interface TypeStatus {
  readonly typeUrl: string;
  /** Subscribed names; "*" for a wildcard subscription. */
  readonly subscribed: readonly string[] | "*";
  readonly sentVersion?: string;
  readonly sentNonce?: string;
  /** Resources the client holds from us (State of the World: in the last full set). */
  readonly sentResources: number;
  readonly ackedVersion?: string;
  readonly nackedVersion?: string;
  readonly lastNack?: string;
  /** Size of the last response sent, in bytes. */
  readonly sentBytes?: number;
  /** Set when that response was larger than clients likely accept: "SENT 26.7 MB > 4 MB client limit". */
  readonly sizeWarning?: string;
}

/** One connected stream. */
export interface StreamStatus {
  readonly connectionId: string;
  readonly nodeId: string;
  readonly node: Node;
  readonly mode: "sotw" | "delta";
  readonly connectedAt: number;
  readonly types: readonly TypeStatus[];
}

/** The ADS server. */
export interface AdsServer {
  /** Adds a provider. Each type URL may have one provider. */
  addProvider(provider: ResourceProvider): void;
  /** Adds an observer of stream events (metrics, debug). */
  addObserver(observer: XdsObserver): void;
  /** Registers the ADS service on a gRPC server. */
  register(grpc: GrpcRegistrar): void;
  /** The two methods' handlers, for servers that offer them under other names (SDS). */
  readonly handlers: { readonly sotw: GrpcStreamHandler; readonly delta: GrpcStreamHandler };
  /** Status of every open stream. */
  streams(): StreamStatus[];
}

/** Options for createAdsServer. */
export interface AdsServerOptions {
  logger: Logger;
  observer?: XdsObserver;
  /** Clock for connectedAt. */
  now?: () => number;
  /** Streams pushed per turn of the event loop. */
  pushBatchSize?: number;
  /** Responses larger than this are warned about and flagged (default 4 MiB, gRPC's receive limit). */
  responseWarnBytes?: number;
  /** Where oversized responses are counted. */
  metrics?: MetricsRegistry;
}

interface TypeState {
  /** Subscribed names: interned and never mutated (a change replaces the set); "*" for wildcard. */
  names: ReadonlySet<string> | "*";
  sentVersion?: string;
  sentNonce?: string;
  sentResources: number;
  ackedVersion?: string;
  nackedVersion?: string;
  lastNack?: string;
  /** Size of the last response sent. */
  sentBytes?: number;
  /**
   * What the client holds, by name: State of the World's incremental types keep the (shared)
   * selection last sent; Delta keeps its own map.
   */
  held?: ReadonlyMap<string, { readonly version: string }>;
  /** Resources the last response carried (to forget them on a NACK). */
  lastSent: readonly XdsResource[];
  /**
   * The provider's answer and the subscription the last push looked at. Providers return the
   * same map while nothing changed for a client, so an unchanged pair needs no work at all.
   */
  seenAll?: ReadonlyMap<string, XdsResource>;
  seenNames?: ReadonlySet<string> | "*";
}

interface Session {
  client?: XdsClient;
  readonly mode: "sotw" | "delta";
  readonly connectedAt: number;
  readonly types: Map<string, TypeState>;
  /** The call's next nonce. */
  nonce: number;
  readonly call: GrpcStream;
}

/** What a subscription selects from a provider's answer; shared by streams with equal inputs. */
interface Selection {
  readonly picked: readonly XdsResource[];
  readonly version: string;
  /** `picked` by name. */
  readonly byName: ReadonlyMap<string, XdsResource>;
}

let connectionSeq = 0;

/** The paths of the two ADS methods. */
export const ADS_PATHS = {
  sotw: methodPath(AggregatedDiscoveryService.method.streamAggregatedResources),
  delta: methodPath(AggregatedDiscoveryService.method.deltaAggregatedResources),
} as const;

/** Encoded bodies kept for reuse across streams, by size. */
const BODY_CACHE_BYTES = 64 * 1024 * 1024;
/** Field numbers of (Delta)DiscoveryResponse. */
const F_VERSION = 1, F_RESOURCES = 2, F_TYPE_URL = 4, F_NONCE = 5, F_REMOVED = 6;

const anyEncodings = new WeakMap<XdsResource, Uint8Array>();
/** The resource's Any, encoded once. */
function encodedAny(r: XdsResource): Uint8Array {
  let b = anyEncodings.get(r);
  if (!b) {
    b = toBinary(AnySchema, r.resource);
    anyEncodings.set(r, b);
  }
  return b;
}

const deltaEncodings = new WeakMap<XdsResource, Uint8Array>();
/** The resource as a Delta `Resource` (name, version, Any), encoded once. */
function encodedDeltaResource(r: XdsResource): Uint8Array {
  let b = deltaEncodings.get(r);
  if (!b) {
    b = toBinary(
      ResourceSchema,
      create(ResourceSchema, { name: r.name, version: r.version, resource: r.resource }),
    );
    deltaEncodings.set(r, b);
  }
  return b;
}

const nonceHeads: Uint8Array[] = [];
/** The nonce field of a response, the part of the message each stream writes itself. */
function nonceField(n: number): Uint8Array {
  if (n < 4096 && nonceHeads[n]) return nonceHeads[n]!;
  const head = new BinaryWriter().tag(F_NONCE, WireType.LengthDelimited).string(String(n)).finish();
  if (n < 4096) nonceHeads[n] = head;
  return head;
}

/** gRPC's default limit on a received message. */
const GRPC_DEFAULT_RECEIVE_LIMIT = 4 * 1024 * 1024;
/** Proxies named in one oversized-response warning; the rest are counted. */
const WARN_PROXIES = 20;

/** Bytes as "26.7 MB" (MiB, one decimal, none when whole), or "117 KB" below 1 MiB. */
function formatSize(bytes: number): string {
  if (bytes < 1024 * 1024) return `${Math.round(bytes / 1024)} KB`;
  return `${Number((bytes / (1024 * 1024)).toFixed(1))} MB`;
}

/** The counter of oversized responses in `registry`, created once. */
function oversizedCounter(registry: MetricsRegistry): Counter<"type_url"> {
  const name = "meshd_xds_oversized_responses_total";
  return (registry.getSingleMetric(name) as Counter<"type_url"> | undefined) ?? new Counter({
    name,
    help: "xDS responses sent that were larger than --xds-response-warn-size (clients likely refuse them)",
    labelNames: ["type_url"],
    registers: [registry],
  });
}

/** Creates an ADS server with no providers. */
export function createAdsServer(opts: AdsServerOptions): AdsServer {
  const log = opts.logger;
  const warnBytes = opts.responseWarnBytes ?? GRPC_DEFAULT_RECEIVE_LIMIT;
  const oversized = opts.metrics ? oversizedCounter(opts.metrics) : undefined;
  /** Type/version pairs already warned about, and those whose warning collects proxies this turn. */
  const warned = new Set<string>();
  const pendingWarnings = new Map<
    string,
    { typeUrl: string; version: string; bytes: number; proxies: string[] }
  >();
  /** Records a response's size; one over the limit is counted and warned about once per type and version. */
  function noteSize(s: Session, t: TypeState, typeUrl: string, version: string, bytes: number): void {
    t.sentBytes = bytes;
    if (bytes <= warnBytes) return;
    oversized?.inc({ type_url: typeUrl });
    const key = `${typeUrl}\u0000${version}`;
    const pending = pendingWarnings.get(key);
    if (pending) {
      pending.proxies.push(s.client?.node.id ?? "");
      return;
    }
    if (warned.has(key)) return;
    if (warned.size > 10_000) warned.clear();
    warned.add(key);
    pendingWarnings.set(key, { typeUrl, version, bytes, proxies: [s.client?.node.id ?? ""] });
    // Pushes of one change run in the same turn: name every proxy that got it in one line.
    setImmediate(() => {
      const w = pendingWarnings.get(key);
      pendingWarnings.delete(key);
      if (!w) return;
      log.warn("xDS response larger than clients accept by default", {
        typeUrl: w.typeUrl,
        version: w.version,
        bytes: w.bytes,
        size: formatSize(w.bytes),
        limit: formatSize(warnBytes),
        proxies: w.proxies.slice(0, WARN_PROXIES),
        ...(w.proxies.length > WARN_PROXIES ? { moreProxies: w.proxies.length - WARN_PROXIES } : {}),
      });
    });
  }
  const observers: XdsObserver[] = opts.observer ? [opts.observer] : [];
  const obs: Required<XdsObserver> = {
    connected: (c) => observers.forEach((o) => o.connected?.(c)),
    disconnected: (c) => observers.forEach((o) => o.disconnected?.(c)),
    pushed: (c, t, v, n) => observers.forEach((o) => o.pushed?.(c, t, v, n)),
    acked: (c, t, v) => observers.forEach((o) => o.acked?.(c, t, v)),
    nacked: (c, t, v, m) => observers.forEach((o) => o.nacked?.(c, t, v, m)),
  };
  const now = opts.now ?? Date.now;
  const providers = new Map<string, ResourceProvider>();
  const sessions = new Set<Session>();
  const queue = createPushQueue<Session>({
    batchSize: opts.pushBatchSize,
    order: typeRank,
    push(s, typeUrls) {
      if (!sessions.has(s)) return;
      for (const t of typeUrls) if (s.types.has(t)) pushTo(s, t, false);
    },
    onError(s, err) {
      // A provider refusing the client (a ConnectError, see ResourceProvider.resources) ends the
      // stream with that status, as it would have on the client's own request.
      if (err instanceof ConnectError) {
        log.warn("xDS stream ended by its provider", {
          node: s.client?.node.id,
          code: Code[err.code],
          err: err.rawMessage,
        });
        s.call.fail(err);
        return;
      }
      log.error("xDS push failed", { node: s.client?.node.id, err: errorMessage(err) });
    },
  });

  function providerFor(typeUrl: string): ResourceProvider {
    const p = providers.get(typeUrl);
    if (!p) throw new ConnectError(`type URL ${typeUrl} is not served here`, Code.InvalidArgument);
    return p;
  }

  // Subscriptions: equal name sets are one object, shared by every stream that sent them.
  const interned = new Map<string, { set: ReadonlySet<string>; refs: number }>();
  const internKeys = new WeakMap<ReadonlySet<string>, string>();
  function intern(names: readonly string[]): ReadonlySet<string> | "*" {
    if (names.length === 0 || names.includes("*")) return "*";
    const key = [...new Set(names)].sort().join("\u0000");
    let e = interned.get(key);
    if (!e) {
      e = { set: new Set(names), refs: 0 };
      interned.set(key, e);
      internKeys.set(e.set, key);
    }
    e.refs++;
    return e.set;
  }
  function release(names: ReadonlySet<string> | "*"): void {
    if (names === "*") return;
    const key = internKeys.get(names);
    const e = key === undefined ? undefined : interned.get(key);
    if (e && e.set === names && --e.refs === 0) interned.delete(key!);
  }

  /** Selections by provider answer and (interned) subscription. */
  const selections = new WeakMap<
    ReadonlyMap<string, XdsResource>,
    Map<ReadonlySet<string> | "*", Selection>
  >();
  function selectionOf(all: ReadonlyMap<string, XdsResource>, names: ReadonlySet<string> | "*"): Selection {
    let byNames = selections.get(all);
    if (!byNames) {
      byNames = new Map();
      selections.set(all, byNames);
    }
    let sel = byNames.get(names);
    if (!sel) {
      const picked = pick(all, names);
      const byName = names === "*" ? all : new Map(picked.map((r) => [r.name, r]));
      sel = { picked, version: setVersion(picked), byName };
      byNames.set(names, sel);
    }
    return sel;
  }

  /** What of a selection a client holding `held` lacks; shared by streams holding the same map. */
  const diffs = new WeakMap<object, WeakMap<Selection, readonly XdsResource[]>>();
  function lacking(
    held: ReadonlyMap<string, { readonly version: string }>,
    sel: Selection,
  ): readonly XdsResource[] {
    let bySel = diffs.get(held);
    if (!bySel) {
      bySel = new WeakMap();
      diffs.set(held, bySel);
    }
    let out = bySel.get(sel);
    if (!out) {
      out = sel.picked.filter((r) => held.get(r.name)?.version !== r.version);
      bySel.set(sel, out);
    }
    return out;
  }

  // Encoded response bodies (everything but the nonce), shared by streams sending equal responses.
  const bodies = new Map<string, Uint8Array>();
  let bodyBytes = 0;
  function sotwBody(typeUrl: string, sel: Selection, send: readonly XdsResource[]): Uint8Array {
    const key = send === sel.picked
      ? `${typeUrl}\u0000${sel.version}`
      : `${typeUrl}\u0000${sel.version}\u0000${send.map((r) => r.name).join("\u0000")}`;
    const cached = bodies.get(key);
    if (cached) return cached;
    const w = new BinaryWriter().tag(F_VERSION, WireType.LengthDelimited).string(sel.version);
    for (const r of send) w.tag(F_RESOURCES, WireType.LengthDelimited).bytes(encodedAny(r));
    const body: Uint8Array = w.tag(F_TYPE_URL, WireType.LengthDelimited).string(typeUrl).finish();
    bodies.set(key, body);
    bodyBytes += body.length;
    for (const [k, b] of bodies) {
      if (bodyBytes <= BODY_CACHE_BYTES || k === key) break;
      bodies.delete(k);
      bodyBytes -= b.length;
    }
    return body;
  }

  function typeState(s: Session, typeUrl: string): TypeState {
    let t = s.types.get(typeUrl);
    if (!t) {
      t = { names: "*", sentResources: 0, lastSent: [] };
      s.types.set(typeUrl, t);
    }
    return t;
  }

  /** The provider's answer for a push, or undefined when there is nothing to do. */
  function answerFor(
    s: Session,
    typeUrl: string,
    force: boolean,
  ): { t: TypeState; client: XdsClient; all: ReadonlyMap<string, XdsResource> } | undefined {
    const t = s.types.get(typeUrl);
    const provider = providerFor(typeUrl);
    const client = s.client;
    if (!t || !client || provider.ready?.() === false) return undefined;
    const all = provider.resources(client, typeUrl, t.names);
    if (!force && t.seenAll === all && t.seenNames === t.names) return undefined;
    t.seenAll = all;
    t.seenNames = t.names;
    return { t, client, all };
  }

  function pushTo(s: Session, typeUrl: string, force: boolean): void {
    if (s.call.closed) return;
    if (s.mode === "sotw") pushSotw(s, typeUrl, force);
    else pushDelta(s, typeUrl, force);
  }

  /** Sends what changed for one type on a State-of-the-World stream; `force` answers even when nothing changed. */
  function pushSotw(s: Session, typeUrl: string, force: boolean): void {
    const a = answerFor(s, typeUrl, force);
    if (!a) return;
    const { t, client } = a;
    const sel = selectionOf(a.all, t.names);
    if (sel.version === t.sentVersion && !force) return;
    let send = sel.picked;
    const incremental = INCREMENTAL.has(typeUrl);
    if (incremental && !force && t.held) {
      send = lacking(t.held, sel);
      if (send.length === 0) {
        // Only removals: nothing to tell; the client drops what its listeners/clusters no longer name.
        t.sentVersion = sel.version;
        t.held = sel.byName;
        return;
      }
    }
    if (incremental) t.held = sel.byName;
    t.sentVersion = sel.version;
    t.sentNonce = String(++s.nonce);
    t.sentResources = sel.picked.length;
    t.lastSent = send;
    const head = nonceField(s.nonce);
    const body = sotwBody(typeUrl, sel, send);
    noteSize(s, t, typeUrl, sel.version, head.length + body.length);
    s.call.send(head, body);
    obs.pushed(client, typeUrl, sel.version, send.length);
  }

  /** Sends what changed for one type on a Delta stream; `force` answers even when nothing changed. */
  function pushDelta(s: Session, typeUrl: string, force: boolean): void {
    const a = answerFor(s, typeUrl, force);
    if (!a) return;
    const { t, client, all } = a;
    // A Delta stream's map is its own (see delta()), so it is updated in place.
    const held = (t.held ?? new Map()) as Map<string, { readonly version: string }>;
    const picked = pick(all, t.names);
    const changed = picked.filter((r) => held.get(r.name)?.version !== r.version);
    const present = new Set(picked.map((r) => r.name));
    const removed = [...held.keys()].filter((n) => !present.has(n));
    if (t.names !== "*" && force) {
      // Named subscriptions to things that do not exist are answered with their removal.
      for (const n of t.names) if (!present.has(n) && !held.has(n)) removed.push(n);
    }
    if (changed.length === 0 && removed.length === 0 && !(force && t.sentVersion === undefined)) return;
    for (const r of changed) held.set(r.name, r);
    for (const n of removed) held.delete(n);
    t.held = held;
    const version = setVersion(picked);
    t.sentVersion = version;
    t.sentNonce = String(++s.nonce);
    t.sentResources = held.size;
    t.lastSent = changed;
    const w = new BinaryWriter().tag(F_VERSION, WireType.LengthDelimited).string(version);
    for (const r of changed) w.tag(F_RESOURCES, WireType.LengthDelimited).bytes(encodedDeltaResource(r));
    w.tag(F_TYPE_URL, WireType.LengthDelimited).string(typeUrl);
    for (const n of removed) w.tag(F_REMOVED, WireType.LengthDelimited).string(n);
    const head = nonceField(s.nonce);
    const body = w.finish();
    noteSize(s, t, typeUrl, version, head.length + body.length);
    s.call.send(head, body);
    obs.pushed(client, typeUrl, version, changed.length);
  }

  /** Handles a request's ACK/NACK part. Returns false when the request is stale and must be ignored. */
  function acknowledge(
    s: Session,
    t: TypeState,
    typeUrl: string,
    nonce: string,
    version: string,
    error?: string,
  ): boolean {
    if (nonce === "") return true;
    if (nonce !== t.sentNonce) return false;
    if (error !== undefined) {
      t.nackedVersion = t.sentVersion;
      t.lastNack = error;
      // The client kept its previous resources: it does not hold what the rejected response carried.
      if (t.held && t.lastSent.length > 0) {
        const held = new Map(t.held);
        for (const r of t.lastSent) held.delete(r.name);
        t.held = held;
      }
      log.warn("xDS update rejected by client", {
        node: s.client?.node.id,
        typeUrl,
        version: t.sentVersion,
        error,
      });
      obs.nacked(s.client!, typeUrl, t.sentVersion ?? "", error);
    } else {
      t.ackedVersion = version;
      obs.acked(s.client!, typeUrl, version);
    }
    return true;
  }

  function identify(s: Session, node: Node | undefined): void {
    if (s.client) return;
    if (!node || node.id === "") {
      throw new ConnectError("the first request must carry node.id", Code.InvalidArgument);
    }
    s.client = { connectionId: `${node.id}-${++connectionSeq}`, node, peer: s.call.peer };
    sessions.add(s);
    log.info("xDS client connected", { node: node.id, mode: s.mode, connection: s.client.connectionId });
    obs.connected(s.client);
  }

  function close(s: Session): void {
    queue.remove(s);
    for (const t of s.types.values()) if (s.mode === "sotw") release(t.names);
    if (!sessions.delete(s)) return;
    log.info("xDS client disconnected", { node: s.client!.node.id, connection: s.client!.connectionId });
    obs.disconnected(s.client!);
  }

  function errorOf(req: { errorDetail?: { code: number; message: string } }): string | undefined {
    return req.errorDetail ? req.errorDetail.message || `code ${req.errorDetail.code}` : undefined;
  }

  /** Starts a session on a call; `onRequest` handles each decoded request. */
  function serve(
    call: GrpcStream,
    mode: "sotw" | "delta",
    onRequest: (s: Session, bytes: Uint8Array) => void,
  ) {
    const s: Session = { mode, connectedAt: now(), types: new Map(), nonce: 0, call };
    call.onmessage = (bytes) => {
      try {
        onRequest(s, bytes);
      } catch (err) {
        const e = ConnectError.from(err);
        log.warn("xDS stream failed", { node: s.client?.node.id, code: Code[e.code], err: e.rawMessage });
        throw e;
      }
    };
    call.onclose = () => close(s);
  }

  function sotw(call: GrpcStream): void {
    serve(call, "sotw", (s, bytes) => {
      const req = decodeRequest(DiscoveryRequestSchema, bytes);
      identify(s, req.node);
      const typeUrl = req.typeUrl;
      if (typeUrl === "") throw new ConnectError("ADS requests must carry type_url", Code.InvalidArgument);
      providerFor(typeUrl);
      const first = !s.types.has(typeUrl);
      const t = typeState(s, typeUrl);
      if (!acknowledge(s, t, typeUrl, req.responseNonce, req.versionInfo, errorOf(req))) return;
      let changed = false;
      if (!sameNames(t.names, req.resourceNames)) {
        const names = intern(req.resourceNames);
        changed = names !== t.names;
        release(t.names);
        t.names = names;
      }
      // A new subscription is always answered, even when it matches nothing yet.
      if (first || changed) pushTo(s, typeUrl, true);
    });
  }

  function delta(call: GrpcStream): void {
    serve(call, "delta", (s, bytes) => {
      const req = decodeRequest(DeltaDiscoveryRequestSchema, bytes);
      identify(s, req.node);
      const typeUrl = req.typeUrl;
      if (typeUrl === "") throw new ConnectError("delta requests must carry type_url", Code.InvalidArgument);
      providerFor(typeUrl);
      const first = !s.types.has(typeUrl);
      const t = typeState(s, typeUrl);
      if (!acknowledge(s, t, typeUrl, req.responseNonce, t.sentVersion ?? "", errorOf(req))) return;
      const subscribe = req.resourceNamesSubscribe;
      const held = (t.held ?? new Map()) as Map<string, { readonly version: string }>;
      if (first) {
        t.names = subscribe.length === 0 || subscribe.includes("*") ? "*" : new Set(subscribe);
        for (const [name, version] of Object.entries(req.initialResourceVersions)) {
          held.set(name, { version });
        }
      } else {
        if (subscribe.includes("*")) t.names = "*";
        else if (t.names !== "*" && subscribe.length > 0) t.names = new Set([...t.names, ...subscribe]);
        if (req.resourceNamesUnsubscribe.length > 0) {
          const gone = new Set(req.resourceNamesUnsubscribe);
          if (t.names !== "*") t.names = new Set([...t.names].filter((n) => !gone.has(n)));
          for (const n of gone) held.delete(n);
        }
        // Newly subscribed names must be sent even if the client had them before.
        for (const n of subscribe) held.delete(n);
      }
      t.held = held;
      if (first || subscribe.length + req.resourceNamesUnsubscribe.length > 0) pushTo(s, typeUrl, true);
    });
  }

  return {
    addProvider(provider) {
      for (const t of provider.typeUrls) {
        if (providers.has(t)) throw new Error(`type URL ${t} already has a provider`);
        providers.set(t, provider);
      }
      provider.watch((typeUrls, clients) => {
        for (const s of sessions) {
          if (!s.client || (clients && !clients(s.client))) continue;
          queue.enqueue(s, typeUrls);
        }
      });
    },
    addObserver(observer) {
      observers.push(observer);
    },
    register(grpc) {
      grpc.stream(ADS_PATHS.sotw, sotw);
      grpc.stream(ADS_PATHS.delta, delta);
    },
    handlers: { sotw, delta },
    streams() {
      return [...sessions].map((s) => ({
        connectionId: s.client!.connectionId,
        nodeId: s.client!.node.id,
        node: s.client!.node,
        mode: s.mode,
        connectedAt: s.connectedAt,
        types: [...s.types].map(([typeUrl, t]) => ({
          typeUrl,
          subscribed: t.names === "*" ? "*" as const : [...t.names].sort(),
          sentVersion: t.sentVersion,
          sentNonce: t.sentNonce,
          sentResources: t.sentResources,
          ackedVersion: t.ackedVersion,
          nackedVersion: t.nackedVersion,
          lastNack: t.lastNack,
          sentBytes: t.sentBytes,
          sizeWarning: t.sentBytes !== undefined && t.sentBytes > warnBytes
            ? `SENT ${formatSize(t.sentBytes)} > ${formatSize(warnBytes)} client limit`
            : undefined,
        })),
      }));
    },
  };
}

/** Whether a request's resource names (restated with every ACK) are the subscription held. */
function sameNames(held: ReadonlySet<string> | "*", names: readonly string[]): boolean {
  if (names.length === 0 || names.includes("*")) return held === "*";
  if (held === "*" || names.length < held.size) return false;
  for (const n of names) if (!held.has(n)) return false;
  return names.length === held.size || new Set(names).size === held.size;
}

/** The resources of `all` a subscription names, in its order (all of them for "*"). */
function pick(all: ReadonlyMap<string, XdsResource>, names: ReadonlySet<string> | "*"): XdsResource[] {
  if (names === "*") return [...all.values()];
  const out: XdsResource[] = [];
  for (const n of names) {
    const r = all.get(n);
    if (r) out.push(r);
  }
  return out;
}
