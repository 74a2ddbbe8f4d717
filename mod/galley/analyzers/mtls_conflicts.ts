/**
 * Client-side TLS (DestinationRule `tls.mode`) against server-side mTLS (PeerAuthentication, or
 * the mesh's defaultMtlsMode). A client that sends plain text (DISABLE) to a workload that
 * requires mTLS (STRICT) is refused; a client that sends Istio mTLS (ISTIO_MUTUAL) to a workload
 * whose mTLS is disabled (DISABLE) fails the handshake.
 *
 * The effective server mode of a workload is Istio's: the first workload-level
 * PeerAuthentication in its namespace whose selector matches it, else the namespace-wide one,
 * else the mesh-wide one in the root namespace, else the MeshConfig default; UNSET defers to the
 * next level. Port-level settings (portLevelMtls) are not taken into account.
 *
 * @module
 */

import { type EffectiveMtlsMode, effectivePeerMtls, type Labels, selectorMatches } from "../../api/mod.ts";
import type { DestinationRuleSpec, TrafficPolicy } from "../../api/kinds/networking.ts";
import type { PeerAuthenticationSpec } from "../../api/kinds/security.ts";
import type { AnalysisContext } from "./_context.ts";

import { defineAnalyzer } from "./_define.ts";

/** A server-side mTLS mode and what set it. */
export interface EffectiveMtls {
  readonly mode: EffectiveMtlsMode;
  /** "PeerAuthentication ns/name", or the MeshConfig default. */
  readonly source: string;
}

/**
 * The mTLS mode workloads with `labels` in `namespace` accept (mod/api's rule); with `labels`
 * undefined, the mode for the namespace as a whole (workload-level policies are not consulted).
 */
export function effectiveMtls(
  ctx: AnalysisContext,
  namespace: string,
  labels: Labels | undefined,
): EffectiveMtls {
  const d = effectivePeerMtls(ctx.ofKind<PeerAuthenticationSpec>("PeerAuthentication"), {
    namespace,
    ...(labels === undefined ? {} : { labels }),
    rootNamespace: ctx.mesh.rootNamespace,
    defaultMode: ctx.mesh.defaultMtlsMode,
  });
  if (d.policy) {
    return {
      mode: d.mode,
      source: `PeerAuthentication ${d.policy.metadata.namespace}/${d.policy.metadata.name}`,
    };
  }
  const source = ctx.meshConfig
    ? `MeshConfig ${ctx.meshConfig.metadata.namespace}/${ctx.meshConfig.metadata.name} (defaultMtlsMode)`
    : "meshd's default mTLS mode";
  return { mode: d.mode, source };
}

/** A TLS mode set somewhere in a DestinationRule, with the subset it is limited to. */
interface TlsSetting {
  readonly field: string;
  readonly mode: string;
  readonly subsetLabels?: Labels;
}

function tlsSettings(dr: DestinationRuleSpec): TlsSetting[] {
  const out: TlsSetting[] = [];
  const fromPolicy = (policy: TrafficPolicy | undefined, at: string, subsetLabels?: Labels) => {
    if (policy?.tls?.mode) out.push({ field: `${at}.tls.mode`, mode: policy.tls.mode, subsetLabels });
    (policy?.portLevelSettings ?? []).forEach((p, i) => {
      if (p.tls?.mode) {
        out.push({ field: `${at}.portLevelSettings[${i}].tls.mode`, mode: p.tls.mode, subsetLabels });
      }
    });
  };
  fromPolicy(dr.trafficPolicy, "spec.trafficPolicy");
  (dr.subsets ?? []).forEach((s, i) =>
    fromPolicy(s.trafficPolicy, `spec.subsets[${i}].trafficPolicy`, s.labels)
  );
  return out;
}

function conflicts(client: string, server: EffectiveMtls["mode"]): boolean {
  return (client === "DISABLE" && server === "STRICT") || (client === "ISTIO_MUTUAL" && server === "DISABLE");
}

/** MSH0113: DestinationRule TLS modes agree with the mTLS mode of the workloads they reach. */
export const mtlsPolicyConflict = defineAnalyzer({
  code: "MSH0113",
  istioCode: "IST0113",
  istioNote:
    "Istio's MTLSPolicyConflict (Istio 1.4 and 1.5, against the Policy kind); the code is retired in Istio and not reused.",
  name: "MtlsPolicyConflict",
  severity: "error",
  description:
    "A DestinationRule's tls.mode contradicts the mTLS mode that PeerAuthentication (or the mesh default) " +
    "sets for the workloads of its host.",
}, (ctx, report) => {
  for (const dr of ctx.ofKind<DestinationRuleSpec>("DestinationRule")) {
    const ns = dr.metadata.namespace;
    const services = ctx.servicesFor(dr.spec.host, ns).filter((s) => s.location === "MESH_INTERNAL");
    if (services.length === 0) continue;
    const host = ctx.resolveHost(dr.spec.host, ns);
    for (const setting of tlsSettings(dr.spec)) {
      if (setting.mode !== "DISABLE" && setting.mode !== "ISTIO_MUTUAL") continue;
      const found: { target: string; server: EffectiveMtls }[] = [];
      for (const svc of services) {
        const workloads = (svc.workloads ?? []).filter((w) =>
          selectorMatches(setting.subsetLabels, w.labels)
        );
        if (workloads.length === 0) {
          const server = effectiveMtls(ctx, svc.namespace, undefined);
          if (conflicts(setting.mode, server.mode)) {
            found.push({ target: `namespace ${svc.namespace}`, server });
          }
          continue;
        }
        for (const w of workloads) {
          const server = effectiveMtls(ctx, w.namespace, w.labels);
          if (conflicts(setting.mode, server.mode)) found.push({ target: w.label, server });
        }
      }
      const first = found[0];
      if (!first) continue;
      const more = found.length > 1
        ? ` (and ${found.length - 1} more workload${found.length > 2 ? "s" : ""})`
        : "";
      const message = setting.mode === "DISABLE"
        ? `tls.mode DISABLE sends plain text to ${host}, ` +
          `but ${first.server.source} requires mutual TLS (STRICT) on ${first.target}${more}; ` +
          "these calls will be refused"
        : `tls.mode ISTIO_MUTUAL sends mutual TLS to ${host}, but ${first.server.source} disables mTLS ` +
          `on ${first.target}${more}; the handshake will fail`;
      report(dr, setting.field, message);
    }
  }
});
