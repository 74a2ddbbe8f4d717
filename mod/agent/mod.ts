/**
 * The node agent: `meshd agent` (workload identity, SDS, bootstraps, auto-registration and
 * health, and with --node-proxy the machine's L4 node proxy) and `meshd vm bundle` (onboarding
 * bundles, made on the control plane).
 *
 * Only the commands, settings and types are re-exported here, so that loading the CLI does not
 * load the agent's protobuf descriptors; the running parts (agent.ts: startAgent, sds_server.ts,
 * bootstrap.ts, registration.ts, node_proxy/) are loaded by `meshd agent` when it starts.
 *
 * @module
 */
export { agentCommand } from "./agent_command.ts";
export { agentUnit, clusterEnv, vmCommand } from "./bundle_command.ts";
export {
  AGENT_SETTINGS,
  type AgentConfig,
  CLUSTER_ENV_KEYS,
  NODE_PROXY_LABELS,
  parseClusterEnv,
  resolveAgentConfig,
} from "./settings.ts";
export type { Agent, AgentDeps } from "./agent.ts";
export type { ControlPlaneAuth } from "./bootstrap.ts";
export type { SdsServer } from "./sds_server.ts";
export type { CertBundle } from "./certs.ts";
export type { WorkloadInfo } from "./node.ts";
export type { NodeProxy, NodeProxySettings } from "./node_proxy/node_proxy.ts";
export type { NodeProxyView } from "./node_proxy/view.ts";
