/**
 * The Consul registry (`--registry consul://HOST:PORT[?dc=DC&token-file=FILE]`): services and
 * their passing instances from Consul's catalog and health APIs, kept current with blocking
 * queries.
 *
 * One watcher blocks on `/v1/catalog/services`; one watcher per service blocks on
 * `/v1/health/service/NAME` (all instances, so a service whose instances all fail keeps its ports;
 * only instances whose checks all pass become endpoints). Service watchers start and stop as the
 * catalog changes, and at most {@link SERVICE_REQUEST_LIMIT} of their requests are in flight; when
 * more services than that are watched, each blocking query waits at most
 * {@link SHARED_WAIT_MS} so every service gets its turn.
 *
 * A failed request (no answer in time, a 5xx, a 403, a connection refused) keeps the last good
 * view, marks the registry stale with the error, and is retried with backoff from index 0 (the
 * server may be another one now). After an answer whose index did not move, the next request
 * waits until {@link UNCHANGED_PAUSE_MS} passed since the last one was sent, so a server that
 * answers at once cannot make the watcher spin.
 * The view is published once the catalog and every service in it were read a first time.
 *
 * @module
 */
import { readFileSync } from "node:fs";
import type { RegistryState } from "../model/registry.ts";
import type { Endpoint, Service } from "../model/service.ts";
import { createBackoff } from "../../shared/backoff.ts";
import { type Clock, sleep } from "../../shared/clock.ts";
import { errorMessage } from "../../shared/errors.ts";
import type { Logger } from "../../shared/logger.ts";
import type { PlatformRegistry, RegistryStatus } from "./platform.ts";
import { consulGet, createRequestLimit, nextIndex } from "./consul_client.ts";
import {
  type ConsulServiceView,
  consulServiceView,
  parseCatalogServices,
  parseHealthEntries,
} from "./consul_convert.ts";
import { type ConsulSettings, parseConsulUrl } from "./consul_url.ts";
import { registryDisplayName } from "./platform.ts";

/** What {@link createConsulRegistry} takes. */
export interface ConsulRegistryOptions {
  /** The `--registry` value, parsed. */
  readonly url: URL;
  readonly clock: Clock;
  readonly logger: Logger;
  /** HTTP client (default the global fetch). */
  readonly fetch?: typeof fetch;
}

/**
 * Service health requests one registry has in flight at most, each holding one connection while
 * Consul blocks it. Consul refuses a client address more than `limits.http_max_conns_per_client`
 * connections (200 by default), so this leaves room for the catalog watch, other registries'
 * reads from the same machine and the operator's tools; up to this many services are watched
 * with their full blocking wait, so a change is read as soon as Consul answers.
 */
export const SERVICE_REQUEST_LIMIT = 128;
/**
 * The blocking wait used while more services are watched than {@link SERVICE_REQUEST_LIMIT}: a
 * service waiting for a request slot gets one within about (waiting / limit) of this. Half of
 * {@link UNCHANGED_PAUSE_MS}, so a query whose wait ended unchanged gives its slot back for the
 * rest of its pause: up to twice the limit's services are watched without anyone queueing, at
 * the same rate of requests, and a change is read within about half a second.
 */
export const SHARED_WAIT_MS = 500;
/**
 * The least time from one request of a watch to its next after an answer whose index did not
 * move (a query Consul held that long already waited; one answered at once pauses).
 */
export const UNCHANGED_PAUSE_MS = 1_000;
const BACKOFF = { initialMs: 250, maxMs: 30_000 } as const;

const EMPTY: RegistryState = Object.freeze({ services: [], endpoints: [], workloads: [] });

function readToken(file: string): string {
  let text: string;
  try {
    text = readFileSync(file, "utf8");
  } catch (e) {
    throw new Error(`token-file ${file}: ${errorMessage(e)}`);
  }
  const token = text.trim();
  if (token === "") throw new Error(`token-file ${file} is empty`);
  return token;
}

