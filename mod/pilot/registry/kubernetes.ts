/**
 * The Kubernetes service registry (`--registry kubernetes` in a pod, or
 * `kubernetes://?kubeconfig=FILE[&context=NAME][&domain=cluster.local][&namespace=NS]`): Services,
 * EndpointSlices, Pods and Nodes read by list-then-watch (mod/kube/client.ts), mapped as the
 * ServiceEntry registry maps its entries. A Service is the host `NAME.NAMESPACE.svc.DOMAIN`
 * (STATIC, MESH_INTERNAL, its cluster IP as address); its ready EndpointSlice endpoints are its
 * endpoints, with their Pod's labels, service account and network, and the locality of the
 * Pod's `istio-locality` label or its Node's region/zone labels. A not-ready endpoint leaves EDS.
 *
 * @module
 */
import type { Clock } from "../../shared/clock.ts";
import { errorMessage } from "../../shared/errors.ts";
import type { Logger } from "../../shared/logger.ts";
import type { RegistryState, Workload } from "../model/registry.ts";
import {
  type Endpoint,
  parseProtocol,
  type Protocol,
  type Service,
  type ServicePort,
} from "../model/service.ts";
import {
  createKubeClient,
  inClusterConfig,
  type InClusterOptions,
  type Informer,
  type KubeConnection,
  type KubeObject,
  listWatch,
  loadKubeconfig,
  objectKey,
} from "../../kube/mod.ts";
import type { PlatformRegistry, RegistryStatus } from "./platform.ts";

/** The fields of a Service the registry reads. */
export interface KubeService extends KubeObject {
  readonly spec?: {
    readonly type?: string;
    readonly clusterIP?: string;
    readonly clusterIPs?: readonly string[];
    readonly externalName?: string;
    readonly ports?: ReadonlyArray<{
      readonly name?: string;
      readonly port: number;
      readonly targetPort?: number | string;
      readonly protocol?: string;
      readonly appProtocol?: string;
    }>;
  };
}

/** The fields of an EndpointSlice (discovery.k8s.io/v1) the registry reads. */
export interface KubeEndpointSlice extends KubeObject {
  readonly addressType?: string;
  readonly endpoints?: ReadonlyArray<{
    readonly addresses?: readonly string[];
    readonly conditions?: { readonly ready?: boolean | null; readonly serving?: boolean | null };
    readonly nodeName?: string;
    readonly zone?: string;
    readonly targetRef?: { readonly kind?: string; readonly name?: string; readonly namespace?: string };
  }>;
  readonly ports?: ReadonlyArray<
    { readonly name?: string; readonly port?: number; readonly protocol?: string }
  >;
}

/** The fields of a Pod the registry reads. */
export interface KubePod extends KubeObject {
  readonly spec?: { readonly serviceAccountName?: string; readonly nodeName?: string };
  readonly status?: {
    readonly phase?: string;
    readonly podIP?: string;
    readonly conditions?: ReadonlyArray<{ readonly type?: string; readonly status?: string }>;
  };
}

/** What the registry has read, by objectKey. */
export interface KubeView {
  readonly services: ReadonlyMap<string, KubeService>;
  readonly slices: ReadonlyMap<string, KubeEndpointSlice>;
  readonly pods: ReadonlyMap<string, KubePod>;
  readonly nodes: ReadonlyMap<string, KubeObject>;
}

const SERVICE_NAME_LABEL = "kubernetes.io/service-name";
const TLS_MODE_LABEL = "security.istio.io/tlsMode";
const SIDECAR_STATUS_ANNOTATION = "sidecar.istio.io/status";
const EXPORT_TO_ANNOTATION = "networking.istio.io/exportTo";
const NETWORK_LABEL = "topology.istio.io/network";
const LOCALITY_LABEL = "istio-locality";
const REGION_LABEL = "topology.kubernetes.io/region";
const ZONE_LABEL = "topology.kubernetes.io/zone";
const SUBZONE_LABEL = "topology.istio.io/subzone";

