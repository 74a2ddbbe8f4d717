/**
 * Traffic capture with nftables: one table of the agent's own, `inet meshd` (IPv4 and IPv6 in
 * one), loaded whole with `nft -f -` so it is installed, replaced and removed in one transaction.
 * Mesh addresses and inbound ports are named sets, so an update changes only set elements, also
 * in one transaction.
 *
 * Outbound (nat output): excluded uids pass; DNS to port 53 (IPv4 and IPv6) goes to the DNS proxy; loopback
 * destinations, excluded ports (and the proxy's own), excluded CIDRs pass; then TCP to mesh
 * addresses ("mesh") or all TCP ("all") goes to the outbound port. Inbound (nat prerouting): TCP
 * to a local address on an inbound port goes to the inbound port.
 *
 * @module
 */
import type { CapturePlan, CaptureTargets, CidrSets } from "./capture_plan.ts";
import { type CommandRunner, runChecked } from "./command.ts";

/** The family and name of the agent's table. */
export const NFT_TABLE = "inet meshd";

/** Clears the table if it exists: adding an existing table is a no-op, so this never fails. */
const DROP_TABLE = `add table ${NFT_TABLE}\ndelete table ${NFT_TABLE}\n`;

function set(name: string, type: string, elements: readonly (string | number)[], interval = false): string {
  const flags = interval ? " flags interval; auto-merge;" : "";
  const els = elements.length > 0 ? ` elements = { ${elements.join(", ")} }` : "";
  return `\tset ${name} { type ${type};${flags}${els} }\n`;
}

function outputRules(p: CapturePlan): string[] {
  const to = `redirect to :${p.outboundPort}`;
  return [
    "meta skuid @exclude_uids return",
    // Both families: IPv4 DNS is redirected to 127.0.0.1, IPv6 DNS to ::1, where the proxy also listens.
    ...(p.captureDns ? ["udp", "tcp"].map((proto) => `${proto} dport 53 redirect to :${p.dnsPort}`) : []),
    "ip daddr 127.0.0.0/8 return",
    "ip6 daddr ::1 return",
    "tcp dport @exclude_ports return",
    "ip daddr @exclude_v4 return",
    "ip6 daddr @exclude_v6 return",
    ...(p.mode === "all"
      ? [`meta l4proto tcp ${to}`]
      : [`ip daddr @mesh_v4 meta l4proto tcp ${to}`, `ip6 daddr @mesh_v6 meta l4proto tcp ${to}`]),
  ];
}

function chain(name: string, hook: string, rules: readonly string[]): string {
  const body = rules.map((r) => `\t\t${r}\n`).join("");
  return `\tchain ${name} {\n\t\ttype nat hook ${hook} priority -100; policy accept;\n${body}\t}\n`;
}

function targetSets(t: CaptureTargets): string {
  return set("mesh_v4", "ipv4_addr", t.meshCidrs.v4, true) +
    set("mesh_v6", "ipv6_addr", t.meshCidrs.v6, true) +
    set("inbound_ports", "inet_service", t.inboundPorts);
}

/** The whole nft script that replaces the agent's table (any leftover) with the given capture. */
export function nftRuleset(p: CapturePlan, t: CaptureTargets): string {
  const ex: CidrSets = p.excludeCidrs;
  return DROP_TABLE + `table ${NFT_TABLE} {\n` +
    set("exclude_uids", "uid", p.excludeUids) +
    set("exclude_ports", "inet_service", p.excludePorts) +
    set("exclude_v4", "ipv4_addr", ex.v4, true) +
    set("exclude_v6", "ipv6_addr", ex.v6, true) +
    targetSets(t) +
    chain("output", "output", outputRules(p)) +
    chain("prerouting", "prerouting", [
      `fib daddr type local tcp dport @inbound_ports redirect to :${p.inboundPort}`,
    ]) +
    "}\n";
}

/** The nft script that replaces the elements of the mesh address and inbound port sets. */
export function nftSetUpdate(t: CaptureTargets): string {
  const fill = (name: string, els: readonly (string | number)[]) =>
    `flush set ${NFT_TABLE} ${name}\n` +
    (els.length > 0 ? `add element ${NFT_TABLE} ${name} { ${els.join(", ")} }\n` : "");
  return fill("mesh_v4", t.meshCidrs.v4) + fill("mesh_v6", t.meshCidrs.v6) +
    fill("inbound_ports", t.inboundPorts);
}

/** Whether nftables works here (the tool is installed and the kernel answers). */
export async function nftAvailable(exec: CommandRunner): Promise<boolean> {
  return (await exec(["nft", "list", "tables"])).code === 0;
}

/** Installs (atomically replacing any leftover table). */
export async function nftInstall(exec: CommandRunner, p: CapturePlan, t: CaptureTargets): Promise<void> {
  await runChecked(exec, ["nft", "-f", "-"], nftRuleset(p, t));
}

/** Changes the sets' elements in one transaction. */
export async function nftUpdate(exec: CommandRunner, t: CaptureTargets): Promise<void> {
  await runChecked(exec, ["nft", "-f", "-"], nftSetUpdate(t));
}

/**
 * Removes the agent's table. Idempotent; true when a table was there. Does nothing (false) when
 * there is none, or nft is not installed or does not work here.
 */
export async function nftRemove(exec: CommandRunner): Promise<boolean> {
  const listed = await exec(["nft", "list", "table", ...NFT_TABLE.split(" ")]);
  if (listed.code !== 0) return false;
  await runChecked(exec, ["nft", "-f", "-"], DROP_TABLE);
  return true;
}
