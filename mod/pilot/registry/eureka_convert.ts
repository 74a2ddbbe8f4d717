/**
 * From a Eureka registry copy to pilot's services and endpoints, mapped as the ServiceEntry registry
 * maps a STATIC, MESH_INTERNAL ServiceEntry with inline endpoints.
 *
 * Host names follow Istio's Eureka adapter (Istio 0.2-0.8): the service is the instance's
 * `hostName`, so instances registered under one host name form one service, whichever application
 * they belong to; `hostMode: "app"` names services after the application instead
 * (`APP.DOMAIN`, lower-case), for clients such as Spring Cloud that register machine host names.
 * Only instances with status UP are served. Ports are `port` and `securePort` when enabled, named
 * by number as Istio did; the protocol is metadata `istio.protocol` when set, else HTTP for the
 * plain port and HTTPS for the secure one.
 *
 * @module
 */
import type { RegistryState } from "../model/registry.ts";
import {
  type Endpoint,
  parseProtocol,
  type Protocol,
  type Service,
  type ServicePort,
} from "../model/service.ts";
import type { EurekaCopy, EurekaInstance } from "./eureka_json.ts";

/** Metadata key that sets the protocol of an instance's ports. */
export const PROTOCOL_METADATA = "istio.protocol";
const TLS_MODE_LABEL = "security.istio.io/tlsMode";

/** How services are named. */
export type EurekaHostMode = "hostName" | "app";

/** Options for {@link eurekaState}. */
export interface EurekaConvertOptions {
  /** The namespace services are declared in. */
  readonly namespace: string;
  readonly hostMode: EurekaHostMode;
  /** Domain appended to the application name in "app" mode. */
  readonly domain: string;
}

/** The state and what could not be served, with reasons. */
export interface EurekaConversion {
  readonly state: RegistryState;
  readonly problems: readonly string[];
}

/** The service host an instance belongs to ("" when it has none). */
export function eurekaHost(i: EurekaInstance, opts: EurekaConvertOptions): string {
  const name = opts.hostMode === "app" ? `${i.app}.${opts.domain}` : i.hostName;
  return name.trim().toLowerCase().replace(/\.$/, "");
}

/** The ports an instance serves, with their protocols; `problems` gets an unknown protocol. */
function instancePorts(i: EurekaInstance, problems: string[]): ServicePort[] {
  const written = i.metadata[PROTOCOL_METADATA];
  let chosen: Protocol | undefined;
  if (written !== undefined && written !== "") {
    chosen = parseProtocol(written);
    if (chosen === "UNSUPPORTED") {
      problems.push(
        `${i.app}/${i.id}: metadata ${PROTOCOL_METADATA}: unknown protocol "${written}", using the default`,
      );
      chosen = undefined;
    }
  }
  const out: ServicePort[] = [];
  if (i.port !== undefined) out.push({ name: String(i.port), number: i.port, protocol: chosen ?? "HTTP" });
  if (i.securePort !== undefined && i.securePort !== i.port) {
    out.push({ name: String(i.securePort), number: i.securePort, protocol: chosen ?? "HTTPS" });
  }
  return out;
}

/** Endpoint labels: the metadata without the protocol key. */
function labelsOf(i: EurekaInstance): Record<string, string> {
  const { [PROTOCOL_METADATA]: _protocol, ...labels } = i.metadata;
  return labels;
}

/** "region/zone" from an AWS availability zone ("us-east-1c" is in region "us-east-1"). */
export function localityOf(i: EurekaInstance): string | undefined {
  const zone = i.availabilityZone;
  if (!zone) return undefined;
  const region = /^(.*\d)[a-z]$/.exec(zone)?.[1];
  return region ? `${region}/${zone}` : `/${zone}`;
}

/**
 * The services and endpoints of the UP instances in `copy`, sorted by host and instance. A port
 * number seen with two protocols keeps the first (in application and id order) and reports the
 * other in `problems`, as do instances with a `problem`.
 */
export function eurekaState(copy: EurekaCopy, opts: EurekaConvertOptions): EurekaConversion {
  const problems: string[] = [];
  const instances = [...copy.values()].sort((a, b) =>
    a.app === b.app ? (a.id < b.id ? -1 : a.id > b.id ? 1 : 0) : a.app < b.app ? -1 : 1
  );
  const ports = new Map<string, Map<number, ServicePort>>();
  const endpoints: Endpoint[] = [];
  for (const i of instances) {
    if (i.status !== "UP") continue;
    if (i.problem !== undefined) {
      problems.push(`${i.app}/${i.id}: ${i.problem}`);
      continue;
    }
    const host = eurekaHost(i, opts);
    if (host === "") {
      problems.push(`${i.app}/${i.id}: no host name`);
      continue;
    }
    const own = instancePorts(i, problems);
    if (own.length === 0) continue;
    const servicePorts = ports.get(host) ?? new Map<number, ServicePort>();
    ports.set(host, servicePorts);
    const labels = labelsOf(i);
    const locality = localityOf(i);
    for (const p of own) {
      const existing = servicePorts.get(p.number);
      if (existing && existing.protocol !== p.protocol) {
        problems.push(
          `${i.app}/${i.id}: port ${p.number} of ${host} is ${p.protocol} here but ${existing.protocol} on an earlier instance; using ${existing.protocol}`,
        );
      }
      const servicePort = existing ?? p;
      servicePorts.set(p.number, servicePort);
      endpoints.push({
        hostname: host,
        namespace: opts.namespace,
        servicePort,
        address: i.ipAddr,
        port: p.number,
        labels,
        ...(locality ? { locality } : {}),
        weight: 1,
        healthy: true,
        tlsMode: labels[TLS_MODE_LABEL] === "istio" ? "istio" : "disabled",
        source: `eureka:${i.app}/${i.id}`,
      });
    }
  }
  const services: Service[] = [...ports.keys()].sort().map((host) => ({
    hostname: host,
    namespace: opts.namespace,
    ports: [...ports.get(host)!.values()].sort((a, b) => a.number - b.number),
    addresses: [],
    resolution: "STATIC",
    location: "MESH_INTERNAL",
    exportTo: ["*"],
    subjectAltNames: [],
    source: `eureka:${host}`,
  }));
  endpoints.sort((a, b) => a.hostname < b.hostname ? -1 : a.hostname > b.hostname ? 1 : 0);
  return { state: { services, endpoints, workloads: [] }, problems };
}
