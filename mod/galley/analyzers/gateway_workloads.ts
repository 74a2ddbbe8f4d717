/**
 * Gateways whose selector matches no workload. A Gateway only configures the proxies its
 * selector picks (in any namespace); with none, its servers are never opened.
 *
 * @module
 */

import { isEmptySelector } from "../../api/mod.ts";
import type { GatewaySpec } from "../../api/kinds/networking.ts";
import { formatLabels } from "./_labels.ts";
import { defineAnalyzer } from "./_define.ts";

/** MSH0128: each Gateway's selector picks at least one WorkloadEntry or WorkloadGroup. */
export const gatewaySelectorMatchesNoWorkload = defineAnalyzer({
  code: "MSH0128",
  istioCode: "IST0101",
  istioNote: "istioctl reports a Gateway selector matching no pod as ReferencedResourceNotFound (selector).",
  name: "GatewaySelectorMatchesNoWorkload",
  severity: "warning",
  description:
    "A Gateway's selector matches no WorkloadEntry or WorkloadGroup in any namespace, so no proxy serves it.",
}, (ctx, report) => {
  for (const gw of ctx.ofKind<GatewaySpec>("Gateway")) {
    const selector = gw.spec.selector;
    if (isEmptySelector(selector)) continue;
    if (ctx.workloadsSelected(selector).length > 0) continue;
    const ports = gw.spec.servers.map((s) => s.port.number).join(", ");
    report(
      gw,
      "spec.selector",
      `selector ${
        formatLabels(selector)
      } matches no workload in any namespace; no proxy opens this gateway's port${
        gw.spec.servers.length > 1 ? "s" : ""
      } ${ports}`,
    );
  }
});
