/**
 * Pilot's resource provider: serves each connected proxy the Envoy (or proxyless-gRPC) resources
 * translated from the current PushContext.
 *
 * Translation runs once per distinct proxy configuration key (proxies with equal keys share the
 * result) and each distinct resource is serialised once and shared. Every set of Envoy
 * resources is checked before it is served: each EDS cluster must have its endpoints and each
 * RDS name its route configuration; a set that fails keeps the proxy on its last good set. With
 * a self-check (`--xds-self-check`), every set also goes through Envoy's field rules and
 * semantic checks (mod/pilot/check) and one that breaks a rule is likewise never served.
 */
import { create, type DescMessage, fromBinary, type MessageShape, toBinary } from "@bufbuild/protobuf";
import { type Any, AnySchema, anyUnpack } from "@bufbuild/protobuf/wkt";
import { Code, ConnectError } from "@connectrpc/connect";
import {
  type Cluster,
  Cluster_DiscoveryType,
  ClusterSchema,
} from "#gen/envoy/config/cluster/v3/cluster_pb.ts";
import {
  type ClusterLoadAssignment,
  ClusterLoadAssignmentSchema,
} from "#gen/envoy/config/endpoint/v3/endpoint_pb.ts";
import { type Listener, ListenerSchema } from "#gen/envoy/config/listener/v3/listener_pb.ts";
import { type RouteConfiguration, RouteConfigurationSchema } from "#gen/envoy/config/route/v3/route_pb.ts";
import { HttpConnectionManagerSchema } from "#gen/envoy/extensions/filters/network/http_connection_manager/v3/http_connection_manager_pb.ts";
import type { Logger } from "../../shared/logger.ts";
import type { ResourceProvider, XdsClient, XdsResource } from "../../xds/mod.ts";
import { contentVersion } from "../../shared/content_version.ts";
import { type Proxy, proxyConfigKey, proxyFromNode, ProxyIdError } from "../model/proxy.ts";
import { type PushContext, scopedToHosts } from "../model/push_context.ts";
import {
  buildClusters,
  buildEndpoints,
  buildListeners,
  buildRoutes,
  nodeProxyUnsupported,
} from "../translate/mod.ts";
import {
  buildGrpcClusters,
  buildGrpcEndpoints,
  buildGrpcListeners,
  buildGrpcRoutes,
  type GrpcUnsupported,
  grpcUnsupported,
} from "../translate/grpc/mod.ts";
import { isEndpointsOnly, isRoutingOnly, type PushRequest } from "./push_request.ts";
import type { EnvoyResourceSet, Violation } from "../check/mod.ts";

const T = "type.googleapis.com/";
/** The type URLs pilot serves. */
export const PILOT_TYPES = {
  cluster: `${T}envoy.config.cluster.v3.Cluster`,
  endpoint: `${T}envoy.config.endpoint.v3.ClusterLoadAssignment`,
  listener: `${T}envoy.config.listener.v3.Listener`,
  route: `${T}envoy.config.route.v3.RouteConfiguration`,
} as const;

/** Short names of pilot's types, as proxy-status prints them. */
export const TYPE_SHORT: Readonly<Record<string, "CDS" | "EDS" | "LDS" | "RDS">> = {
  [PILOT_TYPES.cluster]: "CDS",
  [PILOT_TYPES.endpoint]: "EDS",
  [PILOT_TYPES.listener]: "LDS",
  [PILOT_TYPES.route]: "RDS",
};

/** Encoded resources by name. */
export type Resources = Map<string, XdsResource>;

/** One proxy's complete set of Envoy resources for one push. */
interface EnvoySet {
  readonly clusters: Resources;
  readonly endpoints: Resources;
  readonly listeners: Resources;
  readonly routes: Resources;
  /** What its clusters and listeners name in other types. */
  readonly needs: ConsistencyNeeds;
}

