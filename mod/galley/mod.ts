/**
 * Galley: Istio-compatible config, parsed, validated, analysed, watched and distributed.
 */
export { galleyModule } from "./module.ts";
export { CONFIG_READY, CONFIG_STORE, MCP_COLLECTIONS } from "./links.ts";
export type { ConfigReadiness } from "./links.ts";
export type { ConfigChange, ConfigSnapshot, ConfigStore, OriginStatus, ResourceStatus } from "./store.ts";
export type { Diagnostic, ObjectMeta, Resource, Severity, SourcePos } from "./resource.ts";
export { formatDiagnostic, resourceKey, resourceLabel } from "./resource.ts";
export { analyzeCommand, configStatusCommand, validateCommand } from "./cli.ts";
