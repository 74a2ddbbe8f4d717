/**
 * The metrics registry modules add to, exposed by the admin server in Prometheus text format.
 */
import { collectDefaultMetrics, Registry } from "prom-client";

/** A Prometheus registry. Modules create their collectors with `registers: [registry]`. */
export type MetricsRegistry = Registry;

/**
 * Creates a registry holding the process metrics (CPU, memory, file descriptors, event loop).
 * The per-heap-space gauges are left out: under Bun, reading them walks the whole heap on the
 * event loop (hundreds of milliseconds with many connections) on every scrape.
 */
export function createMetricsRegistry(): MetricsRegistry {
  const registry = new Registry();
  collectDefaultMetrics({ register: registry });
  for (const m of registry.getMetricsAsArray()) {
    if (m.name.startsWith("nodejs_heap_space_size_")) registry.removeSingleMetric(m.name);
  }
  return registry;
}
