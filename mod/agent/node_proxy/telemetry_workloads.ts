/**
 * The workload labels of the node proxy's TCP telemetry (app, version, canonical service and
 * revision, and the workload's name and namespace where a listener did not give them), as Istio
 * fills them for each side of a connection:
 *
 * - This machine's workload is the source of outbound connections (reporter `source`) and the
 *   destination of inbound ones (reporter `destination`); its labels come from the agent
 *   (cluster.env's ISTIO_METAJSON_LABELS, the node metadata LABELS).
 * - The destination of an outbound connection is the endpoint it went to: pilot sends each
 *   endpoint's workload in its metadata (decode.ts `workloadOf`).
 * - The source of an inbound connection is what its baggage header said (baggage.ts), else the
 *   one workload the view has at the connection's source address.
 *
 * @module
 */
import { canonicalLabels } from "../../api/mod.ts";
import { endpointKey } from "./endpoint_pick.ts";
import type { ConnectionInfo, ConnectionTelemetry, TcpTelemetry } from "./telemetry.ts";
import type { NodeProxyView, WorkloadLabels } from "./view.ts";

/**
 * A workload's telemetry labels from its name, namespace and labels: the canonical service and
 * revision as Istio derives them (mod/api `canonicalLabels`), app and version from the `app` and
 * `version` labels, else the canonical ones.
 */
export function workloadLabels(
  name: string,
  namespace: string,
  labels: Readonly<Record<string, string>>,
): WorkloadLabels {
  const { service: canonicalService, revision: canonicalRevision } = canonicalLabels(labels, name);
  return {
    name,
    namespace,
    app: labels["app"] || canonicalService,
    version: labels["version"] || canonicalRevision,
    canonicalService,
    canonicalRevision,
  };
}

/** Indexes of the view's endpoint workloads: by endpoint key, and by address when unambiguous. */
interface WorkloadIndex {
  readonly byEndpoint: ReadonlyMap<string, WorkloadLabels>;
  /** null: several workloads share the address. */
  readonly byAddress: ReadonlyMap<string, WorkloadLabels | null>;
}

const indexes = new WeakMap<NodeProxyView, WorkloadIndex>();

function indexOf(view: NodeProxyView): WorkloadIndex {
  let index = indexes.get(view);
  if (index) return index;
  const byEndpoint = new Map<string, WorkloadLabels>();
  const byAddress = new Map<string, WorkloadLabels | null>();
  for (const c of view.clusters.values()) {
    for (const e of c.endpoints) {
      if (!e.workload) continue;
      byEndpoint.set(endpointKey(e), e.workload);
      const seen = byAddress.get(e.address);
      if (seen === undefined) byAddress.set(e.address, e.workload);
      else if (seen !== null && (seen.name !== e.workload.name || seen.namespace !== e.workload.namespace)) {
        byAddress.set(e.address, null);
      }
    }
  }
  indexes.set(view, index = { byEndpoint, byAddress });
  return index;
}

const nonEmpty = <K extends string>(k: K, v: string | undefined): { [P in K]?: string } =>
  (v ? { [k]: v } : {}) as { [P in K]?: string };

function sourceOf(w: WorkloadLabels): Partial<ConnectionInfo> {
  return {
    ...nonEmpty("sourceWorkload", w.name),
    ...nonEmpty("sourceNamespace", w.namespace),
    ...nonEmpty("sourceApp", w.app),
    ...nonEmpty("sourceVersion", w.version),
    ...nonEmpty("sourceCanonicalService", w.canonicalService),
    ...nonEmpty("sourceCanonicalRevision", w.canonicalRevision),
  };
}

function destinationOf(w: WorkloadLabels): Partial<ConnectionInfo> {
  return {
    ...nonEmpty("destinationWorkload", w.name),
    ...nonEmpty("destinationNamespace", w.namespace),
    ...nonEmpty("destinationApp", w.app),
    ...nonEmpty("destinationVersion", w.version),
    ...nonEmpty("destinationCanonicalService", w.canonicalService),
    ...nonEmpty("destinationCanonicalRevision", w.canonicalRevision),
  };
}

/** An IPv4 address written as IPv6 (`::ffff:a.b.c.d`) as plain IPv4. */
function plainAddress(a: string): string {
  return a.startsWith("::ffff:") && a.includes(".") ? a.slice(7) : a;
}

/**
 * `info` with the workload labels filled (see the module notes). What a listener already set
 * is kept; a workload found by address is used only when it agrees with the source workload
 * the connection named.
 */
export function withWorkloadLabels(
  info: ConnectionInfo,
  self: WorkloadLabels,
  view: NodeProxyView,
): ConnectionInfo {
  const index = indexOf(view);
  if (info.reporter === "source") {
    const peer = info.upstream === undefined ? undefined : index.byEndpoint.get(info.upstream);
    return { ...sourceOf(self), ...(peer ? destinationOf(peer) : {}), ...info };
  }
  let peer: WorkloadLabels | undefined;
  if (info.sourceApp === undefined) {
    const found = index.byAddress.get(plainAddress(info.sourceAddress)) ?? undefined;
    const agrees = found &&
      (info.sourceWorkload === undefined || info.sourceWorkload === found.name) &&
      (info.sourceNamespace === undefined || info.sourceNamespace === found.namespace);
    if (agrees) peer = found;
  }
  return { ...(peer ? sourceOf(peer) : {}), ...destinationOf(self), ...info };
}

/**
 * Wraps a telemetry sink so every connection's labels are filled from `self` and the view in
 * force when it opens or learns its upstream.
 */
export function workloadTelemetry(
  inner: TcpTelemetry,
  o: { readonly self: WorkloadLabels; readonly view: () => NodeProxyView },
): TcpTelemetry {
  return {
    open(first) {
      let raw = first;
      const t: ConnectionTelemetry = inner.open(withWorkloadLabels(raw, o.self, o.view()));
      return {
        update(more) {
          raw = { ...raw, ...more };
          t.update(withWorkloadLabels(raw, o.self, o.view()));
        },
        close: (bytes, error) => t.close(bytes, error),
      };
    },
  };
}
