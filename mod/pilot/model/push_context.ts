/**
 * The PushContext: an immutable, indexed view of config and registries that translation reads.
 * One is built per push; everything translation needs arrives through it (rule 1 of DESIGN.md).
 */
import type {
  DestinationRuleSpec,
  GatewaySpec,
  ServiceEntrySpec,
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
  PolicyTargetReference,
  RequestAuthenticationSpec,
} from "../../api/kinds/security.ts";
import type { TelemetrySpec } from "../../api/kinds/telemetry.ts";
import type { Resource } from "../../api/resource.ts";
import type { ConfigSnapshot } from "../../galley/mod.ts";
import type { Proxy } from "./proxy.ts";
import { type RegistryState, servicesFromConfig, type Workload, workloadsFromConfig } from "./registry.ts";
import type { Endpoint, Service } from "./service.ts";
import { type NetworkGateway, networkGateways, withNetworks } from "./network.ts";

const NETWORKING = "networking.istio.io";
const SECURITY = "security.istio.io";

/** What security policies are selected by: a workload's namespace and labels (a Proxy is one). */
export interface PolicyWorkload {
  readonly namespace: string;
  readonly labels: Readonly<Record<string, string>>;
  /** The workload's addresses, matched against a targeted ServiceEntry's endpoints. */
  readonly ipAddresses?: readonly string[];
}

/** The label naming the Kubernetes Gateway (gateway.networking.k8s.io) a workload serves. */
export const GATEWAY_NAME_LABEL = "gateway.networking.k8s.io/gateway-name";

/** A policy's `targetRefs`, or its single `targetRef`. */
export function policyTargetRefs(
  spec: { targetRef?: PolicyTargetReference; targetRefs?: readonly PolicyTargetReference[] },
): readonly PolicyTargetReference[] {
  if (spec.targetRefs && spec.targetRefs.length > 0) return spec.targetRefs;
  return spec.targetRef ? [spec.targetRef] : [];
}

/** The config meshd resolves policy target references against. */
export interface PolicyTargets {
  readonly gateways: readonly Resource<GatewaySpec>[];
  readonly serviceEntries: readonly Resource<ServiceEntrySpec>[];
}

/**
 * Whether a policy in `namespace` attached by `ref` applies to `workload`, as meshd honours
 * target references (all in the policy's own namespace, as Istio requires):
 *
 * - `gateway.networking.k8s.io` Gateway NAME: workloads of the namespace labelled
 *   `gateway.networking.k8s.io/gateway-name: NAME` (Istio's rule for gateway deployments).
 * - `networking.istio.io` Gateway NAME: the workloads its selector picks (Istio's rule for
 *   classic gateways).
 * - `networking.istio.io` ServiceEntry NAME: the workloads that serve it: those its
 *   `workloadSelector` picks in its namespace and those whose address is one of its endpoints.
 *   (Istio attaches these to the service's waypoint; meshd has none, so the service's own
 *   proxies enforce the policy, for all the traffic they receive.)
 *
 * Other kinds (Service, GatewayClass) are refused by validation and match nothing here.
 */