/**
 * A Service port's protocol, as Istio reads it: `appProtocol` first (with Kubernetes'
 * `kubernetes.io/h2c` as HTTP2 and `kubernetes.io/ws` as HTTP), then a name of the form
 * `PROTOCOL` or `PROTOCOL-SUFFIX` (`http-web`, `grpc-api`), then UDP for UDP ports; anything
 * else is UNSUPPORTED (served as TCP).
 */
export function portProtocol(p: { name?: string; protocol?: string; appProtocol?: string }): Protocol {
  if (p.protocol === "UDP") return "UDP";
  const app = (p.appProtocol ?? "").toLowerCase();
  if (app === "kubernetes.io/h2c") return "HTTP2";
  if (app === "kubernetes.io/ws") return "HTTP";
  if (app === "kubernetes.io/wss") return "HTTPS";
  const fromApp = parseProtocol(app);
  if (fromApp !== "UNSUPPORTED") return fromApp;
  const name = (p.name ?? "").toLowerCase();
  if (name === "grpc-web" || name.startsWith("grpc-web-")) return "GRPC-WEB";
  return parseProtocol(name.split("-")[0]);
}

/** The host name of a Service. */
export function serviceHost(name: string, namespace: string, domain: string): string {
  return `${name}.${namespace}.svc.${domain}`.toLowerCase();
}

function servicePorts(svc: KubeService): ServicePort[] {
  return (svc.spec?.ports ?? []).map((p) => ({
    name: p.name ?? "",
    number: p.port,
    protocol: portProtocol(p),
    ...(typeof p.targetPort === "number" && p.targetPort !== p.port ? { targetPort: p.targetPort } : {}),
  }));
}

function exportTo(svc: KubeService): string[] {
  const raw = svc.metadata.annotations?.[EXPORT_TO_ANNOTATION];
  const list = (raw ?? "").split(",").map((s) => s.trim()).filter((s) => s !== "");
  return list.length > 0 ? list : ["*"];
}

/** A Service as a registry service. */
export function serviceFrom(svc: KubeService, domain: string): Service {
  const ns = svc.metadata.namespace ?? "default";
  const spec = svc.spec ?? {};
  const ips = (spec.clusterIPs ?? (spec.clusterIP ? [spec.clusterIP] : [])).filter((ip) =>
    ip !== "" && ip !== "None"
  );
  return {
    hostname: serviceHost(svc.metadata.name, ns, domain),
    namespace: ns,
    ports: servicePorts(svc),
    addresses: spec.type === "ExternalName" ? [] : ips,
    resolution: spec.type === "ExternalName" ? "DNS" : "STATIC",
    location: "MESH_INTERNAL",
    exportTo: exportTo(svc),
    subjectAltNames: [],
    source: `kubernetes:${ns}/${svc.metadata.name}`,
  };
}

/**
 * The locality of a pod: its `istio-locality` label (`region.zone.subzone`), else its node's
 * `topology.kubernetes.io/region` and `/zone` (the endpoint's zone when the node has none) and
 * `topology.istio.io/subzone`, as `region/zone/subzone` without empty trailing parts.
 */
export function localityOf(
  pod: KubePod | undefined,
  node: KubeObject | undefined,
  zone: string | undefined,
): string | undefined {
  const own = pod?.metadata.labels?.[LOCALITY_LABEL];
  if (own) return own.split(".").join("/");
  const l = node?.metadata.labels ?? {};
  const parts = [l[REGION_LABEL] ?? "", l[ZONE_LABEL] ?? zone ?? "", l[SUBZONE_LABEL] ?? ""];
  while (parts.length > 0 && parts[parts.length - 1] === "") parts.pop();
  return parts.length > 0 ? parts.join("/") : undefined;
}

function tlsModeOf(pod: KubePod | undefined): "istio" | "disabled" {
  if (!pod) return "disabled";
  const label = pod.metadata.labels?.[TLS_MODE_LABEL];
  if (label === "istio") return "istio";
  if (label === "disabled") return "disabled";
  return pod.metadata.annotations?.[SIDECAR_STATUS_ANNOTATION] !== undefined ? "istio" : "disabled";
}

