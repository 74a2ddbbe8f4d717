/**
 * The Istio API layer, the bottom of meshd with mod/shared. Per API group, one schema from which
 * the TypeScript types are inferred (`kinds/`: networking, security, telemetry, mesh config,
 * Mixer's config.istio.io), written in the schema language of `schema.ts`, with CEL over Istio's
 * attribute vocabulary (`cel.ts`, `attributes.ts`) and the resource envelope (`resource.ts`);
 * Mixer's adapter and template descriptors (`mixer/`); and the rules of Istio's API that galley,
 * pilot and mixer all apply (host names and wildcards, label selectors, exportTo), written once
 * so that `meshd analyze` and the config pilot serves reach the same answer. It imports nothing
 * from other modules except mod/shared. Files here may be imported directly; this file gathers
 * the rules.
 *
 * @module
 */

export {
  DEFAULT_DOMAIN_SUFFIX,
  hostCovers,
  hostsOverlap,
  isWildcardHost,
  namespaceAdmits,
  type NamespacedHost,
  normalizeHost,
  resolveHost,
  splitNamespacedHost,
} from "./hosts.ts";
export { isEmptySelector, type Labels, selectorMatches } from "./selectors.ts";
export {
  exportedTo,
  isVisibleFrom,
  visibilitiesOverlap,
  type Visibility,
  visibilityOf,
} from "./visibility.ts";
export { CANONICAL_NAME_LABEL, CANONICAL_REVISION_LABEL, canonicalLabels } from "./canonical.ts";
export { type ClusterPolicy, mergeTrafficPolicy } from "./traffic_policy.ts";
export {
  type EffectiveMtlsMode,
  effectivePeerMtls,
  type MtlsDecision,
  type MtlsQuery,
} from "./peer_authentication.ts";
