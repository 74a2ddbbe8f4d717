/**
 * Pilot: service registry, translation to Envoy and proxyless-gRPC config, and xDS pushes.
 */
export { pilotModule } from "./module.ts";
export { proxyConfigCommand, proxyStatusCommand } from "./cli.ts";
export { simulateCommand } from "./simulate/command.ts";
export { simulate } from "./simulate/simulate.ts";
export { createPushContext, type PushContext } from "./model/push_context.ts";
export { type Proxy, proxyFromNode } from "./model/proxy.ts";
export type { ServiceRegistry } from "./model/registry.ts";
