/**
 * How this machine's workload names itself to pilot (Istio's conventions): the node id
 * `TYPE~IP~NAME.NAMESPACE~NAMESPACE.svc.cluster.local` and node metadata (NAMESPACE, LABELS,
 * SERVICE_ACCOUNT, INSTANCE_IPS, WORKLOAD_NAME, and AUTO_REGISTER_GROUP when the workload joins
 * a WorkloadGroup). The Envoy bootstrap, the proxyless gRPC bootstrap and the agent's own
 * registration stream all use it, so pilot sees one workload.
 *
 * @module
 */
import { create, type JsonObject } from "@bufbuild/protobuf";
import { type Node, NodeSchema } from "#gen/envoy/config/core/v3/base_pb.ts";
import { DEFAULT_DOMAIN_SUFFIX } from "../api/mod.ts";

/** The workload's identity and placement. */
export interface WorkloadInfo {
  /** The address other workloads reach it at. */
  readonly ip: string;
  /** Host or workload name. */
  readonly name: string;
  readonly namespace: string;
  readonly serviceAccount: string;
  readonly trustDomain: string;
  readonly labels: Readonly<Record<string, string>>;
  /** WorkloadGroup ("NAME" in the namespace, or "NAMESPACE/NAME") to auto-register into. */
  readonly workloadGroup?: string;
  /** The network the machine is in (multi-network meshes); sent as NETWORK. */
  readonly network?: string;
}

/** Which client a node describes: Envoy (`sidecar`) or a proxyless gRPC application. */
export type NodeKind = "sidecar" | "proxyless";

/** The DNS domain in node ids. */
export const DNS_SUFFIX = `svc.${DEFAULT_DOMAIN_SUFFIX}`;

/** `TYPE~IP~NAME.NAMESPACE~NAMESPACE.svc.cluster.local`. */
export function nodeId(w: WorkloadInfo, kind: NodeKind = "sidecar"): string {
  return `${kind}~${w.ip}~${w.name}.${w.namespace}~${w.namespace}.${DNS_SUFFIX}`;
}

/** Node metadata; `extra` adds or overrides keys (e.g. GENERATOR). */
export function nodeMetadata(w: WorkloadInfo, extra: JsonObject = {}): JsonObject {
  return {
    NAMESPACE: w.namespace,
    LABELS: { ...w.labels },
    SERVICE_ACCOUNT: w.serviceAccount,
    INSTANCE_IPS: w.ip,
    WORKLOAD_NAME: w.name,
    ...(w.workloadGroup ? { AUTO_REGISTER_GROUP: w.workloadGroup } : {}),
    ...(w.network ? { NETWORK: w.network } : {}),
    ...extra,
  };
}

/** Envoy's `cluster` field: the app label (or the name) and the namespace. */
export function serviceCluster(w: WorkloadInfo): string {
  return `${w.labels.app ?? w.name}.${w.namespace}`;
}

/** The xDS node message. */
export function xdsNode(w: WorkloadInfo, kind: NodeKind = "sidecar", extra: JsonObject = {}): Node {
  return create(NodeSchema, {
    id: nodeId(w, kind),
    cluster: serviceCluster(w),
    metadata: nodeMetadata(w, extra),
    userAgentName: "meshd-agent",
  });
}
