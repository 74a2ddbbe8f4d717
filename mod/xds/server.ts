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
 */
import { create } from "@bufbuild/protobuf";
import { Code, ConnectError, type HandlerContext } from "@connectrpc/connect";
import type { Node } from "#gen/envoy/config/core/v3/base_pb.ts";
import { AggregatedDiscoveryService } from "#gen/envoy/service/discovery/v3/ads_pb.ts";
import {
  type DeltaDiscoveryRequest,
  type DeltaDiscoveryResponse,
  DeltaDiscoveryResponseSchema,
  type DiscoveryRequest,
  type DiscoveryResponse,
  DiscoveryResponseSchema,
  ResourceSchema,
} from "#gen/envoy/service/discovery/v3/discovery_pb.ts";
import type { GrpcRegistrar } from "../runtime/module.ts";
import { errorMessage } from "../shared/errors.ts";
import type { Logger } from "../shared/logger.ts";
import { createChannel } from "./channel.ts";
import type { ResourceProvider, XdsClient, XdsObserver, XdsResource } from "./provider.ts";
import { createPushQueue } from "./push_queue.ts";
import { setVersion } from "./version.ts";

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
}

interface TypeState {
  names: Set<string> | "*";
  sentVersion?: string;
  sentNonce?: string;
  sentResources: number;
  ackedVersion?: string;
  nackedVersion?: string;
  lastNack?: string;
  /** Versions the client holds, by name (Delta, and incremental SotW types). */
  known: Map<string, string>;
  /** Names carried by the last response (to forget them on a NACK). */
  lastSentNames: readonly string[];
  /**
   * The provider's answer and the subscription the last push looked at. Providers return the
   * same map while nothing changed for a client, so an unchanged pair needs no work at all.
   */
  lastSeen?: { all: ReadonlyMap<string, XdsResource>; names: Set<string> | "*" };
}

interface Session {
  client?: XdsClient;
  readonly mode: "sotw" | "delta";
  readonly connectedAt: number;
  readonly types: Map<string, TypeState>;
  /** Sends what changed for one type; `force` answers even when nothing changed. */
  push(typeUrl: string, force?: boolean): void;
}

let connectionSeq = 0;

