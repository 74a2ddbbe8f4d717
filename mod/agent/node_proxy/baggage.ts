/**
 * The W3C baggage header a node proxy sends with each tunnelled connection, describing the
 * client workload with ztunnel's keys (`k8s.cluster.name`, `k8s.namespace.name`, the workload's
 * name, `service.name` for its canonical service, `service.version` for its canonical revision,
 * `cloud.region`, `cloud.availability_zone`), and its parsing on the receiving side into the
 * source labels of the connection's telemetry.
 *
 * @module
 */
import type { ConnectionInfo } from "./telemetry.ts";

/** The header carrying the client workload (W3C baggage, as ztunnel sends). */
export const BAGGAGE_HEADER = "baggage";

/** What a baggage header says about the client workload. */
export interface Baggage {
  readonly cluster?: string;
  readonly namespace?: string;
  readonly workload?: string;
  /** The canonical service (`service.name`). */
  readonly service?: string;
  /** The canonical revision (`service.version`). */
  readonly version?: string;
  readonly region?: string;
  readonly zone?: string;
}

/** Keys naming the workload: ours, and the workload kinds ztunnel sends. */
const WORKLOAD_KEYS = new Set([
  "k8s.workload.name",
  "k8s.deployment.name",
  "k8s.cronjob.name",
  "k8s.pod.name",
  "k8s.job.name",
]);

const FIELDS: ReadonlyMap<string, keyof Baggage> = new Map([
  ["k8s.cluster.name", "cluster"],
  ["k8s.namespace.name", "namespace"],
  ["service.name", "service"],
  ["service.version", "version"],
  ["cloud.region", "region"],
  ["cloud.availability_zone", "zone"],
]);

function decode(v: string): string {
  try {
    return decodeURIComponent(v);
  } catch {
    return v;
  }
}

/**
 * Parses a baggage header (one value, or several joined by commas); unknown keys, properties
 * after `;` and empty values are ignored.
 */
export function parseBaggage(value: string | readonly string[] | undefined): Baggage {
  const out: Record<string, string> = {};
  const text = Array.isArray(value) ? value.join(",") : (value ?? "") as string;
  for (const item of text.split(",")) {
    const [kv = ""] = item.split(";", 1);
    const eq = kv.indexOf("=");
    if (eq < 0) continue;
    const k = kv.slice(0, eq).trim();
    const v = decode(kv.slice(eq + 1).trim());
    if (v === "") continue;
    const field = WORKLOAD_KEYS.has(k) ? "workload" : FIELDS.get(k);
    if (field) out[field] = v;
  }
  return out as Baggage;
}

/**
 * The baggage header value for a workload: name and namespace, and whatever of `more` is known
 * (canonical service and revision, cluster, region, zone).
 */
export function formatBaggage(
  workload: string,
  namespace: string,
  more: Omit<Baggage, "workload" | "namespace"> = {},
): string {
  const e = encodeURIComponent;
  return [
    ...(more.cluster ? [`k8s.cluster.name=${e(more.cluster)}`] : []),
    `k8s.namespace.name=${e(namespace)}`,
    `k8s.workload.name=${e(workload)}`,
    ...(more.service ? [`service.name=${e(more.service)}`] : []),
    ...(more.version ? [`service.version=${e(more.version)}`] : []),
    ...(more.region ? [`cloud.region=${e(more.region)}`] : []),
    ...(more.zone ? [`cloud.availability_zone=${e(more.zone)}`] : []),
  ].join(",");
}

/**
 * The source labels a baggage header gives an inbound connection's telemetry: workload and
 * namespace, and the canonical service and revision, which are also its app and version as
 * ztunnel reports them.
 */
export function baggageSource(b: Baggage): Partial<ConnectionInfo> {
  return {
    ...(b.workload ? { sourceWorkload: b.workload } : {}),
    ...(b.namespace ? { sourceNamespace: b.namespace } : {}),
    ...(b.service ? { sourceApp: b.service, sourceCanonicalService: b.service } : {}),
    ...(b.version ? { sourceVersion: b.version, sourceCanonicalRevision: b.version } : {}),
  };
}
