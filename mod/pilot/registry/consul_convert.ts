/**
 * Consul's catalog and health answers as pilot's services and endpoints. Pure.
 *
 * - A service NAME is the host `name.service.consul` (Istio's Consul adapter named hosts so),
 *   in namespace "default" (Istio's too), STATIC, MESH_INTERNAL, exported everywhere.
 * - Its ports are the ports its instances register, each named `PROTOCOL-PORT` (e.g. "http-8080"),
 *   the protocol read from the instance's `Service.Meta.protocol`, else a tag `protocol=X` (or
 *   Istio's `protocol|X`), else `Node.Meta.protocol`, else TCP.
 * - An endpoint is an instance whose checks all pass (node checks such as serfHealth included, as
 *   Consul's `?passing` filter does); others are left out. Its labels are its tags (`key=value` and
 *   `key|value` as key and value, a bare tag as that key with an empty value) overlaid by its
 *   `Service.Meta`; its locality is the datacenter (as region); its weight is `Weights.Passing`.
 *   Consul Connect's own mTLS identity is ignored: tlsMode is "istio" only when the instance says
 *   `security.istio.io/tlsMode=istio` in its tags or meta.
 *
 * @module
 */
import { isIP } from "node:net";
import {
  type Endpoint,
  parseProtocol,
  type Protocol,
  type Service,
  type ServicePort,
} from "../model/service.ts";

/** One entry of `/v1/health/service/:service`, the fields read. */
export interface ConsulHealthEntry {
  readonly Node: {
    readonly Node: string;
    readonly Address: string;
    readonly Datacenter?: string;
    readonly Meta?: Readonly<Record<string, string>> | null;
  };
  readonly Service: {
    readonly ID: string;
    readonly Service: string;
    readonly Tags?: readonly string[] | null;
    readonly Address?: string;
    readonly Port: number;
    readonly Meta?: Readonly<Record<string, string>> | null;
    readonly Weights?: { readonly Passing?: number; readonly Warning?: number } | null;
  };
  readonly Checks?: readonly { readonly CheckID?: string; readonly Status: string }[] | null;
}

/** One service's part of the registry's view. */
export interface ConsulServiceView {
  /** Undefined when no instance is registered (nothing to declare ports from). */
  readonly service?: Service;
  readonly endpoints: readonly Endpoint[];
  /** Instances skipped because their address is not an IP, as "node/id (address)". */
  readonly skipped: readonly string[];
}

/** Namespace of every Consul service. */
export const CONSUL_NAMESPACE = "default";
const TLS_MODE_LABEL = "security.istio.io/tlsMode";

/** The host of a Consul service. */
export function consulHost(name: string): string {
  return `${name.toLowerCase()}.service.consul`;
}

const isObject = (v: unknown): v is Record<string, unknown> =>
  typeof v === "object" && v !== null && !Array.isArray(v);

/**
 * Reads `/v1/catalog/services`: service names to tags. Throws naming the field when the body is
 * not that shape.
 */
export function parseCatalogServices(body: unknown): string[] {
  if (!isObject(body)) throw new Error("/v1/catalog/services: want a JSON object of service names");
  return Object.keys(body).sort();
}

/** Reads `/v1/health/service/:service`; throws naming the entry and field that is wrong. */
export function parseHealthEntries(body: unknown, service: string): ConsulHealthEntry[] {
  const where = `/v1/health/service/${service}`;
  if (!Array.isArray(body)) throw new Error(`${where}: want a JSON array`);
  return body.map((e, i) => {
    const node = isObject(e) ? e.Node : undefined;
    const svc = isObject(e) ? e.Service : undefined;
    if (!isObject(node) || typeof node.Node !== "string" || typeof node.Address !== "string") {
      throw new Error(`${where}: [${i}].Node wants Node and Address strings`);
    }
    if (!isObject(svc) || typeof svc.ID !== "string" || typeof svc.Port !== "number") {
      throw new Error(`${where}: [${i}].Service wants an ID string and a Port number`);
    }
    const checks = (e as Record<string, unknown>).Checks;
    if (checks !== undefined && checks !== null && !Array.isArray(checks)) {
      throw new Error(`${where}: [${i}].Checks wants an array`);
    }
    return e as unknown as ConsulHealthEntry;
  });
}