function podReady(pod: KubePod): boolean {
  return pod.status?.phase === "Running" &&
    (pod.status.conditions ?? []).some((c) => c.type === "Ready" && c.status === "True");
}

/** Endpoints of one service from its slices. */
function endpointsOf(svc: Service, slices: readonly KubeEndpointSlice[], view: KubeView): Endpoint[] {
  const out: Endpoint[] = [];
  const seen = new Set<string>();
  for (const slice of slices) {
    if (slice.addressType !== "IPv4" && slice.addressType !== "IPv6") continue;
    for (const ep of slice.endpoints ?? []) {
      // A nil ready condition is unknown, which the API asks consumers to read as ready.
      if (ep.conditions?.ready === false) continue;
      const address = ep.addresses?.[0];
      if (!address) continue;
      const ref = ep.targetRef?.kind === "Pod" && ep.targetRef.name
        ? `${ep.targetRef.namespace ?? svc.namespace}/${ep.targetRef.name}`
        : undefined;
      const pod = ref ? view.pods.get(ref) : undefined;
      const node = ep.nodeName ? view.nodes.get(ep.nodeName) : undefined;
      const labels = pod?.metadata.labels ?? {};
      const locality = localityOf(pod, node, ep.zone);
      const network = labels[NETWORK_LABEL];
      const sa = pod?.spec?.serviceAccountName;
      for (const sp of slice.ports ?? []) {
        const servicePort = svc.ports.find((p) => p.name === (sp.name ?? ""));
        if (!servicePort || sp.port === undefined) continue;
        const id = `${servicePort.name}|${address}|${sp.port}`;
        if (seen.has(id)) continue;
        seen.add(id);
        out.push({
          hostname: svc.hostname,
          namespace: svc.namespace,
          servicePort,
          address,
          port: sp.port,
          labels,
          ...(sa ? { serviceAccount: sa } : {}),
          ...(locality ? { locality } : {}),
          ...(network ? { network } : {}),
          weight: 1,
          healthy: true,
          tlsMode: tlsModeOf(pod),
          source: `${svc.source}/${ep.targetRef?.name ?? address}`,
        });
      }
    }
  }
  return out;
}

/** Pods with an address, as workloads ServiceEntries' workloadSelectors may select. */
function workloadsOf(view: KubeView): Workload[] {
  const out: Workload[] = [];
  for (const pod of view.pods.values()) {
    const ip = pod.status?.podIP;
    const phase = pod.status?.phase;
    if (!ip || phase === "Succeeded" || phase === "Failed") continue;
    const labels = pod.metadata.labels ?? {};
    const node = pod.spec?.nodeName ? view.nodes.get(pod.spec.nodeName) : undefined;
    const locality = localityOf(pod, node, undefined);
    const sa = pod.spec?.serviceAccountName;
    out.push({
      key: `kubernetes:${objectKey(pod)}`,
      namespace: pod.metadata.namespace ?? "default",
      spec: {
        address: ip,
        labels: { ...labels },
        ...(sa ? { serviceAccount: sa } : {}),
        ...(locality ? { locality } : {}),
        ...(labels[NETWORK_LABEL] ? { network: labels[NETWORK_LABEL] } : {}),
      },
      healthy: podReady(pod),
    });
  }
  return out.sort((a, b) => a.key.localeCompare(b.key));
}

/**
 * The registry state of a view: one service per Service, the ready endpoints of its
 * EndpointSlices (ExternalName services: one DNS endpoint at the external name), the pods as
 * workloads. Pure; sorted, so equal views give equal states.
 */
