/**
 * Istio's `exportTo`, written once: from which namespaces a ServiceEntry, VirtualService or
 * DestinationRule can be seen. Absent or empty means every namespace (meshd has no mesh-wide
 * default export setting), `"*"` every namespace, `"."` the resource's own namespace, `"~"` none,
 * and any other entry that namespace.
 *
 * @module
 */

/** The namespaces from which a resource with `exportTo` can be seen. */
export interface Visibility {
  /** Visible from every namespace. */
  readonly all: boolean;
  /** The namespaces it is visible from, when not `all`. */
  readonly namespaces: ReadonlySet<string>;
}

/** True when one `exportTo` entry of a resource in `ownNamespace` exports it to `namespace`. */
function entryExports(entry: string, ownNamespace: string, namespace: string): boolean {
  return entry === "*" || (entry === "." ? namespace === ownNamespace : entry !== "~" && entry === namespace);
}

/**
 * Whether a resource with `exportTo`, declared in `ownNamespace`, is visible from
 * `fromNamespace`. Allocation-free, for pilot's per-proxy filters.
 */
export function exportedTo(
  exportTo: readonly string[] | undefined,
  ownNamespace: string,
  fromNamespace: string,
): boolean {
  if (!exportTo || exportTo.length === 0) return true;
  return exportTo.some((e) => entryExports(e, ownNamespace, fromNamespace));
}

/** Reads an `exportTo` list into the set of namespaces it admits. */
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
