/**
 * DestinationRules whose host matches no service the rule's namespace can see. Such a rule
 * configures nothing: usually a typo, a short name resolved in the wrong namespace, or a
 * ServiceEntry not exported to the rule's namespace.
 *
 * @module
 */

import { hostsOverlap, isVisibleFrom } from "../../api/mod.ts";
import type { DestinationRuleSpec } from "../../api/kinds/networking.ts";
import { didYouMean } from "../../shared/suggest.ts";
import { defineAnalyzer } from "./_define.ts";

/** MSH0174: every DestinationRule host is a service visible from the rule's namespace. */
export const unknownDestinationRuleHost = defineAnalyzer({
  code: "MSH0174",
  istioCode: "IST0174",
  name: "UnknownDestinationRuleHost",
  severity: "warning",
  description: "A DestinationRule's host matches no ServiceEntry host visible from its namespace.",
}, (ctx, report) => {
  for (const dr of ctx.ofKind<DestinationRuleSpec>("DestinationRule")) {
    const ns = dr.metadata.namespace;
    if (ctx.servicesFor(dr.spec.host, ns).length > 0) continue;
    const host = ctx.resolveHost(dr.spec.host, ns);
    const shown = host === dr.spec.host ? host : `${dr.spec.host} (${host})`;
    const hidden = ctx.services.find((s) => hostsOverlap(s.host, host) && !isVisibleFrom(s.visibility, ns));
    const why = hidden
      ? `ServiceEntry ${hidden.namespace}/${hidden.entry.metadata.name} declares it but is not exported to namespace ${ns}`
      : `no ServiceEntry declares it${
        didYouMean(host, ctx.services.filter((s) => isVisibleFrom(s.visibility, ns)).map((s) => s.host))
      }`;
    report(
      dr,
      "spec.host",
      `host ${shown} matches no service in the mesh: ${why}; this rule configures nothing`,
    );
  }
});
