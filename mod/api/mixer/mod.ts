/**
 * The Mixer model (config.istio.io/v1alpha2 handlers, instances, rules) as meshd compiles it in:
 * every adapter and every template described once, in one table each, with nothing of their
 * running code.
 *
 * Shape: this directory is the bottom layer. A template is one entry of `TEMPLATES` (name,
 * instance schema, the phase its instances feed). An adapter is a descriptor file in `adapters/`
 * (name, params schema with its params type beside it, accepted templates) listed in `ADAPTERS`.
 * Galley's `kinds/mixer.ts` validates with these schemas and `analyzers/mixer_rules.ts` reads the
 * accepted templates; mixer's `dispatch.ts` reads both tables and attaches each adapter's factory
 * by name (`mod/mixer/adapters/factories.ts`), so no Redis client or timer is reachable from
 * galley. The descriptors are written in this layer's schema language (`../schema.ts`) and CEL
 * compiler (`../cel.ts`).
 *
 * @module
 */
export { type AdapterDescriptor, defineAdapter } from "./adapter.ts";
export { type DenierParams } from "./adapters/denier.ts";
export { type ListCheckerParams, type ListEntryType } from "./adapters/listchecker.ts";
export { type MemQuotaParams } from "./adapters/memquota.ts";
export {
  type PrometheusBuckets,
  type PrometheusMetric,
  type PrometheusParams,
} from "./adapters/prometheus.ts";
export { type RedisQuota, type RedisQuotaParams } from "./adapters/redisquota.ts";
export { type StdioParams } from "./adapters/stdio.ts";
export { type ZipkinParams } from "./adapters/zipkin.ts";
export { celCheck } from "./expressions.ts";
export { durationSchema, hostPortCheck, type QuotaOverride } from "./_formats.ts";
export { parseMixerRef } from "./references.ts";
export { type Node1x, parse1x, translate1x, type Translation } from "./lang1x.ts";
export {
  FOREIGN_ADAPTER_KINDS,
  FOREIGN_TEMPLATE_KINDS,
  LANG_ANNOTATION,
  LEGACY_KINDS,
  type Normalized,
  normalizeMixer,
} from "./legacy.ts";
export { adapterDescriptor, type AdapterName, adapterNames, ADAPTERS } from "./table.ts";
export {
  defineTemplate,
  type Phase,
  type TemplateDescriptor,
  templateDescriptor,
  type TemplateName,
  templateNames,
  TEMPLATES,
} from "./templates.ts";
