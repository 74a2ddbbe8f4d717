/**
 * Traffic capture with iptables, for machines without nftables: the same rules as
 * capture_nft.ts in chains of the agent's own in the nat table (MESHD_OUTPUT, MESHD_PREROUTING),
 * jumped to from OUTPUT and PREROUTING, for IPv4 (iptables) and IPv6 (ip6tables, skipped with a
 * warning where it is not installed). One rule per CIDR and port, no ipset. Everything goes
 * through `iptables-restore --noflush` in one transaction per family: declaring a chain there
 * empties it, so an update rewrites both chains atomically, and removal takes the jumps and the
 * chains away together.
 *
 * @module
 */
import type { Logger } from "../../shared/logger.ts";
import type { CapturePlan, CaptureTargets } from "./capture_plan.ts";
import { CommandError, type CommandRunner, NOT_STARTED, runChecked } from "./command.ts";

/** The agent's chains in the nat table. */
export const IPTABLES_CHAINS = { output: "MESHD_OUTPUT", prerouting: "MESHD_PREROUTING" } as const;
const PREFIX = "MESHD_";

/** One address family's tools. */
export interface IptablesFamily {
  readonly family: 4 | 6;
  readonly save: string;
  readonly restore: string;
  readonly loopback: string;
}

/** IPv4 and IPv6. */
export const IPTABLES_FAMILIES: readonly IptablesFamily[] = [
  { family: 4, save: "iptables-save", restore: "iptables-restore", loopback: "127.0.0.0/8" },
  { family: 6, save: "ip6tables-save", restore: "ip6tables-restore", loopback: "::1/128" },
];

function outputRules(f: IptablesFamily, p: CapturePlan, t: CaptureTargets): string[] {
  const c = `-A ${IPTABLES_CHAINS.output}`;
  const to = `-j REDIRECT --to-ports ${p.outboundPort}`;
  const v = (s: { v4: readonly string[]; v6: readonly string[] }) => (f.family === 4 ? s.v4 : s.v6);
  return [
    ...p.excludeUids.map((u) => `${c} -m owner --uid-owner ${u} -j RETURN`),
    // Both families: REDIRECT sends IPv4 DNS to 127.0.0.1 and IPv6 DNS to ::1, where the proxy also listens.
    ...(p.captureDns
      ? ["udp", "tcp"].map((proto) => `${c} -p ${proto} --dport 53 -j REDIRECT --to-ports ${p.dnsPort}`)
      : []),
    `${c} -d ${f.loopback} -j RETURN`,
    ...p.excludePorts.map((port) => `${c} -p tcp --dport ${port} -j RETURN`),
    ...v(p.excludeCidrs).map((cidr) => `${c} -d ${cidr} -j RETURN`),
    ...(p.mode === "all"
      ? [`${c} -p tcp ${to}`]
      : v(t.meshCidrs).map((cidr) => `${c} -p tcp -d ${cidr} ${to}`)),
  ];
}

function preroutingRules(p: CapturePlan, t: CaptureTargets): string[] {
  return t.inboundPorts.map((port) =>
    `-A ${IPTABLES_CHAINS.prerouting} -p tcp --dport ${port} -m addrtype --dst-type LOCAL ` +
    `-j REDIRECT --to-ports ${p.inboundPort}`
  );
}

/**
 * The iptables-restore input (for `--noflush`) that fills the agent's chains for family `f`,
 * and with `jumps` adds the jumps from OUTPUT and PREROUTING (install, after leftovers are gone).
 */
export function iptablesRules(f: IptablesFamily, p: CapturePlan, t: CaptureTargets, jumps: boolean): string {
  const { output, prerouting } = IPTABLES_CHAINS;
  return [
    "*nat",
    `:${output} - [0:0]`,
    `:${prerouting} - [0:0]`,
    ...outputRules(f, p, t),
    ...preroutingRules(p, t),
    ...(jumps ? [`-A OUTPUT -j ${output}`, `-A PREROUTING -j ${prerouting}`] : []),
    "COMMIT",
    "",
  ].join("\n");
}

/**
 * The iptables-restore input (for `--noflush`) that removes every jump to a MESHD_ chain and
 * every MESHD_ chain found in `saved` (iptables-save's nat table), or undefined when there is none.
 */
export function iptablesRemoval(saved: string): string | undefined {
  const lines = saved.split("\n");
  const chains = lines.filter((l) => l.startsWith(`:${PREFIX}`)).map((l) => l.slice(1).split(" ")[0]!);
  const jumps = lines.filter((l) =>
    /^-A \S+ /.test(l) && !l.startsWith(`-A ${PREFIX}`) && l.includes(`-j ${PREFIX}`)
  );
  if (chains.length === 0 && jumps.length === 0) return undefined;
  return [
    "*nat",
    ...jumps.map((l) => l.replace(/^-A /, "-D ")),
    ...chains.map((c) => `-F ${c}`),
    ...chains.map((c) => `-X ${c}`),
    "COMMIT",
    "",
  ].join("\n");
}

/** The families whose tools are installed (IPv4 is required; IPv6 is skipped with a warning). */
export async function iptablesFamilies(exec: CommandRunner, logger: Logger): Promise<IptablesFamily[]> {
  const found: IptablesFamily[] = [];
  for (const f of IPTABLES_FAMILIES) {
    const r = await exec([f.restore, "--version"]);
    if (r.code === 0) found.push(f);
    else if (f.family === 4) {
      throw new Error(`capture: ${f.restore} is not usable here: ${r.stderr.trim() || r.code}`);
    } else logger.warn("ip6tables not available; IPv6 traffic is not captured", { error: r.stderr.trim() });
  }
  return found;
}

/** Fills the chains of every family (with the jumps on install). */
export async function iptablesApply(
  exec: CommandRunner,
  families: readonly IptablesFamily[],
  p: CapturePlan,
  t: CaptureTargets,
  jumps: boolean,
): Promise<void> {
  for (const f of families) await runChecked(exec, [f.restore, "--noflush"], iptablesRules(f, p, t, jumps));
}

/**
 * Removes the agent's chains and jumps in both families. Idempotent; true when anything was
 * there. A family whose tools are missing, or whose nat table does not exist, has nothing to remove.
 */
export async function iptablesRemove(exec: CommandRunner): Promise<boolean> {
  let removed = false;
  for (const f of IPTABLES_FAMILIES) {
    const saved = await exec([f.save, "-t", "nat"]);
    if (
      saved.code === NOT_STARTED || /does not exist|can't initialize|cannot initialize/i.test(saved.stderr)
    ) continue;
    if (saved.code !== 0) throw new CommandError([f.save, "-t", "nat"], saved);
    const script = iptablesRemoval(saved.stdout);
    if (script === undefined) continue;
    await runChecked(exec, [f.restore, "--noflush"], script);
    removed = true;
  }
  return removed;
}
