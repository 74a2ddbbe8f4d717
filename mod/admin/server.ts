/**
 * The admin HTTP server (Hono): readiness, Prometheus metrics, version, and the /debug/ handlers
 * modules register.
 */
import { Hono } from "hono";
import { splitHostPort } from "../cli/setting.ts";
import type { MetricsRegistry } from "../shared/metrics.ts";
import { versionInfo } from "../shared/version.ts";
import type { DebugHandler } from "../runtime/module.ts";

/** What the admin server reads from the daemon. */
export interface AdminSource {
  metrics: MetricsRegistry;
  /** Names of started modules that are not ready yet, and whether shutdown began. */
  readiness(): { notReady: string[]; stopping: boolean };
  debugHandlers(): readonly DebugHandler[];
}

/** A running admin server. */
export interface AdminServer {
  readonly host: string;
  readonly port: number;
  /** Stops listening and closes open connections. */
  stop(): Promise<void>;
}

/** Builds the Hono app; exported so tests can call it without a socket. */
export function createAdminApp(src: AdminSource): Hono {
  const app = new Hono();
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
  app.get("/version", (c) => c.json(versionInfo()));
  app.get("/debug", (c) => c.redirect("/debug/"));
  app.get("/debug/", (c) => {
    const list = src.debugHandlers().map((h) => ({ path: `/debug/${h.path}`, description: h.description }));
    if ((c.req.header("accept") ?? "").includes("text/html")) {
      const items = list.map((h) =>
        `<li><a href="${h.path}">${h.path}</a> — ${escapeHtml(h.description)}</li>`
      );
      return c.html(
        `<!doctype html><title>meshd debug</title><h1>meshd debug</h1><ul>${items.join("")}</ul>`,
      );
    }
    return c.json({ handlers: list });
  });
  app.all("/debug/:path{.+}", async (c) => {
    const path = c.req.param("path");
    const h = src.debugHandlers().find((d) => d.path === path);
    if (h === undefined) return c.json({ error: `no debug handler /debug/${path}; see /debug/` }, 404);
    return await h.handle(c.req.raw);
  });
  app.notFound((c) => c.json({ error: `no such path ${c.req.path}` }, 404));
  app.onError((err, c) => c.json({ error: err.message }, 500));
  return app;
}

/** Starts the admin server on `addr` (HOST:PORT; port 0 picks one). */
export function startAdminServer(addr: string, src: AdminSource): AdminServer {
  const hp = splitHostPort(addr);
  if (hp === undefined) throw new Error(`bad admin address ${addr}`);
  const app = createAdminApp(src);
  const server = Bun.serve({ hostname: hp.host || "0.0.0.0", port: hp.port, fetch: app.fetch });
  return {
    host: server.hostname ?? hp.host,
    port: server.port ?? hp.port,
    stop: () => server.stop(true),
  };
}

function escapeHtml(s: string): string {
  return s.replace(/[&<>"']/g, (ch) => `&#${ch.charCodeAt(0)};`);
}
