/**
 * The Eureka registry: `--registry eureka://HOST:PORT/PATH` (`eurekas://` for HTTPS). It reads
 * `GET PATH/apps` once, then every interval `GET PATH/apps/delta`, applies the delta to its copy
 * and compares the copy's reconcile hash code with the server's `apps__hashcode`; on a mismatch (a
 * delta it missed, a server that restarted) it reads the whole `apps` again, as Eureka's own
 * clients do. A server that fails, times out or answers garbage leaves the last good view in place
 * (reported as stale) and is retried with a growing delay bounded, as in Eureka's client, by ten
 * intervals.
 *
 * URL query options: `interval` (default 30s, Eureka clients' registry fetch interval), `timeout`
 * (per request, default 10s), `namespace` (of the services, default "default"), `host`
 * (`hostName`, as Istio's Eureka adapter, or `app`) and `domain` (for `host=app`, default
 * "eureka").
 *
 * @module
 */
import { type Clock, sleep } from "../../shared/clock.ts";
import { createBackoff } from "../../shared/backoff.ts";
import { parseDuration } from "../../shared/duration.ts";
import { errorMessage } from "../../shared/errors.ts";
import type { Logger } from "../../shared/logger.ts";
import type { RegistryState } from "../model/registry.ts";
import type { PlatformRegistry, RegistryStatus } from "./platform.ts";
import { type EurekaHostMode, eurekaState } from "./eureka_convert.ts";
import {
  applyDelta,
  copyFromFull,
  type EurekaCopy,
  parseApplications,
  reconcileHashCode,
} from "./eureka_json.ts";

/** Options for {@link createEurekaRegistry}. */
export interface EurekaRegistryOptions {
  /** The parsed `--registry` value. */
  readonly url: URL;
  readonly clock: Clock;
  readonly logger: Logger;
  /** HTTP client; global fetch by default. */
  readonly fetch?: typeof fetch;
}

/** Settings read from a `eureka://` URL. */
export interface EurekaSettings {
  /** The registry's name: the URL without credentials. */
  readonly name: string;
  /** The base URL requests go to (http or https). */
  readonly base: string;
  readonly intervalMs: number;
  readonly timeoutMs: number;
  readonly namespace: string;
  readonly hostMode: EurekaHostMode;
  readonly domain: string;
}

const KNOWN_OPTIONS = ["interval", "timeout", "namespace", "host", "domain"];

function durationOption(url: URL, key: string, fallback: number, where: string): number {
  const written = url.searchParams.get(key);
  if (written === null) return fallback;
  const ms = parseDuration(written);
  if (ms === undefined || !(ms > 0)) {
    throw new Error(`${where}: ${key}: want a positive duration such as 5s, got "${written}"`);
  }
  return ms;
}

/** Reads the settings of a `eureka://` or `eurekas://` URL; throws naming the value on mistakes. */
export function eurekaSettings(url: URL): EurekaSettings {
  const shown = new URL(url.href);
  shown.username = "";
  shown.password = "";
  const where = `--registry ${shown.href}`;
  if (url.protocol !== "eureka:" && url.protocol !== "eurekas:") {
    throw new Error(`${where}: want a eureka:// or eurekas:// URL`);
  }
  if (url.hostname === "") throw new Error(`${where}: want a host, as in eureka://HOST:PORT/eureka`);
  for (const key of url.searchParams.keys()) {
    if (!KNOWN_OPTIONS.includes(key)) {
      throw new Error(`${where}: unknown option "${key}" (known: ${KNOWN_OPTIONS.join(", ")})`);
    }
  }
  const hostMode = url.searchParams.get("host") ?? "hostName";
  if (hostMode !== "hostName" && hostMode !== "app") {
    throw new Error(`${where}: host: want hostName or app, got "${hostMode}"`);
  }
  const path = url.pathname.replace(/\/+$/, "");
  const scheme = url.protocol === "eurekas:" ? "https:" : "http:";
  return {
    name: shown.href,
    base: `${scheme}//${url.host}${path}`,
    intervalMs: durationOption(url, "interval", 30_000, where),
    timeoutMs: durationOption(url, "timeout", 10_000, where),
    namespace: url.searchParams.get("namespace") || "default",
    hostMode,
    domain: (url.searchParams.get("domain") || "eureka").replace(/^\.+|\.+$/g, ""),
  };
}

/**
 * GET `url` as JSON within `timeoutMs` on `clock`, or until `stop` aborts. Throws with the URL and
 * status on anything but 200; `status` is set on the error for callers that branch on it.
 */
async function getJson(
  doFetch: typeof fetch,
  url: string,
  settings: EurekaSettings,
  clock: Clock,
  stop: AbortSignal,
): Promise<unknown> {
  return parseJson(await getText(doFetch, url, settings, clock, stop), url);
}

/** The JSON in a body read from `url`; throws naming the URL when it is not JSON. */
function parseJson(body: string, url: string): unknown {
  try {
    return JSON.parse(body);
  } catch {
    throw new Error(`GET ${url}: the answer is not JSON`);
  }
}

/** GET `url`'s body as text, with the timeout and errors of {@link getJson}. */
async function getText(
  doFetch: typeof fetch,
  url: string,
  settings: EurekaSettings,
  clock: Clock,
  stop: AbortSignal,
): Promise<string> {
  const ac = new AbortController();
  const onStop = () => ac.abort(new Error("stopped"));
  stop.addEventListener("abort", onStop, { once: true });
  const timer = clock.setTimer(
    settings.timeoutMs,
    () => ac.abort(new Error(`no answer within ${settings.timeoutMs} ms`)),
  );
  try {
    const headers = { accept: "application/json" };
    let res: Response;
    let body: string;
    try {
      res = await doFetch(url, { headers, signal: ac.signal });
      body = await res.text();
    } catch (err) {
      throw new Error(`GET ${url}: ${errorMessage(ac.signal.aborted ? ac.signal.reason : err)}`);
    }
    if (res.status !== 200) {
      throw Object.assign(new Error(`GET ${url}: HTTP ${res.status}`), { status: res.status });
    }
    return body;
  } finally {
    timer.cancel();
    stop.removeEventListener("abort", onStop);
  }
}

