/**
 * What galley offers other modules: the config store, and the MCP collections it distributes.
 */
import { linkKey } from "../runtime/links.ts";
import type { McpCollection } from "./mcp.ts";
import type { ConfigStore } from "./store.ts";
import { knownKinds } from "./validate.ts";

/** Galley's store; pilot and mixer read config through it. */
export const CONFIG_STORE = linkKey<ConfigStore>("galley.config-store");

/** Whether every config source has delivered its first full state (and when it will). */
export interface ConfigReadiness {
  now(): boolean;
  readonly promise: Promise<void>;
}

/** Galley's readiness: consumers must not serve a config that is still loading. */
export const CONFIG_READY = linkKey<ConfigReadiness>("galley.config-ready");

/** Every known kind, served at its preferred version. */
export const MCP_COLLECTIONS: readonly McpCollection[] = knownKinds.map((k) => ({
  group: k.group,
  version: k.versions[0]!,
  kind: k.kind,
}));
