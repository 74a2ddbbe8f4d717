/**
 * Mixer: policy checks, quotas and telemetry over Envoy's ext_authz, rate-limit and access-log
 * APIs and meshd's Mixer Check/Report API. Proxyless gRPC apps use the client library in
 * `client/mod.ts`.
 */
export { mixerModule } from "./module.ts";
export {
  MIXER_CLUSTER,
  type MixerFilterSettings,
  mixerFilterSettings,
} from "../api/mixer/filter_settings.ts";
export { createMixerCore, type MixerCore, type MixerCoreOptions } from "./core.ts";
export type { CheckDecision, DispatchTable, HeaderChange, QuotaDecision } from "./dispatch.ts";
export type { GraphEdge, ServiceGraph, ServiceGraphView } from "./service_graph.ts";
export {
  ATTRIBUTES_METADATA_NAMESPACE,
  bagFromDescriptor,
  bagFromExtAuthz,
  bagFromHttpLog,
  bagFromTcpLog,
} from "./attributes.ts";
export type { AttributeBag } from "./client/wire.ts";