export function targetRefApplies(
  ref: PolicyTargetReference,
  namespace: string,
  workload: PolicyWorkload,
  targets: PolicyTargets,
): boolean {
  const group = ref.group ?? "";
  if (ref.namespace && ref.namespace !== namespace) return false;
  if (group === "gateway.networking.k8s.io" && ref.kind === "Gateway") {
    return workload.namespace === namespace && workload.labels[GATEWAY_NAME_LABEL] === ref.name;
  }
  if (group !== NETWORKING) return false;
  if (ref.kind === "Gateway") {
    return targets.gateways.some((g) =>
      g.metadata.namespace === namespace && g.metadata.name === ref.name && g.spec.selector !== undefined &&
      selectorMatches(g.spec.selector, workload.labels)
    );
  }
  if (ref.kind === "ServiceEntry") {
    return targets.serviceEntries.some((se) => {
      if (se.metadata.namespace !== namespace || se.metadata.name !== ref.name) return false;
      const sel = se.spec.workloadSelector?.labels;
      if (sel && !isEmptySelector(sel)) {
        return workload.namespace === namespace && selectorMatches(sel, workload.labels);
      }
      const addresses = new Set(workload.ipAddresses ?? []);
      return (se.spec.endpoints ?? []).some((e) => e.address !== undefined && addresses.has(e.address));
    });
  }
  return false;
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
   * The gateways of every network (MeshNetworks and labelled gateway services, see
   * model/network.ts), sorted by network, address and port; empty in a single-network mesh.
   */
  readonly networkGateways: readonly NetworkGateway[];
  /**
   * PeerAuthentications that may apply to a workload, as Istio selects them: those in its
   * namespace without a selector or whose selector matches its labels, and those in the root
   * namespace without a selector (a selector in the root namespace is ignored). Sorted by namespace and name
   * (Istio's "oldest wins" becomes "first by name wins", which is deterministic).
   */
  peerAuthentications(workload: PolicyWorkload): readonly Resource<PeerAuthenticationSpec>[];
  /**
   * AuthorizationPolicies that apply to a workload: those in its namespace and in the root
   * namespace whose selector is absent or matches its labels (a root-namespace selector applies
   * across namespaces, as in Istio); those with `targetRef(s)` where a reference applies
   * ({@link targetRefApplies}). Sorted by namespace, name.
   */
  authorizationPolicies(workload: PolicyWorkload): readonly Resource<AuthorizationPolicySpec>[];
  /** RequestAuthentications that apply to a workload, selected like AuthorizationPolicies. */
  requestAuthentications(workload: PolicyWorkload): readonly Resource<RequestAuthenticationSpec>[];
  /**
   * The Telemetry resources in force for a workload, in the order Istio merges them (later ones
   * override earlier ones): the root namespace's without a selector, the workload's namespace's
   * without a selector (when that is not the root namespace), then the first of its namespace
   * whose selector matches its labels or one of whose target references applies
   * ({@link targetRefApplies}). The first by name wins at each level.
   */
  telemetryFor(workload: PolicyWorkload): readonly Resource<TelemetrySpec>[];
}

/**
 * Whether a Sidecar egress listener's `hosts` (`namespace/host`, written in the Sidecar's
 * namespace) admit a service: one entry's namespace part admits the service's namespace and
 * its host part covers the service's host name.
 */
