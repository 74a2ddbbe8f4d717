/**
 * The node proxy's subscription to pilot: one ADS stream (State of the World) carrying node
 * metadata `GENERATOR: "node-proxy"`, wildcard CDS and LDS, and EDS for the clusters CDS names.
 *
 * EDS responses update the assignments they name and keep the others (the xDS protocol lets a
 * server send only the changed ones for EDS). Responses are held until they make a complete,
 * consistent set (clusters and listeners
 * received, an assignment for every EDS cluster), which is then decoded (decode.ts) as one:
 * when it decodes, every held response is ACKed and `onView` gets the new view (only when its
 * content changed); when it does not, every held response is NACKed with the decoder's message
 * and the last good view stays. A stream that fails or ends is opened again after a backoff on
 * the injected clock; the view is kept meanwhile.
 *
 * @module
 */
import { create, type DescMessage, type MessageShape } from "@bufbuild/protobuf";
import { anyUnpack } from "@bufbuild/protobuf/wkt";
import { isIP } from "node:net";
import {
  type Cluster,
  Cluster_DiscoveryType,
  ClusterSchema,
} from "#gen/envoy/config/cluster/v3/cluster_pb.ts";
import { type Node, NodeSchema } from "#gen/envoy/config/core/v3/base_pb.ts";
import {
  type ClusterLoadAssignment,
  ClusterLoadAssignmentSchema,
} from "#gen/envoy/config/endpoint/v3/endpoint_pb.ts";
import { type Listener, ListenerSchema } from "#gen/envoy/config/listener/v3/listener_pb.ts";
import { openAdsClient } from "../ads_client.ts";
import {
  type DiscoveryRequest,
  DiscoveryRequestSchema,
  type DiscoveryResponse,
} from "#gen/envoy/service/discovery/v3/discovery_pb.ts";
import { createBackoff } from "../../shared/backoff.ts";
import { createChannel } from "../../shared/channel.ts";
import { type Clock, systemClock, type Timer } from "../../shared/clock.ts";
import { errorMessage } from "../../shared/errors.ts";
import type { Logger } from "../../shared/logger.ts";
import { decodeNodeProxyView } from "./decode.ts";
import { EMPTY_VIEW, type NodeProxyView } from "./view.ts";

const T = "type.googleapis.com/";
/** The xDS type URLs the node proxy subscribes to. */
export const NODE_PROXY_TYPES = {
  cluster: `${T}${ClusterSchema.typeName}`,
  endpoint: `${T}${ClusterLoadAssignmentSchema.typeName}`,
  listener: `${T}${ListenerSchema.typeName}`,
} as const;

/** The node metadata GENERATOR value that makes pilot serve node-proxy resources. */
export const NODE_PROXY_GENERATOR = "node-proxy";
/** gRPC's INVALID_ARGUMENT, the code of a NACK's error detail. */
const CODE_INVALID_ARGUMENT = 3;

/** Options for startNodeProxyXds. */
export interface NodeProxyXdsOptions {
  /**
   * HOST:PORT of pilot, or several separated by commas (replicas): a stream that fails or ends
   * moves on to the next one.
   */
  discoveryAddr: string;
  /**
   * PEM trust roots and the workload certificate, both read at every connect (so a stream after
   * a root rotation or a renewal uses the new ones), and the name the server certificate must
   * carry when it is not the address's host; undefined: plaintext (15010).
   */
  tls?: {
    ca: string | (() => string);
    cert: () => { certChain: string; key: string };
    serverName?: string;
  };
  /** The agent's node; GENERATOR "node-proxy" is added to its metadata. */
  node: Node;
  logger: Logger;
  /** Default: the system clock. */
  clock?: Clock;
  /** Called with each new consistent view (after it was ACKed), only when its content changed. */
  onView(view: NodeProxyView): void;
  /** Reconnect backoff (default 1 s doubling up to 30 s, with jitter). */
  backoff?: { initialMs: number; maxMs: number };
  /** Uniform random numbers for the backoff's jitter (default Math.random). */
  random?: () => number;
}

/** The running subscription. */
export interface NodeProxyXds {
  /** Closes the stream and stops reconnecting. */
  stop(): Promise<void>;
  /** The last good view ({@link EMPTY_VIEW} until the first). */
  readonly view: NodeProxyView;
}

/** The node with `GENERATOR: "node-proxy"` added to its metadata. */
export function nodeProxyNode(node: Node): Node {
  return create(NodeSchema, {
    ...node,
    metadata: { ...(node.metadata ?? {}), GENERATOR: NODE_PROXY_GENERATOR },
  });
}

/** A response held until its set is complete. */
interface Held<M> {
  readonly resources: M[];
  readonly version: string;
  readonly nonce: string;
}

/** The protocol state of one stream, apart from the stream itself. */
export interface NodeProxySession {
  /** The requests that open the stream (CDS and LDS, wildcard; the first carries the node). */
  start(): void;
  /** Handles one response; sends ACKs, NACKs and EDS subscriptions through `send`. */
  handle(res: DiscoveryResponse): void;
}

