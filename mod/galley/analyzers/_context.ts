/**
 * The read-only, indexed view of accepted resources that every analyzer works on, and the
 * analyzer contract itself. Analyzers import this file (and mod/api for Istio's rules), never
 * analyze.ts, so analyze.ts can list them without an import cycle.
 *
 * @module
 */

import {
  networkingGroup,
  type ServiceEntrySpec,
  type ServicePort,
  type WorkloadEntrySpec,
  type WorkloadGroupSpec,
} from "../../api/kinds/networking.ts";
import { securityGroup } from "../../api/kinds/security.ts";
import { telemetryGroup } from "../../api/kinds/telemetry.ts";
import {
  mergeMeshConfig,
  type MeshConfig,
  meshConfigGroup,
  type MeshConfigSpec,
} from "../../api/kinds/mesh_config.ts";
import { mixerGroup, mixerResource } from "../../api/kinds/mixer.ts";
import {
  DEFAULT_DOMAIN_SUFFIX,
  hostsOverlap,
  isVisibleFrom,
  type Labels,
  resolveHost,
  selectorMatches,
  type Visibility,
  visibilityOf,
} from "../../api/mod.ts";
import type { Diagnostic, Resource, Severity } from "../../api/resource.ts";
/**
 * A finding of analysis: a diagnostic with its MSH code and, where Istio reports the same thing,
 * istioctl's code for it (`istio: "IST0101"`).
 */
export interface AnalysisDiagnostic extends Diagnostic {
  readonly istio?: string;
}

/** One cross-resource check. Its findings all carry its `code` and `severity`. */
export interface Analyzer {
  /** Stable code, "MSH0" and three digits; docs/analysis-codes.md lists them all. */
  readonly code: string;
  /** CamelCase name, as istioctl names its messages. */
  readonly name: string;
  readonly severity: Severity;
  /** One line on what it checks. */
  readonly description: string;
  /** istioctl's code with the same meaning ("IST0101"), if Istio has this check. */
  readonly istioCode?: string;
  /** When only some findings carry {@link istioCode}, or Istio's check differs: which, and how. */
  readonly istioNote?: string;
  /** Inspects the context; must not mutate it. Findings name a resource, a field and its position. */
  analyze(ctx: AnalysisContext): AnalysisDiagnostic[];
}

/**
 * A workload as analysis sees it: a WorkloadEntry, a WorkloadGroup (the template that
 * auto-registered VMs take their labels from), or an endpoint written inline in a ServiceEntry.
 */
export interface Workload {
  readonly kind: "WorkloadEntry" | "WorkloadGroup" | "ServiceEntryEndpoint";
  /** The resource that declares it. */
  readonly resource: Resource;
  /** Where in that resource: "spec", or "spec.endpoints[2]" for an inline endpoint. */
  readonly field: string;
  readonly namespace: string;
  readonly labels: Labels;
  readonly serviceAccount?: string;
  /** Human name for messages: "WorkloadEntry bookinfo/reviews-v1", "ServiceEntry ns/x endpoint 192.0.2.1". */
  readonly label: string;
}

/** One host of one ServiceEntry: the unit host lookups return. */
export interface MeshService {
  /** Resolved, lower-case host; may be a wildcard such as "*.example.com". */
  readonly host: string;
  readonly entry: Resource<ServiceEntrySpec>;
  /** The host's field in the entry, "spec.hosts[N]". */
  readonly field: string;
  readonly namespace: string;
  readonly location: "MESH_EXTERNAL" | "MESH_INTERNAL";
  /** The namespaces the entry is exported to. */
  readonly visibility: Visibility;
  readonly ports: readonly ServicePort[];
  /**
   * The workloads behind the host: those its workloadSelector selects in its namespace, or its
   * inline endpoints. Undefined when the entry names neither (DNS-resolved external hosts), so
   * "no workload" cannot be told from "unknown".
   */
  readonly workloads: readonly Workload[] | undefined;
}

