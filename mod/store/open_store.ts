/**
 * Opens the store named by the settings: parses `--store`, reads the TLS and password files, and
 * creates the etcd client. Loaded only when `--store` is set, so that a daemon without it does
 * not load etcd's protobuf descriptors.
 *
 * @module
 */
import { readFileSync } from "node:fs";
import { Gauge, Histogram } from "prom-client";
import type { Settings } from "../cli/flags.ts";
import type { Clock } from "../shared/clock.ts";
import { errorMessage, UsageError } from "../shared/errors.ts";
import type { Logger } from "../shared/logger.ts";
import type { MetricsRegistry } from "../shared/metrics.ts";
import { createEtcdClient, type EtcdAuth, type EtcdTls } from "./etcd_client.ts";
import { parseStoreAddress } from "./etcd_url.ts";
import type { Store } from "./links.ts";

/** What openStore needs besides the settings. */
export interface OpenStoreOptions {
  readonly logger: Logger;
  readonly clock?: Clock;
  /** Where to register `meshd_store_available`. */
  readonly metrics?: MetricsRegistry;
}

function readSettingFile(settings: Settings, flag: string): string | undefined {
  const path = settings.optionalString(flag);
  if (path === undefined) return undefined;
  try {
    return readFileSync(path, "utf8");
  } catch (err) {
    throw new UsageError(`--${flag}: cannot read ${path}: ${errorMessage(err)}`);
  }
}

/**
 * Opens the store, or returns undefined when `--store` is unset. Throws a UsageError naming the
 * flag for a malformed address, an unreadable file, or flags that need one another. Does not
 * contact etcd: an unreachable cluster is reported by the calls that need it.
 */
export function openStore(settings: Settings, opts: OpenStoreOptions): Store | undefined {
  const url = settings.optionalString("store");
  const etcdFlags = ["etcd-ca", "etcd-cert", "etcd-key", "etcd-user", "etcd-password-file"];
  if (url === undefined) {
    const stray = etcdFlags.find((f) => settings.optionalString(f) !== undefined);
    if (stray !== undefined) throw new UsageError(`--${stray} needs --store etcd://HOST:PORT`);
    return undefined;
  }
  let address;
  try {
    address = parseStoreAddress(url);
  } catch (err) {
    throw new UsageError(`--store: ${errorMessage(err)}`);
  }
  const ca = readSettingFile(settings, "etcd-ca");
  const cert = readSettingFile(settings, "etcd-cert");
  const key = readSettingFile(settings, "etcd-key");
  if ((cert === undefined) !== (key === undefined)) {
    throw new UsageError("--etcd-cert and --etcd-key go together: give both or neither");
  }
  const tls: EtcdTls | undefined = ca !== undefined || cert !== undefined ? { ca, cert, key } : undefined;
  const user = settings.optionalString("etcd-user");
  const password = readSettingFile(settings, "etcd-password-file");
  if ((user === undefined) !== (password === undefined)) {
    throw new UsageError("--etcd-user and --etcd-password-file go together: give both or neither");
  }
  const auth: EtcdAuth | undefined = user !== undefined
    ? { user, password: password!.replace(/\r?\n$/, "") }
    : undefined;
  const duration = opts.metrics &&
    new Histogram({
      name: "meshd_store_request_duration_seconds",
      help: "Seconds each etcd request took, failover included, by operation",
      labelNames: ["op"],
      buckets: [0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1, 5],
      registers: [opts.metrics],
    });
  const client = createEtcdClient({
    endpoints: address.endpoints,
    onRequest: duration && ((op, seconds) => duration.observe({ op }, seconds)),
    tls,
    auth,
    timeoutMs: settings.number("etcd-timeout"),
    logger: opts.logger,
    clock: opts.clock,
  });
  const parts = new Map<string, () => unknown>();
  if (opts.metrics) {
    new Gauge({
      name: "meshd_store_available",
      help: "1 while the last etcd request found a member that answered, 0 after one found none",
      registers: [opts.metrics],
      collect() {
        this.set(client.status().available ? 1 : 0);
      },
    });
  }
  return {
    url,
    prefix: address.prefix,
    client,
    addStatus(name, status) {
      if (parts.has(name)) throw new Error(`store status ${name} added twice`);
      parts.set(name, status);
    },
    status() {
      const extra: Record<string, unknown> = {};
      for (const [name, status] of parts) extra[name] = status();
      return {
        url,
        prefix: address.prefix,
        tls: tls !== undefined,
        auth: auth !== undefined,
        ...client.status(),
        ...extra,
      };
    },
    close: () => client.close(),
  };
}
