/**
 * Why pilot pushes: the config resources that changed since the previous push (taken from the
 * change sets galley's store publishes, never worked out again by comparing content) and whether
 * anything else changed that makes every proxy's configuration be translated again.
 *
 * Debounced changes merge into one request; the provider reads it to decide how much of the
 * previous push it may keep.
 */
import type { ConfigChange } from "../../galley/mod.ts";

/** What one push carries about why it happens. */
export interface PushRequest {
  /**
   * Config resources added, updated or removed since the previous push: resourceKey to
   * "group/kind". It may name more than changed (a burst that ends where it began), never less.
   */
  readonly configs: ReadonlyMap<string, string>;
  /**
   * Something other than config changed (a service registry, the first push once config is in
   * sync), so nothing of the previous push may be kept on the strength of `configs`.
   */
  readonly full: boolean;
  /** What triggered the push ("config", "registry:NAME", ...), each once, in order of arrival. */
  readonly reasons: readonly string[];
  /**
   * Host names whose endpoints changed in the service registries, when that is all the
   * registries changed (no service, port or workload). A request that is not full, names no
   * config and has this set changes EDS only, and only these hosts' load assignments
   * ({@link isEndpointsOnly}).
   */
  readonly endpoints?: ReadonlySet<string>;
}

/** Kinds ("group/kind") whose changes reach only route configurations and gateways' listeners. */
const ROUTING_KINDS: ReadonlySet<string> = new Set(["networking.istio.io/VirtualService"]);

/** The request for one new config snapshot: every key its change set names, with its kind. */
export function configPushRequest(change: ConfigChange): PushRequest {
  const configs = new Map<string, string>();
  const kindOf = (key: string, from: ConfigChange["snapshot"]) => {
    const r = from.resources.get(key);
    // A key the snapshot lacks cannot be classified; an empty kind is never a routing kind.
    configs.set(key, r ? `${r.group}/${r.kind}` : "");
  };
  for (const key of change.added) kindOf(key, change.snapshot);
  for (const key of change.updated) kindOf(key, change.snapshot);
  for (const key of change.removed) kindOf(key, change.previous);
  return { configs, full: false, reasons: ["config"] };
}

/** A request that makes every proxy's configuration be translated again. */
export function fullPushRequest(reason: string): PushRequest {
  return { configs: new Map(), full: true, reasons: [reason] };
}

/**
 * One request for everything `requests` say, in order: the union of their config keys, full if
 * any is full. Linear in the keys named.
 */
export function mergePushRequests(requests: readonly PushRequest[]): PushRequest {
  if (requests.length === 1) return requests[0]!;
  const configs = new Map<string, string>();
  const reasons = new Set<string>();
  let endpoints: Set<string> | undefined;
  let full = false;
  for (const r of requests) {
    for (const [key, kind] of r.configs) configs.set(key, kind);
    for (const reason of r.reasons) reasons.add(reason);
    if (r.endpoints) {
      endpoints ??= new Set();
      for (const host of r.endpoints) endpoints.add(host);
    }
    full ||= r.full;
  }
  return { configs, full, reasons: [...reasons], ...(endpoints ? { endpoints } : {}) };
}

/**
 * The request for a push whose only trigger was the service registries (`registry:` reasons,
 * full, naming no config), narrowed to an endpoints-only request when `hosts` (from comparing
 * the registries' states with the previous push's) says only those hosts' endpoints changed.
 * Any other request, or `hosts` undefined, is returned as it is.
 */
export function narrowRegistryRequest(
  request: PushRequest,
  hosts: ReadonlySet<string> | undefined,
): PushRequest {
  if (hosts === undefined || !request.full || request.configs.size > 0) return request;
  if (!request.reasons.every((r) => r.startsWith("registry:"))) return request;
  return { configs: request.configs, full: false, reasons: request.reasons, endpoints: hosts };
}

/**
 * Whether a request changes only the endpoints of the hosts it names (see
 * {@link PushRequest.endpoints}): clusters, listeners and routes are translated again as
 * usual, but load assignments of other hosts may be kept from the previous push.
 */
export function isEndpointsOnly(request: PushRequest): boolean {
  return !request.full && request.configs.size === 0 && request.endpoints !== undefined;
}

/**
 * Whether a request changes only routing config (VirtualServices), so clusters, endpoints and
 * sidecars' listeners stay as the previous push made them. A full request, or one naming no
 * config at all, is not.
 */
export function isRoutingOnly(request: PushRequest): boolean {
  if (request.full || request.configs.size === 0) return false;
  for (const kind of request.configs.values()) if (!ROUTING_KINDS.has(kind)) return false;
  return true;
}

/** A short account of a request, for /debug/push_status and logs. */
export interface PushRequestSummary {
  readonly full: boolean;
  readonly routingOnly: boolean;
  readonly reasons: readonly string[];
  /** How many config resources changed. */
  readonly configs: number;
  /** Changed config resources by kind ("group/kind"). */
  readonly kinds: Readonly<Record<string, number>>;
  /** The first changed keys, sorted; `configs` says how many there are in all. */
  readonly keys: readonly string[];
}

/** Summarises a request, naming at most `maxKeys` keys. */
export function summarizePushRequest(request: PushRequest, maxKeys = 20): PushRequestSummary {
  const kinds: Record<string, number> = {};
  for (const kind of request.configs.values()) kinds[kind] = (kinds[kind] ?? 0) + 1;
  return {
    full: request.full,
    routingOnly: isRoutingOnly(request),
    reasons: request.reasons,
    configs: request.configs.size,
    kinds,
    keys: [...request.configs.keys()].sort().slice(0, maxKeys),
  };
}
