/**
 * The names in the certificate of the CA's TLS port (15012), computed in one place for the
 * daemon that issues the certificate and for `meshd vm bundle`, which must hand a VM an address
 * that certificate covers: the configured DNS names, 127.0.0.1 and ::1, every non-loopback
 * address of the host (both families; IPv6 link-local fe80::/10 is left out, a VM cannot use it
 * without a zone), and the configured extra IPs (an address behind NAT, a load balancer's).
 *
 * The daemon keeps the certificate it serves in `--data-dir` ({@link SERVER_CERT_FILE}), so the
 * bundle command checks against what is really served, not against what it guesses.
 *
 * @module
 */
import { existsSync, readFileSync } from "node:fs";
import { isIP, isIPv6 } from "node:net";
import { networkInterfaces } from "node:os";
import { join } from "node:path";
import { pemDecodeOne } from "./pem.ts";
import { certificateNames, ipBytes, parseCertificate, type SubjectAltName } from "./x509.ts";

/** The file under `--data-dir` holding the TLS port's current certificate (PEM, public). */
export const SERVER_CERT_FILE = "ca-server-cert.pem";

/** The default of `--ca-server-dns-names`. */
export const DEFAULT_SERVER_DNS_NAMES: readonly string[] = ["meshd", "meshd.istio-system.svc", "localhost"];

/** The loopback addresses every server certificate names. */
const LOOPBACK = ["127.0.0.1", "::1"];

/** What os.networkInterfaces() returns. */
export type Interfaces = ReturnType<typeof networkInterfaces>;

/** The DNS names and IPs of a certificate. */
export interface ServerNames {
  readonly dns: readonly string[];
  readonly ips: readonly string[];
}

/** Same address, whatever its spelling ("::1" and "0:0:0:0:0:0:0:1" are one). */
function ipKey(ip: string): string {
  return Buffer.from(ipBytes(ip)).toString("hex");
}

/** The usual spelling of an address ("::1" for the "0:0:0:0:0:0:0:1" a certificate decodes to). */
function ipText(ip: string): string {
  return isIPv6(ip) ? new URL(`http://[${ip}]/`).hostname.slice(1, -1) : ip;
}

function isLinkLocalV6(ip: string): boolean {
  const b = ipBytes(ip);
  return b.length === 16 && b[0] === 0xfe && (b[1]! & 0xc0) === 0x80;
}

/** The host's non-loopback interface addresses, both families, without IPv6 link-local ones. */
export function hostAddresses(ifaces: Interfaces = networkInterfaces()): string[] {
  const out: string[] = [];
  for (const list of Object.values(ifaces)) {
    for (const a of list ?? []) {
      const ip = a.address.split("%")[0]!;
      if (a.internal || isIP(ip) === 0 || isLinkLocalV6(ip)) continue;
      out.push(ip);
    }
  }
  return out;
}

/**
 * Checks the values of an IP list setting; returns them. Throws an Error naming `flag` and the
 * first value that is not an IPv4 or IPv6 address.
 */
export function checkIpList(values: readonly string[], flag: string): string[] {
  for (const v of values) {
    if (isIP(v) === 0) {
      throw new Error(`${flag}: ${JSON.stringify(v)} is not an IP address (want a comma list of IPv4/IPv6)`);
    }
  }
  return [...values];
}

/** Options for serverCertNames. */
export interface ServerNameOptions {
  /** `--ca-server-dns-names`. */
  readonly dnsNames: readonly string[];
  /** `--ca-server-ips`, already checked. */
  readonly ips: readonly string[];
  /** The host's interfaces (default: os.networkInterfaces() now). */
  readonly interfaces?: Interfaces;
}

/**
 * The subject alternative names of the TLS port's certificate: the DNS names, then every IP
 * (loopback, the host's addresses, the extra ones) once, in that order.
 */
export function serverCertNames(opts: ServerNameOptions): SubjectAltName[] {
  const seen = new Set<string>();
  const ips: SubjectAltName[] = [];
  for (const ip of [...LOOPBACK, ...hostAddresses(opts.interfaces), ...opts.ips]) {
    const k = ipKey(ip);
    if (!seen.has(k)) {
      seen.add(k);
      ips.push({ type: "ip", value: ip });
    }
  }
  return [...[...new Set(opts.dnsNames)].map((value) => ({ type: "dns" as const, value })), ...ips];
}

/** The DNS names and IPs among subject alternative names. */
export function serverNamesOf(names: readonly SubjectAltName[]): ServerNames {
  return {
    dns: names.filter((n) => n.type === "dns").map((n) => n.value),
    ips: names.filter((n) => n.type === "ip").map((n) => n.value),
  };
}

/**
 * Whether a certificate with these names verifies for `host` (an IP literal or a DNS name) the
 * way TLS clients check it: an IP must be named as an IP; a DNS name matches case-insensitively,
 * or a wildcard `*.rest` matches exactly one leftmost label.
 */
export function namesCover(names: ServerNames, host: string): boolean {
  if (isIP(host) !== 0) {
    const k = ipKey(host);
    return names.ips.some((ip) => isIP(ip) !== 0 && ipKey(ip) === k);
  }
  const h = host.toLowerCase().replace(/\.$/, "");
  return names.dns.some((d) => {
    const n = d.toLowerCase().replace(/\.$/, "");
    if (!n.startsWith("*.")) return n === h;
    const dot = h.indexOf(".");
    return dot > 0 && h.slice(dot + 1) === n.slice(2);
  });
}

/**
 * The names of the certificate the daemon with this `--data-dir` serves on its TLS port, read
 * from {@link SERVER_CERT_FILE}; undefined when the daemon has not recorded one. Throws, naming
 * the file, when it cannot be read or parsed.
 */
export function readServedNames(dataDir: string): ServerNames | undefined {
  const file = join(dataDir, SERVER_CERT_FILE);
  if (!existsSync(file)) return undefined;
  try {
    const names = certificateNames(
      parseCertificate(pemDecodeOne(readFileSync(file, "utf8"), ["CERTIFICATE"])),
    );
    return { dns: names.dns, ips: names.ips.map(ipText) };
  } catch (err) {
    throw new Error(`${file}: not a readable certificate: ${(err as Error).message}`);
  }
}
