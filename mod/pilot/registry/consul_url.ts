/**
 * The settings of a Consul registry, read from its `--registry` value:
 * `consul://HOST[:PORT][?dc=DC&token-file=FILE&wait=DURATION&timeout=DURATION]`.
 *
 * - `dc`: the datacenter to read (Consul's `?dc=`); the agent's own when absent.
 * - `token-file`: a file holding the ACL token, sent as `X-Consul-Token`.
 * - `wait`: how long one blocking query may wait for a change (Consul's `?wait=`, at most 10m;
 *   default 5m, Consul's own default).
 * - `timeout`: how long a request may take beyond its `wait` (and Consul's up to wait/16 of
 *   jitter) before it is abandoned as failed (default 10s).
 *
 * @module
 */
import { parseDuration } from "../../shared/duration.ts";
import { didYouMean } from "../../shared/suggest.ts";

/** A Consul registry's settings. */
export interface ConsulSettings {
  /** The HTTP API's base, e.g. "http://127.0.0.1:8500". */
  readonly base: string;
  /** host:port, for status. */
  readonly address: string;
  readonly dc?: string;
  readonly tokenFile?: string;
  /** Blocking query wait in milliseconds. */
  readonly waitMs: number;
  /** Allowance beyond the wait before a request counts as failed, in milliseconds. */
  readonly timeoutMs: number;
}

/** Consul's default port for its HTTP API. */
export const CONSUL_DEFAULT_PORT = 8500;
/** Consul's default blocking wait. */
export const CONSUL_DEFAULT_WAIT_MS = 5 * 60_000;
/** Consul's largest blocking wait; longer ones are cut to it by the server. */
export const CONSUL_MAX_WAIT_MS = 10 * 60_000;
const DEFAULT_TIMEOUT_MS = 10_000;

const PARAMETERS = ["dc", "token-file", "wait", "timeout"] as const;

function durationParam(url: URL, key: string, fallback: number, max: number): number {
  const text = url.searchParams.get(key);
  if (text === null) return fallback;
  const ms = parseDuration(text);
  if (ms === undefined || !(ms >= 1) || ms > max) {
    throw new Error(`${key}=${text} is not a duration between 1ms and ${max / 60_000}m (e.g. 30s, 5m)`);
  }
  return ms;
}

/**
 * Reads a `consul://` URL. Throws an Error saying which part is wrong (wrong scheme, a path,
 * an unknown or empty parameter, a bad duration); the caller adds the flag value.
 */
export function parseConsulUrl(url: URL): ConsulSettings {
  if (url.protocol !== "consul:") throw new Error(`not a consul:// URL (scheme ${url.protocol})`);
  if (url.hostname === "") throw new Error("want consul://HOST:PORT (no host given)");
  if (url.pathname !== "" && url.pathname !== "/") {
    throw new Error(`a consul registry URL has no path (got ${url.pathname})`);
  }
  if (url.password !== "") throw new Error("credentials do not belong in the URL; use token-file=FILE");
  for (const key of new Set(url.searchParams.keys())) {
    if (!(PARAMETERS as readonly string[]).includes(key)) {
      throw new Error(
        `unknown parameter ${JSON.stringify(key)}${didYouMean(key, PARAMETERS)}; a consul registry takes ${
          PARAMETERS.join(", ")
        }`,
      );
    }
    if (url.searchParams.getAll(key).length > 1) throw new Error(`parameter ${key} given twice`);
    if (url.searchParams.get(key) === "") throw new Error(`${key}= needs a value`);
  }
  const port = url.port === "" ? CONSUL_DEFAULT_PORT : Number(url.port);
  const address = `${url.hostname}:${port}`;
  const dc = url.searchParams.get("dc") ?? undefined;
  const tokenFile = url.searchParams.get("token-file") ?? undefined;
  return {
    base: `http://${address}`,
    address,
    ...(dc !== undefined ? { dc } : {}),
    ...(tokenFile !== undefined ? { tokenFile } : {}),
    waitMs: durationParam(url, "wait", CONSUL_DEFAULT_WAIT_MS, CONSUL_MAX_WAIT_MS),
    timeoutMs: durationParam(url, "timeout", DEFAULT_TIMEOUT_MS, CONSUL_MAX_WAIT_MS),
  };
}
