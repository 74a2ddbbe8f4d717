/**
 * The PushContext: an immutable, indexed view of config and registries that translation reads.
 * One is built per push; everything translation needs arrives through it (rule 1 of DESIGN.md).
 */
import type {
  DestinationRuleSpec,
  GatewaySpec,
  SidecarSpec,
  VirtualServiceSpec,
} from "../../api/kinds/networking.ts";
import {
  DEFAULT_DOMAIN_SUFFIX,
  exportedTo,
  hostCovers,
  isEmptySelector,
  namespaceAdmits,
  resolveHost,
  selectorMatches,
  splitNamespacedHost,
} from "../../api/mod.ts";
import { contentVersion } from "../../shared/content_version.ts";
import { defaultMeshConfig, mergeMeshConfig, type MeshConfig } from "../../api/kinds/mesh_config.ts";
import type {
  AuthorizationPolicySpec,
  PeerAuthenticationSpec,
  RequestAuthenticationSpec,
} from "../../api/kinds/security.ts";
import type { Resource } from "../../api/resource.ts";
import type { ConfigSnapshot } from "../../galley/mod.ts";
import type { Proxy } from "./proxy.ts";
import { type RegistryState, servicesFromConfig, type Workload, workloadsFromConfig } from "./registry.ts";
import type { Endpoint, Service } from "./service.ts";

const NETWORKING = "networking.istio.io";
const SECURITY = "security.istio.io";

/** What security policies are selected by: a workload's namespace and labels (a Proxy is one). */
export interface PolicyWorkload {
  readonly namespace: string;
  readonly labels: Readonly<Record<string, string>>;
}
/** The DNS suffix short host names are qualified with (after their namespace). */
export const DNS_SUFFIX = `svc.${DEFAULT_DOMAIN_SUFFIX}`;

/**
 * Which optional parts of meshd run beside pilot and change what sidecars are given. Fixed for
 * the life of the process, so not part of {@link PushContext.version}.
 */
export interface PilotFeatures {
  /**
   * Mixer runs: sidecars get ext_authz and rate-limit filters on inbound HTTP and a gRPC access
   * log on inbound and outbound HTTP, all pointing at mixer (see mod/mixer/filter_settings.ts).
   */
  readonly mixer: boolean;
  /**
   * HOST:PORT of mixer, for information only: mixer shares meshd's gRPC port, which sidecars
   * already reach through their bootstrap's `xds-grpc` cluster, so translation does not use it.
   */
  readonly mixerAddress?: string;
}

/** The features when none are given: everything optional off. */
export const NO_FEATURES: PilotFeatures = { mixer: false };