/** A read-only, indexed view of the accepted resources that analyzers query. */
export interface AnalysisContext {
  /** Every resource, in source order (file, line). */
  readonly resources: readonly Resource[];
  /** Resources of a kind ("VirtualService", "rule", ...), in source order. */
  ofKind<S = unknown>(kind: string): readonly Resource<S>[];
  /** One resource by kind, namespace and name. */
  get<S = unknown>(kind: string, namespace: string, name: string): Resource<S> | undefined;
  /** Namespaces that hold at least one resource. */
  readonly namespaces: ReadonlySet<string>;
  /** The MeshConfig resource in force: the first one in source order, if any. */
  readonly meshConfig: Resource<MeshConfigSpec> | undefined;
  /**
   * The effective mesh settings (that resource merged over meshd's defaults): rootNamespace,
   * trustDomain, defaultMtlsMode, ...
   */
  readonly mesh: MeshConfig;
  /** Resolves a host written in `namespace` as Istio does: "reviews" -> "reviews.NS.svc.cluster.local". */
  resolveHost(host: string, namespace: string): string;
  /** Every host of every ServiceEntry, in source order. */
  readonly services: readonly MeshService[];
  /**
   * The services a host written in `fromNamespace` refers to: the host is resolved, then matched
   * against ServiceEntry hosts (wildcards on either side), keeping those exported to `fromNamespace`.
   */
  servicesFor(host: string, fromNamespace: string): readonly MeshService[];
  /** Every workload: WorkloadEntries, WorkloadGroups and inline ServiceEntry endpoints. */
  readonly workloads: readonly Workload[];
  /**
   * Workloads whose labels carry every pair of `selector`, in `namespace` or, when it is
   * undefined, in any namespace. An empty selector selects every workload in scope. Selectors
   * pick proxies, so inline ServiceEntry endpoints are never selected.
   */
  workloadsSelected(selector: Labels | undefined, namespace?: string): readonly Workload[];
}

/** The API group of each kind the analyzers read; `ofKind` ignores same-named kinds of other groups. */
const KIND_GROUPS: Readonly<Record<string, string>> = {
  VirtualService: networkingGroup,
  DestinationRule: networkingGroup,
  Gateway: networkingGroup,
  ServiceEntry: networkingGroup,
  WorkloadEntry: networkingGroup,
  WorkloadGroup: networkingGroup,
  Sidecar: networkingGroup,
  PeerAuthentication: securityGroup,
  RequestAuthentication: securityGroup,
  AuthorizationPolicy: securityGroup,
  Telemetry: telemetryGroup,
  handler: mixerGroup,
  instance: mixerGroup,
  rule: mixerGroup,
  MeshConfig: meshConfigGroup,
};

function kindKey(group: string, kind: string): string {
  return `${group}/${kind}`;
}

function compareSource(a: Resource, b: Resource): number {
  if (a.source.file !== b.source.file) return a.source.file < b.source.file ? -1 : 1;
  return a.source.line - b.source.line || a.source.col - b.source.col;
}

/**
 * Builds the indexed view analyzers work on. The resources are taken as accepted (validated);
 * analysis never changes them.
 */
