/**
 * VirtualServices that claim the same host on the same gateway (the mesh counts as one). Which
 * one a proxy uses then depends on the order resources arrive in, so the outcome is undefined;
 * merge them into one VirtualService, or use delegation.
 *
 * @module
 */

import { visibilitiesOverlap, type Visibility, visibilityOf } from "../../api/mod.ts";
import type { VirtualServiceSpec } from "../../api/kinds/networking.ts";
import type { Resource } from "../../api/resource.ts";

import { defineAnalyzer } from "./_define.ts";
import { boundGateways, MESH_GATEWAY } from "./_routes.ts";

interface Claim {
  readonly vs: Resource<VirtualServiceSpec>;
  readonly field: string;
  readonly visibility: Visibility;
}

function name(r: Resource): string {
  return `${r.metadata.namespace}/${r.metadata.name}`;
}

/** MSH0109: no two VirtualServices bind the same host to the same gateway. */
export const conflictingVirtualServiceHosts = defineAnalyzer({
  code: "MSH0109",
  istioCode: "IST0109",
  istioNote:
    "Findings on the mesh carry IST0109; findings on a named gateway have no Istio code (Istio checks the mesh gateway only).",
  name: "ConflictingVirtualServiceHosts",
  severity: "warning",
  description: "Two VirtualServices bound to the same gateway (or both to the mesh) claim the same host.",
}, (ctx, report) => {
  const claims = new Map<string, Claim[]>();
  for (const vs of ctx.ofKind<VirtualServiceSpec>("VirtualService")) {
    const ns = vs.metadata.namespace;
    const visibility = visibilityOf(vs.spec.exportTo, ns);
    const gateways = new Set(boundGateways(vs.spec, ns));
    (vs.spec.hosts ?? []).forEach((h, i) => {
      const host = ctx.resolveHost(h, ns);
      for (const gw of gateways) {
        const key = `${gw} ${host}`;
        let list = claims.get(key);
        if (!list) claims.set(key, list = []);
        if (!list.some((c) => c.vs === vs)) list.push({ vs, field: `spec.hosts[${i}]`, visibility });
      }
    });
  }
  for (const [key, list] of claims) {
    if (list.length < 2) continue;
    const [gateway, host] = key.split(" ") as [string, string];
    const on = gateway === MESH_GATEWAY ? "the mesh" : `gateway ${gateway}`;
    for (const claim of list) {
      const rivals = list.filter((c) => c !== claim && visibilitiesOverlap(c.visibility, claim.visibility));
      if (rivals.length === 0) continue;
      const others = rivals.map((c) => `${name(c.vs)} (${c.vs.source.file}:${c.vs.positionOf(c.field).line})`)
        .join(", ");
      report(
        claim.vs,
        claim.field,
        `host ${host} on ${on} is also claimed by VirtualService ${others}; ` +
          "which one applies is undefined, merge them into one",
        gateway === MESH_GATEWAY ? undefined : null,
      );
    }
  }
});
