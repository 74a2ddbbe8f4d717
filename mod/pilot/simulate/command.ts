/**
 * `meshd simulate`: reads config files, builds what pilot would send one proxy, and shows
 * where a synthetic request ends up (listener, filter chain, route, cluster), without a
 * running meshd or Envoy.
 */
import { readFileSync, statSync } from "node:fs";
import type { JsonObject, JsonValue } from "@bufbuild/protobuf";
import type { Command } from "../../cli/command.ts";
import type { SettingSpec } from "../../cli/setting.ts";
import { listConfigFiles } from "../../galley/mod.ts";
import { createConfigStore } from "../../galley/mod.ts";
import { createLogger } from "../../shared/logger.ts";
import { UsageError } from "../../shared/errors.ts";
import { table } from "../cli.ts";
import { createPushContext } from "../model/push_context.ts";
import { proxyFromNode, ProxyIdError } from "../model/proxy.ts";
import { simulate, type SimulationRequest, type SimulationResult } from "./simulate.ts";

const flag = (spec: Omit<SettingSpec, "flagOnly">): SettingSpec => ({ ...spec, flagOnly: true });

const SETTINGS: readonly SettingSpec[] = [
  flag({
    name: "proxy",
    kind: { type: "string" },
    help: "node id of the proxy: TYPE~IP~NAME.NAMESPACE~NAMESPACE.svc.cluster.local",
  }),
  flag({
    name: "proxy-labels",
    kind: { type: "list" },
    help: "the proxy's labels as k=v,...; default: the labels of the workload entries at its IP",
  }),
  flag({ name: "host", kind: { type: "string" }, help: "host name or IP address the request is sent to" }),
  flag({ name: "port", kind: { type: "int", min: 1, max: 65535 }, help: "destination port" }),
  flag({
    name: "path",
    kind: { type: "string" },
    default: "/",
    help: "request path, with an optional query string",
  }),
  flag({ name: "method", kind: { type: "string" }, default: "GET", help: "request method" }),
  flag({ name: "header", kind: { type: "list" }, default: [], help: "request headers as name=value,..." }),
  flag({
    name: "sni",
    kind: { type: "string" },
    help: "TLS server name the client sends (HTTPS and TLS gateway servers)",
  }),
  flag({
    name: "inbound",
    kind: { type: "bool" },
    default: false,
    help: "the request arrives at the proxy (its inbound listeners) instead of leaving it",
  }),
  flag({
    name: "claim",
    kind: { type: "list" },
    default: [],
    help:
      "claims of a verified JWT the request carries, as name=value,... (a.b=v nests; a repeated name makes a list)",
  }),
  flag({
    name: "issuer",
    kind: { type: "string" },
    help: "issuer of that JWT (default: its iss claim, else any provider of the proxy)",
  }),
  {
    name: "output",
    short: "o",
    kind: { type: "enum", values: ["text", "json"] },
    default: "text",
    help: "output format",
    flagOnly: true,
  },
];

function pairs(items: readonly string[], what: string): Record<string, string> {
  const out: Record<string, string> = {};
  for (const item of items) {
    const eq = item.indexOf("=");
    if (eq <= 0) throw new UsageError(`meshd simulate: ${what} ${JSON.stringify(item)}: want name=value`);
    out[item.slice(0, eq)] = item.slice(eq + 1);
  }
  return out;
}

/**
 * JWT claims from `name=value` items: a dotted name nests (`a.b=v` → `{a: {b: "v"}}`), a name
 * given twice makes a list (`groups=x,groups=y`).
 */
export function claimsFrom(items: readonly string[]): JsonObject {
  const out: JsonObject = {};
  for (const item of items) {
    const eq = item.indexOf("=");
    if (eq <= 0) throw new UsageError(`meshd simulate: claim ${JSON.stringify(item)}: want name=value`);
    const keys = item.slice(0, eq).split(".");
    const value = item.slice(eq + 1);
    let at = out;
    for (const k of keys.slice(0, -1)) {
      const next = at[k];
      if (next === null || typeof next !== "object" || Array.isArray(next)) at[k] = {};
      at = at[k] as JsonObject;
    }
    const last = keys.at(-1)!;
    const old: JsonValue | undefined = at[last];
    at[last] = old === undefined ? value : Array.isArray(old) ? [...old, value] : [old, value];
  }
  return out;
}

async function configFiles(paths: readonly string[]): Promise<string[]> {
  const files: string[] = [];
  for (const p of paths) {
    let dir: boolean;
    try {
      dir = statSync(p).isDirectory();
    } catch {
      throw new UsageError(`meshd simulate: no such file or directory: ${p}`);
    }
    files.push(...(dir ? await listConfigFiles(p) : [p]));
  }
  return files;
}

