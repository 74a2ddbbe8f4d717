/**
 * The MCP-over-xDS config source (`--config-source xds://HOST:PORT`): takes config from
 * another meshd's galley over ADS. It subscribes to every collection, ACKs what it can decode
 * and NACKs what it cannot, and reconnects with jittered backoff, keeping the last state it
 * had while the remote galley is unreachable. A response larger than `maxResponseBytes` is not
 * read at all; a change the local store refuses (over its bounds) is offered again as a full
 * listing with the next change.
 */
import { create } from "@bufbuild/protobuf";
import { Code, ConnectError, createClient } from "@connectrpc/connect";
import { createGrpcTransport } from "@connectrpc/connect-node";
import { hostname } from "node:os";
import { AggregatedDiscoveryService } from "#gen/envoy/service/discovery/v3/ads_pb.ts";
import {
  type DiscoveryRequest,
  DiscoveryRequestSchema,
} from "#gen/envoy/service/discovery/v3/discovery_pb.ts";
import { splitHostPort } from "../cli/setting.ts";
import { type Clock, systemClock } from "../shared/clock.ts";
import { errorMessage } from "../shared/errors.ts";
import type { Logger } from "../shared/logger.ts";
import { createChannel } from "../shared/channel.ts";
import { collectionOf, decodeMcpResource, type McpCollection } from "./mcp.ts";
import type { ConfigSource, OriginChange, OriginContent, SourceSink } from "../runtime/config_source.ts";

/** Options for createXdsSource. */
export interface XdsSourceOptions {
  /** "xds://HOST:PORT". */
  url: string;
  collections: readonly McpCollection[];
  logger: Logger;
  clock?: Clock;
  /** Node id sent to the remote galley. */
  nodeId?: string;
  /** First and largest reconnect delay. */
  minBackoffMs?: number;
  maxBackoffMs?: number;
  /** Jitter source in [0, 1); injectable for tests. */
  random?: () => number;
  /** Largest response read, in bytes (the gRPC read limit); larger ones end the stream. */
  maxResponseBytes?: number;
}

/** Parses "xds://HOST:PORT" into an http:// base URL, or throws saying what is wrong. */
export function xdsBaseUrl(url: string): string {
  const m = /^xds:\/\/(.+)$/.exec(url);
  if (!m || splitHostPort(m[1]!) === undefined) throw new Error(`config source ${url}: want xds://HOST:PORT`);
  return `http://${m[1]}`;
}

/** Creates an MCP-over-xDS source. */
export function createXdsSource(opts: XdsSourceOptions): ConfigSource {
  const baseUrl = xdsBaseUrl(opts.url);
  const clock = opts.clock ?? systemClock;
  const random = opts.random ?? Math.random;
  const log = opts.logger;
  const byUrl = new Map(opts.collections.map((c) => [collectionOf(c), c]));
  const nodeId = opts.nodeId ?? `mcp~0.0.0.0~${hostname()}.meshd~meshd.svc.cluster.local`;
  /** Current documents per collection, by origin name. */
  const state = new Map<string, Map<string, string>>();
  let sink: SourceSink | undefined;
  let synced = false;
  let stopped = false;
  /** The sink refused the last change: deliver the next one as a full listing. */
  let relist = false;
  const abort = new AbortController();
  let loop: Promise<void> | undefined;

  function originOf(url: string, name: string): string {
    return `${opts.url}/${url}/${name}`;
  }

  function applyResponse(url: string, docs: Map<string, string>): void {
    const before = state.get(url) ?? new Map<string, string>();
    state.set(url, docs);
    if (!synced || relist) {
      if (state.size < byUrl.size) return;
      const all: OriginContent[] = [];
      for (const m of state.values()) for (const [origin, content] of m) all.push({ origin, content });
      const verdict = sink!.replace(all);
      relist = !verdict.applied;
      if (verdict.applied && !synced) {
        synced = true;
        log.info("config synced from remote galley", { url: opts.url, resources: all.length });
      }
      return;
    }
    const changes: OriginChange[] = [];
    for (const [origin, content] of docs) {
      if (before.get(origin) !== content) changes.push({ origin, content });
    }
    for (const origin of before.keys()) if (!docs.has(origin)) changes.push({ origin, deleted: true });
    if (changes.length > 0) relist = !sink!.update(changes).applied;
  }

  async function session(): Promise<boolean> {
    const transport = createGrpcTransport({ baseUrl, readMaxBytes: opts.maxResponseBytes });
    const client = createClient(AggregatedDiscoveryService, transport);
    const requests = createChannel<DiscoveryRequest>();
    const node = { id: nodeId, metadata: { GENERATOR: "mcp" } };
    for (const url of byUrl.keys()) requests.push(create(DiscoveryRequestSchema, { node, typeUrl: url }));
    let gotAny = false;
    try {
      for await (const res of client.streamAggregatedResources(requests, { signal: abort.signal })) {
        const c = byUrl.get(res.typeUrl);
        if (!c) continue;
        if (!gotAny) sink!.report({ warnings: [] });
        gotAny = true;
        const docs = new Map<string, string>();
        let error: string | undefined;
        for (const any of res.resources) {
          try {
            const d = decodeMcpResource(any, c);
            docs.set(originOf(res.typeUrl, d.name), d.document);
          } catch (err) {
            error = errorMessage(err);
            break;
          }
        }
        if (error === undefined) applyResponse(res.typeUrl, docs);
        else {log.warn("rejecting config from remote galley", {
            url: opts.url,
            collection: res.typeUrl,
            error,
          });}
        requests.push(create(DiscoveryRequestSchema, {
          typeUrl: res.typeUrl,
          versionInfo: error === undefined ? res.versionInfo : "",
          responseNonce: res.nonce,
          errorDetail: error === undefined ? undefined : { code: 3, message: error },
        }));
      }
      if (!stopped) log.warn("remote galley closed the config stream", { url: opts.url });
    } catch (err) {
      if (!stopped) {
        log.warn("config stream from remote galley failed", { url: opts.url, err: errorMessage(err) });
        const tooLarge = err instanceof ConnectError && err.code === Code.ResourceExhausted &&
          opts.maxResponseBytes !== undefined;
        const withheld = tooLarge
          ? `the remote galley sent a response over ${opts.maxResponseBytes} bytes (--config-max-total-size); ` +
            `it was not read, and the last good config is kept`
          : `config stream failed: ${errorMessage(err)}`;
        sink!.report({ withheld, warnings: [] });
      }
    } finally {
      requests.close();
    }
    return gotAny;
  }

  async function run(): Promise<void> {
    let attempt = 0;
    while (!stopped) {
      const progressed = await session();
      if (stopped) return;
      attempt = progressed ? 0 : attempt + 1;
      const base = Math.min(
        opts.maxBackoffMs ?? 30_000,
        (opts.minBackoffMs ?? 500) * 2 ** Math.min(attempt, 16),
      );
      const delay = base * (0.5 + random());
      await new Promise<void>((resolve) => {
        const t = clock.setTimer(delay, resolve);
        abort.signal.addEventListener("abort", () => {
          t.cancel();
          resolve();
        }, { once: true });
      });
    }
  }

  return {
    name: opts.url,
    synced: () => synced,
    start(s) {
      sink = s;
      loop = run();
      return Promise.resolve();
    },
    async stop() {
      stopped = true;
      abort.abort();
      await loop;
    },
  };
}