/** The decoded messages of a proxy's configuration, for config dumps and simulation. */
export interface ProxyConfig {
  readonly clusters: Cluster[];
  readonly listeners: Listener[];
  readonly routes: RouteConfiguration[];
  readonly endpoints: ClusterLoadAssignment[];
}

/** Pilot's provider. */
export interface PilotProvider extends ResourceProvider {
  /**
   * Installs a new PushContext and tells the xDS server every pilot type may have changed.
   * `request` must name every config change between the PushContext installed before and
   * `push` (naming more is allowed), and be full when anything else changed (registries, mesh
   * features); a routing-only request lets the provider keep clusters and endpoints from the
   * previous push.
   */
  update(push: PushContext, request: PushRequest): void;
  /** The current PushContext. */
  push(): PushContext;
  /** The Proxy read from a client's node (cached per stream). */
  proxyOf(client: XdsClient): Proxy;
  /** Translates a proxy's whole configuration now (for /debug/config_dump). */
  configOf(proxy: Proxy): ProxyConfig;
  /**
   * The listeners and routes an Envoy proxy is served this push, encoded, from the translation
   * shared by every proxy with the same key (computed now when no such proxy asked yet);
   * undefined for proxyless gRPC.
   */
  servedOf(proxy: Proxy): { readonly listeners: Resources; readonly routes: Resources } | undefined;
  /**
   * For a proxyless gRPC proxy or a node proxy, what its resources leave out or approximate of
   * what Envoy would get from the same config (empty for Envoy proxies); computed once per push
   * and proxy set.
   */
  unsupportedOf(proxy: Proxy): readonly GrpcUnsupported[];
  /**
   * The rules the proxy's newest generated config breaks, which kept it on its last good config
   * (empty when it passed, or without a self-check). For proxyless gRPC, over the resources it
   * asked for in this push.
   */
  violationsOf(proxy: Proxy): readonly Violation[];
  /**
   * How many last good sets (Envoy, and gRPC per type and names) are held for proxies that may
   * fall back to them. Sets not built for {@link LAST_GOOD_PUSHES} pushes are dropped.
   */
  lastGoodCount(): number;
}

/**
 * Pushes after which a proxy set key nobody asked for loses its last good set: a connected
 * proxy is asked for on every push, and a few pushes' margin covers pushes merged in a busy
 * push queue.
 */
export const LAST_GOOD_PUSHES = 8;

/**
 * Checks a generated set before it is served (checkEnvoySet, bound to the proxy's kind and
 * secrets). `partial` when the set holds only what a proxyless gRPC client asked for.
 */
export type SelfCheck = (proxy: Proxy, set: EnvoyResourceSet, partial: boolean) => readonly Violation[];

/** Options for createPilotProvider. */
export interface PilotProviderOptions {
  initial: PushContext;
  logger: Logger;
  /** Called when a generated set fails the consistency check. */
  onInconsistent?: (proxy: Proxy, problems: readonly string[]) => void;
  /** Envoy's rules applied to every set before it is served; none when absent. */
  selfCheck?: SelfCheck;
  /** Called when a generated set breaks a rule of the self-check (and so is not served). */
  onViolations?: (proxy: Proxy, violations: readonly Violation[]) => void;
}

/** The EDS names clusters use and the RDS names listeners use, with what uses each. */
export interface ConsistencyNeeds {
  readonly eds: ReadonlyMap<string, string>;
  readonly rds: ReadonlyMap<string, string>;
}