/** True when every check of the entry passes (what Consul's `?passing` keeps). */
export function isPassing(entry: ConsulHealthEntry): boolean {
  return (entry.Checks ?? []).every((c) => c.Status === "passing");
}

function splitTag(tag: string): [string, string] {
  const m = /^([^=|]+)[=|](.*)$/.exec(tag);
  return m ? [m[1]!, m[2]!] : [tag, ""];
}

/** An instance's labels: its tags, then its service meta over them. */
export function instanceLabels(entry: ConsulHealthEntry): Record<string, string> {
  const labels: Record<string, string> = {};
  for (const tag of entry.Service.Tags ?? []) {
    const [k, v] = splitTag(tag);
    if (k !== "") labels[k] = v;
  }
  for (const [k, v] of Object.entries(entry.Service.Meta ?? {})) labels[k] = String(v);
  return labels;
}

/** An instance's protocol (see the module comment for where it is read). */
export function instanceProtocol(entry: ConsulHealthEntry): Protocol {
  const fromTag = (entry.Service.Tags ?? []).map(splitTag).find(([k]) => k === "protocol")?.[1];
  const name = entry.Service.Meta?.protocol ?? fromTag ?? entry.Node.Meta?.protocol ?? "tcp";
  return parseProtocol(name);
}

const byInstance = (a: ConsulHealthEntry, b: ConsulHealthEntry) => {
  const ka = `${a.Node.Node}/${a.Service.ID}`;
  const kb = `${b.Node.Node}/${b.Service.ID}`;
  return ka < kb ? -1 : ka > kb ? 1 : 0;
};

/**
 * The ports of a service from all its instances (healthy or not, so a service whose instances
 * all fail keeps its clusters with no endpoints), by port number. Two instances that give one
 * port different protocols: the first by node and ID wins.
 */
export function servicePorts(entries: readonly ConsulHealthEntry[]): ServicePort[] {
  const ports = new Map<number, ServicePort>();
  for (const e of [...entries].sort(byInstance)) {
    const number = e.Service.Port;
    if (!Number.isInteger(number) || number < 1 || number > 65535 || ports.has(number)) continue;
    const protocol = instanceProtocol(e);
    ports.set(number, { name: `${protocol.toLowerCase()}-${number}`, number, protocol });
  }
  return [...ports.values()].sort((a, b) => a.number - b.number);
}

/**
 * The service `name` and its passing endpoints from its health entries. `dc` is the datacenter
 * asked for, used as locality when an entry does not name its own.
 */
export function consulServiceView(
  name: string,
  entries: readonly ConsulHealthEntry[],
  dc: string | undefined,
): ConsulServiceView {
  const ports = servicePorts(entries);
  if (ports.length === 0) return { endpoints: [], skipped: [] };
  const hostname = consulHost(name);
  const service: Service = {
    hostname,
    namespace: CONSUL_NAMESPACE,
    ports,
    addresses: [],
    resolution: "STATIC",
    location: "MESH_INTERNAL",
    exportTo: ["*"],
    subjectAltNames: [],
    source: `consul:${name}`,
  };
  const endpoints: Endpoint[] = [];
  const skipped: string[] = [];
  for (const e of [...entries].sort(byInstance)) {
    if (!isPassing(e)) continue;
    const address = e.Service.Address || e.Node.Address;
    const id = `${e.Node.Node}/${e.Service.ID}`;
    if (isIP(address) === 0) {
      skipped.push(`${id} (${address})`);
      continue;
    }
    const port = ports.find((p) => p.number === e.Service.Port);
    if (!port) continue;
    const labels = instanceLabels(e);
    const region = e.Node.Datacenter || dc;
    const weight = e.Service.Weights?.Passing;
    endpoints.push({
      hostname,
      namespace: CONSUL_NAMESPACE,
      servicePort: port,
      address,
      port: port.number,
      labels,
      ...(region ? { locality: region } : {}),
      weight: typeof weight === "number" && weight >= 1 ? Math.floor(weight) : 1,
      healthy: true,
      tlsMode: labels[TLS_MODE_LABEL] === "istio" ? "istio" : "disabled",
      source: `consul:${name}/${id}`,
    });
  }
  return { service, endpoints, skipped };
}
