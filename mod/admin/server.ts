/**
 * The admin HTTP server (Hono): readiness, Prometheus metrics, version, and the /debug/ handlers
 * modules register. Every request passes the guard first (guard.ts: Host, Origin, Content-Type,
 * admin token); a debug handler that changes state is reached only by POST, one that does not
 * only by GET and HEAD.
 */
import { type Context, Hono } from "hono";
import type { ConnectionLimits } from "../shared/conn_guard.ts";
import type { Logger } from "../shared/logger.ts";
import { versionInfo } from "../shared/version.ts";
import type { DebugHandler } from "../runtime/module.ts";
import { createAdminGuard, isReadOnlyMethod } from "./guard.ts";
import { addProbeRoutes, type HttpListener, listenApp, type ProbeSource } from "./probe_routes.ts";

/** What the admin server reads from the daemon. */
export interface AdminSource extends ProbeSource {
  debugHandlers(): readonly DebugHandler[];
  /** The token state-changing requests must carry (admin-token); unset: only GET and HEAD are served. */
  readonly adminToken?: string;
  /** Host names accepted besides localhost and IP addresses (--admin-allowed-hosts, lowercase). */
  readonly allowedHosts?: readonly string[];
  /** Where refused requests are logged. */
  readonly logger?: Logger;
  /** Epoch milliseconds, for the rate of refusal logs (default Date.now). */
  readonly now?: () => number;
  /** Further routes (the console at /ui/), served behind the same guard. */
  readonly mounts?: readonly Hono[];
}

/** A running admin server. */
export type AdminServer = HttpListener;

/** Builds the Hono app; exported so tests can call it without a socket. */
export function createAdminApp(src: AdminSource): Hono {
  const app = new Hono();
  const guard = createAdminGuard({
    metrics: src.metrics,
    logger: src.logger,
    allowedHosts: src.allowedHosts,
    token: src.adminToken,
    now: src.now,
  });
  app.use(async (c, next) => {
    const refusal = guard.check(c.req.raw, remoteAddress(c));
    if (refusal !== undefined) return refusal;
    await next();
  });
  addProbeRoutes(app, src);
  app.get("/version", (c) => c.json(versionInfo()));
  app.get("/debug", (c) => c.redirect("/debug/"));
  app.get("/debug/", (c) => {
    const list = src.debugHandlers().map((h) => ({
      path: `/debug/${h.path}`,
      method: h.mutates ? "POST" : "GET",
      description: h.description,
    }));
    if ((c.req.header("accept") ?? "").includes("text/html")) {
      const items = list.map((h) =>
        h.method === "GET"
          ? `<li><a href="${h.path}">${h.path}</a> — ${escapeHtml(h.description)}</li>`
          : `<li>POST ${h.path} — ${escapeHtml(h.description)}</li>`
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
    const method = c.req.method;
    if (h.mutates ? method !== "POST" : !isReadOnlyMethod(method)) {
      return guard.refuse("method", c.req.raw, {
        from: remoteAddress(c),
        status: 405,
        headers: { allow: h.mutates ? "POST" : "GET, HEAD" },
        message: h.mutates
          ? `/debug/${path} changes state: use POST with the admin token (meshd ca does)`
          : `/debug/${path} only reads: use GET`,
      });
    }
    return await h.handle(c.req.raw);
  });
  for (const m of src.mounts ?? []) app.route("/", m);
  app.notFound((c) => c.json({ error: `no such path ${c.req.path}` }, 404));
  app.onError((err, c) => c.json({ error: err.message }, 500));
  return app;
}

/**
 * Starts the admin server on `addr` (HOST:PORT; port 0 picks one) with `opts.limits` on its
 * connections.
 */
export async function startAdminServer(
  addr: string,
  src: AdminSource,
  opts: { readonly limits?: ConnectionLimits } = {},
): Promise<AdminServer> {
  return await listenApp("admin", "--admin-addr", addr, createAdminApp(src), src, opts.limits);
}

/** The client's address, from the `requestIP` of Hono's environment ("unknown" without one). */
function remoteAddress(c: Context): string {
  const server = c.env as { requestIP?(req: Request): { address: string } | null } | undefined;
  return server?.requestIP?.(c.req.raw)?.address ?? "unknown";
}

function escapeHtml(s: string): string {
  return s.replace(/[&<>"']/g, (ch) => `&#${ch.charCodeAt(0)};`);
}
