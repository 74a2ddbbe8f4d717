/**
 * Content versions: short hashes of content, stable across processes and replicas. Config
 * snapshots, the pilot model and xDS resources are all versioned with them, so they live here at
 * the bottom rather than in the xDS server.
 *
 * @module
 */

/** A hex hash of `text`, stable across processes (used as resource and type versions). */
export function contentVersion(text: string | Uint8Array): string {
  return Bun.hash.wyhash(text).toString(16).padStart(16, "0");
}

/** The version of a set of resources: a hash over their names and versions. */
export function setVersion(entries: Iterable<{ name: string; version: string }>): string {
  const parts: string[] = [];
  for (const e of entries) parts.push(`${e.name}\u0000${e.version}`);
  parts.sort();
  return contentVersion(parts.join("\u0001"));
}
