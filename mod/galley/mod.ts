/**
 * Galley: Istio-compatible config, parsed, validated, analysed, watched and distributed.
 */
export { galleyModule } from "./module.ts";
export { CONFIG_READY, CONFIG_STORE, MCP_COLLECTIONS } from "./links.ts";
export type { ConfigReadiness } from "./links.ts";
export type { ConfigChange, ConfigSnapshot, ConfigStore, OriginStatus, ResourceStatus } from "./store.ts";
export { createConfigStore } from "./store.ts";
export { listConfigFiles } from "./dir_source.ts";
export type { Diagnostic, ObjectMeta, Resource, Severity, SourcePos } from "../api/resource.ts";
export { formatDiagnostic, resourceKey, resourceLabel } from "../api/resource.ts";
export { analyzeCommand, configStatusCommand, validateCommand } from "./cli.ts";
