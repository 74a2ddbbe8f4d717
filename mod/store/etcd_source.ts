/**
 * The etcd config source (`--store etcd://...`): every key under `PREFIX/config/` is one origin,
 * named by its key, holding one resource (see config_keys.ts).
 *
 * It lists the prefix at one revision, delivers the listing, then watches from the next
 * revision, so no change falls between the two. When etcd has compacted the revisions a watch
 * needs, or the watch fails (a member died, the cluster lost its quorum), it lists again and
 * delivers only what differs from what it delivered before, then watches on. While etcd is
 * unreachable it retries with backoff and delivers nothing, so galley keeps serving the last
 * good config.
 *
 * A key that is not a config key, a value that is too large, not JSON, or a JSON document of
 * another resource than its key names is reported as an unreadable origin: that key alone is
 * rejected, naming the key, and whatever it held before stays in force.
 *
 * @module
 */
import { createBackoff } from "../shared/backoff.ts";
import type {
  ConfigSource,
  OriginChange,
  OriginContent,
  OriginError,
  SinkVerdict,
  SourceSink,
} from "../runtime/config_source.ts";
import { type Clock, sleep, systemClock } from "../shared/clock.ts";
import { errorMessage } from "../shared/errors.ts";
import type { Logger } from "../shared/logger.ts";
import { configPrefix, identityProblem, parseConfigKey } from "./config_keys.ts";
import type { EtcdClient, KeyValue } from "./etcd_client.ts";
import { EtcdCompactedError } from "./errors.ts";

/** Options for createEtcdSource. */
export interface EtcdSourceOptions {
  readonly client: EtcdClient;
  /** The store prefix ("/meshd"); config is read from PREFIX/config/. */
  readonly prefix: string;
  readonly logger: Logger;
  readonly clock?: Clock;
  /** Values larger than this are refused without being parsed. */
  readonly maxBytes?: number;
  /** First and largest delay between attempts while etcd is unreachable. */
  readonly minBackoffMs?: number;
  readonly maxBackoffMs?: number;
}

/** What the source is doing, for /debug/storez. */
export interface EtcdSourceStatus {
  readonly name: string;
  readonly synced: boolean;
  /** "listing", "watching" or "retrying" (etcd unreachable; the last state stays in force). */
  readonly state: "listing" | "watching" | "retrying" | "stopped";
  /** The store revision the delivered state reflects. */
  readonly revision: number;
  readonly keys: number;
  /** Listings after the first one (after a compaction or a failed watch). */
  readonly relists: number;
  readonly compactions: number;
  readonly lastError?: string;
}

/** A config source over etcd that can also report its state. */
export interface EtcdSource extends ConfigSource {
  status(): EtcdSourceStatus;
}

const decoder = new TextDecoder();

