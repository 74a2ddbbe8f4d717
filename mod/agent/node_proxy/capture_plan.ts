/**
 * What traffic capture installs, checked and normalised once before any backend (nftables,
 * iptables) renders it: the options of `installCapture` become a `CapturePlan` (what never
 * changes while the agent runs) and `CaptureTargets` (mesh addresses and inbound ports, which
 * follow the view). CIDRs are split by family, host bits cleared, sorted and deduplicated, so two
 * equal inputs render the same rules.
 *
 * @module
 */
import { isIPv4, isIPv6 } from "node:net";
import type { Logger } from "../../shared/logger.ts";
import type { CommandRunner } from "./command.ts";

/** Options of installCapture (the contract of issue "node proxy"). */
export interface CaptureOptions {
  /** "mesh": TCP to mesh addresses only; "all": every outbound TCP; "none": nothing. */
  mode: "mesh" | "all" | "none";
  /** "auto" (the default) takes nftables when `nft` works here, iptables otherwise. */
  backend?: "auto" | "nft" | "iptables";
  outboundPort: number;
  inboundPort: number;
  dnsPort: number;
  tunnelPort: number;
  /** Processes of these uids are never captured (the agent's own among them). */
  excludeUids: number[];
  /** Outbound TCP to these destination ports is never captured. */
  excludePorts: number[];
  /** Outbound traffic to these addresses or CIDRs is never captured. */
  excludeCidrs: string[];
  /** Service ports whose inbound TCP goes to `inboundPort` (0, the view's default rule, is ignored). */
  inboundPorts: number[];
  /** Addresses (VIPs and endpoint addresses) or CIDRs captured in "mesh" mode. */
  meshCidrs: string[];
  /** Redirect DNS (UDP and TCP port 53, IPv4 and IPv6) to `dnsPort` on 127.0.0.1 and ::1. */
  captureDns: boolean;
  logger: Logger;
  /** Runs the firewall tools; defaults to running them on this machine. */
  exec?: CommandRunner;
}

/** CIDRs split by address family, normalised. */
export interface CidrSets {
  readonly v4: readonly string[];
  readonly v6: readonly string[];
}

/** The part of the capture that stays fixed while it is installed. */
export interface CapturePlan {
  readonly mode: "mesh" | "all";
  readonly outboundPort: number;
  readonly inboundPort: number;
  readonly dnsPort: number;
  readonly tunnelPort: number;
  readonly excludeUids: readonly number[];
  /** The given excluded ports plus the proxy's own four, sorted. */
  readonly excludePorts: readonly number[];
  readonly excludeCidrs: CidrSets;
  readonly captureDns: boolean;
}

/** The part of the capture that `Capture.update` changes. */
export interface CaptureTargets {
  /** Sorted, without 0 and without the proxy's own ports. */
  readonly inboundPorts: readonly number[];
  readonly meshCidrs: CidrSets;
}

const sortNumbers = (xs: Iterable<number>): number[] => [...new Set(xs)].sort((a, b) => a - b);

function checkPort(field: string, p: unknown): number {
  if (typeof p !== "number" || !Number.isInteger(p) || p < 1 || p > 65535) {
    throw new Error(`capture: ${field}: ${JSON.stringify(p)} is not a port (1-65535)`);
  }
  return p;
}

function v6ToBigInt(addr: string): bigint {
  let text = addr;
  const v4 = /(\d+\.\d+\.\d+\.\d+)$/.exec(text);
  if (v4) {
    const b = v4[1]!.split(".").map(Number);
    text = text.slice(0, v4.index) +
      `${((b[0]! << 8) | b[1]!).toString(16)}:${((b[2]! << 8) | b[3]!).toString(16)}`;
  }
  const [head, tail] = text.split("::") as [string, string | undefined];
  const hs = head === "" ? [] : head.split(":");
  const ts = tail === undefined || tail === "" ? [] : tail.split(":");
  const groups = tail === undefined ? hs : [...hs, ...Array(8 - hs.length - ts.length).fill("0"), ...ts];
  return groups.reduce((acc, g) => (acc << 16n) | BigInt(parseInt(g, 16)), 0n);
}

function bigIntToV6(n: bigint): string {
  return Array.from({ length: 8 }, (_, i) => ((n >> BigInt(16 * (7 - i))) & 0xffffn).toString(16)).join(":");
}

/**
 * Parses an address or CIDR into its family and normalised text (host bits cleared; a single
 * address without a prefix length), or throws naming `field`.
 */
