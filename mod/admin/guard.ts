/**
 * What the admin server refuses before it routes a request, so that neither a web page in a
 * browser on the same machine nor a local process without the admin token can change state:
 *
 * - a `Host` other than `localhost`, an IP address or a name in `--admin-allowed-hosts` (DNS
 *   rebinding: a page whose name was made to resolve to 127.0.0.1 sends its own name), on every
 *   route, readiness included;
 * - on any method but GET and HEAD: an `Origin` header (only browsers send one), a
 *   `Content-Type` other than none or `application/json` (what a page can send without asking
 *   first), and a missing or wrong `Authorization: Bearer <admin token>`.
 *
 * Each refusal is counted in `meshd_admin_requests_refused_total{reason}` and logged at most once
 * a minute per source address and reason, so an attack does not flood the log.
 *
 * @module
 */
import { isIPv4, isIPv6 } from "node:net";
import { Counter } from "prom-client";
import type { Logger } from "../shared/logger.ts";
import type { MetricsRegistry } from "../shared/metrics.ts";
import { createRateLimiter } from "../shared/rate_limit.ts";
import { bearerMatches } from "./token.ts";

/** Why the admin server refused a request (the `reason` label of the refusal counter). */
export type RefusalReason = "host" | "origin" | "content_type" | "token" | "method";

const REASONS: readonly RefusalReason[] = ["host", "origin", "content_type", "token", "method"];

/** The refusal counter's name. */
const REFUSED_METRIC = "meshd_admin_requests_refused_total";

/** The setting that lists further host names (named in refusals). */
const ALLOWED_HOSTS_SETTING = "--admin-allowed-hosts";

/** Options for createAdminGuard. */
export interface AdminGuardOptions {
  readonly metrics: MetricsRegistry;
  /** Where refusals are logged; unset: not logged (still counted). */
  readonly logger?: Logger;
  /** Host names accepted besides localhost and IP addresses, lowercase (see parseAllowedHosts). */
  readonly allowedHosts?: readonly string[];
  /** The admin token; unset: no request may use a method other than GET or HEAD. */
  readonly token?: string;
  /** Epoch milliseconds (for the log rate limit); default Date.now. */
  readonly now?: () => number;
}

/** The admin server's gatekeeper. */
export interface AdminGuard {
  /** The refusal answer for `req` from address `from`, or undefined when it may be routed. */
  check(req: Request, from: string): Response | undefined;
  /**
   * Counts and (rate-limited) logs a refusal decided elsewhere (a method a route does not take)
   * and returns the answer: `message` as JSON `{error}` with `status` and `headers`.
   */
  refuse(
    reason: RefusalReason,
    req: Request,
    opts: { from: string; status: number; message: string; headers?: Record<string, string> },
  ): Response;
}

/** True for the methods that never change state. */
export function isReadOnlyMethod(method: string): boolean {
  return method === "GET" || method === "HEAD";
}

/**
 * Checks and normalises the names of `--admin-allowed-hosts` (lowercase, no trailing dot).
 * Throws naming the setting when one is not a host name.
 */
export function parseAllowedHosts(names: readonly string[]): string[] {
  return names.map((raw) => {
    const name = raw.trim().toLowerCase().replace(/\.$/, "");
    if (!/^[a-z0-9_]([a-z0-9_-]*[a-z0-9_])?(\.[a-z0-9_]([a-z0-9_-]*[a-z0-9_])?)*$/.test(name)) {
      throw new Error(`${ALLOWED_HOSTS_SETTING}: "${raw}" is not a host name (give names without ports)`);
    }
    return name;
  });
}

/**
 * True when a `Host` header value (port stripped) is `localhost`, an IPv4 address, a bracketed
 * IPv6 address, or one of `allowed` (lowercase names from parseAllowedHosts).
 */
function hostAllowed(host: string | null | undefined, allowed: ReadonlySet<string>): boolean {
  if (!host) return false;
  const h = host.toLowerCase();
  const v6 = /^\[([^\]]+)\](?::\d{1,5})?$/.exec(h);
  if (v6 !== null) return isIPv6(v6[1]!);
  const m = /^([^:[\]]+?)\.?(?::\d{1,5})?$/.exec(h);
  if (m === null) return false;
  const name = m[1]!;
  return name === "localhost" || isIPv4(name) || allowed.has(name);
}

function mediaType(contentType: string | null): string {
  return (contentType ?? "").split(";")[0]!.trim().toLowerCase();
}

/** Creates the guard and registers its counter (or reuses one already in `metrics`). */
export function createAdminGuard(opts: AdminGuardOptions): AdminGuard {
  const allowed = new Set(opts.allowedHosts ?? []);
  const refused = (opts.metrics.getSingleMetric(REFUSED_METRIC) as Counter<"reason"> | undefined) ??
    new Counter({
      name: REFUSED_METRIC,
      help: "Admin HTTP requests refused, by reason (host, origin, content_type, token, method); see the log",
      labelNames: ["reason"],
      registers: [opts.metrics],
    });
  for (const reason of REASONS) refused.inc({ reason }, 0);
  const logLimit = createRateLimiter({ perMinute: 1, now: opts.now ?? Date.now });

  const refuse: AdminGuard["refuse"] = (reason, req, r) => {
    refused.inc({ reason });
    if (opts.logger && logLimit.take(`${r.from} ${reason}`)) {
      const h = req.headers;
      opts.logger.warn("admin request refused", {
        reason,
        from: r.from,
        method: req.method,
        path: new URL(req.url).pathname,
        host: h.get("host") ?? null,
        ...(h.has("origin") ? { origin: h.get("origin") } : {}),
        ...(h.has("content-type") ? { contentType: h.get("content-type") } : {}),
      });
    }
    return Response.json({ error: r.message }, { status: r.status, headers: r.headers });
  };

  return {
    refuse,
    check(req, from) {
      const host = req.headers.get("host");
      if (!hostAllowed(host, allowed)) {
        return refuse("host", req, {
          from,
          status: 403,
          message: `Host ${host === null ? "(none)" : JSON.stringify(host)} is refused: the admin server ` +
            `answers to localhost, IP addresses and the names in ${ALLOWED_HOSTS_SETTING}`,
        });
      }
      if (isReadOnlyMethod(req.method)) return undefined;
      if (req.headers.has("origin")) {
        return refuse("origin", req, {
          from,
          status: 403,
          message:
            `${req.method} with an Origin header is refused: web pages may not change the daemon's state`,
        });
      }
      const type = mediaType(req.headers.get("content-type"));
      if (type !== "" && type !== "application/json") {
        return refuse("content_type", req, {
          from,
          status: 415,
          message: `Content-Type ${type} is refused: send application/json or no body`,
        });
      }
      if (opts.token === undefined || !bearerMatches(req.headers.get("authorization"), opts.token)) {
        return refuse("token", req, {
          from,
          status: 401,
          headers: { "www-authenticate": 'Bearer realm="meshd admin"' },
          message: opts.token === undefined
            ? `${req.method} is refused: this admin server changes nothing and answers GET and HEAD only`
            : `${req.method} needs Authorization: Bearer <token>, the token in the daemon's ` +
              "--data-dir/admin-token (meshd ca reads it)",
        });
      }
      return undefined;
    },
  };
}
