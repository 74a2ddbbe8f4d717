/**
 * The web console at /ui/ on the admin server: overview, service graph with live updates,
 * services and workloads, proxies and agents, config, security; and `meshd dashboard`.
 *
 * @module
 */
export { type Console, type ConsoleOptions, createConsole } from "./app.ts";
export { isLoopbackHost } from "./auth.ts";
export type { ConsoleSource } from "./source.ts";
export { daemonConsoleSource, type DaemonParts } from "./debug_source.ts";