/** The EDS names of a set of clusters (their service names), sorted. */
export function edsNames(clusters: readonly Cluster[]): string[] {
  const names = clusters
    .filter((c) =>
      c.clusterDiscoveryType.case === "type" && c.clusterDiscoveryType.value === Cluster_DiscoveryType.EDS
    )
    .map((c) => c.edsClusterConfig?.serviceName || c.name);
  return [...new Set(names)].sort();
}

function unpackAll<D extends DescMessage>(res: DiscoveryResponse, schema: D): MessageShape<D>[] {
  return res.resources.map((any, i) => {
    const msg = any.typeUrl === `${T}${schema.typeName}` ? anyUnpack(any, schema) : undefined;
    if (!msg) throw new Error(`${res.typeUrl} resource ${i}: want ${schema.typeName}, got ${any.typeUrl}`);
    return msg;
  });
}

/**
 * The ADS protocol of one stream (see the module notes). `current` is the last good view,
 * `accept` installs a new one; `send` writes a request on the stream.
 */
export function createNodeProxySession(o: {
  node: Node;
  send(req: DiscoveryRequest): void;
  current(): NodeProxyView;
  accept(view: NodeProxyView): void;
  logger: Logger;
}): NodeProxySession {
  const accepted: { cds?: Held<Cluster>; eds?: Held<ClusterLoadAssignment>; lds?: Held<Listener> } = {};
  const held: { cds?: Held<Cluster>; eds?: Held<ClusterLoadAssignment>; lds?: Held<Listener> } = {};
  let subscribed: string[] = [];
  /** The nonce of the last EDS response, answered or not. */
  let lastEdsNonce = "";
  let sentNode = false;

  function request(
    typeUrl: string,
    fields: Partial<Pick<DiscoveryRequest, "versionInfo" | "responseNonce">> & {
      names?: string[];
      error?: string;
    },
  ): void {
    o.send(create(DiscoveryRequestSchema, {
      typeUrl,
      ...(sentNode ? {} : { node: o.node }),
      versionInfo: fields.versionInfo ?? "",
      responseNonce: fields.responseNonce ?? "",
      resourceNames: fields.names ?? [],
      ...(fields.error ? { errorDetail: { code: CODE_INVALID_ARGUMENT, message: fields.error } } : {}),
    }));
    sentNode = true;
  }

  const KINDS = [
    ["cds", NODE_PROXY_TYPES.cluster],
    ["eds", NODE_PROXY_TYPES.endpoint],
    ["lds", NODE_PROXY_TYPES.listener],
  ] as const;

  function answer(error?: string): void {
    for (const [kind, typeUrl] of KINDS) {
      const h = held[kind];
      if (!h) continue;
      const names = kind === "eds" ? subscribed : [];
      if (error) {
        request(typeUrl, {
          versionInfo: accepted[kind]?.version ?? "",
          responseNonce: h.nonce,
          names,
          error,
        });
      } else {
        request(typeUrl, { versionInfo: h.version, responseNonce: h.nonce, names });
        (accepted as Record<string, unknown>)[kind] = h;
      }
      held[kind] = undefined;
    }
  }

  function subscribe(clusters: readonly Cluster[]): void {
    const names = edsNames(clusters);
    if (names.join("\n") === subscribed.join("\n")) return;
    subscribed = names;
    request(NODE_PROXY_TYPES.endpoint, {
      versionInfo: accepted.eds?.version ?? "",
      // pilot ignores a request whose nonce is not the last it sent, subscription change included.
      responseNonce: lastEdsNonce,
      names,
    });
  }

  function tryComplete(): void {
    const clusters = (held.cds ?? accepted.cds)?.resources;
    const listeners = (held.lds ?? accepted.lds)?.resources;
    if (!clusters || !listeners) return;
    const byName = new Map((held.eds ?? accepted.eds)?.resources.map((e) => [e.clusterName, e]) ?? []);
    const needed = edsNames(clusters);
    if (needed.some((n) => !byName.has(n))) return;
    let view: NodeProxyView;
    try {
      view = decodeNodeProxyView({ clusters, endpoints: needed.map((n) => byName.get(n)!), listeners });
    } catch (err) {
      const message = errorMessage(err);
      o.logger.warn("refusing node proxy config from pilot; keeping the last good view", { reason: message });
      answer(message);
      return;
    }
    answer();
    // Assignments no cluster names any more are dropped with the set that stopped naming them.
    if (accepted.eds) accepted.eds = { ...accepted.eds, resources: needed.map((n) => byName.get(n)!) };
    if (view.version !== o.current().version) o.accept(view);
  }

  return {
    start() {
      request(NODE_PROXY_TYPES.cluster, {});
      request(NODE_PROXY_TYPES.listener, {});
    },
    handle(res) {
      try {
        switch (res.typeUrl) {
          case NODE_PROXY_TYPES.cluster:
            held.cds = {
              resources: unpackAll(res, ClusterSchema),
              version: res.versionInfo,
              nonce: res.nonce,
            };
            subscribe(held.cds.resources);
            break;
          case NODE_PROXY_TYPES.endpoint: {
            lastEdsNonce = res.nonce;
            // An EDS response may carry only the assignments that changed (xDS allows it for
            // EDS and RDS): it updates those it names and keeps the others.
            const merged = new Map((held.eds ?? accepted.eds)?.resources.map((e) => [e.clusterName, e]));
            for (const e of unpackAll(res, ClusterLoadAssignmentSchema)) merged.set(e.clusterName, e);
            held.eds = { resources: [...merged.values()], version: res.versionInfo, nonce: res.nonce };
            break;
          }
          case NODE_PROXY_TYPES.listener:
            held.lds = {
              resources: unpackAll(res, ListenerSchema),
              version: res.versionInfo,
              nonce: res.nonce,
            };
            break;
          default:
            o.logger.debug("ignoring an xDS response of a type the node proxy did not ask for", {
              type: res.typeUrl,
            });
            return;
        }
      } catch (err) {
        const kind = KINDS.find(([, t]) => t === res.typeUrl)![0];
        request(res.typeUrl, {
          versionInfo: accepted[kind]?.version ?? "",
          responseNonce: res.nonce,
          names: kind === "eds" ? subscribed : [],
          error: errorMessage(err),
        });
        return;
      }
      tryComplete();
    },
  };
}