/** Creates the etcd config source. */
export function createEtcdSource(opts: EtcdSourceOptions): EtcdSource {
  const clock = opts.clock ?? systemClock;
  const maxBytes = opts.maxBytes ?? 8 * 1024 * 1024;
  const folder = configPrefix(opts.prefix);
  const name = `etcd:${folder}`;
  const log = opts.logger;
  const backoff = createBackoff({ initialMs: opts.minBackoffMs ?? 250, maxMs: opts.maxBackoffMs ?? 10_000 });
  /** Modification revision of every key last delivered. */
  const known = new Map<string, number>();
  const abort = new AbortController();
  let sink: SourceSink | undefined;
  let synced = false;
  let state: EtcdSourceStatus["state"] = "listing";
  let revision = 0;
  let relists = 0;
  let compactions = 0;
  let lastError: string | undefined;
  let needReplace = false;
  let loop: Promise<void> | undefined;

  /** The origin a key's value becomes: its content, or why it is refused. */
  function originOf(kv: KeyValue): OriginContent | OriginError {
    const parts = parseConfigKey(opts.prefix, kv.key);
    if (parts === undefined) {
      return { origin: kv.key, error: `not a config key; want ${folder}GROUP/KIND/NAMESPACE/NAME` };
    }
    if (kv.value.byteLength > maxBytes) {
      return {
        origin: kv.key,
        error: `the value is ${kv.value.byteLength} bytes; the limit is ${maxBytes} bytes`,
      };
    }
    const problem = identityProblem(parts, decoder.decode(kv.value));
    if (problem !== undefined) return { origin: kv.key, error: problem };
    return { origin: kv.key, content: kv.value, version: String(kv.modRevision) };
  }

  /** Records whether the sink took a delivery; after a refusal the next one is a full listing. */
  function delivered(verdict: SinkVerdict): void {
    needReplace = !verdict.applied;
    if (!verdict.applied) {
      log.warn("galley refused the config from etcd as a whole; keeping the last good config", {
        reason: verdict.reason,
        revision,
      });
    }
  }

  async function list(): Promise<void> {
    state = "listing";
    const listed = await opts.client.list(folder, { signal: abort.signal });
    if (abort.signal.aborted) return;
    revision = listed.revision;
    if (!synced || needReplace) {
      known.clear();
      for (const kv of listed.kvs) known.set(kv.key, kv.modRevision);
      const relist = synced;
      delivered(sink!.replace(listed.kvs.map(originOf), String(revision)));
      synced = true;
      if (relist) relists++;
      log.info("config listed from etcd", { prefix: folder, revision, resources: listed.kvs.length });
      return;
    }
    relists++;
    const changes: OriginChange[] = [];
    const present = new Set<string>();
    for (const kv of listed.kvs) {
      present.add(kv.key);
      if (known.get(kv.key) === kv.modRevision) continue;
      known.set(kv.key, kv.modRevision);
      changes.push(originOf(kv));
    }
    for (const key of [...known.keys()]) {
      if (present.has(key)) continue;
      known.delete(key);
      changes.push({ origin: key, deleted: true });
    }
    log.info("config listed again from etcd", { prefix: folder, revision, changed: changes.length });
    if (changes.length > 0) delivered(sink!.update(changes, String(revision)));
  }

  /** Watches until the stream fails, or until a change must be delivered as a full listing. */
  async function watch(): Promise<void> {
    state = "watching";
    for await (const batch of opts.client.watch(folder, revision + 1, abort.signal)) {
      if (abort.signal.aborted) return;
      if (lastError !== undefined) {
        lastError = undefined;
        sink!.report({ warnings: [] });
      }
      backoff.reset();
      if (batch.events.length === 0) {
        revision = Math.max(revision, batch.revision);
        continue;
      }
      if (needReplace) return; // the sink refused the last delivery: list and replace
      revision = Math.max(revision, batch.revision);
      // One change per key: the last event for a key in a batch is its state.
      const byKey = new Map<string, OriginChange>();
      for (const e of batch.events) {
        if (e.type === "delete") {
          known.delete(e.kv.key);
          byKey.set(e.kv.key, { origin: e.kv.key, deleted: true });
        } else {
          known.set(e.kv.key, e.kv.modRevision);
          byKey.set(e.kv.key, originOf(e.kv));
        }
      }
      delivered(sink!.update([...byKey.values()], String(revision)));
    }
  }

  async function run(): Promise<void> {
    while (!abort.signal.aborted) {
      try {
        await list();
        if (abort.signal.aborted) break;
        await watch();
      } catch (err) {
        if (abort.signal.aborted) break;
        if (err instanceof EtcdCompactedError) {
          compactions++;
          log.info("etcd compacted the revisions the config watch needed; listing again", {
            revision,
            compactRevision: err.compactRevision,
          });
          continue;
        }
        lastError = errorMessage(err);
        state = "retrying";
        sink!.report({ warnings: [`etcd: ${lastError}; serving the last config read`] });
        const delay = backoff.next();
        log.warn("config from etcd is not being watched; keeping the last config and retrying", {
          err: lastError,
          retryInMs: delay,
        });
        await sleep(clock, delay, abort.signal);
      }
    }
    state = "stopped";
  }

  return {
    name,
    synced: () => synced,
    start(s) {
      sink = s;
      loop = run();
      return Promise.resolve();
    },
    async stop() {
      abort.abort();
      await loop;
    },
    status: () => ({
      name,
      synced,
      state,
      revision,
      keys: known.size,
      relists,
      compactions,
      ...(lastError === undefined ? {} : { lastError }),
    }),
  };
}