/** What a set's clusters and listeners name in other types. */
export function consistencyNeeds(
  clusters: Iterable<Cluster>,
  listeners: Iterable<Listener>,
): ConsistencyNeeds {
  const eds = new Map<string, string>();
  const rds = new Map<string, string>();
  for (const c of clusters) {
    if (
      c.clusterDiscoveryType.case === "type" && c.clusterDiscoveryType.value === Cluster_DiscoveryType.EDS
    ) {
      const name = c.edsClusterConfig?.serviceName || c.name;
      if (!eds.has(name)) eds.set(name, `cluster ${c.name}`);
    }
  }
  const checkHcm = (any: Any | undefined, where: string) => {
    if (!any || any.typeUrl !== `${T}${HttpConnectionManagerSchema.typeName}`) return;
    const hcm = anyUnpack(any, HttpConnectionManagerSchema);
    if (hcm?.routeSpecifier.case === "rds" && !rds.has(hcm.routeSpecifier.value.routeConfigName)) {
      rds.set(hcm.routeSpecifier.value.routeConfigName, where);
    }
  };
  for (const l of listeners) {
    checkHcm(l.apiListener?.apiListener, `listener ${l.name}`);
    for (const fc of l.filterChains) {
      for (const f of fc.filters) {
        if (f.configType.case === "typedConfig") checkHcm(f.configType.value, `listener ${l.name}`);
      }
    }
  }
  return { eds, rds };
}

/** What a set of Envoy resources names but lacks. Empty when consistent. */
export function consistencyProblems(
  needs: ConsistencyNeeds,
  endpointNames: { has(name: string): boolean },
  routeNames: { has(name: string): boolean },
): string[] {
  const problems: string[] = [];
  for (const [name, user] of needs.eds) {
    if (!endpointNames.has(name)) {
      problems.push(`${user} uses EDS ${name}, which has no ClusterLoadAssignment`);
    }
  }
  for (const [name, user] of needs.rds) {
    if (!routeNames.has(name)) problems.push(`${user} uses RDS ${name}, which has no RouteConfiguration`);
  }
  return problems;
}

/**
 * `before` when it holds the same resources as `after` (the same names with the same content
 * versions), else `after`. Versions rather than identity: a push that kept a set without
 * encoding it leaves nothing to share with the push after it.
 */
function unchanged(before: Resources | undefined, after: Resources): Resources {
  return before && sameResources(before, after) ? before : after;
}

/** Whether two encoded sets hold the same names with the same content versions. */
function sameResources(a: Resources, b: Resources): boolean {
  if (a.size !== b.size) return false;
  for (const [name, r] of b) if (a.get(name)?.version !== r.version) return false;
  return true;
}

/**
 * Whether `build` makes the same resources of the services `hosts` names in both pushes, each
 * seen through {@link scopedToHosts}. When only those hosts' endpoints changed between the two
 * pushes, this tells whether the complete build changed at all: clusters, listeners and routes
 * read endpoints only per service (discovery type, inline load assignments, identities and
 * auto-mTLS of its clusters), never across services. A proxy's own instances are the exception;
 * {@link touchesOwnInstances} covers them.
 */
export function sameForHosts(
  before: PushContext,
  after: PushContext,
  hosts: ReadonlySet<string>,
  build: (push: PushContext) => Resources,
): boolean {
  return sameResources(build(scopedToHosts(before, hosts)), build(scopedToHosts(after, hosts)));
}

/**
 * Whether the proxy is an instance of one of `hosts` in either push: its inbound listeners and
 * clusters, locality and network come from those instances, so they are translated again.
 */
export function touchesOwnInstances(
  proxy: Proxy,
  before: PushContext,
  after: PushContext,
  hosts: ReadonlySet<string>,
): boolean {
  return [before, after].some((push) => push.instancesOf(proxy).some((e) => hosts.has(e.hostname)));
}

const NO_RESOURCES: Resources = new Map();
/** What a proxy is served when its first generated set already breaks a rule: nothing. */
const EMPTY_SET: EnvoySet = {
  clusters: NO_RESOURCES,
  endpoints: NO_RESOURCES,
  listeners: NO_RESOURCES,
  routes: NO_RESOURCES,
  needs: { eds: new Map(), rds: new Map() },
};

function decodeAll<D extends DescMessage>(schema: D, resources: Resources): MessageShape<D>[] {
  return [...resources.values()].map((r) => fromBinary(schema, r.resource.value));
}

