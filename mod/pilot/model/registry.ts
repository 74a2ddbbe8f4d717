/**
 * Service registries. The ServiceEntry registry reads services from config; platform adapters
 * (VM auto-registration, Kubernetes, Consul) plug in behind the same interface.
 */
import type { ConfigSnapshot } from "../../galley/mod.ts";
import type { ServiceEntrySpec, WorkloadEntrySpec } from "../../api/kinds/networking.ts";
import { resourceKey } from "../../api/resource.ts";
import { resolveHost, selectorMatches } from "../../api/mod.ts";
import { type Endpoint, parseProtocol, type Service, type ServicePort } from "./service.ts";

/** A workload a registry knows (a WorkloadEntry, or one auto-registered from a WorkloadGroup). */
export interface Workload {
  readonly key: string;
  readonly namespace: string;
  readonly spec: WorkloadEntrySpec;
  /** Health as last reported; unhealthy workloads leave EDS. */
  readonly healthy: boolean;
}

/** What a registry knows at one moment. Immutable. */
export interface RegistryState {
  /** Services it declares itself (ServiceEntry-like). */
  readonly services: readonly Service[];
  /** Endpoints it declares itself. */
  readonly endpoints: readonly Endpoint[];
  /** Workloads that ServiceEntries' workloadSelectors may select. */
  readonly workloads: readonly Workload[];
}

/** A source of services, endpoints and workloads. */
export interface ServiceRegistry {
  readonly name: string;
  /** The current state; the same object until something changes. */
  state(): RegistryState;
  /** Calls `listener` after the state changed. Returns an unsubscribe function. */
  watch(listener: () => void): () => void;
}

const NETWORKING = "networking.istio.io";
const TLS_MODE_LABEL = "security.istio.io/tlsMode";

/** WorkloadEntries in config, as workloads. */
export function workloadsFromConfig(config: ConfigSnapshot): Workload[] {
  return config.list<WorkloadEntrySpec>(NETWORKING, "WorkloadEntry").map((r) => ({
    key: resourceKey(r),
    namespace: r.metadata.namespace,
    spec: { ...r.spec, labels: { ...r.metadata.labels, ...r.spec.labels } },
    healthy: true,
  }));
}

function endpointPort(p: ServicePort, ports: Readonly<Record<string, number>> | undefined): number {
  return ports?.[p.name] ?? p.targetPort ?? p.number;
}

/**
 * Services and endpoints declared by ServiceEntries, with endpoints from their inline
 * `endpoints` or from the workloads their `workloadSelector` selects in their namespace.
 * DNS services without endpoints resolve their own host name.
 */
export function servicesFromConfig(config: ConfigSnapshot, workloads: readonly Workload[]): RegistryState {
  const services: Service[] = [];
  const endpoints: Endpoint[] = [];
  for (const r of config.list<ServiceEntrySpec>(NETWORKING, "ServiceEntry")) {
    const spec = r.spec;
    const ports: ServicePort[] = (spec.ports ?? []).map((p) => ({
      name: p.name,
      number: p.number,
      protocol: parseProtocol(p.protocol),
      ...(p.targetPort ? { targetPort: p.targetPort } : {}),
    }));
    // DYNAMIC_DNS (per-connection DNS at the proxy) is served as NONE; validation warns so.
    const resolution = spec.resolution === "DYNAMIC_DNS" ? "NONE" : spec.resolution ?? "NONE";
    const location = spec.location ?? "MESH_EXTERNAL";
    const source = resourceKey(r);
    const ns = r.metadata.namespace;
    for (const written of spec.hosts) {
      // Read as galley reads it: short names qualified with the entry's namespace, lower-case.
      const host = resolveHost(written, ns);
      services.push({
        hostname: host,
        namespace: ns,
        ports,
        addresses: spec.addresses ?? [],
        resolution,
        location,
        exportTo: spec.exportTo ?? ["*"],
        subjectAltNames: spec.subjectAltNames ?? [],
        source,
      });
      const add = (we: WorkloadEntrySpec, from: string, healthy: boolean, inline: boolean) => {
        const labels = we.labels ?? {};
        const tlsMode = labels[TLS_MODE_LABEL] === "disabled"
          ? "disabled"
          : labels[TLS_MODE_LABEL] === "istio" || !inline || we.serviceAccount
          ? "istio"
          : "disabled";
        for (const p of ports) {
          endpoints.push({
            hostname: host,
            namespace: ns,
            servicePort: p,
            address: we.address ?? "",
            port: endpointPort(p, we.ports),
            labels,
            ...(we.serviceAccount ? { serviceAccount: we.serviceAccount } : {}),
            ...(we.locality ? { locality: we.locality } : {}),
            ...(we.network ? { network: we.network } : {}),
            weight: we.weight ?? 1,
            healthy,
            tlsMode,
            source: from,
          });
        }
      };
      if (spec.workloadSelector) {
        for (const w of workloads) {
          if (w.namespace === ns && selectorMatches(spec.workloadSelector.labels, w.spec.labels)) {
            add(w.spec, w.key, w.healthy, false);
          }
        }
      } else if (spec.endpoints && spec.endpoints.length > 0) {
        for (const e of spec.endpoints) add(e, source, true, true);
      } else if (resolution === "DNS" || resolution === "DNS_ROUND_ROBIN") {
        if (!host.startsWith("*")) add({ address: host }, source, true, true);
      }
    }
  }
  return { services, endpoints, workloads };
}
