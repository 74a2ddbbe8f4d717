/**
 * Envoy acceptance checks: Envoy's field rules and semantic checks applied to generated xDS
 * resources, so that a set Envoy (or a gRPC client) would NACK is found before it is sent.
 *
 * @module
 */
export type { Violation } from "./violation.ts";
export { checkFieldRules, type FieldRulesContext } from "./field_rules.ts";
export {
  checkSemantics,
  DEFAULT_SECRET_NAMES,
  type EnvoyResourceSet,
  type ProxyKind,
  type SemanticOptions,
} from "./semantic.ts";
export { checkEnvoySet, type CheckOptions, configuredSecretNames, proxyKindOf } from "./check.ts";
