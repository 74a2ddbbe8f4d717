/**
 * Referenced attributes: which parts of a bag a Mixer decision depended on, and the key under
 * which a client may cache that decision for other bags that agree on exactly those parts.
 *
 * @module
 */
import type { AttributeBag } from "./wire.ts";

/** An attribute a decision read: the whole value, or one key of a string map. */
export interface Ref {
  readonly name: string;
  /** For string maps, the one key read; undefined when the whole value was read. */
  readonly mapKey?: string;
}

const SEP = "\u0000";
const ABSENT = "\u0001";

function valuePart(v: unknown): string {
  if (v === undefined || v === null) return ABSENT;
  switch (typeof v) {
    case "string":
      return "s" + v;
    case "number":
    case "bigint":
      return "n" + String(v);
    case "boolean":
      return v ? "T" : "F";
  }
  if (v instanceof Uint8Array) return "b" + v.join(".");
  if (v instanceof Date) return "t" + v.getTime();
  if (v instanceof Map) {
    return "m" + [...v].map(([k, x]) => `${k}=${x}`).sort().join(SEP + SEP);
  }
  if (typeof v === "object") {
    const o = v as Record<string, unknown>;
    return "m" + Object.keys(o).sort().map((k) => `${k}=${String(o[k])}`).join(SEP + SEP);
  }
  return "?" + String(v);
}

function mapEntry(v: unknown, key: string): unknown {
  if (v instanceof Map) return v.get(key);
  if (typeof v === "object" && v !== null && Object.hasOwn(v, key)) {
    return (v as Record<string, unknown>)[key];
  }
  return undefined;
}

/**
 * The cache key of `bag` under `refs`: equal keys mean the bags hold the same values (or the same
 * absences) in every referenced place. `refs` must be in a stable order (see {@link refsSignature}).
 */
export function refValueKey(bag: Readonly<AttributeBag>, refs: readonly Ref[]): string {
  let key = "";
  for (let i = 0; i < refs.length; i++) {
    const r = refs[i]!;
    const v = bag[r.name];
    key += (i === 0 ? "" : SEP) + valuePart(r.mapKey === undefined ? v : mapEntry(v, r.mapKey));
  }
  return key;
}

/** Sorts and de-duplicates refs, and returns them with a string naming the set. */
export function refsSignature(refs: readonly Ref[]): { refs: Ref[]; signature: string } {
  const byId = new Map<string, Ref>();
  for (const r of refs) byId.set(r.mapKey === undefined ? r.name : `${r.name}[${r.mapKey}]`, r);
  const ids = [...byId.keys()].sort();
  // A whole-map reference makes key references of the same map redundant.
  const whole = new Set(ids.filter((id) => !id.includes("[")));
  const kept = ids.filter((id) => !id.includes("[") || !whole.has(byId.get(id)!.name));
  return { refs: kept.map((id) => byId.get(id)!), signature: kept.join(SEP) };
}
