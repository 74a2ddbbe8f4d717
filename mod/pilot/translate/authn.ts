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
import type { MtlsMode, PeerAuthenticationSpec } from "../../api/kinds/security.ts";
import type { Resource } from "../../api/resource.ts";
import type { PolicyWorkload, PushContext } from "../model/push_context.ts";

/** An effective server-side mTLS mode. */
export type EffectiveMtlsMode = Exclude<MtlsMode, "UNSET">;

function set(mode: MtlsMode | undefined): EffectiveMtlsMode | undefined {
  return mode === undefined || mode === "UNSET" ? undefined : mode;
}

function hasSelector(pa: Resource<PeerAuthenticationSpec>): boolean {
  const sel = pa.spec.selector?.matchLabels;
  return sel !== undefined && Object.keys(sel).length > 0;
}

/**
 * The mTLS mode `workload` accepts on `port` (the port the workload listens on), or, with
 * `port` undefined, the mode for traffic to ports no `portLevelMtls` names (the passthrough
 * chain).
 */
export function effectiveMtlsMode(
  push: PushContext,
  workload: PolicyWorkload,
  port?: number,
): EffectiveMtlsMode {
  const policies = push.peerAuthentications(workload);
  const root = push.mesh.rootNamespace;
  const workloadLevel = policies.find((pa) => hasSelector(pa) && pa.metadata.namespace !== root);
  const namespaceLevel = policies.find((pa) =>
    !hasSelector(pa) && pa.metadata.namespace === workload.namespace && pa.metadata.namespace !== root
  );
  const meshLevel = policies.find((pa) => !hasSelector(pa) && pa.metadata.namespace === root);
  const portMode = port === undefined
    ? undefined
    : set(workloadLevel?.spec.portLevelMtls?.[String(port)]?.mode);
  return portMode ??
    set(workloadLevel?.spec.mtls?.mode) ??
    set(namespaceLevel?.spec.mtls?.mode) ??
    set(meshLevel?.spec.mtls?.mode) ??
    push.mesh.defaultMtlsMode;
}