export function normaliseCidr(field: string, text: string): { family: 4 | 6; cidr: string } {
  const bad = () => new Error(`capture: ${field}: ${JSON.stringify(text)} is not an IP address or CIDR`);
  if (typeof text !== "string") throw bad();
  const [addr, len, extra] = text.trim().split("/");
  if (extra !== undefined || addr === undefined) throw bad();
  const family = isIPv4(addr) ? 4 : isIPv6(addr) && !addr.includes("%") ? 6 : undefined;
  if (family === undefined) throw bad();
  const bits = family === 4 ? 32 : 128;
  if (len !== undefined && !/^\d{1,3}$/.test(len)) throw bad();
  const prefix = len === undefined ? bits : Number(len);
  if (prefix > bits) throw bad();
  if (family === 4) {
    const n = addr.split(".").reduce((acc, o) => acc * 256 + Number(o), 0);
    const size = 2 ** (32 - prefix);
    const masked = n - (n % size);
    const dotted = [24, 16, 8, 0].map((s) => Math.floor(masked / 2 ** s) % 256).join(".");
    return { family, cidr: prefix === 32 ? dotted : `${dotted}/${prefix}` };
  }
  const mask = prefix === 0 ? 0n : ((1n << 128n) - 1n) ^ ((1n << BigInt(128 - prefix)) - 1n);
  const v6 = bigIntToV6(v6ToBigInt(addr) & mask);
  return { family, cidr: prefix === 128 ? v6 : `${v6}/${prefix}` };
}

/** Splits and normalises a list of addresses or CIDRs; errors name `field[i]`. */
export function cidrSets(field: string, list: readonly string[]): CidrSets {
  if (!Array.isArray(list)) throw new Error(`capture: ${field}: want a list of addresses or CIDRs`);
  const v4 = new Set<string>();
  const v6 = new Set<string>();
  list.forEach((c, i) => {
    const n = normaliseCidr(`${field}[${i}]`, c);
    (n.family === 4 ? v4 : v6).add(n.cidr);
  });
  return { v4: [...v4].sort(), v6: [...v6].sort() };
}

/** The proxy's own ports, which are never captured. */
function ownPorts(p: Pick<CapturePlan, "outboundPort" | "inboundPort" | "dnsPort" | "tunnelPort">): number[] {
  return [p.outboundPort, p.inboundPort, p.dnsPort, p.tunnelPort];
}

/** Checks and normalises the options that stay fixed; throws naming the field that is wrong. */
export function capturePlan(o: Omit<CaptureOptions, "mode"> & { mode: "mesh" | "all" }): CapturePlan {
  if (o.mode !== "mesh" && o.mode !== "all") {
    throw new Error(`capture: mode: ${JSON.stringify(o.mode)} is not one of mesh, all, none`);
  }
  const ports = {
    outboundPort: checkPort("outboundPort", o.outboundPort),
    inboundPort: checkPort("inboundPort", o.inboundPort),
    dnsPort: checkPort("dnsPort", o.dnsPort),
    tunnelPort: checkPort("tunnelPort", o.tunnelPort),
  };
  const uids = (o.excludeUids ?? []).map((u, i) => {
    if (!Number.isInteger(u) || u < 0 || u > 0xffffffff) {
      throw new Error(`capture: excludeUids[${i}]: ${JSON.stringify(u)} is not a uid`);
    }
    return u;
  });
  const excludePorts = (o.excludePorts ?? []).map((p, i) => checkPort(`excludePorts[${i}]`, p));
  return {
    mode: o.mode,
    ...ports,
    excludeUids: sortNumbers(uids),
    excludePorts: sortNumbers([...excludePorts, ...ownPorts(ports)]),
    excludeCidrs: cidrSets("excludeCidrs", o.excludeCidrs ?? []),
    captureDns: o.captureDns === true,
  };
}

/** Checks and normalises what `update` changes; the proxy's own ports and 0 are left out. */
export function captureTargets(
  plan: CapturePlan,
  o: { inboundPorts: readonly number[]; meshCidrs: readonly string[] },
): CaptureTargets {
  const own = new Set(ownPorts(plan));
  const inbound = (o.inboundPorts ?? []).filter((p) => p !== 0).map((p, i) =>
    checkPort(`inboundPorts[${i}]`, p)
  );
  return {
    inboundPorts: sortNumbers(inbound.filter((p) => !own.has(p))),
    meshCidrs: cidrSets("meshCidrs", o.meshCidrs ?? []),
  };
}

/** Whether two targets render the same rules. */
export function sameTargets(a: CaptureTargets, b: CaptureTargets): boolean {
  return JSON.stringify(a) === JSON.stringify(b);
}