export function egressHostsAdmit(
  hosts: readonly string[],
  sidecarNamespace: string,
  svc: Pick<Service, "namespace" | "hostname">,
): boolean {
  return hosts.some((h) => {
    const { namespace, host } = splitNamespacedHost(h);
    return namespaceAdmits(namespace, sidecarNamespace, svc.namespace) && hostCovers(host, svc.hostname);
  });
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

type VirtualServiceResource = Resource<VirtualServiceSpec>;
type HTTPRoute = NonNullable<VirtualServiceSpec["http"]>[number];
type HTTPMatchRequest = NonNullable<HTTPRoute["match"]>[number];
type StringMatch = NonNullable<HTTPMatchRequest["uri"]>;

/**
 * Whether a delegate's string match cannot narrow the root's, as Istio judges it: no conflict
 * when either is unset; a regex on one side allows nothing else on the other; an exact root
 * takes only the same exact; a prefix root takes prefixes and exact paths that start with it.
 */
function stringMatchConflict(root: StringMatch | undefined, leaf: StringMatch | undefined): boolean {
  if (!root || !leaf) return false;
  if (root.regex && (leaf.regex || leaf.prefix || leaf.exact)) return true;
  if (leaf.regex && (root.regex || root.prefix || root.exact)) return true;
  if (root.exact) return leaf.prefix ? true : leaf.exact !== root.exact;
  if (root.prefix) {
    if (leaf.prefix) return !leaf.prefix.startsWith(root.prefix);
    if (leaf.exact) return !leaf.exact.startsWith(root.prefix);
  }
  return true;
}

function mapConflict(
  root: Readonly<Record<string, StringMatch>> | undefined,
  leaf: Readonly<Record<string, StringMatch>> | undefined,
): boolean {
  return Object.entries(leaf ?? {}).some(([k, v]) => stringMatchConflict(root?.[k], v));
}

/** Whether a delegate's match condition is not within a root's (Istio's hasConflict). */
function delegateMatchConflict(root: HTTPMatchRequest, leaf: HTTPMatchRequest): boolean {
  const fields = ["uri", "scheme", "method", "authority"] as const;
  if (fields.some((f) => stringMatchConflict(root[f], leaf[f]))) return true;
  if (mapConflict(root.headers, leaf.headers) || mapConflict(root.withoutHeaders, leaf.withoutHeaders)) {
    return true;
  }
  if (mapConflict(root.queryParams, leaf.queryParams)) return true;
  if ((root.ignoreUriCase ?? false) !== (leaf.ignoreUriCase ?? false)) return true;
  if (root.port && leaf.port && root.port !== leaf.port) return true;
  if (root.sourceNamespace && leaf.sourceNamespace !== root.sourceNamespace) return true;
  if (
    Object.entries(leaf.sourceLabels ?? {}).some(([k, v]) =>
      root.sourceLabels?.[k] !== undefined && root.sourceLabels[k] !== v
    )
  ) {
    return true;
  }
  const rg = root.gateways ?? [];
  const lg = leaf.gateways ?? [];
  return rg.length > 0 && lg.length > 0 && lg.some((g) => !rg.includes(g));
}

function joinNames(root: string | undefined, leaf: string | undefined): string | undefined {
  return !leaf ? root : root ? `${root}-${leaf}` : leaf;
}

/** A delegate's match condition narrowed by a root's: the delegate's fields, the root's where unset. */
function mergeDelegateMatch(root: HTTPMatchRequest, leaf: HTTPMatchRequest): HTTPMatchRequest {
  const name = joinNames(root.name, leaf.name);
  const merged = (a?: Readonly<Record<string, StringMatch>>, b?: Readonly<Record<string, StringMatch>>) =>
    a || b ? { ...a, ...b } : undefined;
  const out: HTTPMatchRequest = {
    ...root,
    ...leaf,
    headers: merged(root.headers, leaf.headers),
    withoutHeaders: merged(root.withoutHeaders, leaf.withoutHeaders),
    queryParams: merged(root.queryParams, leaf.queryParams),
    sourceLabels: root.sourceLabels || leaf.sourceLabels
      ? { ...root.sourceLabels, ...leaf.sourceLabels }
      : undefined,
    gateways: leaf.gateways && leaf.gateways.length > 0 ? leaf.gateways : root.gateways,
    name,
  };
  return Object.fromEntries(Object.entries(out).filter(([, v]) => v !== undefined)) as HTTPMatchRequest;
}

/**
 * The match conditions of a delegate rule under a root rule, as Istio merges them: the root's
 * when the delegate has none (and the other way round); else, for each delegate condition, its
 * merge with every root condition it does not conflict with. Undefined when some delegate
 * condition fits no root condition (the delegate rule is then left out).
 */
export function mergeDelegateMatches(
  root: readonly HTTPMatchRequest[] | undefined,
  leaf: readonly HTTPMatchRequest[] | undefined,
): HTTPMatchRequest[] | undefined {
  if (!root || root.length === 0) return leaf ? [...leaf] : [];
  if (!leaf || leaf.length === 0) return [...root];
  const out: HTTPMatchRequest[] = [];
  for (const l of leaf) {
    const fits = root.filter((r) => !delegateMatchConflict(r, l));
    if (fits.length === 0) return undefined;
    out.push(...fits.map((r) => mergeDelegateMatch(r, l)));
  }
  return out;
}

/**
 * A delegate's rule placed under a root's rule (Istio's mergeHTTPRoute): matches merged (see
 * {@link mergeDelegateMatches}), names joined with "-", and the root's rewrite, direct response,
 * timeout, retries, fault, mirrors, CORS policy and header changes where the delegate sets none.
 * Undefined when the matches conflict.
 */
export function mergeDelegateRoute(root: HTTPRoute, leaf: HTTPRoute): HTTPRoute | undefined {
  const match = mergeDelegateMatches(root.match, leaf.match);
  if (!match) return undefined;
  const inherited = [
    "rewrite",
    "directResponse",
    "timeout",
    "retries",
    "fault",
    "mirror",
    "mirrorPercent",
    "mirrorPercentage",
    "mirrors",
    "corsPolicy",
    "headers",
  ] as const;
  const out: Record<string, unknown> = { ...leaf };
  for (const k of inherited) if (out[k] === undefined && root[k] !== undefined) out[k] = root[k];
  const name = joinNames(root.name, leaf.name);
  if (name) out.name = name;
  if (match.length > 0) out.match = match;
  else delete out.match;
  delete out.delegate;
  return out as HTTPRoute;
}

/**
 * A delegate's rule with its short host names (destinations, mirrors) and match gateways
 * qualified in the delegate's own namespace, as Istio resolves them before merging, since the
 * merged rule is read in the root's namespace.
 */
function qualifyDelegateRule(rule: HTTPRoute, namespace: string): HTTPRoute {
  type Dest = { host: string };
  const dest = <D extends Dest>(d: D): D => ({ ...d, host: resolveHost(d.host, namespace) });
  return {
    ...rule,
    ...(rule.route ? { route: rule.route.map((r) => ({ ...r, destination: dest(r.destination) })) } : {}),
    ...(rule.mirror ? { mirror: dest(rule.mirror) } : {}),
    ...(rule.mirrors
      ? { mirrors: rule.mirrors.map((m) => ({ ...m, destination: dest(m.destination) })) }
      : {}),
    ...(rule.match
      ? {
        match: rule.match.map((m) =>
          m.gateways ? { ...m, gateways: m.gateways.map((g) => qualifyGateway(g, namespace)) } : m
        ),
      }
      : {}),
  };
}

/**
 * VirtualServices with delegation resolved, as Istio's mergeVirtualServicesIfNeeded: a
 * VirtualService without hosts is a delegate and is left out of the list (it routes nothing
 * by itself); a root's `http` rule with `delegate: {name, namespace}` (namespace defaulting to
 * the root's) is replaced by the delegate's rules merged under it ({@link mergeDelegateRoute}),
 * if the delegate exists and is exported to the root's namespace, else dropped. The root keeps
 * its hosts, gateways and exportTo. Order is kept.
 */
export function mergeDelegates(all: readonly VirtualServiceResource[]): VirtualServiceResource[] {
  const delegates = new Map<string, VirtualServiceResource>();
  for (const vs of all) {
    if ((vs.spec.hosts ?? []).length === 0) delegates.set(`${vs.metadata.namespace}/${vs.metadata.name}`, vs);
  }
  const out: VirtualServiceResource[] = [];
  for (const vs of all) {
    if ((vs.spec.hosts ?? []).length === 0) continue;
    const http = vs.spec.http ?? [];
    if (!http.some((h) => h.delegate)) {
      out.push(vs);
      continue;
    }
    const rules: HTTPRoute[] = [];
    for (const h of http) {
      if (!h.delegate) {
        rules.push(h);
        continue;
      }
      const ns = h.delegate.namespace || vs.metadata.namespace;
      const d = delegates.get(`${ns}/${h.delegate.name}`);
      if (!d || !exportedTo(d.spec.exportTo, ns, vs.metadata.namespace)) continue;
      for (const leaf of d.spec.http ?? []) {
        const merged = mergeDelegateRoute(h, qualifyDelegateRule(leaf, ns));
        if (merged) rules.push(merged);
      }
    }
    out.push({ ...vs, spec: { ...vs.spec, http: rules } });
  }
  return out;
}

/**
 * Istio's applicableTelemetries: the namespace-wide Telemetry of the root namespace, that of the
 * workload's namespace, and the first workload-level one (selector matches, or a target
 * reference applies), in that order. `all` is sorted by namespace and name.
 */
export function selectTelemetries(
  all: readonly Resource<TelemetrySpec>[],
  workload: PolicyWorkload,
  rootNamespace: string,
  targets: PolicyTargets,
): Resource<TelemetrySpec>[] {
  const namespaceWide = (ns: string) =>
    all.find((r) =>
      r.metadata.namespace === ns && policyTargetRefs(r.spec).length === 0 &&
      isEmptySelector(r.spec.selector?.matchLabels)
    );
  const out: Resource<TelemetrySpec>[] = [];
  const root = namespaceWide(rootNamespace);
  if (root) out.push(root);
  if (workload.namespace !== rootNamespace) {
    const ns = namespaceWide(workload.namespace);
    if (ns) out.push(ns);
  }
  const own = all.find((r) => {
    if (r.metadata.namespace !== workload.namespace) return false;
    const refs = policyTargetRefs(r.spec);
    if (refs.length > 0) {
      return refs.some((ref) => targetRefApplies(ref, r.metadata.namespace, workload, targets));
    }
    const sel = r.spec.selector?.matchLabels;
    return !isEmptySelector(sel) && selectorMatches(sel, workload.labels);
  });
  if (own) out.push(own);
  return out;
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
  // Every endpoint with its network (WorkloadEntry network, topology label or MeshNetworks fromCidr).
  const allEndpoints = withNetworks(
    [...fromConfig.endpoints, ...(inputs.registries ?? []).flatMap((r) => r.endpoints)],
    mesh,
  );
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

  const virtualServices = mergeDelegates(config.list<VirtualServiceSpec>(NETWORKING, "VirtualService"));
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

  const telemetries = [...config.list<TelemetrySpec>("telemetry.istio.io", "Telemetry")].sort(byNsName);

  const policyTargets: PolicyTargets = {
    gateways,
    serviceEntries: config.list<ServiceEntrySpec>(NETWORKING, "ServiceEntry"),
  };

  /**
   * Istio's getConfigsForWorkload: own namespace and root namespace, selector subset of labels;
   * a policy with target references applies where one of them does ({@link targetRefApplies}).
   */
  function selectPolicies<T extends { selector?: { matchLabels?: Readonly<Record<string, string>> } }>(
    all: readonly Resource<T>[],
    workload: PolicyWorkload,
    rootSelectors: boolean,
  ): Resource<T>[] {
    return all.filter((r) => {
      const spec = r.spec as T & {
        targetRef?: PolicyTargetReference;
        targetRefs?: readonly PolicyTargetReference[];
      };
      const refs = policyTargetRefs(spec);
      if (refs.length > 0) {
        return refs.some((ref) => targetRefApplies(ref, r.metadata.namespace, workload, policyTargets));
      }
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
  /**
   * A per-workload selection remembered for this push, keyed by the workload object: one proxy
   * asks for its policies once per listener, filter chain and filter.
   */
  const perWorkload = <T>(select: (workload: PolicyWorkload) => T): (workload: PolicyWorkload) => T => {
    const seen = new WeakMap<PolicyWorkload, T>();
    return (workload) => {
      let found = seen.get(workload);
      if (found === undefined) seen.set(workload, found = select(workload));
      return found;
    };
  };
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
    return egress.some((l) => egressHostsAdmit(l.hosts, sc.metadata.namespace, svc));
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
    peerAuthentications: perWorkload((workload) => selectPolicies(peerAuthns, workload, false)),
    authorizationPolicies: perWorkload((workload) => selectPolicies(authzPolicies, workload, true)),
    requestAuthentications: perWorkload((workload) => selectPolicies(requestAuthns, workload, true)),
    telemetryFor: perWorkload((workload) =>
      selectTelemetries(telemetries, workload, mesh.rootNamespace, policyTargets)
    ),
    gatewaysFor: (proxy) =>
      gateways.filter((g) => g.spec.selector !== undefined && selectorMatches(g.spec.selector, proxy.labels)),
    sidecarFor,
    networkGateways: networkGateways({
      mesh,
      config,
      services: (hostname) => byHost.get(hostname) ?? [],
      endpoints: (service, port) =>
        endpointIndex.get(`${service.hostname}|${service.namespace}|${port}`) ?? [],
    }),
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

/**
 * A view of `push` in which proxies see only the services whose host name is in `hosts` (and
 * otherwise the same context), for translating the part of a proxy's configuration that
 * concerns those services alone, such as their load assignments.
 */
export function scopedToHosts(push: PushContext, hosts: ReadonlySet<string>): PushContext {
  const memo = new WeakMap<readonly Service[], readonly Service[]>();
  return {
    ...push,
    visibleServices(proxy) {
      const all = push.visibleServices(proxy);
      let scoped = memo.get(all);
      if (!scoped) memo.set(all, scoped = all.filter((s) => hosts.has(s.hostname)));
      return scoped;
    },
  };
}