/** The outcome as rows of a two-column table. */
export function resultRows(r: SimulationResult): string[][] {
  const rows: string[][] = [["LISTENER", r.listener || "(none)"]];
  if (r.filterChain !== undefined) rows.push(["FILTER CHAIN", r.filterChain]);
  if (r.routeConfig !== undefined) rows.push(["ROUTE CONFIG", r.routeConfig]);
  if (r.virtualHost !== undefined) rows.push(["VIRTUAL HOST", r.virtualHost]);
  if (r.route !== undefined) rows.push(["ROUTE", r.route]);
  if (r.cluster !== undefined) rows.push(["CLUSTER", r.cluster]);
  for (const w of r.weightedClusters ?? []) rows.push(["CLUSTER", `${w.name} (weight ${w.weight})`]);
  if (r.directResponse !== undefined) rows.push(["DIRECT RESPONSE", String(r.directResponse)]);
  if (r.redirect !== undefined) rows.push(["REDIRECT", r.redirect]);
  if (r.error !== undefined) rows.push(["ERROR", r.error]);
  return rows;
}

/** `meshd simulate`. */
export const simulateCommand: Command = {
  name: "simulate",
  summary: "show where a request from a proxy ends up (listener, route, cluster), from config files alone",
  usage:
    "meshd simulate --proxy NODE_ID [--proxy-labels k=v,...] --host H --port P [--path /x] [--method GET] [--header k=v,...] [--sni NAME] [--inbound] [--claim k=v,... [--issuer ISS]] [-o text|json] DIR|FILE...",
  description:
    "Builds the listeners and routes pilot would send the proxy and follows the request through them as " +
    "Envoy would. Exit status 1 when the request reaches no cluster, redirect or direct response.",
  settings: () => SETTINGS,
  args: { min: 1, max: Number.MAX_SAFE_INTEGER, name: "DIR|FILE" },
  async run(inv) {
    const s = inv.settings;
    const id = s.optionalString("proxy");
    const host = s.optionalString("host");
    if (!id) throw new UsageError("meshd simulate: --proxy is required");
    if (!host) throw new UsageError("meshd simulate: --host is required");
    if (s.source("port") === undefined) throw new UsageError("meshd simulate: --port is required");
    const store = createConfigStore({ logger: createLogger({ write: () => {} }) });
    const files = await configFiles(inv.args);
    store.sink("simulate").replace(files.map((f) => ({ origin: f, content: readFileSync(f) })));
    const status = store.status();
    for (const r of status.resources.filter((x) => x.state === "rejected")) {
      inv.err(`warning: ${r.resource} rejected: ${r.errors[0] ?? ""}\n`);
    }
    for (const o of status.origins.filter((x) => x.state === "rejected")) {
      inv.err(`warning: ${o.origin} unreadable: ${o.errors[0] ?? ""}\n`);
    }
    const push = createPushContext({ config: store.snapshot() });
    let proxy;
    try {
      proxy = proxyFromNode({ id, metadata: {} });
    } catch (e) {
      if (e instanceof ProxyIdError) throw new UsageError(`meshd simulate: --proxy: ${e.message}`);
      throw e;
    }
    const labels = s.source("proxy-labels") !== undefined
      ? pairs(s.list("proxy-labels"), "label")
      : { ...(push.instancesOf(proxy)[0]?.labels ?? {}) };
    proxy = proxyFromNode({ id, metadata: { NAMESPACE: proxy.namespace, LABELS: labels } });
    const request: SimulationRequest = {
      host,
      port: s.number("port"),
      path: s.string("path"),
      method: s.string("method"),
      headers: pairs(s.list("header"), "header"),
      ...(s.optionalString("sni") !== undefined ? { sni: s.optionalString("sni")! } : {}),
      ...(s.bool("inbound") ? { direction: "inbound" as const } : {}),
      ...(s.list("claim").length > 0 || s.optionalString("issuer") !== undefined
        ? {
          jwt: {
            claims: claimsFrom(s.list("claim")),
            ...(s.optionalString("issuer") !== undefined ? { issuer: s.optionalString("issuer")! } : {}),
          },
        }
        : {}),
    };
    const result = simulate(push, proxy, request);
    if (s.string("output") === "json") inv.out(JSON.stringify(result, null, 2) + "\n");
    else inv.out(table(resultRows(result)));
    const reached = result.cluster !== undefined || result.weightedClusters !== undefined ||
      result.directResponse !== undefined || result.redirect !== undefined;
    return reached && result.error === undefined ? 0 : 1;
  },
};
