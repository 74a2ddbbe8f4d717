/**
 * Mixer's half of the adapter table: the factory that builds each compiled-in adapter's handler,
 * attached by name to the descriptors of `ADAPTERS` in mod/api/mixer (which hold each adapter's
 * params schema and accepted templates). The mapped type over `AdapterName` makes tsc refuse a
 * descriptor without a factory, or a factory for a name the table does not list.
 *
 * Adding an adapter: its implementation file here and one line below (the descriptor and its line
 * in the api table come first).
 *
 * @module
 */
import type { AdapterName } from "../../api/mixer/mod.ts";
import type { AdapterFactory } from "./adapter.ts";
import { createDenier } from "./denier.ts";
import { createListChecker } from "./listchecker.ts";
import { createMemQuota } from "./memquota.ts";
import { type MetricPool, prometheusFactory } from "./prometheus.ts";
import { createRedisQuota } from "./redisquota.ts";
import { createStdio } from "./stdio.ts";
import { createZipkin } from "./zipkin.ts";

/** One factory per compiled-in adapter, by name. */
export type AdapterFactories = { readonly [N in AdapterName]: AdapterFactory };

/** The factories of the compiled-in adapters; prometheus handlers share `pool`'s metrics. */
export function adapterFactories(pool: MetricPool): AdapterFactories {
  return {
    denier: createDenier,
    listchecker: createListChecker,
    memquota: createMemQuota,
    redisquota: createRedisQuota,
    prometheus: prometheusFactory(pool),
    stdio: createStdio,
    zipkin: createZipkin,
  };
}
