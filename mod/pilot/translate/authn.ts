/**
 * Peer authentication: the mutual-TLS mode a workload accepts on a port, resolved from
 * PeerAuthentication as Istio does.
 *
 * Levels, most specific first: the workload-level policy (its namespace, a selector matching
 * its labels; `portLevelMtls` for the port, then its `mtls`), the namespace-wide policy, the
 * mesh-wide policy in the root namespace, then MeshConfig `defaultMtlsMode`. A mode of UNSET
 * (or none) defers to the next level. Where several policies share a level the first by name
 * wins (Istio takes the oldest; names keep the output deterministic).
 *
 * @module
 */
import { type EffectiveMtlsMode, effectivePeerMtls } from "../../api/mod.ts";
import type { PolicyWorkload, PushContext } from "../model/push_context.ts";

/** An effective server-side mTLS mode. */
export type { EffectiveMtlsMode };

/**
 * The mTLS mode `workload` accepts on `port` (the port the workload listens on), or, with
 * `port` undefined, the mode for traffic to ports no `portLevelMtls` names (the passthrough
 * chain): mod/api's rule over the PeerAuthentications that may apply to it.
 */
export function effectiveMtlsMode(
  push: PushContext,
  workload: PolicyWorkload,
  port?: number,
): EffectiveMtlsMode {
  return effectivePeerMtls(push.peerAuthentications(workload), {
    namespace: workload.namespace,
    labels: workload.labels,
    ...(port === undefined ? {} : { port }),
    rootNamespace: push.mesh.rootNamespace,
    defaultMode: push.mesh.defaultMtlsMode,
  }).mode;
}