/** Everything translation reads. Immutable; cheap queries are memoised. */
export interface PushContext {
  /** Changes whenever any input changes. */
  readonly version: string;
  /** The registries' part of the version: a hash of their content (undefined without registries). */
  readonly registryVersion?: string;
  readonly mesh: MeshConfig;
  /** Optional parts of meshd that are running (default {@link NO_FEATURES}). */
  readonly features: PilotFeatures;
  readonly config: ConfigSnapshot;
  /** Every service, sorted by host name then namespace. */
  readonly services: readonly Service[];
  /** Services a proxy may reach: exportTo, then its Sidecar's egress hosts. Sorted by host name. */
  visibleServices(proxy: Proxy): readonly Service[];
  /** The service with this host name that the proxy sees (its own namespace's first). */
  serviceFor(proxy: Proxy, hostname: string): Service | undefined;
  /** Healthy and unhealthy endpoints of one port of one service. */
  endpoints(service: Service, port: number): readonly Endpoint[];
  /**
   * VirtualServices bound to `gateway` ("mesh", or "namespace/name" of a Gateway) and exported
   * to the proxy's namespace: the proxy's namespace first, then by namespace and name.
   */
  virtualServices(proxy: Proxy, gateway: string): readonly Resource<VirtualServiceSpec>[];
  /**
   * The DestinationRule that applies to `hostname` for this proxy, looked up as Istio does:
   * the proxy's namespace, then the service's, then the root namespace; the most specific host
   * wins within each.
   */
  destinationRule(proxy: Proxy, hostname: string): Resource<DestinationRuleSpec> | undefined;
  /** Gateways whose selector matches the proxy's labels. */
  gatewaysFor(proxy: Proxy): readonly Resource<GatewaySpec>[];
  /** The Sidecar resource scoping this proxy, if any. */
  sidecarFor(proxy: Proxy): Resource<SidecarSpec> | undefined;
  /** The proxy's own endpoints (the services it serves), one per service port. */
  instancesOf(proxy: Proxy): readonly Endpoint[];
  /**
   * PeerAuthentications that may apply to a workload, as Istio selects them: those in its
   * namespace without a selector or whose selector matches its labels, and those in the root
   * namespace without a selector (a selector in the root namespace is ignored). Policies with a
   * `targetRef` only bind gateways and waypoints and are left out. Sorted by namespace and name
   * (Istio's "oldest wins" becomes "first by name wins", which is deterministic).
   */
  peerAuthentications(workload: PolicyWorkload): readonly Resource<PeerAuthenticationSpec>[];
  /**
   * AuthorizationPolicies that apply to a workload: those in its namespace and in the root
   * namespace whose selector is absent or matches its labels (a root-namespace selector applies
   * across namespaces, as in Istio). `targetRef` policies are left out. Sorted by namespace, name.
   */
  authorizationPolicies(workload: PolicyWorkload): readonly Resource<AuthorizationPolicySpec>[];
  /** RequestAuthentications that apply to a workload, selected like AuthorizationPolicies. */
  requestAuthentications(workload: PolicyWorkload): readonly Resource<RequestAuthenticationSpec>[];
}

/** Gateway reference as written in a VirtualService, made "namespace/name" ("mesh" stays). */
export function qualifyGateway(ref: string, namespace: string): string {
  if (ref === "mesh" || ref.includes("/")) return ref;
  return `${namespace}/${ref}`;
}

function byNsName(a: Resource, b: Resource): number {
  return a.metadata.namespace === b.metadata.namespace
    ? (a.metadata.name < b.metadata.name ? -1 : a.metadata.name > b.metadata.name ? 1 : 0)
    : a.metadata.namespace < b.metadata.namespace
    ? -1
    : 1;
}

/** Inputs beyond config: other registries' states. */
export interface PushContextInputs {
  readonly config: ConfigSnapshot;
  readonly registries?: readonly RegistryState[];
  /**
   * A version for the registries' part, combined with the config version; by default a hash of
   * their content.
   */
  readonly registryVersion?: string;
  /** Optional parts of meshd that are running; default {@link NO_FEATURES} (mixer off). */
  readonly features?: PilotFeatures;
}

