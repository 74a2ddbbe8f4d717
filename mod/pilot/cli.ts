/**
 * `meshd proxy-status` and `meshd proxy-config`: what a running meshd serves its proxies, and
 * how its VM agents' auto-registrations and its platform registries (`--registry`) stand.
 */
import { getAdminJson } from "../cli/admin_client.ts";
import type { Command } from "../cli/command.ts";
import type { SettingSpec } from "../cli/setting.ts";
import { UsageError } from "../shared/errors.ts";
import type { RegistrationStatus } from "./autoregister.ts";
import type { RegistryStatus } from "./registry/mod.ts";
import type { ProxySync } from "./xds/sync_status.ts";

const ADMIN: SettingSpec = {
  name: "admin-addr",
  kind: { type: "addr" },
  default: "127.0.0.1:15014",
  help: "admin address of the daemon",
};
const OUTPUT: SettingSpec = {
  name: "output",
  short: "o",
  kind: { type: "enum", values: ["short", "json"] },
  default: "short",
  help: "output format",
  flagOnly: true,
};

/** Renders rows as left-aligned columns. */
export function table(rows: readonly (readonly string[])[]): string {
  const widths = rows[0]!.map((_, i) => Math.max(...rows.map((r) => (r[i] ?? "").length)));
  return rows.map((r) =>
    r.map((c, i) => (i === r.length - 1 ? c : c.padEnd(widths[i]! + 3))).join("").trimEnd()
  ).join("\n") + "\n";
}

/** An agent's registration as one cell: REGISTERED, PENDING (why) or REFUSED: why. */
function registrationCell(r: RegistrationStatus): string {
  const gone = r.connections === 0 && r.disconnectedAt ? " (disconnected)" : "";
  if (r.state === "REFUSED") return `REFUSED: ${r.reason ?? ""}`;
  if (r.state === "PENDING") return `PENDING (${r.reason ?? ""})${gone}`;
  return `REGISTERED${gone}`;
}

/** An agent's health as one cell: the probe's last result. */
function healthCell(r: RegistrationStatus): string {
  if (r.state === "REFUSED") return "-";
  if (!r.hasProbe) return "HEALTHY (no probe)";
  return r.healthy ? "HEALTHY" : `UNHEALTHY (${r.message ?? ""})`;
}

/** The agents section of proxy-status: one row per node id of each registration. */
function agentRows(regs: readonly RegistrationStatus[]): string[][] {
  const rows = [["VM AGENT", "GROUP", "REGISTRATION", "WORKLOAD ENTRY", "ADDRESS", "HEALTH"]];
  for (const r of regs) {
    for (const node of r.nodes.length > 0 ? r.nodes : ["-"]) {
      rows.push([node, r.group, registrationCell(r), r.workload, r.address, healthCell(r)]);
    }
  }
  return rows;
}

/** One agent's registration in detail, as `meshd proxy-status NODE_ID` prints it. */
function agentDetail(node: string, r: RegistrationStatus): string {
  const rows: string[][] = [
    ["VM AGENT", node],
    ["GROUP", r.group],
    ["REGISTRATION", registrationCell(r)],
    ...(r.code ? [["STATUS", r.code]] : []),
    ...(r.identity ? [["IDENTITY", r.identity]] : []),
    ["WORKLOAD ENTRY", r.workload],
    ["ADDRESS", r.address],
    ["CONNECTIONS", String(r.connections)],
    ["HEALTH", healthCell(r)],
    ...(r.refusedAt ? [["REFUSED AT", r.refusedAt]] : []),
    ...(r.disconnectedAt ? [["DISCONNECTED AT", r.disconnectedAt]] : []),
  ];
  return table(rows);
}

/** A registry's sync as one cell: SYNCED, STALE (error) or NOT SYNCED (error). */
function registrySyncCell(r: RegistryStatus): string {
  const why = r.lastError ? ` (${r.lastError})` : "";
  if (!r.synced) return `NOT SYNCED${why}`;
  return r.stale ? `STALE${why}` : "SYNCED";
}

/** The registries section of proxy-status: one row per `--registry`. */
export function registryRows(list: readonly RegistryStatus[]): string[][] {
  const rows = [["REGISTRY", "KIND", "SYNC", "SERVICES", "ENDPOINTS", "LAST SYNC", "SHADOWED"]];
  for (const r of list) {
    const shadowed = r.shadowed ?? [];
    rows.push([
      r.name,
      r.kind,
      registrySyncCell(r),
      String(r.services),
      String(r.endpoints),
      r.lastSyncMs === undefined ? "-" : new Date(r.lastSyncMs).toISOString(),
      shadowed.length === 0
        ? "-"
        : `${shadowed.length} (${shadowed.slice(0, 3).join(", ")}${shadowed.length > 3 ? ", ..." : ""})`,
    ]);
  }
  return rows;
}

