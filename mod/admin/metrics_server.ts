/**
 * The read-only metrics listener (`--metrics-addr`): a second HTTP listener that Prometheus can
 * scrape on the pod or VM address while the admin server stays on loopback. It serves only
 * `/metrics`, `/healthz/ready` and `/healthz/live` (the admin server's own routes, probe_routes.ts)
 * to GET and HEAD; any other method is 405 and any other path 404, so neither the debug handlers,
 * the console nor a write of the admin server is reachable through it.
 *
 * It has no Host check (the admin guard's defence against DNS rebinding protects state-changing
 * and debug routes, and there are none here) so scrapers may name the machine as they like.
 *
 * @module
 */
import { Hono } from "hono";
import type { ConnectionLimits } from "../shared/conn_guard.ts";
import type { Logger } from "../shared/logger.ts";
import { isReadOnlyMethod } from "./guard.ts";
import { addProbeRoutes, type HttpListener, listenApp, type ProbeSource } from "./probe_routes.ts";

/** The setting that names the listener's address (named in errors). */
const SETTING = "--metrics-addr";

/** What the metrics listener reads from the daemon or the agent. */
export interface MetricsSource extends ProbeSource {
  /** Where listener problems are logged. */
  readonly logger?: Logger;
}

/** A running metrics listener. */
export type MetricsServer = HttpListener;

/** Builds the metrics listener's Hono app; exported so tests can call it without a socket. */
export function createMetricsApp(src: ProbeSource): Hono {
  const app = new Hono();
  app.use(async (c, next) => {
    if (!isReadOnlyMethod(c.req.method)) {
      return c.json(
        { error: `${c.req.method} is refused: the metrics listener (${SETTING}) only reads; use GET` },
        405,
        { allow: "GET, HEAD" },
      );
    }
    await next();
  });
  addProbeRoutes(app, src);
  app.notFound((c) =>
    c.json({
      error: `no such path ${c.req.path} on the metrics listener (${SETTING}): it serves /metrics, ` +
        "/healthz/ready and /healthz/live; the rest is on the admin address (--admin-addr)",
    }, 404)
  );
  app.onError((err, c) => c.json({ error: err.message }, 500));
  return app;
}

/**
 * Starts the metrics listener on `addr` (HOST:PORT; port 0 picks one) with `opts.limits` on its
 * connections. Rejects, naming the setting, when the address is malformed or cannot be bound.
 */
export async function startMetricsServer(
  addr: string,
  src: MetricsSource,
  opts: { readonly limits?: ConnectionLimits } = {},
): Promise<MetricsServer> {
  return await listenApp("metrics", SETTING, addr, createMetricsApp(src), src, opts.limits);
}
