/**
 * The read-only routes both the admin server and the metrics listener serve: readiness
 * (`/healthz/ready`), liveness (`/healthz/live`) and the Prometheus exposition (`/metrics`).
 * One definition, so a scraper or a probe gets the same answer from either address.
 *
 * @module
 */
import type { Hono } from "hono";
import { splitHostPort } from "../cli/setting.ts";
import { type ConnectionLimits, DEFAULT_CONNECTION_LIMITS } from "../shared/conn_guard.ts";
import { startFetchListener } from "../shared/fetch_listener.ts";
import { createLogger, type Logger } from "../shared/logger.ts";
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

/** A running HTTP listener of the admin module. */
export interface HttpListener {
  readonly host: string;
  readonly port: number;
  /** Stops listening and closes open connections. */
  stop(): Promise<void>;
}

/**
 * Serves `app` on `addr` (HOST:PORT; port 0 picks one) on node:http behind a connection guard
 * (Bun.serve cannot cap connections; see fetch_listener.ts), with `limits` on its connections.
 * Errors name `setting`.
 */
export async function listenApp(
  name: string,
  setting: string,
  addr: string,
  app: Hono,
  src: { readonly metrics: MetricsRegistry; readonly logger?: Logger },
  limits: ConnectionLimits = DEFAULT_CONNECTION_LIMITS,
): Promise<HttpListener> {
  const hp = splitHostPort(addr);
  if (hp === undefined) throw new Error(`${setting} ${addr}: want HOST:PORT`);
  const server = await startFetchListener({
    name,
    host: hp.host || "0.0.0.0",
    port: hp.port,
    fetch: (req, peer) => app.fetch(req, peer),
    limits,
    logger: src.logger ?? createLogger({ level: "error" }),
    metrics: src.metrics,
  }).catch((err: Error) => {
    throw new Error(`${setting} ${addr}: ${err.message}`);
  });
  return { host: server.host, port: server.port, stop: () => server.stop() };
}