/** The messages of encoded resources of one type, in a set holding only that type. */
function decodeType(typeUrl: string, resources: Resources): EnvoyResourceSet {
  const set = { clusters: [], endpoints: [], listeners: [], routes: [] };
  switch (typeUrl) {
    case PILOT_TYPES.cluster:
      return { ...set, clusters: decodeAll(ClusterSchema, resources) };
    case PILOT_TYPES.listener:
      return { ...set, listeners: decodeAll(ListenerSchema, resources) };
    case PILOT_TYPES.route:
      return { ...set, routes: decodeAll(RouteConfigurationSchema, resources) };
    default:
      return { ...set, endpoints: decodeAll(ClusterLoadAssignmentSchema, resources) };
  }
}

/**
 * The load assignments of `previous` (built from `before`) brought up to `after` when only the
 * endpoints of `hosts` changed between the two: those of other hosts are kept as they are, those
 * `hosts` had in `before` are replaced by what `build` makes of them in `after`. Sorted by name,
 * as a complete build is.
 */
export function patchEndpoints(
  previous: Resources,
  before: PushContext,
  after: PushContext,
  hosts: ReadonlySet<string>,
  build: (push: PushContext) => Resources,
): Resources {
  const stale = build(scopedToHosts(before, hosts));
  const fresh = build(scopedToHosts(after, hosts));
  const names = new Set([...previous.keys()].filter((n) => !stale.has(n)));
  for (const n of fresh.keys()) names.add(n);
  const out: Resources = new Map();
  for (const n of [...names].sort()) out.set(n, fresh.get(n) ?? previous.get(n)!);
  return out;
}

/** Whether two pushes' network gateways are the same (they decide every load assignment). */
function sameGateways(a: PushContext, b: PushContext): boolean {
  return a.networkGateways === b.networkGateways ||
    JSON.stringify(a.networkGateways) === JSON.stringify(b.networkGateways);
}

/** A key naming every resource of a set with its content version. */
function setSignature(parts: readonly Resources[]): string {
  return parts.map((m) => [...m.values()].map((r) => `${r.name}@${r.version}`).join(",")).join("|");
}

