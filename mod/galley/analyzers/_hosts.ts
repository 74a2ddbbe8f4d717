/**
 * Istio's host-name rules as the analyzers need them: resolving short names, matching wildcard
 * hosts, and the `exportTo` visibility of networking resources.
 *
 * @module
 */

/** The DNS suffix Istio appends to short service names unless the mesh config names another. */
export const DEFAULT_DOMAIN_SUFFIX = "cluster.local";

/**
 * Resolves a host as Istio does for a name written in a resource of `namespace`: a name without
 * a dot ("reviews") becomes "reviews.NAMESPACE.svc.SUFFIX"; names with a dot and wildcards stay as
 * they are. The result is lower-cased, as DNS names compare case-insensitively.
 */
export function resolveHost(host: string, namespace: string, domainSuffix = DEFAULT_DOMAIN_SUFFIX): string {
  const h = host.toLowerCase();
  if (h.includes(".") || h.includes("*")) return h;
  return `${h}.${namespace}.svc.${domainSuffix}`;
}

/**
 * True when the host pattern `pattern` covers `host` (both resolved): equal names, `"*"`, or a
 * wildcard `"*.example.com"` over any name ending in ".example.com" (including narrower
 * wildcards such as `"*.api.example.com"`).
 */
export function hostMatches(pattern: string, host: string): boolean {
  if (pattern === host || pattern === "*") return true;
  if (!pattern.startsWith("*")) return false;
  const suffix = pattern.slice(1);
  return host.endsWith(suffix) && host.length > suffix.length;
}

/** True when two host patterns name at least one host in common. */
export function hostsOverlap(a: string, b: string): boolean {
  return hostMatches(a, b) || hostMatches(b, a);
}

/** The namespaces from which a resource with `exportTo` can be seen. */
export interface Visibility {
  /** Visible from every namespace. */
  readonly all: boolean;
  /** The namespaces it is visible from, when not `all`. */
  readonly namespaces: ReadonlySet<string>;
}

/**
 * Reads an `exportTo` list the way Istio does: absent or empty means every namespace, `"*"`
 * every namespace, `"."` the resource's own namespace, `"~"` none, anything else a namespace.
 */
export function visibilityOf(exportTo: readonly string[] | undefined, ownNamespace: string): Visibility {
  if (!exportTo || exportTo.length === 0 || exportTo.includes("*")) {
    return { all: true, namespaces: new Set() };
  }
  const namespaces = new Set<string>();
  for (const e of exportTo) {
    if (e === ".") namespaces.add(ownNamespace);
    else if (e !== "~") namespaces.add(e);
  }
  return { all: false, namespaces };
}

/** True when a resource with visibility `v` can be seen from `namespace`. */
export function isVisibleFrom(v: Visibility, namespace: string): boolean {
  return v.all || v.namespaces.has(namespace);
}

/** True when some namespace sees both `a` and `b`. */
export function visibilitiesOverlap(a: Visibility, b: Visibility): boolean {
  if (a.all) return b.all || b.namespaces.size > 0;
  if (b.all) return a.namespaces.size > 0;
  for (const ns of a.namespaces) if (b.namespaces.has(ns)) return true;
  return false;
}
