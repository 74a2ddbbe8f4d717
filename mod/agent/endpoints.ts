/**
 * The replicas of one control-plane address setting (`--discovery-addr`, `--ca-tls-addr`): a
 * comma list of HOST:PORT, where a host name resolving to several addresses counts as several.
 * Names are resolved when their turn comes (node:dns `lookup(..., {all: true})`), so a DNS
 * change is seen on the next round.
 *
 * The first listed address is tried first (the list's order is the operator's preference), and
 * the current address is kept while it works. When a call to it fails with a network-class
 * error, the caller asks `failed()` and tries the next address at once; once every address has
 * failed since the last success, `failed()` says so and the caller waits its backoff before the
 * next round. The TLS name to verify stays the configured host name, not the address dialled.
 *
 * @module
 */
import { lookup } from "node:dns/promises";
import { isIP } from "node:net";
import { splitAddrList, splitHostPort } from "../cli/setting.ts";
import { UsageError } from "../shared/errors.ts";

/** One address to dial. */
export interface Endpoint {
  /** The configured HOST:PORT it came from. */
  readonly addr: string;
  /** IP:PORT (or [IPv6]:PORT) to connect to. */
  readonly dialAddr: string;
  /** The configured host when it is a name: the name its server certificate must carry. */
  readonly serverName?: string;
}

/** Resolves a host name to all its addresses. */
export type LookupAll = (host: string) => Promise<readonly string[]>;

/** Options for createEndpoints. */
export interface EndpointsOptions {
  /** Default: node:dns lookup with `{all: true}`. */
  readonly lookup?: LookupAll;
}

/** A rotation over the replicas of one address setting. Not shared between concurrent loops. */
export interface Endpoints {
  /** The configured HOST:PORT items. */
  readonly addrs: readonly string[];
  /** The address to try now (resolving its host when its turn comes). Throws when lookup fails. */
  current(): Promise<Endpoint>;
  /**
   * Moves to the next address after a network-class failure of the current one (or of its
   * lookup). Returns true when every address has failed since the last success: wait the
   * backoff before trying again.
   */
  failed(): boolean;
  /** Records that the current address answered. */
  succeeded(): void;
}

/**
 * Parses a comma list of HOST:PORT. Throws a UsageError naming `flag` ("--discovery-addr
 * (PILOT_ADDRESS)") and the bad item.
 */
export function parseAddrList(text: string, flag: string): string[] {
  try {
    return splitAddrList(text);
  } catch (err) {
    throw new UsageError(`${flag}: ${(err as Error).message}`);
  }
}

/** HOST:PORT with brackets around an IPv6 host. */
function dialAddress(ip: string, port: number): string {
  return isIP(ip) === 6 ? `[${ip}]:${port}` : `${ip}:${port}`;
}

const dnsLookupAll: LookupAll = async (host) => (await lookup(host, { all: true })).map((a) => a.address);

/** Creates the rotation over `addrs` (already parsed by parseAddrList). */
export function createEndpoints(addrs: readonly string[], opts: EndpointsOptions = {}): Endpoints {
  if (addrs.length === 0) throw new Error("createEndpoints: want at least one address");
  const resolve = opts.lookup ?? dnsLookupAll;
  let entry = 0;
  /** The current entry's addresses, once resolved, and which of them is current. */
  let resolved: readonly Endpoint[] | undefined;
  let index = 0;
  /** Entries whose every address failed since the last success. */
  let failedEntries = 0;

  async function resolveEntry(addr: string): Promise<Endpoint[]> {
    const hp = splitHostPort(addr);
    if (hp === undefined) throw new Error(`want HOST:PORT, got ${JSON.stringify(addr)}`);
    if (isIP(hp.host) !== 0) return [{ addr, dialAddr: dialAddress(hp.host, hp.port) }];
    const ips = await resolve(hp.host);
    if (ips.length === 0) throw new Error(`${hp.host} resolves to no address`);
    return ips.map((ip) => ({ addr, dialAddr: dialAddress(ip, hp.port), serverName: hp.host }));
  }

  return {
    addrs,
    async current() {
      const addr = addrs[entry]!;
      resolved ??= await resolveEntry(addr);
      return resolved[index]!;
    },
    failed() {
      if (resolved !== undefined && index + 1 < resolved.length) {
        index++;
        return false;
      }
      entry = (entry + 1) % addrs.length;
      resolved = undefined;
      index = 0;
      failedEntries++;
      if (failedEntries < addrs.length) return false;
      failedEntries = 0;
      return true;
    },
    succeeded() {
      failedEntries = 0;
    },
  };
}