/** A Eureka registry's status, with how many full and delta reads it made. */
export interface EurekaStatus extends RegistryStatus {
  readonly fullReads: number;
  readonly deltaReads: number;
  /** Delta reads that answered what the last applied delta did, so nothing was parsed or applied. */
  readonly deltaRepeats: number;
}

/** A Eureka registry. */
export interface EurekaRegistry extends PlatformRegistry {
  status(): EurekaStatus;
}

const EMPTY: RegistryState = { services: [], endpoints: [], workloads: [] };

/**
 * Creates a Eureka registry and starts syncing in the background; `state()` is empty until the
 * first read. Throws on a malformed URL.
 */
export function createEurekaRegistry(opts: EurekaRegistryOptions): EurekaRegistry {
  const settings = eurekaSettings(opts.url);
  const { clock } = opts;
  const doFetch = opts.fetch ?? fetch;
  const log = opts.logger;
  const listeners = new Set<() => void>();
  const stopper = new AbortController();
  const backoff = createBackoff({
    initialMs: Math.min(1000, settings.intervalMs),
    maxMs: settings.intervalMs * 10,
  });

  let copy: EurekaCopy | undefined;
  let state = EMPTY;
  let stateKey = JSON.stringify(EMPTY);
  let lastProblems = "";
  let lastSyncMs: number | undefined;
  let lastError: { message: string; at: number } | undefined;
  let fullReads = 0;
  let deltaReads = 0;
  let deltaRepeats = 0;
  /**
   * The last delta applied, as the server sent it, and the copy it gave. A server answers the
   * same delta (its recent changes) for minutes; read again onto that same copy it changes
   * nothing and reconciles as before, so it is neither parsed nor applied again.
   */
  let lastDelta: { body: string; copy: EurekaCopy } | undefined;

  function publish(next: EurekaCopy): void {
    copy = next;
    lastSyncMs = clock.now();
    const { state: computed, problems } = eurekaState(next, settings);
    const problemsKey = problems.join("\n");
    if (problemsKey !== lastProblems && problems.length > 0) {
      log.warn("eureka instances not served", { problems });
    }
    lastProblems = problemsKey;
    const key = JSON.stringify(computed);
    if (key === stateKey) return;
    state = computed;
    stateKey = key;
    for (const l of listeners) {
      try {
        l();
      } catch (err) {
        log.error("registry listener failed", { error: errorMessage(err) });
      }
    }
  }

  async function readFull(): Promise<void> {
    const url = `${settings.base}/apps`;
    const doc = parseApplications(await getJson(doFetch, url, settings, clock, stopper.signal), `GET ${url}`);
    fullReads++;
    publish(copyFromFull(doc));
  }

  /** Reads and applies a delta; returns false when the whole registry must be read again. */
  async function readDelta(current: EurekaCopy): Promise<boolean> {
    const url = `${settings.base}/apps/delta`;
    let body: string;
    try {
      body = await getText(doFetch, url, settings, clock, stopper.signal);
    } catch (err) {
      // A server with deltas disabled answers 403; its clients read the whole registry instead.
      if ((err as { status?: number }).status === 403) return false;
      throw err;
    }
    deltaReads++;
    if (lastDelta !== undefined && lastDelta.body === body && lastDelta.copy === current) {
      deltaRepeats++;
      lastSyncMs = clock.now();
      return true;
    }
    const doc = parseApplications(parseJson(body, url), `GET ${url}`);
    const next = applyDelta(current, doc);
    const mine = reconcileHashCode(next.values());
    if (doc.hashCode !== mine) {
      log.info("eureka delta does not reconcile, reading the whole registry", {
        server: doc.hashCode ?? null,
        local: mine,
      });
      return false;
    }
    publish(next);
    lastDelta = { body, copy: next };
    return true;
  }

  async function run(): Promise<void> {
    let needFull = true;
    while (!stopper.signal.aborted) {
      try {
        if (needFull || copy === undefined) {
          await readFull();
          needFull = false;
        } else if (!(await readDelta(copy))) {
          needFull = true;
          continue;
        }
        if (lastError) log.info("eureka reachable again", { down: lastError.message });
        lastError = undefined;
        backoff.reset();
        await sleep(clock, settings.intervalMs, stopper.signal);
      } catch (err) {
        if (stopper.signal.aborted) break;
        const message = errorMessage(err);
        if (lastError?.message !== message) {
          log.warn("eureka read failed; keeping the last good view", { error: message });
        }
        lastError = { message, at: clock.now() };
        await sleep(clock, backoff.next(), stopper.signal);
      }
    }
  }

  const loop = run();

  return {
    kind: "eureka",
    name: settings.name,
    state: () => state,
    watch(listener) {
      listeners.add(listener);
      return () => listeners.delete(listener);
    },
    status(): EurekaStatus {
      return {
        name: settings.name,
        kind: "eureka",
        address: settings.base,
        synced: copy !== undefined,
        stale: lastError !== undefined,
        ...(lastSyncMs !== undefined ? { lastSyncMs } : {}),
        ...(lastError ? { lastError: lastError.message, lastErrorMs: lastError.at } : {}),
        services: state.services.length,
        endpoints: state.endpoints.length,
        fullReads,
        deltaReads,
        deltaRepeats,
      };
    },
    async stop() {
      stopper.abort();
      await loop;
    },
  };
}