/** Creates an ADS server with no providers. */
export function createAdsServer(opts: AdsServerOptions): AdsServer {
  const log = opts.logger;
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
      for (const t of typeUrls) if (s.types.has(t)) s.push(t);
    },
    onError(s, err) {
      log.error("xDS push failed", { node: s.client?.node.id, err: errorMessage(err) });
    },
  });

  function providerFor(typeUrl: string): ResourceProvider {
    const p = providers.get(typeUrl);
    if (!p) throw new ConnectError(`type URL ${typeUrl} is not served here`, Code.InvalidArgument);
    return p;
  }

  /** Versions of whole maps (wildcard subscriptions), shared by every stream given the same map. */
  const wildcardVersions = new WeakMap<ReadonlyMap<string, XdsResource>, string>();

  /** The resources a push should consider, or undefined when nothing changed since the last push. */
  function changedSelection(
    t: TypeState,
    all: ReadonlyMap<string, XdsResource>,
    force: boolean,
  ): { picked: XdsResource[]; version: string } | undefined {
    if (!force && t.lastSeen?.all === all && t.lastSeen.names === t.names) return undefined;
    t.lastSeen = { all, names: t.names };
    const picked = select(all, t.names);
    let version: string;
    if (t.names === "*") {
      version = wildcardVersions.get(all) ?? setVersion(picked);
      wildcardVersions.set(all, version);
    } else {
      version = setVersion(picked);
    }
    return { picked, version };
  }

  /**
   * What a push of `typeUrl` to `s` should consider: undefined when the stream has not subscribed,
   * the provider is not ready, or nothing changed since the last push (unless forced).
   */
  function selectionFor(
    s: Session,
    typeUrl: string,
    force: boolean,
  ): { t: TypeState; client: XdsClient; picked: XdsResource[]; version: string } | undefined {
    const t = s.types.get(typeUrl);
    const provider = providerFor(typeUrl);
    const client = s.client;
    if (!t || !client || provider.ready?.() === false) return undefined;
    const sel = changedSelection(t, provider.resources(client, typeUrl, t.names), force);
    return sel && { t, client, ...sel };
  }

  function select(all: ReadonlyMap<string, XdsResource>, names: Set<string> | "*"): XdsResource[] {
    if (names === "*") return [...all.values()];
    const out: XdsResource[] = [];
    for (const n of names) {
      const r = all.get(n);
      if (r) out.push(r);
    }
    return out;
  }

  function typeState(s: Session, typeUrl: string): TypeState {
    let t = s.types.get(typeUrl);
    if (!t) {
      t = { names: "*", sentResources: 0, known: new Map(), lastSentNames: [] };
      s.types.set(typeUrl, t);
    }
    return t;
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
      for (const n of t.lastSentNames) t.known.delete(n);
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

  function openSession(
    mode: "sotw" | "delta",
    push: (s: Session, typeUrl: string, force: boolean) => void,
  ): Session {
    const s: Session = {
      mode,
      connectedAt: now(),
      types: new Map(),
      push: (typeUrl, force) => push(s, typeUrl, force ?? false),
    };
    return s;
  }

  function identify(s: Session, node: Node | undefined): void {
    if (s.client) return;
    if (!node || node.id === "") {
      throw new ConnectError("the first request must carry node.id", Code.InvalidArgument);
    }
    s.client = { connectionId: `${node.id}-${++connectionSeq}`, node };
    sessions.add(s);
    log.info("xDS client connected", { node: node.id, mode: s.mode, connection: s.client.connectionId });
    obs.connected(s.client);
  }

  function close(s: Session): void {
    queue.remove(s);
    if (!sessions.delete(s)) return;
    log.info("xDS client disconnected", { node: s.client!.node.id, connection: s.client!.connectionId });
    obs.disconnected(s.client!);
  }

  function errorOf(req: { errorDetail?: { code: number; message: string } }): string | undefined {
    return req.errorDetail ? req.errorDetail.message || `code ${req.errorDetail.code}` : undefined;
  }

  async function* sotw(
    requests: AsyncIterable<DiscoveryRequest>,
    ctx: HandlerContext,
  ): AsyncIterable<DiscoveryResponse> {
    const out = createChannel<DiscoveryResponse>();
    let nonce = 0;
    const session = openSession("sotw", (s, typeUrl, force) => {
      const sel = selectionFor(s, typeUrl, force);
      if (!sel) return;
      const { t, client, picked, version } = sel;
      if (version === t.sentVersion && !force) return;
      let send = picked;
      if (INCREMENTAL.has(typeUrl) && !force) {
        send = picked.filter((r) => t.known.get(r.name) !== r.version);
        if (send.length === 0) {
          // Only removals: nothing to tell; the client drops what its listeners/clusters no longer name.
          t.sentVersion = version;
          return;
        }
      }
      if (INCREMENTAL.has(typeUrl)) {
        t.known.clear();
        for (const r of picked) t.known.set(r.name, r.version);
      }
      t.sentVersion = version;
      t.sentNonce = String(++nonce);
      t.sentResources = picked.length;
      t.lastSentNames = send.map((r) => r.name);
      out.push(
        create(DiscoveryResponseSchema, {
          versionInfo: version,
          typeUrl,
          nonce: t.sentNonce,
          resources: send.map((r) => r.resource),
        }),
      );
      obs.pushed(client, typeUrl, version, send.length);
    });
    const reader = (async () => {
      for await (const req of requests) {
        identify(session, req.node);
        const typeUrl = req.typeUrl;
        if (typeUrl === "") throw new ConnectError("ADS requests must carry type_url", Code.InvalidArgument);
        providerFor(typeUrl);
        const first = !session.types.has(typeUrl);
        const t = typeState(session, typeUrl);
        const error = errorOf(req);
        if (!acknowledge(session, t, typeUrl, req.responseNonce, req.versionInfo, error)) continue;
        const names = req.resourceNames.length === 0 || req.resourceNames.includes("*")
          ? "*" as const
          : new Set(req.resourceNames);
        const changed = !sameNames(t.names, names);
        t.names = names;
        // A new subscription is always answered, even when it matches nothing yet.
        if (first || changed) session.push(typeUrl, true);
      }
    })();
    yield* drive(reader, out, session, ctx);
  }

  async function* delta(
    requests: AsyncIterable<DeltaDiscoveryRequest>,
    ctx: HandlerContext,
  ): AsyncIterable<DeltaDiscoveryResponse> {
    const out = createChannel<DeltaDiscoveryResponse>();
    let nonce = 0;
    const session = openSession("delta", (s, typeUrl, force) => {
      const sel = selectionFor(s, typeUrl, force);
      if (!sel) return;
      const { t, client, picked, version } = sel;
      const changed = picked.filter((r) => t.known.get(r.name) !== r.version);
      const present = new Set(picked.map((r) => r.name));
      const removed = [...t.known.keys()].filter((n) => !present.has(n));
      if (t.names !== "*" && force) {
        // Named subscriptions to things that do not exist are answered with their removal.
        for (const n of t.names) if (!present.has(n) && !t.known.has(n)) removed.push(n);
      }
      if (changed.length === 0 && removed.length === 0 && !(force && t.sentVersion === undefined)) return;
      for (const r of changed) t.known.set(r.name, r.version);
      for (const n of removed) t.known.delete(n);
      t.sentVersion = version;
      t.sentNonce = String(++nonce);
      t.sentResources = t.known.size;
      t.lastSentNames = changed.map((r) => r.name);
      out.push(create(DeltaDiscoveryResponseSchema, {
        systemVersionInfo: version,
        typeUrl,
        nonce: t.sentNonce,
        resources: changed.map((r) =>
          create(ResourceSchema, { name: r.name, version: r.version, resource: r.resource })
        ),
        removedResources: removed,
      }));
      obs.pushed(client, typeUrl, version, changed.length);
    });
    const reader = (async () => {
      for await (const req of requests) {
        identify(session, req.node);
        const typeUrl = req.typeUrl;
        if (typeUrl === "") {
          throw new ConnectError("delta requests must carry type_url", Code.InvalidArgument);
        }
        providerFor(typeUrl);
        const first = !session.types.has(typeUrl);
        const t = typeState(session, typeUrl);
        if (!acknowledge(session, t, typeUrl, req.responseNonce, t.sentVersion ?? "", errorOf(req))) continue;
        if (first) {
          const subs = req.resourceNamesSubscribe;
          t.names = subs.length === 0 || subs.includes("*") ? "*" : new Set(subs);
          for (const [name, v] of Object.entries(req.initialResourceVersions)) t.known.set(name, v);
        } else {
          if (req.resourceNamesSubscribe.includes("*")) t.names = "*";
          else if (t.names !== "*") { for (const n of req.resourceNamesSubscribe) t.names.add(n); }
          for (const n of req.resourceNamesUnsubscribe) {
            if (t.names !== "*") t.names.delete(n);
            t.known.delete(n);
          }
          // Newly subscribed names must be sent even if the client had them before.
          for (const n of req.resourceNamesSubscribe) t.known.delete(n);
        }
        if (first || req.resourceNamesSubscribe.length + req.resourceNamesUnsubscribe.length > 0) {
          session.push(typeUrl, true);
        }
      }
    })();
    yield* drive(reader, out, session, ctx);
  }

  async function* drive<M>(
    reader: Promise<void>,
    out: ReturnType<typeof createChannel<M>>,
    session: Session,
    ctx: HandlerContext,
  ): AsyncIterable<M> {
    reader.then(() => out.close(), (err) => out.fail(err));
    const onAbort = () => out.close();
    ctx.signal.addEventListener("abort", onAbort, { once: true });
    try {
      yield* out;
    } catch (err) {
      const e = ConnectError.from(err);
      if (e.code !== Code.Canceled) {
        log.warn("xDS stream failed", {
          node: session.client?.node.id,
          code: Code[e.code],
          err: errorMessage(e.rawMessage),
        });
      }
      throw e;
    } finally {
      ctx.signal.removeEventListener("abort", onAbort);
      close(session);
    }
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
      grpc.service(AggregatedDiscoveryService, {
        streamAggregatedResources: sotw,
        deltaAggregatedResources: delta,
      });
    },
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
        })),
      }));
    },
  };
}

function sameNames(a: Set<string> | "*", b: Set<string> | "*"): boolean {
  if (a === "*" || b === "*") return a === b;
  if (a.size !== b.size) return false;
  for (const n of a) if (!b.has(n)) return false;
  return true;
}
