/**
 * Platform service registries (Consul, Eureka, Kubernetes) behind pilot's `ServiceRegistry`
 * seam: the adapters' common contract, the `--registry` setting, and the rule that combines
 * their views with config.
 *
 * @module
 */
export type { PlatformKind, PlatformRegistry, RegistryStatus } from "./platform.ts";
export {
  applyCollisionRule,
  type CombinedState,
  configHosts,
  createPlatformRegistries,
  createPlatformRegistrySet,
  endpointChanges,
  guardedWatchers,
  parseRegistries,
  parseRegistry,
  type PlatformDeps,
  type PlatformRegistryFactory,
  type PlatformRegistryOptions,
  type PlatformRegistrySet,
  registriesVersion,
  REGISTRY_SETTING,
  registryDisplayName,
  type RegistryTarget,
  stateVersion,
} from "./registries.ts";
