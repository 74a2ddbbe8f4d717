/**
 * VirtualService destination subsets against DestinationRules: a subset exists only when a
 * DestinationRule for the destination's host, visible from the VirtualService, defines it.
 *
 * @module
 */

import { hostCovers, isVisibleFrom, visibilityOf } from "../../api/mod.ts";
import type { DestinationRuleSpec, VirtualServiceSpec } from "../../api/kinds/networking.ts";
import { didYouMean } from "../../shared/suggest.ts";
import type { AnalysisContext } from "./_context.ts";
import type { Resource } from "../../api/resource.ts";

import { defineAnalyzer } from "./_define.ts";
import { destinationsOf } from "./_routes.ts";

/** The DestinationRules visible from `namespace` whose host covers the resolved `host`. */
export function destinationRulesFor(
  ctx: AnalysisContext,
  host: string,
  namespace: string,
): Resource<DestinationRuleSpec>[] {
  return ctx.ofKind<DestinationRuleSpec>("DestinationRule").filter((dr) => {
    const drNs = dr.metadata.namespace;
    return isVisibleFrom(visibilityOf(dr.spec.exportTo, drNs), namespace) &&
      hostCovers(ctx.resolveHost(dr.spec.host, drNs), host);
  });
}

/** MSH0102: every destination subset is defined by a DestinationRule for its host. */
export const destinationSubsetNotFound = defineAnalyzer({
  code: "MSH0102",
  istioCode: "IST0101",
  name: "DestinationSubsetNotFound",
  severity: "error",
  description: "A VirtualService names a subset that no DestinationRule for the destination host defines.",
}, (ctx, report) => {
  for (const vs of ctx.ofKind<VirtualServiceSpec>("VirtualService")) {
    const ns = vs.metadata.namespace;
    for (const d of destinationsOf(vs.spec)) {
      const subset = d.destination.subset;
      if (!subset) continue;
      const host = ctx.resolveHost(d.destination.host, ns);
      const rules = destinationRulesFor(ctx, host, ns);
      const defined = rules.flatMap((dr) => (dr.spec.subsets ?? []).map((s) => s.name));
      if (defined.includes(subset)) continue;
      const field = `${d.field}.subset`;
      if (rules.length === 0) {
        // An unknown host is reported once, by MSH0101; its subsets add nothing.
        if (ctx.servicesFor(d.destination.host, ns).length === 0) continue;
        report(
          vs,
          field,
          `subset "${subset}" not found: no DestinationRule visible from namespace ${ns} ` +
            `applies to host ${host}`,
        );
        continue;
      }
      const names = rules.map((dr) => `${dr.metadata.namespace}/${dr.metadata.name}`).join(", ");
      const many = rules.length > 1;
      const verb = many ? "define" : "defines";
      const known = defined.length > 0 ? `${verb} ${defined.join(", ")}` : `${verb} no subsets`;
      const what = `DestinationRule${many ? "s" : ""} ${names}`;
      report(
        vs,
        field,
        `subset "${subset}" not found: ${what} for host ${host} ${known}${didYouMean(subset, defined)}`,
      );
    }
  }
});
