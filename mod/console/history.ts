/**
 * The last few config versions, kept in memory so that the config page can compare two: galley's
 * store keeps only the current snapshot. Snapshots share unchanged resources by identity, so a
 * version kept costs a map, not a copy of the config. Also the comparison itself: which resources
 * were added, removed or changed, and a line diff of one resource.
 *
 * @module
 */
import type { ConfigSnapshot, ConfigStore, Resource } from "../galley/mod.ts";

/** The versions kept (default {@link DEFAULT_HISTORY}). */
export interface ConfigHistory {
  /** Kept snapshots, oldest first. */
  versions(): readonly ConfigSnapshot[];
  get(version: number): ConfigSnapshot | undefined;
  /** Stops following the store. */
  close(): void;
}

/** How many versions are kept by default. */
export const DEFAULT_HISTORY = 16;

/** Follows `store`, keeping its last `size` snapshots. */
export function createConfigHistory(store: ConfigStore | undefined, size = DEFAULT_HISTORY): ConfigHistory {
  const ring: ConfigSnapshot[] = [];
  const keep = (s: ConfigSnapshot) => {
    if (ring.at(-1)?.version === s.version) return;
    ring.push(s);
    while (ring.length > size) ring.shift();
  };
  if (store) keep(store.snapshot());
  const unsubscribe = store?.subscribe((c) => keep(c.snapshot)) ?? (() => {});
  return {
    versions: () => ring,
    get: (v) => ring.find((s) => s.version === v),
    close: unsubscribe,
  };
}

/** What changed between two snapshots, by resource key. */
export interface SnapshotDiff {
  readonly added: readonly string[];
  readonly removed: readonly string[];
  readonly changed: readonly string[];
}

/** The resource as the diff shows it: metadata and spec, keys in a stable order. */
export function resourceText(r: Resource | undefined): string {
  if (r === undefined) return "";
  const sortKeys = (v: unknown): unknown =>
    Array.isArray(v)
      ? v.map(sortKeys)
      : v !== null && typeof v === "object"
      ? Object.fromEntries(Object.keys(v).sort().map((k) => [k, sortKeys((v as Record<string, unknown>)[k])]))
      : v;
  return JSON.stringify({ kind: r.kind, metadata: sortKeys(r.metadata), spec: sortKeys(r.spec) }, null, 2);
}

/** Compares two snapshots. Resources kept by identity are unchanged without a look inside. */
export function diffSnapshots(a: ConfigSnapshot, b: ConfigSnapshot): SnapshotDiff {
  const added: string[] = [];
  const removed: string[] = [];
  const changed: string[] = [];
  for (const [k, r] of b.resources) {
    const old = a.resources.get(k);
    if (old === undefined) added.push(k);
    else if (old !== r && resourceText(old) !== resourceText(r)) changed.push(k);
  }
  for (const k of a.resources.keys()) if (!b.resources.has(k)) removed.push(k);
  return { added: added.sort(), removed: removed.sort(), changed: changed.sort() };
}

/** One line of a line diff. */
export interface DiffLine {
  readonly op: " " | "-" | "+";
  readonly text: string;
}

/**
 * A line diff of two texts (longest common subsequence). Texts over `maxLines` lines are shown
 * as all removed then all added, so a huge resource cannot cost quadratic time.
 */
export function lineDiff(a: string, b: string, maxLines = 2000): DiffLine[] {
  const x = a === "" ? [] : a.split("\n");
  const y = b === "" ? [] : b.split("\n");
  if (x.length > maxLines || y.length > maxLines) {
    return [
      ...x.map((text) => ({ op: "-" as const, text })),
      ...y.map((text) => ({ op: "+" as const, text })),
    ];
  }
  const n = x.length;
  const m = y.length;
  const lcs: Uint32Array[] = Array.from({ length: n + 1 }, () => new Uint32Array(m + 1));
  for (let i = n - 1; i >= 0; i--) {
    for (let j = m - 1; j >= 0; j--) {
      lcs[i]![j] = x[i] === y[j] ? lcs[i + 1]![j + 1]! + 1 : Math.max(lcs[i + 1]![j]!, lcs[i]![j + 1]!);
    }
  }
  const out: DiffLine[] = [];
  let i = 0;
  let j = 0;
  while (i < n && j < m) {
    if (x[i] === y[j]) {
      out.push({ op: " ", text: x[i]! });
      i++;
      j++;
    } else if (lcs[i + 1]![j]! >= lcs[i]![j + 1]!) out.push({ op: "-", text: x[i++]! });
    else out.push({ op: "+", text: y[j++]! });
  }
  while (i < n) out.push({ op: "-", text: x[i++]! });
  while (j < m) out.push({ op: "+", text: y[j++]! });
  return out;
}