/** Creates pilot's provider over an initial PushContext. */
export function createPilotProvider(opts: PilotProviderOptions): PilotProvider {
  const log = opts.logger;
  let current = opts.initial;
  const listeners = new Set<(t: ReadonlySet<string>) => void>();
  const proxies = new WeakMap<XdsClient, Proxy>();
  /** Per push: Envoy sets by proxy key, gRPC results by key+type+names. */
  let envoySets = new Map<string, EnvoySet>();
  let grpcResults = new Map<string, Resources>();
  /** Per push: what gRPC cannot express, by proxy set key. */
  let unsupported = new Map<string, readonly GrpcUnsupported[]>();
  /** The gaps last logged per proxy set key (bounded: cleared when it grows past 10,000). */
  const warned = new Map<string, string>();
  /**
   * The previous push's results. A result equal to the previous one is served as the same map,
   * so the xDS server sees at once that nothing changed for the proxies holding it.
   */
  let previousEnvoySets = new Map<string, EnvoySet>();
  /** Whether the current push changed only routing config since the previous one. */
  let routingOnly = false;
  /**
   * When the current push changed only these hosts' endpoints since `previousPush`, load
   * assignments of other hosts are kept from the previous push's builds.
   */
  let endpointsOnly: ReadonlySet<string> | undefined;
  let previousPush = opts.initial;
  /**
   * The sets built (before any check) per proxy set key, this push's and the previous: what an
   * endpoints-only push patches, rather than a set the checks refused or the last good one.
   */
  let builtSets = new Map<string, EnvoySet>();
  let previousBuiltSets = new Map<string, EnvoySet>();
  let previousGrpcResults = new Map<string, Resources>();
  /** Last consistent Envoy set per proxy key, across pushes. */
  const lastGood = new Map<string, EnvoySet>();
  /** Encoded resources by content version, shared across proxies; swapped every push. */
  let encoded = new Map<string, XdsResource>();
  let previousEncoded = new Map<string, XdsResource>();
  /** Self-check results by set signature, this push's and the previous push's. */
  let checked = new Map<string, readonly Violation[]>();
  let previousChecked = new Map<string, readonly Violation[]>();
  /** Per push: the violations that kept a proxy set (by set key) on its last good config. */
  let refused = new Map<string, readonly Violation[]>();
  /** The violations last logged per proxy set key (bounded like `warned`). */
  const refusedLogged = new Map<string, string>();
  /** Last gRPC result per key that passed the self-check, across pushes. */
  const lastGoodGrpc = new Map<string, Resources>();
  /** The push (counted by update) in which each last good key was last built. */
  const lastGoodUsed = new Map<string, number>();
  let pushCount = 0;

  /** Drops the last good sets of keys not built for LAST_GOOD_PUSHES pushes. */
  function pruneLastGood(): void {
    for (const [key, at] of lastGoodUsed) {
      if (pushCount - at <= LAST_GOOD_PUSHES) continue;
      lastGoodUsed.delete(key);
      lastGood.delete(key);
      lastGoodGrpc.delete(key);
    }
  }

  /** Runs the self-check over `parts` (cached by content), recording and logging violations. */
  function selfCheck(
    proxy: Proxy,
    key: string,
    parts: readonly Resources[],
    decode: () => EnvoyResourceSet,
    partial: boolean,
  ): readonly Violation[] {
    if (!opts.selfCheck) return [];
    const signature = `${proxy.type}/${proxy.generator ?? ""}|${partial}|${setSignature(parts)}`;
    let violations = checked.get(signature) ?? previousChecked.get(signature);
    if (!violations) violations = opts.selfCheck(proxy, decode(), partial);
    checked.set(signature, violations);
    if (violations.length === 0) return violations;
    refused.set(key, [...(refused.get(key) ?? []), ...violations]);
    const logged = violations.map((v) => `${v.rule} ${v.resource} ${v.path} ${v.message}`).join("\n");
    if (refusedLogged.get(key) !== logged) {
      if (refusedLogged.size > 10_000) refusedLogged.clear();
      refusedLogged.set(key, logged);
      log.error("generated config breaks Envoy's rules; keeping the proxy on its last good config", {
        proxy: proxy.id,
        count: violations.length,
        first: violations.slice(0, 3).map((v) => `${v.rule}: ${v.resource} ${v.path}: ${v.message}`),
      });
    }
    opts.onViolations?.(proxy, violations);
    return violations;
  }

  function encode<D extends DescMessage>(schema: D, name: string, msg: MessageShape<D>): XdsResource {
    const bytes = toBinary(schema, msg);
    const version = contentVersion(bytes);
    const key = `${name}\u0000${version}`;
    let r = encoded.get(key);
    if (!r) {
      r = previousEncoded.get(key) ??
        { name, version, resource: create(AnySchema, { typeUrl: `${T}${schema.typeName}`, value: bytes }) };
      encoded.set(key, r);
    }
    return r;
  }

  function encodeAll<D extends DescMessage>(
    schema: D,
    msgs: MessageShape<D>[],
    nameOf: (m: MessageShape<D>) => string,
  ): Resources {
    const out: Resources = new Map();
    for (const m of msgs) {
      const name = nameOf(m);
      if (out.has(name)) warnDuplicate(schema.typeName, name);
      out.set(name, encode(schema, name, m));
    }
    return out;
  }

  /** Type and name pairs warned about this push (a duplicate is logged once per push). */
  let duplicates = new Set<string>();
  /** Logs that a translation made two resources of one type with the same name (the last is served). */
  function warnDuplicate(typeName: string, name: string): void {
    const key = `${typeName}\u0000${name}`;
    if (duplicates.has(key)) return;
    duplicates.add(key);
    log.warn("translation made two resources with the same name; serving the last one", {
      type: typeName,
      name,
    });
  }

  /** Set keys by proxy for the current push (a proxy's key is asked for on every push of every type). */
  let setKeys = new WeakMap<Proxy, string>();

  /** The proxy's key plus its own instances (which decide its inbound side) for this push. */
  function setKey(proxy: Proxy): string {
    let key = setKeys.get(proxy);
    if (key === undefined) {
      const instances = current.instancesOf(proxy)
        .map((e) => `${e.hostname}:${e.servicePort.number}>${e.port}@${e.locality ?? ""}`)
        .join(",");
      key = `${proxyConfigKey(proxy)}|${instances}`;
      setKeys.set(proxy, key);
    }
    return key;
  }

  /**
   * The set of an Envoy proxy when the current push changed only the endpoints of `hosts` since
   * the previous push, built from the previous push's build of the same key: load assignments of
   * those hosts are built again, and clusters, listeners and routes are kept wherever building
   * them for those hosts alone gives the same result in both pushes (see sameForHosts).
   */
  function endpointsOnlySet(
    proxy: Proxy,
    hosts: ReadonlySet<string>,
    built: EnvoySet,
  ): Omit<EnvoySet, "needs"> & { needs?: ConsistencyNeeds } {
    const keepShape = !touchesOwnInstances(proxy, previousPush, current, hosts);
    const same = (build: (push: PushContext) => Resources) =>
      keepShape && sameForHosts(previousPush, current, hosts, build);
    const buildEds = (push: PushContext) =>
      encodeAll(ClusterLoadAssignmentSchema, buildEndpoints(push, proxy), (e) => e.clusterName);
    const endpoints = patchEndpoints(built.endpoints, previousPush, current, hosts, buildEds);
    const routes =
      same((push) => encodeAll(RouteConfigurationSchema, buildRoutes(push, proxy), (r) => r.name))
        ? built.routes
        : encodeAll(RouteConfigurationSchema, buildRoutes(current, proxy), (r) => r.name);
    if (
      same((push) => encodeAll(ClusterSchema, buildClusters(push, proxy), (c) => c.name)) &&
      same((push) => encodeAll(ListenerSchema, buildListeners(push, proxy), (l) => l.name))
    ) {
      return { clusters: built.clusters, listeners: built.listeners, routes, endpoints, needs: built.needs };
    }
    return { clusters: NO_RESOURCES, listeners: NO_RESOURCES, routes, endpoints };
  }

  function envoySet(proxy: Proxy): EnvoySet {
    const key = setKey(proxy);
    let set = envoySets.get(key);
    if (set) return set;
    const before = previousEnvoySets.get(key);
    const previousBuilt = previousBuiltSets.get(key);
    // A routing-only change keeps clusters and endpoints.
    const keep = routingOnly ? before : undefined;
    const patched = endpointsOnly && previousBuilt && proxy.generator === "envoy"
      ? endpointsOnlySet(proxy, endpointsOnly, previousBuilt)
      : undefined;
    const routes = unchanged(
      before?.routes,
      patched?.routes ?? encodeAll(RouteConfigurationSchema, buildRoutes(current, proxy), (r) => r.name),
    );
    let clusters: Resources,
      endpoints: Resources,
      listeners: Resources,
      needs: ConsistencyNeeds,
      /** What was built for this push, unchecked (kept parts from the previous build). */
      built: EnvoySet | undefined;
    if (patched?.needs) {
      // Only load assignments changed for this proxy.
      ({ needs } = patched);
      clusters = unchanged(before?.clusters, patched.clusters);
      listeners = unchanged(before?.listeners, patched.listeners);
      built = { ...patched, needs };
      endpoints = unchanged(before?.endpoints, patched.endpoints);
    } else if (!keep) {
      const clusterMsgs = buildClusters(current, proxy);
      const listenerMsgs = buildListeners(current, proxy);
      needs = consistencyNeeds(clusterMsgs, listenerMsgs);
      clusters = unchanged(before?.clusters, encodeAll(ClusterSchema, clusterMsgs, (c) => c.name));
      listeners = unchanged(before?.listeners, encodeAll(ListenerSchema, listenerMsgs, (l) => l.name));
      const eds = patched?.endpoints ??
        encodeAll(ClusterLoadAssignmentSchema, buildEndpoints(current, proxy), (e) => e.clusterName);
      endpoints = unchanged(before?.endpoints, eds);
      built = { clusters, endpoints: eds, listeners, routes, needs };
    } else {
      // Listeners follow VirtualServices too: a gateway's servers bind them, and a sidecar's
      // (and a node proxy's) TCP and TLS routes are filter chains, not route configurations.
      const listenerMsgs = buildListeners(current, proxy);
      ({ clusters, endpoints } = keep);
      needs = { eds: keep.needs.eds, rds: consistencyNeeds([], listenerMsgs).rds };
      listeners = unchanged(keep.listeners, encodeAll(ListenerSchema, listenerMsgs, (l) => l.name));
      built = previousBuilt && {
        ...previousBuilt,
        listeners,
        routes,
        needs: { eds: previousBuilt.needs.eds, rds: needs.rds },
      };
    }
    set = { clusters, endpoints, listeners, routes, needs };
    if (built) builtSets.set(key, built);
    const problems = consistencyProblems(needs, endpoints, routes);
    if (problems.length > 0) {
      log.error("generated config is inconsistent; keeping the proxy on its last good config", {
        proxy: proxy.id,
        problems,
      });
      opts.onInconsistent?.(proxy, problems);
      set = lastGood.get(key) ?? set;
    } else if (
      selfCheck(proxy, key, [clusters, endpoints, listeners, routes], () => ({
        clusters: decodeAll(ClusterSchema, clusters),
        endpoints: decodeAll(ClusterLoadAssignmentSchema, endpoints),
        listeners: decodeAll(ListenerSchema, listeners),
        routes: decodeAll(RouteConfigurationSchema, routes),
      }), false).length > 0
    ) {
      set = lastGood.get(key) ?? EMPTY_SET;
    } else {
      lastGood.set(key, set);
    }
    lastGoodUsed.set(key, pushCount);
    envoySets.set(key, set);
    return set;
  }

  function grpcResources(proxy: Proxy, typeUrl: string, names: ReadonlySet<string> | "*"): Resources {
    const list = names === "*" ? "*" : [...names].sort();
    const key = `${setKey(proxy)}|${typeUrl}|${list === "*" ? "*" : list.join(",")}`;
    let r = grpcResults.get(key);
    if (r) return r;
    warnUnsupported(proxy);
    switch (typeUrl) {
      case PILOT_TYPES.cluster:
        r = encodeAll(ClusterSchema, buildGrpcClusters(current, proxy), (c) => c.name);
        break;
      case PILOT_TYPES.listener:
        r = encodeAll(ListenerSchema, buildGrpcListeners(current, proxy, list), (l) => l.name);
        break;
      case PILOT_TYPES.route:
        r = encodeAll(RouteConfigurationSchema, buildGrpcRoutes(current, proxy, list), (x) => x.name);
        break;
      default:
        r = encodeAll(
          ClusterLoadAssignmentSchema,
          buildGrpcEndpoints(current, proxy, list),
          (e) => e.clusterName,
        );
    }
    r = unchanged(previousGrpcResults.get(key), r);
    const built = r;
    if (selfCheck(proxy, setKey(proxy), [built], () => decodeType(typeUrl, built), true).length > 0) {
      r = lastGoodGrpc.get(key) ?? NO_RESOURCES;
    } else if (opts.selfCheck) lastGoodGrpc.set(key, r);
    lastGoodUsed.set(key, pushCount);
    grpcResults.set(key, r);
    return r;
  }

  function unsupportedOf(proxy: Proxy): readonly GrpcUnsupported[] {
    if (proxy.generator === "envoy") return [];
    const key = setKey(proxy);
    let gaps = unsupported.get(key);
    if (!gaps) {
      gaps = proxy.generator === "grpc"
        ? grpcUnsupported(current, proxy)
        : nodeProxyUnsupported(current, proxy);
      unsupported.set(key, gaps);
    }
    return gaps;
  }

  /** Logs a gRPC proxy set's gaps once, and again only when they change. */
  function warnUnsupported(proxy: Proxy): void {
    const gaps = unsupportedOf(proxy);
    const setKeyOf = setKey(proxy);
    const signature = gaps.map((g) => `${g.resource}|${g.field}`).join("\n");
    if ((warned.get(setKeyOf) ?? "") === signature) return;
    warned.set(setKeyOf, signature);
    if (gaps.length === 0) return;
    log.warn("proxyless gRPC cannot express part of the config; /debug/config_dump lists it", {
      proxy: proxy.id,
      count: gaps.length,
      first: gaps.slice(0, 3).map((g) => `${g.resource}: ${g.field} (${g.reason})`),
    });
  }

  function proxyOf(client: XdsClient): Proxy {
    let p = proxies.get(client);
    if (!p) {
      try {
        p = proxyFromNode(client.node);
      } catch (err) {
        if (err instanceof ProxyIdError) throw new ConnectError(err.message, Code.InvalidArgument);
        throw err;
      }
      proxies.set(client, p);
    }
    return p;
  }

  return {
    typeUrls: Object.values(PILOT_TYPES),
    resources(client, typeUrl, names) {
      const proxy = proxyOf(client);
      if (proxy.generator === "grpc") return grpcResources(proxy, typeUrl, names);
      const set = envoySet(proxy);
      switch (typeUrl) {
        case PILOT_TYPES.cluster:
          return set.clusters;
        case PILOT_TYPES.listener:
          return set.listeners;
        case PILOT_TYPES.route:
          return set.routes;
        default:
          return set.endpoints;
      }
    },
    watch(listener) {
      listeners.add(listener);
      return () => listeners.delete(listener);
    },
    update(push, request) {
      routingOnly = isRoutingOnly(request);
      endpointsOnly =
        isEndpointsOnly(request) && push.config === current.config && sameGateways(current, push)
          ? request.endpoints
          : undefined;
      previousPush = current;
      current = push;
      previousBuiltSets = builtSets;
      builtSets = new Map();
      setKeys = new WeakMap();
      previousEnvoySets = envoySets;
      previousGrpcResults = grpcResults;
      envoySets = new Map();
      grpcResults = new Map();
      unsupported = new Map();
      if (warned.size > 10_000) warned.clear();
      previousEncoded = encoded;
      encoded = new Map();
      previousChecked = checked;
      checked = new Map();
      refused = new Map();
      duplicates = new Set();
      pushCount++;
      pruneLastGood();
      const all = new Set<string>(Object.values(PILOT_TYPES));
      for (const l of listeners) l(all);
    },
    push: () => current,
    proxyOf,
    unsupportedOf,
    violationsOf: (proxy) => refused.get(setKey(proxy)) ?? [],
    lastGoodCount: () => lastGood.size + lastGoodGrpc.size,
    servedOf: (proxy) => (proxy.generator === "grpc" ? undefined : envoySet(proxy)),
    configOf(proxy) {
      if (proxy.generator === "grpc") {
        return {
          clusters: buildGrpcClusters(current, proxy),
          listeners: buildGrpcListeners(current, proxy, "*"),
          routes: buildGrpcRoutes(current, proxy, "*"),
          endpoints: buildGrpcEndpoints(current, proxy, "*"),
        };
      }
      return {
        clusters: buildClusters(current, proxy),
        listeners: buildListeners(current, proxy),
        routes: buildRoutes(current, proxy),
        endpoints: buildEndpoints(current, proxy),
      };
    },
  };
}
