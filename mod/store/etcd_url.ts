/**
 * The `--store` address: `etcd://HOST:PORT[,HOST:PORT...][/PREFIX]`.
 *
 * @module
 */
import { splitHostPort } from "../cli/setting.ts";

/** What `--store` names. */
export interface StoreAddress {
  /** Client addresses of the cluster's members, "host:port" each ("[v6]:port" for IPv6), in order given. */
  readonly endpoints: readonly string[];
  /**
   * Where meshd's keys live: starts with "/", never ends with "/" ("/meshd" when the address
   * names none). Every key meshd writes starts with it.
   */
  readonly prefix: string;
}

/** The prefix used when `--store` names none. */
export const DEFAULT_PREFIX = "/meshd";

const SEGMENT = /^[A-Za-z0-9._-]+$/;

/**
 * Parses a `--store` value. Throws an Error saying what is wrong (the caller names the flag):
 * another scheme, no or empty endpoints, a port out of range, credentials in the address, or a
 * prefix with empty, "." or ".." segments or characters outside `A-Z a-z 0-9 . _ -`.
 */
export function parseStoreAddress(url: string): StoreAddress {
  const m = /^etcd:\/\/([^/]*)(\/.*)?$/.exec(url);
  if (m === null) {
    throw new Error(`want etcd://HOST:PORT[,HOST:PORT...][/PREFIX], got ${JSON.stringify(url)}`);
  }
  const hosts = m[1]!;
  if (hosts.includes("@")) {
    throw new Error("credentials do not belong in the address; use --etcd-user and --etcd-password-file");
  }
  if (hosts === "") throw new Error(`no endpoints in ${JSON.stringify(url)}; want etcd://HOST:PORT`);
  const endpoints: string[] = [];
  for (const hp of hosts.split(",")) {
    const parsed = splitHostPort(hp);
    if (parsed === undefined || parsed.host === "" || parsed.port === 0) {
      throw new Error(
        `endpoint ${JSON.stringify(hp)} of ${JSON.stringify(url)}: want HOST:PORT, port 1-65535`,
      );
    }
    if (endpoints.includes(hp)) throw new Error(`endpoint ${hp} is named twice in ${JSON.stringify(url)}`);
    endpoints.push(hp);
  }
  const rawPrefix = m[2];
  if (rawPrefix === undefined || rawPrefix === "/") return { endpoints, prefix: DEFAULT_PREFIX };
  const trimmed = rawPrefix.endsWith("/") ? rawPrefix.slice(0, -1) : rawPrefix;
  for (const seg of trimmed.slice(1).split("/")) {
    if (seg === "" || seg === "." || seg === ".." || !SEGMENT.test(seg)) {
      throw new Error(
        `prefix ${JSON.stringify(rawPrefix)} of ${
          JSON.stringify(url)
        }: segments must be non-empty and use only A-Z a-z 0-9 . _ - (bad: ${JSON.stringify(seg)})`,
      );
    }
  }
  return { endpoints, prefix: trimmed };
}