export function kubernetesState(view: KubeView, opts: { readonly domain: string }): RegistryState {
  const slicesBySvc = new Map<string, KubeEndpointSlice[]>();
  for (const s of view.slices.values()) {
    const svc = s.metadata.labels?.[SERVICE_NAME_LABEL];
    if (!svc) continue;
    const key = `${s.metadata.namespace ?? "default"}/${svc}`;
    const list = slicesBySvc.get(key) ?? [];
    list.push(s);
    slicesBySvc.set(key, list);
  }
  const services: Service[] = [];
  const endpoints: Endpoint[] = [];
  const keys = [...view.services.keys()].sort();
  for (const key of keys) {
    const ks = view.services.get(key)!;
    const svc = serviceFrom(ks, opts.domain);
    services.push(svc);
    if (ks.spec?.type === "ExternalName") {
      const target = ks.spec.externalName;
      if (!target) continue;
      for (const p of svc.ports) {
        endpoints.push({
          hostname: svc.hostname,
          namespace: svc.namespace,
          servicePort: p,
          address: target,
          port: p.number,
          labels: {},
          weight: 1,
          healthy: true,
          tlsMode: "disabled",
          source: svc.source,
        });
      }
      continue;
    }
    const slices = (slicesBySvc.get(key) ?? []).sort((a, b) =>
      a.metadata.name.localeCompare(b.metadata.name)
    );
    endpoints.push(...endpointsOf(svc, slices, view));
  }
  return { services, endpoints, workloads: workloadsOf(view) };
}

/** Options of createKubernetesRegistry. */
export interface KubernetesRegistryOptions {
  /** The `--registry` value: `kubernetes://` (in-cluster) or `kubernetes://?kubeconfig=FILE&...`. */
  readonly url: URL;
  readonly clock: Clock;
  readonly logger: Logger;
  readonly fetch?: typeof fetch;
  /** Where in-cluster credentials are read from (tests point this at a temporary directory). */
  readonly inCluster?: InClusterOptions;
  /** Retry delays after failures (default 500 ms growing to 30 s). */
  readonly backoff?: { readonly initialMs: number; readonly maxMs: number };
  /** Timeout of a request or of a watch's headers (default 10 s). */
  readonly requestTimeoutMs?: number;
}

const URL_PARAMS = ["kubeconfig", "context", "domain", "namespace"];

/** The settings a `kubernetes://` URL carries. Throws naming the parameter when one is wrong. */
export function parseKubernetesUrl(
  url: URL,
): { kubeconfig?: string; context?: string; domain: string; namespace?: string } {
  for (const k of url.searchParams.keys()) {
    if (!URL_PARAMS.includes(k)) {
      throw new Error(
        `kubernetes registry: unknown parameter ${JSON.stringify(k)}; want ${URL_PARAMS.join(", ")}`,
      );
    }
  }
  const get = (k: string) => url.searchParams.get(k) || undefined;
  const domain = (get("domain") ?? "cluster.local").replace(/^\.+|\.+$/g, "");
  if (!/^[a-z0-9]([a-z0-9-]*[a-z0-9])?(\.[a-z0-9]([a-z0-9-]*[a-z0-9])?)*$/i.test(domain)) {
    throw new Error(`kubernetes registry: domain=${JSON.stringify(domain)} is not a DNS domain`);
  }
  const kubeconfig = get("kubeconfig");
  const context = get("context");
  const namespace = get("namespace");
  if (context && !kubeconfig) throw new Error("kubernetes registry: context= needs kubeconfig=FILE");
  return {
    domain,
    ...(kubeconfig ? { kubeconfig } : {}),
    ...(context ? { context } : {}),
    ...(namespace ? { namespace } : {}),
  };
}

function displayName(url: URL): string {
  return url.href === "kubernetes://" || url.href === "kubernetes:" ? "kubernetes" : url.href;
}

const EMPTY: RegistryState = { services: [], endpoints: [], workloads: [] };

/**
 * Reads Services, EndpointSlices, Pods and Nodes from the API server named by `url` (a
 * kubeconfig, else the pod's service account) and starts syncing in the background; `state()` is
 * empty until Services, EndpointSlices and Pods were each listed once. Throws (naming the file or
 * parameter) when the URL or the credentials are unusable.
 */
