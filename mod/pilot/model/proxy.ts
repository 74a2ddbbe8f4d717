/**
 * A connected proxy as pilot sees it, read from the xDS node it sent (Istio's conventions):
 * node id `TYPE~IP~NAME.NAMESPACE~NAMESPACE.svc.cluster.local` and metadata keys such as
 * NAMESPACE, LABELS, SERVICE_ACCOUNT, CLUSTER_ID, NETWORK, GENERATOR and AUTO_REGISTER_GROUP.
 */
import type { JsonObject, JsonValue } from "@bufbuild/protobuf";
import type { Node } from "#gen/envoy/config/core/v3/base_pb.ts";

/** Kinds of proxy. `proxyless` is a gRPC application without a sidecar. */
export type ProxyType = "sidecar" | "router" | "proxyless";

/**
 * Which flavour of resources a proxy gets: Envoy's, proxyless gRPC's (`GENERATOR: "grpc"`), or a
 * node proxy's (`GENERATOR: "node-proxy"`: `meshd agent --node-proxy`, an L4 proxy for every
 * process of a machine, served standard Envoy resources through translate/node_proxy.ts).
 */
export type Generator = "envoy" | "grpc" | "node-proxy";

/** A proxy's identity and the facts translation reads. Immutable. */
export interface Proxy {
  /** The full node id. */
  readonly id: string;
  readonly type: ProxyType;
  /** First IP address. */
  readonly ip: string;
  readonly ipAddresses: readonly string[];
  /** Workload name (VM host name, pod name). */
  readonly name: string;
  readonly namespace: string;
  /** DNS domain, e.g. "bookinfo.svc.cluster.local". */
  readonly dnsDomain: string;
  readonly labels: Readonly<Record<string, string>>;
  readonly serviceAccount?: string;
  readonly clusterId?: string;
  /**
   * The network the proxy runs in (node metadata NETWORK, Istio's ISTIO_META_NETWORK), which
   * decides which endpoints it reaches directly and which through their network's gateway.
   */
  readonly network?: string;
  readonly generator: Generator;
  /** WorkloadGroup "NAMESPACE/NAME" or "NAME" to auto-register into, if any. */
  readonly autoRegisterGroup?: string;
  /** The node metadata as sent. */
  readonly metadata: Readonly<JsonObject>;
}

const TYPES = new Set<ProxyType>(["sidecar", "router", "proxyless"]);

/** Thrown for a node that does not identify a proxy; the message says what is wrong. */
export class ProxyIdError extends Error {
  override readonly name = "ProxyIdError";
}

function str(v: JsonValue | undefined): string | undefined {
  return typeof v === "string" && v !== "" ? v : undefined;
}

/**
 * Reads a Proxy from an xDS node. Throws ProxyIdError when the node id is malformed.
 */
export function proxyFromNode(node: Pick<Node, "id" | "metadata">): Proxy {
  const id = node.id;
  const parts = id.split("~");
  if (parts.length !== 4) {
    throw new ProxyIdError(
      `node id ${JSON.stringify(id)}: want TYPE~IP~NAME.NAMESPACE~NAMESPACE.svc.cluster.local`,
    );
  }
  const [type, ipField, nameNs, domain] = parts as [string, string, string, string];
  if (!TYPES.has(type as ProxyType)) {
    throw new ProxyIdError(
      `node id ${JSON.stringify(id)}: type ${JSON.stringify(type)} is not sidecar, router or proxyless`,
    );
  }
  const md = (node.metadata ?? {}) as JsonObject;
  const dot = nameNs.lastIndexOf(".");
  const name = dot > 0 ? nameNs.slice(0, dot) : nameNs;
  const namespace = str(md.NAMESPACE) ??
    (dot > 0 ? nameNs.slice(dot + 1) : domain.split(".")[0] ?? "default");
  const ips = str(md.INSTANCE_IPS)?.split(",").map((s) => s.trim()).filter(Boolean) ?? [];
  if (ipField !== "" && !ips.includes(ipField)) ips.unshift(ipField);
  const labelsMd = md.LABELS;
  const labels: Record<string, string> = {};
  if (labelsMd && typeof labelsMd === "object" && !Array.isArray(labelsMd)) {
    for (const [k, v] of Object.entries(labelsMd)) if (typeof v === "string") labels[k] = v;
  }
  const generator: Generator = str(md.GENERATOR) === "grpc" || type === "proxyless"
    ? "grpc"
    : str(md.GENERATOR) === "node-proxy"
    ? "node-proxy"
    : "envoy";
  return {
    id,
    type: type as ProxyType,
    ip: ips[0] ?? "",
    ipAddresses: ips,
    name,
    namespace,
    dnsDomain: domain,
    labels,
    serviceAccount: str(md.SERVICE_ACCOUNT),
    clusterId: str(md.CLUSTER_ID),
    ...(str(md.NETWORK) ? { network: str(md.NETWORK) } : {}),
    generator,
    autoRegisterGroup: str(md.AUTO_REGISTER_GROUP),
    metadata: md,
  };
}

/**
 * A key over everything translation reads from a proxy apart from its addresses: proxies with
 * equal keys and equal instances (see the generator) get identical configuration, so it is
 * generated once for all of them.
 */
export function proxyConfigKey(p: Proxy): string {
  let key = configKeys.get(p);
  if (key === undefined) {
    const labels = Object.keys(p.labels).sort().map((k) => `${k}=${p.labels[k]}`).join(",");
    key = [
      p.type,
      p.generator,
      p.namespace,
      p.dnsDomain,
      labels,
      p.serviceAccount ?? "",
      p.clusterId ?? "",
      p.network ?? "",
      // Whether its listeners are captured or bound (Sidecar captureMode DEFAULT reads it).
      String(p.metadata.INTERCEPTION_MODE ?? ""),
    ]
      .join("|");
    configKeys.set(p, key);
  }
  return key;
}

/** Proxies are immutable, so each one's key is computed once. */
const configKeys = new WeakMap<Proxy, string>();
