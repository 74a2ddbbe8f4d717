/**
 * The admin HTTP server (readiness, metrics, /debug/) and its token, as the daemon and the agent
 * start it and as `meshd ca` reads the token; and the read-only metrics listener
 * (`--metrics-addr`) that exposes only metrics and health beyond loopback.
 *
 * @module
 */
export { type AdminServer, type AdminSource, createAdminApp, startAdminServer } from "./server.ts";
export {
  createMetricsApp,
  type MetricsServer,
  type MetricsSource,
  startMetricsServer,
} from "./metrics_server.ts";
export { type ProbeSource } from "./probe_routes.ts";
export { loadOrCreateAdminToken, readAdminToken } from "./token.ts";