export function createKubernetesRegistry(opts: KubernetesRegistryOptions): PlatformRegistry {
  const settings = parseKubernetesUrl(opts.url);
  const conn: KubeConnection = settings.kubeconfig
    ? loadKubeconfig(settings.kubeconfig, settings.context)
    : inClusterConfig(opts.inCluster);
  const name = displayName(opts.url);
  const log = opts.logger;
  const client = createKubeClient(conn, {
    clock: opts.clock,
    ...(opts.fetch ? { fetch: opts.fetch } : {}),
    ...(opts.requestTimeoutMs ? { requestTimeoutMs: opts.requestTimeoutMs } : {}),
  });
  const ns = settings.namespace ? `/namespaces/${encodeURIComponent(settings.namespace)}` : "";
  const listeners = new Set<() => void>();
  let state = EMPTY;
  let stateJson = JSON.stringify(EMPTY);
  let scheduled = false;

  const recompute = () => {
    scheduled = false;
    if (!(services.status().synced && slices.status().synced && pods.status().synced)) return;
    const next = kubernetesState({
      services: services.items(),
      slices: slices.items(),
      pods: pods.items(),
      nodes: nodes.items(),
    }, { domain: settings.domain });
    const json = JSON.stringify(next);
    if (json === stateJson) return;
    state = next;
    stateJson = json;
    for (const l of [...listeners]) {
      try {
        l();
      } catch (e) {
        log.error("registry listener failed", { error: errorMessage(e) });
      }
    }
  };
  // Changes arriving together (one watch chunk, one relist) make one new state.
  const schedule = () => {
    if (scheduled) return;
    scheduled = true;
    queueMicrotask(recompute);
  };
  const informerOpts = {
    clock: opts.clock,
    logger: log,
    onEvent: schedule,
    onStatus: schedule,
    ...(opts.backoff ? { backoff: opts.backoff } : {}),
  };
  const services = listWatch<KubeService>(client, `/api/v1${ns}/services`, informerOpts);
  const slices = listWatch<KubeEndpointSlice>(
    client,
    `/apis/discovery.k8s.io/v1${ns}/endpointslices`,
    informerOpts,
  );
  const pods = listWatch<KubePod>(client, `/api/v1${ns}/pods`, informerOpts);
  const nodes = listWatch<KubeObject>(client, "/api/v1/nodes", informerOpts);
  const informers: ReadonlyArray<[string, Informer<KubeObject>]> = [
    ["services", services],
    ["endpointslices", slices],
    ["pods", pods],
    ["nodes", nodes],
  ];
  log.info("reading services from kubernetes", { server: conn.server, origin: conn.origin });

  return {
    name,
    kind: "kubernetes",
    state: () => state,
    watch(listener) {
      listeners.add(listener);
      return () => listeners.delete(listener);
    },
    status(): RegistryStatus {
      const all = informers.map(([what, inf]) => ({ what, s: inf.status() }));
      const failing = all.filter((x) => x.s.lastError !== undefined);
      const syncTimes = all.map((x) => x.s.lastSyncMs).filter((t): t is number => t !== undefined);
      const errorTimes = failing.map((x) => x.s.lastErrorMs!);
      return {
        name,
        kind: "kubernetes",
        address: conn.server,
        synced: all.every((x) => x.s.synced),
        stale: all.some((x) => x.s.stale),
        ...(syncTimes.length > 0 ? { lastSyncMs: Math.max(...syncTimes) } : {}),
        ...(failing.length > 0
          ? {
            lastError: failing.map((x) => `${x.what}: ${x.s.lastError}`).join("; "),
            lastErrorMs: Math.max(...errorTimes),
          }
          : {}),
        services: state.services.length,
        endpoints: state.endpoints.length,
      };
    },
    async stop() {
      await Promise.all(informers.map(([, inf]) => inf.stop()));
      listeners.clear();
    },
  };
}
