/**
 * The W3C baggage header a node proxy sends with each tunnelled connection, naming the client
 * workload (as ztunnel does), and its parsing on the receiving side.
 *
 * @module
 */

/** The header carrying the client workload's name and namespace (W3C baggage, as ztunnel sends). */
export const BAGGAGE_HEADER = "baggage";

/** Parses a baggage header into workload and namespace. */
export function parseBaggage(value: string | undefined): { workload?: string; namespace?: string } {
  const out: { workload?: string; namespace?: string } = {};
  for (const item of (value ?? "").split(",")) {
    const [k, v] = item.trim().split("=", 2);
    if (v === undefined) continue;
    if (k === "k8s.workload.name" || k === "k8s.deployment.name") out.workload = decodeURIComponent(v);
    if (k === "k8s.namespace.name") out.namespace = decodeURIComponent(v);
  }
  return out;
}

/** The baggage header value for a workload. */
export function formatBaggage(workload: string, namespace: string): string {
  return `k8s.workload.name=${encodeURIComponent(workload)},k8s.namespace.name=${
    encodeURIComponent(namespace)
  }`;
}
