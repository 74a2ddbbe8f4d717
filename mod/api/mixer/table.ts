/**
 * THE table of compiled-in Mixer adapters. Galley validates a handler's `params` with the schema
 * of the adapter it names, the template-mismatch analyzer and mixer's dispatch read which
 * templates each adapter accepts, and mixer's factory table must have exactly one factory per
 * name listed here (its type is derived from this table, so tsc refuses a missing one).
 *
 * Adding an adapter: a descriptor file in `adapters/` and one line below; then its
 * implementation in `mod/mixer/adapters/` and one line in mixer's factory table.
 *
 * @module
 */
import type { AdapterDescriptor } from "./adapter.ts";
import { denier } from "./adapters/denier.ts";
import { listchecker } from "./adapters/listchecker.ts";
import { memquota } from "./adapters/memquota.ts";
import { prometheus } from "./adapters/prometheus.ts";
import { redisquota } from "./adapters/redisquota.ts";
import { stdio } from "./adapters/stdio.ts";
import { zipkin } from "./adapters/zipkin.ts";

/** Every compiled-in adapter, in the order validation messages list them. */
export const ADAPTERS = [
  denier,
  listchecker,
  memquota,
  redisquota,
  prometheus,
  stdio,
  zipkin,
] as const;

/** The name of a compiled-in adapter. */
export type AdapterName = (typeof ADAPTERS)[number]["name"];

/** Names of the compiled-in adapters, in table order. */
export const adapterNames: readonly AdapterName[] = ADAPTERS.map((d) => d.name);

const byName: ReadonlyMap<string, AdapterDescriptor<AdapterName>> = new Map(
  ADAPTERS.map((d) => [d.name, d]),
);

/** The descriptor of a compiled-in adapter, or undefined for a name the table does not hold. */
export function adapterDescriptor(name: string): AdapterDescriptor<AdapterName> | undefined {
  return byName.get(name);
}
