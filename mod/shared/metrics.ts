/**
 * The metrics registry modules add to, exposed by the admin server in Prometheus text format.
 */
import { collectDefaultMetrics, Registry } from "prom-client";

/** A Prometheus registry. Modules create their collectors with `registers: [registry]`. */
export type MetricsRegistry = Registry;

/** Creates a registry holding the process metrics (CPU, memory, file descriptors, event loop). */
export function createMetricsRegistry(): MetricsRegistry {
  const registry = new Registry();
  collectDefaultMetrics({ register: registry });
  return registry;
}