/** `meshd proxy-status`: every connected proxy and whether it is in sync, per type; then the VM agents. */
export const proxyStatusCommand: Command = {
  name: "proxy-status",
  summary:
    "show every connected proxy and whether CDS, LDS, EDS and RDS are SYNCED, STALE, NACKED or NOT SENT; " +
    "and VM agents' registration and health, and the platform registries' sync",
  usage: "meshd proxy-status [--admin-addr HOST:PORT] [-o short|json] [PROXY_ID]",
  description: [
    "Reads /debug/syncz and /debug/registrationz of a running meshd. VM agents (streams carrying",
    "AUTO_REGISTER_GROUP) are listed under VM AGENT with their WorkloadGroup, registration state, WorkloadEntry",
    "name, address and probe health; refused registrations stay listed for an hour after their stream ended.",
    "Platform registries (--registry, from /debug/registryz) follow under REGISTRY: SYNCED, STALE (the last good",
    "view is served; the error says why) or NOT SYNCED, their sizes, and hosts shadowed by config or an earlier registry.",
    'PROXY_ID shows one proxy, or one agent in detail. -o json prints {"proxies": [...], "agents": [...], "registries": [...]}.',
  ].join("\n"),
  settings: () => [ADMIN, OUTPUT],
  args: { min: 0, max: 1, name: "PROXY_ID" },
  async run(inv) {
    const addr = inv.settings.string("admin-addr");
    const { body } = await getAdminJson<ProxySync[]>(addr, "/debug/syncz");
    // A meshd without pilot's auto-registry has no /debug/registrationz: no agents.
    const regsAnswer = await getAdminJson<RegistrationStatus[]>(addr, "/debug/registrationz");
    const regs = regsAnswer.status === 200 && Array.isArray(regsAnswer.body) ? regsAnswer.body : [];
    // A meshd without pilot has no /debug/registryz: no registries.
    const platformAnswer = await getAdminJson<RegistryStatus[]>(addr, "/debug/registryz");
    const platforms = platformAnswer.status === 200 && Array.isArray(platformAnswer.body)
      ? platformAnswer.body
      : [];
    const id = inv.args[0];
    const list = id ? body.filter((p) => p.proxy === id) : body;
    const agents = id ? regs.filter((r) => r.nodes.includes(id)) : regs;
    if (id && list.length === 0 && agents.length === 0) throw new Error(`proxy ${id} is not connected`);
    if (inv.settings.string("output") === "json") {
      inv.out(
        JSON.stringify({ proxies: list, agents, ...(id ? {} : { registries: platforms }) }, null, 2) + "\n",
      );
      return 0;
    }
    const cell = (p: ProxySync, t: "CDS" | "LDS" | "EDS" | "RDS") => {
      const s = p.types[t];
      if (!s) return "NOT SENT";
      const state = s.state === "NACKED" ? `NACKED (${s.nackMessage ?? ""})` : s.state;
      return s.sizeWarning ? `${state} (${s.sizeWarning})` : state;
    };
    const rows = [["NAME", "CDS", "LDS", "EDS", "RDS", "MODE"]];
    for (const p of list) {
      rows.push([p.proxy, cell(p, "CDS"), cell(p, "LDS"), cell(p, "EDS"), cell(p, "RDS"), p.mode]);
    }
    const parts: string[] = [];
    if (!id || list.length > 0) parts.push(table(rows));
    if (id) parts.push(...agents.map((r) => agentDetail(id, r)));
    else if (agents.length > 0) parts.push(table(agentRows(agents)));
    if (!id && platforms.length > 0) parts.push(table(registryRows(platforms)));
    inv.out(parts.join("\n"));
    return 0;
  },
};

/** `meshd proxy-config`: the configuration a running meshd serves one proxy. */
export const proxyConfigCommand: Command = {
  name: "proxy-config",
  summary: "show the clusters, listeners, routes and endpoints a running meshd serves one proxy",
  usage: "meshd proxy-config [--type all|cluster|listener|route|endpoint] [-o short|json] PROXY_ID",
  settings: () => [
    ADMIN,
    OUTPUT,
    {
      name: "type",
      kind: { type: "enum", values: ["all", "cluster", "listener", "route", "endpoint"] },
      default: "all",
      help: "which resources to show",
      flagOnly: true,
    },
  ],
  args: { min: 1, max: 1, name: "PROXY_ID" },
  async run(inv) {
    const id = inv.args[0]!;
    const { status, body } = await getAdminJson<Record<string, unknown>>(
      inv.settings.string("admin-addr"),
      `/debug/config_dump?proxyID=${encodeURIComponent(id)}`,
    );
    if (status === 404) throw new UsageError(`meshd proxy-config: proxy ${id} is not connected`);
    if (status !== 200) throw new Error(`meshd answered ${status}: ${JSON.stringify(body)}`);
    const type = inv.settings.string("type");
    const pick = (
      k: string,
    ) => (type === "all" || `${type}s` === k ? (body[k] as Array<Record<string, unknown>>) : []);
    if (inv.settings.string("output") === "json") {
      const out: Record<string, unknown> = {};
      for (const k of ["clusters", "listeners", "routes", "endpoints"]) {
        if (type === "all" || `${type}s` === k) out[k] = body[k];
      }
      inv.out(JSON.stringify(out, null, 2) + "\n");
      return 0;
    }
    const rows: string[][] = [["KIND", "NAME", "DETAIL"]];
    for (const c of pick("clusters")) rows.push(["cluster", String(c.name), String(c.type ?? "EDS")]);
    for (const l of pick("listeners")) {
      const sa = (l.address as { socketAddress?: { address?: string; portValue?: number } } | undefined)
        ?.socketAddress;
      rows.push(["listener", String(l.name), sa ? `${sa.address}:${sa.portValue ?? 0}` : "api listener"]);
    }
    for (const r of pick("routes")) {
      const vhs = (r.virtualHosts as Array<{ name: string }> | undefined) ?? [];
      rows.push(["route", String(r.name), `${vhs.length} virtual hosts`]);
    }
    for (const e of pick("endpoints")) {
      const n = ((e.endpoints as Array<{ lbEndpoints?: unknown[] }> | undefined) ?? []).reduce(
        (s, l) => s + (l.lbEndpoints?.length ?? 0),
        0,
      );
      rows.push(["endpoint", String(e.clusterName), `${n} endpoints`]);
    }
    inv.out(table(rows));
    return 0;
  },
};
