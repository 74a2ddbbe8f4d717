/**
 * The mTLS mode a workload accepts, from PeerAuthentication as Istio layers it: the workload's
 * own policy (a selector in the workload's namespace that matches its labels; its
 * `portLevelMtls` entry for the port, when asked for one), then the namespace-wide policy, then
 * the mesh-wide policy (root namespace, no selector), then the mesh's default. A level whose
 * mode is absent or UNSET passes to the next. A policy with a selector in the root namespace is
 * ignored, also for workloads in that namespace (Istio's rule). Written once for pilot's
 * listeners and galley's mTLS-conflict analyzer.
 *
 * @module
 */
import type { MtlsMode, PeerAuthenticationSpec } from "./kinds/security.ts";
import type { Resource } from "./resource.ts";
import { isEmptySelector, type Labels, selectorMatches } from "./selectors.ts";

/** A server-side mTLS mode in force. */
export type EffectiveMtlsMode = Exclude<MtlsMode, "UNSET">;

/** The mode in force and the policy that set it (none: the mesh default). */
export interface MtlsDecision {
  readonly mode: EffectiveMtlsMode;
  readonly policy?: Resource<PeerAuthenticationSpec>;
}

/** What the decision is for. */
export interface MtlsQuery {
  readonly namespace: string;
  /** The workload's labels; undefined asks for the namespace as a whole (no workload policies). */
  readonly labels?: Labels;
  /** The port the workload listens on; undefined: no port-level setting applies. */
  readonly port?: number;
  readonly rootNamespace: string;
  readonly defaultMode: EffectiveMtlsMode;
}

function inForce(mode: MtlsMode | undefined): EffectiveMtlsMode | undefined {
  return mode === undefined || mode === "UNSET" ? undefined : mode;
}

/** The mTLS mode `query` accepts under `policies` (any PeerAuthentications; those that do not apply are skipped). */
export function effectivePeerMtls(
  policies: readonly Resource<PeerAuthenticationSpec>[],
  query: MtlsQuery,
): MtlsDecision {
  const wide = (ns: string) =>
    policies.find((pa) => pa.metadata.namespace === ns && isEmptySelector(pa.spec.selector?.matchLabels));
  const own = query.labels === undefined || query.namespace === query.rootNamespace
    ? undefined
    : policies.find((pa) =>
      pa.metadata.namespace === query.namespace && !isEmptySelector(pa.spec.selector?.matchLabels) &&
      selectorMatches(pa.spec.selector?.matchLabels, query.labels)
    );
  if (own && query.port !== undefined) {
    const mode = inForce(own.spec.portLevelMtls?.[String(query.port)]?.mode);
    if (mode) return { mode, policy: own };
  }
  for (const pa of [own, wide(query.namespace), wide(query.rootNamespace)]) {
    const mode = inForce(pa?.spec.mtls?.mode);
    if (pa && mode) return { mode, policy: pa };
  }
  return { mode: query.defaultMode };
}