/** Builds a PushContext. Pure: the same inputs give the same context. */
export function createPushContext(inputs: PushContextInputs): PushContext {
  const { config } = inputs;
  const meshResources = config.list("config.meshd.io", "MeshConfig");
  const mesh = meshResources.length > 0 ? mergeMeshConfig(meshResources[0]) : defaultMeshConfig;
  const workloads: Workload[] = [
    ...workloadsFromConfig(config),
    ...(inputs.registries ?? []).flatMap((r) => r.workloads),
  ];
  const fromConfig = servicesFromConfig(config, workloads);
  const services = [...fromConfig.services, ...(inputs.registries ?? []).flatMap((r) => r.services)].sort((
    a,
    b,
  ) => a.hostname === b.hostname ? (a.namespace < b.namespace ? -1 : 1) : a.hostname < b.hostname ? -1 : 1);
  const allEndpoints = [...fromConfig.endpoints, ...(inputs.registries ?? []).flatMap((r) => r.endpoints)];
  const byHost = new Map<string, Service[]>();
  for (const s of services) byHost.set(s.hostname, [...(byHost.get(s.hostname) ?? []), s]);
  const endpointIndex = new Map<string, Endpoint[]>();
  const endpointsByAddress = new Map<string, Endpoint[]>();
  for (const e of allEndpoints) {
    const k = `${e.hostname}|${e.namespace}|${e.servicePort.number}`;
    const list = endpointIndex.get(k);
    if (list) list.push(e);
    else endpointIndex.set(k, [e]);
    endpointsByAddress.set(e.address, [...(endpointsByAddress.get(e.address) ?? []), e]);
  }

  const virtualServices = [...config.list<VirtualServiceSpec>(NETWORKING, "VirtualService")];
  const destinationRules = config.list<DestinationRuleSpec>(NETWORKING, "DestinationRule");
  const gateways = config.list<GatewaySpec>(NETWORKING, "Gateway");
  const sidecars = config.list<SidecarSpec>(NETWORKING, "Sidecar");

  const peerAuthns = [...config.list<PeerAuthenticationSpec>(SECURITY, "PeerAuthentication")].sort(byNsName);
  const authzPolicies = [...config.list<AuthorizationPolicySpec>(SECURITY, "AuthorizationPolicy")].sort(
    byNsName,
  );
  const requestAuthns = [...config.list<RequestAuthenticationSpec>(SECURITY, "RequestAuthentication")].sort(
    byNsName,
  );

  /** Istio's getConfigsForWorkload: own namespace and root namespace, selector subset of labels. */
  function selectPolicies<T extends { selector?: { matchLabels?: Readonly<Record<string, string>> } }>(
    all: readonly Resource<T>[],
    workload: PolicyWorkload,
    rootSelectors: boolean,
  ): Resource<T>[] {
    return all.filter((r) => {
      const spec = r.spec as T & { targetRef?: unknown; targetRefs?: readonly unknown[] };
      if (spec.targetRef || (spec.targetRefs && spec.targetRefs.length > 0)) return false;
      const ns = r.metadata.namespace;
      const own = ns === workload.namespace;
      const root = ns === mesh.rootNamespace;
      if (!own && !root) return false;
      const sel = spec.selector?.matchLabels;
      if (isEmptySelector(sel)) return true;
      if (root && !own && !rootSelectors) return false;
      if (root && own && !rootSelectors) return false;
      return selectorMatches(sel, workload.labels);
    });
  }

  const memo = <T>() => new Map<string, T>();
  const visibleMemo = memo<readonly Service[]>();
  const vsMemo = memo<readonly Resource<VirtualServiceSpec>[]>();
  const drMemo = memo<Resource<DestinationRuleSpec> | undefined>();

  function sidecarFor(proxy: Proxy): Resource<SidecarSpec> | undefined {
    const inNs = sidecars.filter((s) => s.metadata.namespace === proxy.namespace);
    return inNs.find((s) =>
      s.spec.workloadSelector && selectorMatches(s.spec.workloadSelector.labels, proxy.labels)
    ) ??
      inNs.find((s) => !s.spec.workloadSelector) ??
      sidecars.find((s) => s.metadata.namespace === mesh.rootNamespace && !s.spec.workloadSelector);
  }

  function egressAllows(sc: Resource<SidecarSpec>, svc: Service): boolean {
    const egress = sc.spec.egress ?? [];
    if (egress.length === 0) return true;
    for (const l of egress) {
      for (const h of l.hosts) {
        const { namespace, host } = splitNamespacedHost(h);
        if (
          namespaceAdmits(namespace, sc.metadata.namespace, svc.namespace) && hostCovers(host, svc.hostname)
        ) {
          return true;
        }
      }
    }
    return false;
  }

  function visibleServices(proxy: Proxy): readonly Service[] {
    const sc = sidecarFor(proxy);
    const key = `${proxy.namespace}|${sc ? `${sc.metadata.namespace}/${sc.metadata.name}` : ""}`;
    let v = visibleMemo.get(key);
    if (!v) {
      v = services.filter((s) =>
        exportedTo(s.exportTo, s.namespace, proxy.namespace) && (!sc || egressAllows(sc, s))
      );
      visibleMemo.set(key, v);
    }
    return v;
  }

  const registryVersion = inputs.registryVersion ??
    (inputs.registries && inputs.registries.length > 0
      ? contentVersion(JSON.stringify(inputs.registries))
      : undefined);
  return {
    version: `${config.version}${registryVersion ? `.${registryVersion}` : ""}`,
    registryVersion,
    mesh,
    features: inputs.features ?? NO_FEATURES,
    config,
    services,
    visibleServices,
    serviceFor(proxy, hostname) {
      const list = byHost.get(hostname);
      if (!list) return undefined;
      const visible = list.filter((s) => exportedTo(s.exportTo, s.namespace, proxy.namespace));
      return visible.find((s) => s.namespace === proxy.namespace) ?? visible[0];
    },
    endpoints: (service, port) => endpointIndex.get(`${service.hostname}|${service.namespace}|${port}`) ?? [],
    virtualServices(proxy, gateway) {
      const key = `${proxy.namespace}|${gateway}`;
      let v = vsMemo.get(key);
      if (!v) {
        v = virtualServices
          .filter((vs) => {
            const gws = (vs.spec.gateways && vs.spec.gateways.length > 0 ? vs.spec.gateways : ["mesh"])
              .map((g) => qualifyGateway(g, vs.metadata.namespace));
            return gws.includes(gateway) &&
              exportedTo(vs.spec.exportTo, vs.metadata.namespace, proxy.namespace);
          })
          .sort((a, b) => {
            const ap = a.metadata.namespace === proxy.namespace ? 0 : 1;
            const bp = b.metadata.namespace === proxy.namespace ? 0 : 1;
            return ap - bp || byNsName(a, b);
          });
        vsMemo.set(key, v);
      }
      return v;
    },
    destinationRule(proxy, hostname) {
      const svc = byHost.get(hostname)?.[0];
      const key = `${proxy.namespace}|${Object.entries(proxy.labels).sort().join(",")}|${hostname}`;
      if (drMemo.has(key)) return drMemo.get(key);
      const namespaces = [proxy.namespace, svc?.namespace, mesh.rootNamespace].filter((n): n is string =>
        n !== undefined
      );
      let found: Resource<DestinationRuleSpec> | undefined;
      for (const ns of namespaces) {
        let best: { r: Resource<DestinationRuleSpec>; host: string } | undefined;
        for (const dr of destinationRules) {
          if (dr.metadata.namespace !== ns) continue;
          if (!exportedTo(dr.spec.exportTo, ns, proxy.namespace)) continue;
          if (
            dr.spec.workloadSelector &&
            (ns !== proxy.namespace || !selectorMatches(dr.spec.workloadSelector.matchLabels, proxy.labels))
          ) {
            continue;
          }
          const host = resolveHost(dr.spec.host, ns);
          if (!hostCovers(host, hostname)) continue;
          if (!best || host === hostname || (best.host !== hostname && host.length > best.host.length)) {
            best = { r: dr, host };
          }
        }
        if (best) {
          found = best.r;
          break;
        }
      }
      drMemo.set(key, found);
      return found;
    },
    peerAuthentications: (workload) => selectPolicies(peerAuthns, workload, false),
    authorizationPolicies: (workload) => selectPolicies(authzPolicies, workload, true),
    requestAuthentications: (workload) => selectPolicies(requestAuthns, workload, true),
    gatewaysFor: (proxy) =>
      gateways.filter((g) => g.spec.selector !== undefined && selectorMatches(g.spec.selector, proxy.labels)),
    sidecarFor,
    instancesOf(proxy) {
      const seen = new Set<string>();
      const out: Endpoint[] = [];
      for (const ip of proxy.ipAddresses) {
        for (const e of endpointsByAddress.get(ip) ?? []) {
          const k = `${e.hostname}|${e.servicePort.number}`;
          if (!seen.has(k)) {
            seen.add(k);
            out.push(e);
          }
        }
      }
      return out;
    },
  };
}
