/**
 * VirtualServices that route on JWT claims (`@request.auth.claims.*` header matches) through a
 * gateway whose proxies validate no JWT. Claims are only known after a RequestAuthentication has
 * validated the token on that proxy; without one the claim never matches and the route is dead.
 *
 * A RequestAuthentication applies to a gateway workload when it is in the workload's namespace
 * or in the mesh's root namespace and its selector matches the workload (no selector: every
 * workload in scope). One attached with targetRef(s) is taken as applying, since which proxies a
 * reference names is not decided here.
 *
 * @module
 */

import { type Labels, selectorMatches } from "../../api/mod.ts";
import type { GatewaySpec, VirtualServiceSpec } from "../../api/kinds/networking.ts";
import type { RequestAuthenticationSpec } from "../../api/kinds/security.ts";
import type { Resource } from "../../api/resource.ts";
import type { AnalysisContext, Workload } from "./_context.ts";
import { defineAnalyzer } from "./_define.ts";
import { MESH_GATEWAY, parseGatewayRef } from "./_routes.ts";

/** The header-match prefix through which routes read validated JWT claims. */
export const CLAIM_PREFIX = "@request.auth.claims";

/** The first JWT claim key a VirtualService's HTTP matches use, and where. */
export function firstClaimMatch(vs: VirtualServiceSpec): { key: string; field: string } | undefined {
  const http = vs.http ?? [];
  for (let i = 0; i < http.length; i++) {
    const matches = http[i]!.match ?? [];
    for (let j = 0; j < matches.length; j++) {
      const m = matches[j]!;
      for (const section of ["headers", "withoutHeaders"] as const) {
        const key = Object.keys(m[section] ?? {}).find((k) => k.startsWith(CLAIM_PREFIX));
        if (key !== undefined) return { key, field: `spec.http[${i}].match[${j}].${section}` };
      }
    }
  }
  return undefined;
}

function authenticates(ctx: AnalysisContext, ra: Resource<RequestAuthenticationSpec>, w: Workload): boolean {
  const ns = ra.metadata.namespace;
  if (ns !== w.namespace && ns !== ctx.mesh.rootNamespace) return false;
  if (ra.spec.targetRef !== undefined || (ra.spec.targetRefs ?? []).length > 0) return true;
  return selectorMatches(ra.spec.selector?.matchLabels as Labels | undefined, w.labels);
}

/** MSH0149: routes on JWT claims run only on gateways whose proxies validate JWTs. */
export const jwtClaimRoutingWithoutRequestAuthentication = defineAnalyzer({
  code: "MSH0149",
  istioCode: "IST0149",
  name: "JwtClaimRoutingWithoutRequestAuthentication",
  severity: "error",
  description: "A VirtualService routes on JWT claims through a gateway whose workloads no " +
    "RequestAuthentication applies to, so the claims are never set.",
}, (ctx, report) => {
  const policies = ctx.ofKind<RequestAuthenticationSpec>("RequestAuthentication");
  for (const vs of ctx.ofKind<VirtualServiceSpec>("VirtualService")) {
    const claim = firstClaimMatch(vs.spec);
    if (!claim) continue;
    for (const ref of vs.spec.gateways ?? []) {
      if (ref === MESH_GATEWAY) continue;
      const g = parseGatewayRef(ref, vs.metadata.namespace);
      const gw = ctx.get<GatewaySpec>("Gateway", g.namespace, g.name);
      if (!gw) continue; // a missing gateway is MSH0103's finding
      const missing = ctx.workloadsSelected(gw.spec.selector).filter((w) =>
        !policies.some((ra) => authenticates(ctx, ra, w))
      );
      if (missing.length === 0) continue;
      const more = missing.length > 1 ? ` (and ${missing.length - 1} more)` : "";
      report(
        vs,
        claim.field,
        `routes on JWT claim ${claim.key} through gateway ${g.namespace}/${g.name}, but no ` +
          `RequestAuthentication applies to its workload ${missing[0]!.label}${more}; the claim is never ` +
          "set there, so this match never holds. Add a RequestAuthentication selecting the gateway's workloads",
      );
    }
  }
});
