/**
 * The console's own check when the admin server listens beyond loopback: every /ui/ request must
 * carry the admin token, as `Authorization: Bearer`, or as the cookie that `/ui/?token=TOKEN`
 * sets once (HttpOnly, SameSite=Strict, path /ui/) so that a browser can follow links. On
 * loopback the admin guard alone applies, as for the rest of the admin server.
 *
 * @module
 */
import { createHash, timingSafeEqual } from "node:crypto";
import type { MiddlewareHandler } from "hono";

/** The cookie that carries the token. */
export const TOKEN_COOKIE = "meshd_admin";

function sameSecret(a: string, b: string): boolean {
  const ha = createHash("sha256").update(a).digest();
  const hb = createHash("sha256").update(b).digest();
  return timingSafeEqual(ha, hb);
}

function cookieValue(header: string | undefined, name: string): string | undefined {
  for (const part of (header ?? "").split(";")) {
    const eq = part.indexOf("=");
    if (eq > 0 && part.slice(0, eq).trim() === name) return part.slice(eq + 1).trim();
  }
  return undefined;
}

/** Whether a host the admin server binds to is loopback only. */
export function isLoopbackHost(host: string): boolean {
  const h = host.replace(/^\[|\]$/g, "").toLowerCase();
  return h === "localhost" || h === "::1" || /^127\./.test(h);
}

/**
 * Middleware that refuses /ui/ requests without the token (401, naming where the token lives);
 * `token` unset lets every request through.
 */
export function requireToken(token: string | undefined): MiddlewareHandler {
  return async (c, next) => {
    if (token === undefined) return await next();
    const bearer = /^Bearer\s+(\S+)$/i.exec(c.req.header("authorization") ?? "")?.[1];
    const fromQuery = c.req.query("token");
    const cookie = cookieValue(c.req.header("cookie"), TOKEN_COOKIE);
    if (fromQuery !== undefined && sameSecret(fromQuery, token)) {
      const url = new URL(c.req.url);
      url.searchParams.delete("token");
      c.header(
        "set-cookie",
        `${TOKEN_COOKIE}=${token}; Path=/ui/; HttpOnly; SameSite=Strict`,
      );
      return c.redirect(url.pathname + url.search, 303);
    }
    if (
      (bearer !== undefined && sameSecret(bearer, token)) ||
      (cookie !== undefined && sameSecret(cookie, token))
    ) {
      return await next();
    }
    return c.text(
      "the console needs the admin token here: open /ui/?token=TOKEN with the token in the daemon's --data-dir/admin-token (meshd dashboard prints that address)\n",
      401,
    );
  };
}
