/**
 * The read-only routes both the admin server and the metrics listener serve: readiness
 * (`/healthz/ready`), liveness (`/healthz/live`) and the Prometheus exposition (`/metrics`).
 * One definition, so a scraper or a probe gets the same answer from either address.
 *
 * @module
 */
import type { Hono } from "hono";
import type { MetricsRegistry } from "../shared/metrics.ts";

/** What the probe routes read from the daemon or the agent. */
export interface ProbeSource {
  readonly metrics: MetricsRegistry;
  /** Names of started modules that are not ready yet, and whether shutdown began. */
  readiness(): { notReady: string[]; stopping: boolean };
}

/** Adds GET (and so HEAD) `/healthz/ready`, `/healthz/live` and `/metrics` to `app`. */
export function addProbeRoutes(app: Hono, src: ProbeSource): Hono {
  app.get("/healthz/ready", (c) => {
    const { notReady, stopping } = src.readiness();
    if (stopping) return c.text("shutting down\n", 503);
    if (notReady.length > 0) return c.text(`not ready: ${notReady.join(", ")}\n`, 503);
    return c.text("ready\n", 200);
  });
  app.get("/healthz/live", (c) => c.text("alive\n"));
  app.get("/metrics", async (c) => {
    const body = await src.metrics.metrics();
    return c.body(body, 200, { "content-type": src.metrics.contentType });
  });
  return app;
}
