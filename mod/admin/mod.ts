/**
 * The admin HTTP server (readiness, metrics, /debug/) and its token, as the daemon and the agent
 * start it and as `meshd ca` reads the token.
 *
 * @module
 */
export { type AdminServer, type AdminSource, createAdminApp, startAdminServer } from "./server.ts";
export { loadOrCreateAdminToken, readAdminToken } from "./token.ts";
