/**
 * The machine's resolvers, read from /etc/resolv.conf (resolv.conf(5)): its `nameserver` lines
 * and its search list, which the DNS proxy forwards to when a name is not the mesh's.
 *
 * @module
 */
import { readFile } from "node:fs/promises";
import { isIP } from "node:net";

/** What the DNS proxy needs from resolv.conf. */
export interface ResolvConf {
  /** Nameserver addresses, in file order (IPv6 link-local zone ids kept). */
  readonly nameservers: readonly string[];
  /** The search list (`search`, or `domain` when it comes last), lower case, no trailing dot. */
  readonly search: readonly string[];
}

/** Where the machine's resolver configuration lives. */
export const RESOLV_CONF = "/etc/resolv.conf";

/** Parses resolv.conf text; lines it does not know or cannot read are skipped. */
export function parseResolvConf(text: string): ResolvConf {
  const nameservers: string[] = [];
  let search: string[] = [];
  for (const raw of text.split("\n")) {
    const [key, ...args] = raw.replace(/[#;].*$/, "").trim().split(/\s+/);
    if (key === "nameserver" && args[0] !== undefined && isIP(args[0].split("%")[0]!) !== 0) {
      nameservers.push(args[0]);
    } else if (key === "search" || key === "domain") {
      search = args.filter((a) => a !== "").map((a) => a.toLowerCase().replace(/\.$/, ""));
    }
  }
  return { nameservers, search };
}

/** Reads and parses `path` (default /etc/resolv.conf); throws naming the file when it cannot be read. */
export async function readResolvConf(path = RESOLV_CONF): Promise<ResolvConf> {
  let text: string;
  try {
    text = await readFile(path, "utf8");
  } catch (err) {
    throw new Error(`${path}: cannot read the resolver configuration: ${(err as Error).message}`);
  }
  return parseResolvConf(text);
}