/** Opens the subscription and keeps it open until stop(). */
export function startNodeProxyXds(o: NodeProxyXdsOptions): NodeProxyXds {
  const log = o.logger;
  const clock = o.clock ?? systemClock;
  const node = nodeProxyNode(o.node);
  const backoff = createBackoff({
    initialMs: o.backoff?.initialMs ?? 1000,
    maxMs: o.backoff?.maxMs ?? 30_000,
    ...(o.random ? { random: o.random } : {}),
  });
  let view = EMPTY_VIEW;
  let stopped = false;
  let abort: AbortController | undefined;
  let wait: { timer: Timer; wake: () => void } | undefined;

  const addrs = o.discoveryAddr.split(",").map((a) => a.trim()).filter((a) => a !== "");
  let turn = 0;
  const addrNow = () => addrs[turn % addrs.length]!;

  async function runOnce(): Promise<void> {
    const tls = o.tls;
    const addr = addrNow();
    const host = addr.replace(/:\d+$/, "").replace(/^\[|\]$/g, "");
    const pair = tls?.cert();
    const serverName = tls?.serverName ?? (isIP(host) ? undefined : host);
    const ads = openAdsClient(
      addr,
      tls && pair
        ? {
          ca: typeof tls.ca === "string" ? tls.ca : tls.ca(),
          cert: pair.certChain,
          key: pair.key,
          ...(serverName ? { serverName } : {}),
        }
        : undefined,
    );
    const client = ads.client;
    const requests = createChannel<DiscoveryRequest>();
    abort = new AbortController();
    const session = createNodeProxySession({
      node,
      send: (req) => requests.push(req),
      current: () => view,
      accept(next) {
        view = next;
        log.info("node proxy config from pilot", {
          version: next.version,
          services: next.services.length,
          clusters: next.clusters.size,
          inboundPorts: next.inbound.size,
        });
        o.onView(next);
      },
      logger: log,
    });
    session.start();
    try {
      for await (const res of client.streamAggregatedResources(requests, { signal: abort.signal })) {
        backoff.reset();
        session.handle(res);
      }
    } finally {
      requests.close();
      ads.close();
    }
  }

  const loop = (async () => {
    while (!stopped) {
      let ms: number;
      const addr = addrNow();
      try {
        await runOnce();
        if (stopped) break;
        turn++;
        // The next replica at once; the backoff once every replica was tried in turn.
        ms = turn % addrs.length === 0 ? backoff.next() : 0;
        log.info("node proxy xDS stream ended by pilot; reconnecting", {
          addr,
          next: addrNow(),
          retryInMs: ms,
        });
      } catch (err) {
        if (stopped) break;
        turn++;
        ms = turn % addrs.length === 0 ? backoff.next() : 0;
        log.warn("node proxy xDS stream failed; retrying", {
          addr,
          next: addrNow(),
          err: errorMessage(err),
          retryInMs: ms,
        });
      }
      await new Promise<void>((wake) => {
        wait = { timer: clock.setTimer(ms, wake), wake };
      });
      wait = undefined;
    }
  })();

  return {
    get view() {
      return view;
    },
    async stop() {
      stopped = true;
      abort?.abort();
      if (wait) {
        wait.timer.cancel();
        wait.wake();
      }
      await loop;
    },
  };
}