export function createAnalysisContext(resources: readonly Resource[]): AnalysisContext {
  const sorted = [...resources].sort(compareSource);
  const byKind = new Map<string, Resource[]>();
  const byName = new Map<string, Resource>();
  const namespaces = new Set<string>();
  for (const written of sorted) {
    // Istio 1.x Mixer config (per-adapter and per-template kinds, snake_case, 1.x expressions) is
    // read as the handler, instance or rule it maps to, so every analyzer sees one model.
    const r = written.group === mixerGroup ? mixerResource(written).resource : written;
    const k = kindKey(r.group, r.kind);
    let list = byKind.get(k);
    if (!list) byKind.set(k, list = []);
    list.push(r);
    const named = `${k}/${r.metadata.namespace}/${r.metadata.name}`;
    if (!byName.has(named)) byName.set(named, r);
    namespaces.add(r.metadata.namespace);
  }
  const keyOf = (kind: string) => kindKey(KIND_GROUPS[kind] ?? "", kind);
  const ofKind = <S>(kind: string) => (byKind.get(keyOf(kind)) ?? []) as readonly Resource<S>[];

  const meshConfig = ofKind<MeshConfigSpec>("MeshConfig")[0];
  const resolve = (host: string, namespace: string) => resolveHost(host, namespace, DEFAULT_DOMAIN_SUFFIX);

  const workloads: Workload[] = [];
  for (const r of ofKind<WorkloadEntrySpec>("WorkloadEntry")) {
    workloads.push({
      kind: "WorkloadEntry",
      resource: r,
      field: "spec",
      namespace: r.metadata.namespace,
      labels: r.spec.labels ?? {},
      serviceAccount: r.spec.serviceAccount,
      label: `WorkloadEntry ${r.metadata.namespace}/${r.metadata.name}`,
    });
  }
  for (const r of ofKind<WorkloadGroupSpec>("WorkloadGroup")) {
    workloads.push({
      kind: "WorkloadGroup",
      resource: r,
      field: "spec",
      namespace: r.metadata.namespace,
      labels: { ...r.spec.template?.labels, ...r.spec.metadata?.labels },
      serviceAccount: r.spec.template?.serviceAccount,
      label: `WorkloadGroup ${r.metadata.namespace}/${r.metadata.name}`,
    });
  }
  const entryWorkloads = new Map<Resource, Workload[]>();
  for (const r of ofKind<ServiceEntrySpec>("ServiceEntry")) {
    const eps = (r.spec.endpoints ?? []).map((ep, i): Workload => ({
      kind: "ServiceEntryEndpoint",
      resource: r,
      field: `spec.endpoints[${i}]`,
      namespace: r.metadata.namespace,
      labels: ep.labels ?? {},
      serviceAccount: ep.serviceAccount,
      label: `ServiceEntry ${r.metadata.namespace}/${r.metadata.name} endpoint ${ep.address ?? i}`,
    }));
    entryWorkloads.set(r, eps);
    workloads.push(...eps);
  }

  const workloadsSelected = (selector: Labels | undefined, namespace?: string) =>
    workloads.filter((w) =>
      w.kind !== "ServiceEntryEndpoint" && (namespace === undefined || w.namespace === namespace) &&
      selectorMatches(selector, w.labels)
    );

  const services: MeshService[] = [];
  for (const r of ofKind<ServiceEntrySpec>("ServiceEntry")) {
    const ns = r.metadata.namespace;
    const selector = r.spec.workloadSelector?.labels;
    let backing: readonly Workload[] | undefined;
    if (r.spec.workloadSelector) backing = workloadsSelected(selector, ns);
    else if ((r.spec.endpoints ?? []).length > 0) backing = entryWorkloads.get(r);
    const visibility = visibilityOf(r.spec.exportTo, ns);
    r.spec.hosts.forEach((h, i) => {
      services.push({
        host: resolve(h, ns),
        entry: r,
        field: `spec.hosts[${i}]`,
        namespace: ns,
        location: r.spec.location ?? "MESH_EXTERNAL",
        visibility,
        ports: r.spec.ports ?? [],
        workloads: backing,
      });
    });
  }

  return {
    resources: sorted,
    ofKind,
    get: <S>(kind: string, namespace: string, name: string) =>
      byName.get(`${keyOf(kind)}/${namespace}/${name}`) as Resource<S> | undefined,
    namespaces,
    meshConfig,
    mesh: mergeMeshConfig(meshConfig),
    resolveHost: resolve,
    services,
    servicesFor: (host, fromNamespace) => {
      const resolved = resolve(host, fromNamespace);
      return services.filter((s) =>
        isVisibleFrom(s.visibility, fromNamespace) && hostsOverlap(s.host, resolved)
      );
    },
    workloads,
    workloadsSelected,
  };
}
