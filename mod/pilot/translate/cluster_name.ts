/**
 * Cluster names, as Istio spells them: `outbound|PORT|SUBSET|HOST`, `inbound|PORT||`, and the
 * two special clusters for traffic that leaves the mesh's registry.
 *
 * @module
 */

/** Sends traffic on to its original destination (ORIGINAL_DST). */
export const PASSTHROUGH_CLUSTER = "PassthroughCluster";
/** Drops traffic: a STATIC cluster without endpoints. */
export const BLACKHOLE_CLUSTER = "BlackHoleCluster";

/** `outbound|PORT|SUBSET|HOST`; SUBSET is empty for the service's default cluster. */
export function outboundClusterName(port: number, host: string, subset = ""): string {
  return `outbound|${port}|${subset}|${host}`;
}

/** `inbound|PORT||`: the local application behind the sidecar on PORT. */
export function inboundClusterName(port: number): string {
  return `inbound|${port}||`;
}

/** The parts of an outbound cluster name, or undefined for any other name. */
export function parseOutboundClusterName(
  name: string,
): { port: number; subset: string; host: string } | undefined {
  const parts = name.split("|");
  if (parts.length !== 4 || parts[0] !== "outbound") return undefined;
  const port = Number(parts[1]);
  if (!Number.isInteger(port) || port <= 0) return undefined;
  return { port, subset: parts[2]!, host: parts[3]! };
}