/** The registry's view assembled from the per-service views, services sorted by name. */
export function assembleState(views: ReadonlyMap<string, ConsulServiceView>): RegistryState {
  const names = [...views.keys()].sort();
  const services: Service[] = [];
  const endpoints: Endpoint[] = [];
  for (const n of names) {
    const v = views.get(n)!;
    if (v.service) services.push(v.service);
    endpoints.push(...v.endpoints);
  }
  return Object.freeze({ services, endpoints, workloads: [] });
}

interface Watch {
  readonly stop: AbortController;
  done: Promise<void>;
}

/**
 * Creates a Consul registry and starts reading at once, in the background; `state()` is empty
 * until the first full read. Throws (before any request) when the URL is not a valid consul
 * registry or its token file cannot be read.
 */
export function createConsulRegistry(opts: ConsulRegistryOptions): PlatformRegistry {
  const settings: ConsulSettings = parseConsulUrl(opts.url);
  const token = settings.tokenFile !== undefined ? readToken(settings.tokenFile) : undefined;
  const name = registryDisplayName(opts.url);
  const { clock, logger } = opts;
  const doFetch = opts.fetch ?? fetch;
  const limit = createRequestLimit(SERVICE_REQUEST_LIMIT);
  const stopAll = new AbortController();

  const views = new Map<string, ConsulServiceView>();
  const viewText = new Map<string, string>();
  const watches = new Map<string, Watch>();
  /** Services in the catalog not yet read a first time (success or failure). */
  const firstPending = new Set<string>();
  const errors = new Map<string, { message: string; at: number }>();
  const warnedSkips = new Set<string>();
  const listeners = new Set<() => void>();
  let catalogRead = false;
  let published = false;
  let current: RegistryState = EMPTY;
  let dirty = false;
  let lastSyncMs: number | undefined;

  const notify = () => {
    for (const l of [...listeners]) {
      try {
        l();
      } catch (e) {
        logger.warn("registry listener failed", { error: errorMessage(e) });
      }
    }
  };
  /** Publishes the view if the first full read is done. */
  const changed = () => {
    dirty = true;
    if (!published && catalogRead && firstPending.size === 0) {
      published = true;
      logger.info("consul registry synced", { services: views.size });
    }
    if (published) notify();
  };

  const failed = (key: string, e: unknown) => {
    const message = errorMessage(e);
    const at = clock.now();
    if (errors.get(key)?.message !== message) {
      logger.warn("consul read failed; keeping the last good view", { watch: key, error: message });
    }
    errors.set(key, { message, at });
  };
  const succeeded = (key: string) => {
    lastSyncMs = clock.now();
    if (errors.delete(key)) logger.info("consul read recovered", { watch: key });
  };

  /**
   * Repeats a blocking query until `signal` aborts, handing each answer to `onBody`. `limited`
   * requests take a slot of the registry's request limit.
   */
  const loop = async (
    key: string,
    path: string,
    signal: AbortSignal,
    limited: boolean,
    onBody: (body: unknown) => void,
    onFirstAttempt: () => void,
  ): Promise<void> => {
    const backoff = createBackoff(BACKOFF);
    let index = 0;
    /** The last answer's body: the same body again is the same view, so it is not read again. */
    let lastText: string | undefined;
    let first = true;
    while (!signal.aborted) {
      const release = limited ? await limit.acquire(signal) : () => {};
      if (release === undefined) break;
      const shared = limited && (watches.size > SERVICE_REQUEST_LIMIT || limit.waiting > 0);
      const waitMs = shared ? Math.min(settings.waitMs, SHARED_WAIT_MS) : settings.waitMs;
      let pause = 0;
      const startedAt = clock.now();
      try {
        const answer = await consulGet({
          fetch: doFetch,
          clock,
          base: settings.base,
          path,
          ...(settings.dc !== undefined ? { dc: settings.dc } : {}),
          ...(token !== undefined ? { token } : {}),
          index,
          waitMs,
          timeoutMs: settings.timeoutMs,
          signal,
          ...(lastText !== undefined ? { previousText: lastText } : {}),
        });
        release();
        if (signal.aborted) break;
        const next = nextIndex(index, answer.index);
        if (!answer.same) onBody(answer.body);
        lastText = answer.text;
        succeeded(key);
        backoff.reset();
        if (!next.changed) pause = Math.max(0, UNCHANGED_PAUSE_MS - (clock.now() - startedAt));
        index = next.index;
      } catch (e) {
        release();
        if (signal.aborted) break;
        failed(key, e);
        index = 0;
        lastText = undefined;
        pause = backoff.next();
      }
      if (first) {
        first = false;
        onFirstAttempt();
      }
      if (pause > 0) await sleep(clock, pause, signal);
    }
  };

  const setView = (service: string, view: ConsulServiceView | undefined) => {
    const text = view === undefined ? undefined : JSON.stringify(view);
    if (viewText.get(service) === text) return;
    if (view === undefined) {
      views.delete(service);
      viewText.delete(service);
    } else {
      views.set(service, view);
      viewText.set(service, text!);
      for (const s of view.skipped) {
        if (!warnedSkips.has(s)) {
          warnedSkips.add(s);
          logger.warn("consul instance skipped: its address is not an IP", { service, instance: s });
        }
      }
    }
    changed();
  };

  const startService = (service: string) => {
    const stop = new AbortController();
    const signal = AbortSignal.any([stopAll.signal, stop.signal]);
    const watch: Watch = { stop, done: Promise.resolve() };
    watches.set(service, watch);
    firstPending.add(service);
    watch.done = loop(
      `service ${service}`,
      `/v1/health/service/${encodeURIComponent(service)}`,
      signal,
      true,
      (body) => {
        if (watches.get(service) !== watch) return;
        setView(service, consulServiceView(service, parseHealthEntries(body, service), settings.dc));
      },
      () => {
        if (firstPending.delete(service) && watches.get(service) === watch) changed();
      },
    );
  };

  const stopService = (service: string) => {
    const w = watches.get(service);
    if (!w) return;
    watches.delete(service);
    w.stop.abort();
    firstPending.delete(service);
    errors.delete(`service ${service}`);
    setView(service, undefined);
  };

  const catalogDone = loop(
    "catalog",
    "/v1/catalog/services",
    stopAll.signal,
    false,
    (body) => {
      const names = new Set(parseCatalogServices(body));
      for (const n of [...watches.keys()]) if (!names.has(n)) stopService(n);
      for (const n of names) if (!watches.has(n)) startService(n);
      if (!catalogRead) {
        catalogRead = true;
        changed();
      }
    },
    () => {},
  );

  const state = (): RegistryState => {
    if (!published) return EMPTY;
    if (dirty) {
      current = assembleState(views);
      dirty = false;
    }
    return current;
  };
  /** The most recent of the failures that last. */
  const latestError = () => {
    let latest: { message: string; at: number } | undefined;
    for (const e of errors.values()) if (latest === undefined || e.at >= latest.at) latest = e;
    return latest;
  };

  return {
    name,
    kind: "consul",
    state,
    watch(listener) {
      listeners.add(listener);
      return () => listeners.delete(listener);
    },
    status(): RegistryStatus {
      const view = state();
      const lastError = latestError();
      return {
        name,
        kind: "consul",
        address: settings.address,
        synced: published,
        stale: lastError !== undefined,
        ...(lastSyncMs !== undefined ? { lastSyncMs } : {}),
        ...(lastError ? { lastError: lastError.message, lastErrorMs: lastError.at } : {}),
        services: view.services.length,
        endpoints: view.endpoints.length,
      };
    },
    async stop() {
      stopAll.abort();
      await Promise.allSettled([catalogDone, ...[...watches.values()].map((w) => w.done)]);
    },
  };
}
