/**
 * Virtual IP auto-allocation, Istio's DNS auto-allocation rules: a ServiceEntry host that
 * declares no address, is not a wildcard and whose resolution is not NONE gets a virtual IP
 * from MeshConfig `autoAllocateVipRange`, so node proxies can answer DNS for it and capture the
 * traffic sent to it.
 *
 * Allocation is deterministic: the same services give the same addresses whatever order they
 * arrived in. Hosts are taken in sorted order (`NAMESPACE/HOST`); each starts at a slot given by
 * a hash of its key and probes forward past slots already taken (by a declared address inside
 * the range or by an earlier host). The range's first and last addresses are never used.
 *
 * @module
 */
import type { Service } from "./service.ts";

/** The key of a service in an allocation: `NAMESPACE/HOST`. */
export function vipKey(service: Pick<Service, "namespace" | "hostname">): string {
  return `${service.namespace}/${service.hostname}`;
}

/** Whether a service gets an allocated virtual IP (Istio's rules, see the module notes). */
export function needsVip(service: Pick<Service, "addresses" | "hostname" | "resolution">): boolean {
  return service.addresses.length === 0 && service.resolution !== "NONE" && !service.hostname.includes("*");
}

/** An IPv4 range as its first address (a 32-bit number) and its size. */
interface Range {
  readonly base: number;
  readonly size: number;
}

function ipv4ToNumber(text: string): number | undefined {
  const parts = text.split(".");
  if (parts.length !== 4) return undefined;
  let n = 0;
  for (const p of parts) {
    if (!/^\d{1,3}$/.test(p) || Number(p) > 255) return undefined;
    n = n * 256 + Number(p);
  }
  return n;
}

function numberToIpv4(n: number): string {
  return [n >>> 24, (n >>> 16) & 255, (n >>> 8) & 255, n & 255].join(".");
}

/** Reads "A.B.C.D/N" (N at most 30). Throws naming the setting when it is not one. */
export function parseVipRange(cidr: string): Range {
  const [ip, bitsText] = cidr.split("/");
  const addr = ipv4ToNumber(ip ?? "");
  const bits = Number(bitsText);
  if (addr === undefined || bitsText === undefined || !Number.isInteger(bits) || bits < 0 || bits > 30) {
    throw new Error(
      `MeshConfig autoAllocateVipRange ${
        JSON.stringify(cidr)
      }: want an IPv4 CIDR block of at least 4 addresses`,
    );
  }
  const size = 2 ** (32 - bits);
  return { base: addr - (addr % size), size };
}

/** FNV-1a, 32 bits: a stable hash of a key. */
function fnv1a(text: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < text.length; i++) {
    h ^= text.charCodeAt(i);
    h = Math.imul(h, 0x01000193) >>> 0;
  }
  return h;
}

/**
 * The virtual IPs of every service that needs one ({@link needsVip}), by {@link vipKey}, from
 * `range` (an IPv4 CIDR). Declared addresses are never handed out. Services beyond the range's
 * capacity get none. Pure and order-independent.
 */
export function allocateVips(services: readonly Service[], range: string): ReadonlyMap<string, string> {
  const { base, size } = parseVipRange(range);
  const slots = size - 2;
  const taken = new Set<number>();
  for (const s of services) {
    for (const a of s.addresses) {
      const n = ipv4ToNumber(a);
      if (n !== undefined && n > base && n < base + size - 1) taken.add(n - base - 1);
    }
  }
  const keys = [...new Set(services.filter(needsVip).map(vipKey))].sort();
  const out = new Map<string, string>();
  for (const key of keys) {
    if (taken.size >= slots) break;
    let slot = fnv1a(key) % slots;
    while (taken.has(slot)) slot = (slot + 1) % slots;
    taken.add(slot);
    out.set(key, numberToIpv4(base + 1 + slot));
  }
  return out;
}
