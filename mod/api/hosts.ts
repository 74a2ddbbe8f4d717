/**
 * Istio's host-name rules, written once for galley (validation, `meshd analyze`) and pilot:
 * how a host written in a resource is resolved against the resource's namespace, how wildcard
 * hosts cover other hosts, and how "namespace/host" references (Sidecar egress, Gateway server
 * hosts) are read.
 *
 * Host names are DNS names and so compare case-insensitively: {@link resolveHost} lower-cases,
 * and {@link hostCovers} compares without regard to case, so a ServiceEntry for
 * "API.example.com" and a VirtualService for "api.example.com" name the same service (Istio
 * lower-cases VirtualService hosts when it looks up services, and Kubernetes service names are
 * lower-case). A trailing dot is kept as written: Istio does not strip it either.
 *
 * @module
 */
import { isIP } from "node:net";

/** The DNS suffix Istio appends to short service names unless the mesh config names another. */
export const DEFAULT_DOMAIN_SUFFIX = "cluster.local";

/** A host name as compared: lower-cased, since DNS names are case-insensitive. */
export function normalizeHost(host: string): string {
  return host.toLowerCase();
}

/** True for a wildcard host: `"*"` or a name whose first label is `*` (`"*.example.com"`). */
export function isWildcardHost(host: string): boolean {
  return host.startsWith("*");
}

/**
 * Resolves a host written in a resource of `namespace`, as Istio does: a name without a dot
 * ("reviews") becomes "reviews.NAMESPACE.svc.SUFFIX"; names with a dot, wildcards and IP
 * addresses stay as they are. The result is lower-case.
 */
export function resolveHost(host: string, namespace: string, domainSuffix = DEFAULT_DOMAIN_SUFFIX): string {
  const h = normalizeHost(host);
  if (h.includes(".") || h.includes("*") || h === "" || isIP(h) !== 0) return h;
  return `${h}.${namespace}.svc.${domainSuffix}`;
}

/**
 * True when every name `host` stands for is also matched by `pattern` (Istio's `SubsetOf`):
 * equal names; `"*"` covers everything; `"*.example.com"` covers any name ending in
 * ".example.com" and any narrower wildcard ("*.api.example.com"), but not "example.com" itself.
 * A concrete name never covers a wildcard. Case is ignored; both sides should be resolved.
 */
export function hostCovers(pattern: string, host: string): boolean {
  const p = normalizeHost(pattern);
  const h = normalizeHost(host);
  if (!isWildcardHost(p)) return p === h;
  const suffix = p.slice(1);
  return (isWildcardHost(h) ? h.slice(1) : h).endsWith(suffix);
}

/** True when two hosts (either may be a wildcard) name at least one host in common. */
export function hostsOverlap(a: string, b: string): boolean {
  return hostCovers(a, b) || hostCovers(b, a);
}

/** A "namespace/host" reference split in two. */
export interface NamespacedHost {
  /** The namespace part as written: a name, `"*"` (any), `"."` (the resource's own) or `"~"` (none). */
  readonly namespace: string;
  readonly host: string;
}

/**
 * Splits a "namespace/host" reference as Sidecar egress hosts and Gateway server hosts are
 * written; a bare host has the namespace part `"*"`.
 */
export function splitNamespacedHost(text: string): NamespacedHost {
  const slash = text.indexOf("/");
  if (slash < 0) return { namespace: "*", host: text };
  return { namespace: text.slice(0, slash), host: text.slice(slash + 1) };
}

/**
 * True when the namespace part of a "namespace/host" reference written in a resource of
 * `ownNamespace` admits `namespace`: `"*"` admits all, `"."` only `ownNamespace`, `"~"` none,
 * and a name only itself.
 */
export function namespaceAdmits(part: string, ownNamespace: string, namespace: string): boolean {
  if (part === "*") return true;
  if (part === "~") return false;
  if (part === ".") return namespace === ownNamespace;
  return part === namespace;
}
