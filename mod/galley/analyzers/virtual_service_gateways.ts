/**
 * VirtualServices against the Gateways they are bound to: each named gateway must exist, and
 * each host of a VirtualService that is not bound to the mesh must be accepted by one of them.
 *
 * @module
 */

import { hostsOverlap, namespaceAdmits, normalizeHost, splitNamespacedHost } from "../../api/mod.ts";
import type { GatewaySpec, VirtualServiceSpec } from "../../api/kinds/networking.ts";
import { didYouMean } from "../../shared/suggest.ts";
import type { AnalysisContext } from "./_context.ts";
import type { Resource } from "../../api/resource.ts";

import { defineAnalyzer } from "./_define.ts";
import { gatewayRefsOf, MESH_GATEWAY, parseGatewayRef } from "./_routes.ts";

/** MSH0103: every gateway a VirtualService names, other than "mesh", exists. */
export const gatewayNotFound = defineAnalyzer({
  code: "MSH0103",
  istioCode: "IST0101",
  name: "GatewayNotFound",
  severity: "error",
  description: "A VirtualService is bound to (or matches on) a Gateway that does not exist.",
}, (ctx, report) => {
  const gateways = ctx.ofKind<GatewaySpec>("Gateway");
  const known = gateways.map((g) => `${g.metadata.namespace}/${g.metadata.name}`);
  for (const vs of ctx.ofKind<VirtualServiceSpec>("VirtualService")) {
    for (const { ref, field } of gatewayRefsOf(vs.spec)) {
      if (ref === MESH_GATEWAY) continue;
      const g = parseGatewayRef(ref, vs.metadata.namespace);
      if (ctx.get("Gateway", g.namespace, g.name)) continue;
      const key = `${g.namespace}/${g.name}`;
      const shown = key === ref ? `"${ref}"` : `"${ref}" (${key})`;
      const elsewhere = gateways.find((gw) => gw.metadata.name === g.name);
      const hint = elsewhere
        ? ` (did you mean ${elsewhere.metadata.namespace}/${g.name}?)`
        : didYouMean(key, known);
      report(vs, field, `referenced gateway ${shown} not found${hint}`);
    }
  }
});

/**
 * The hosts a gateway accepts for VirtualServices of `namespace`: server hosts "ns/host",
 * "./host" (the gateway's namespace), "*\/host" or plain "host" whose namespace part admits it.
 */
function hostsAcceptedFor(gw: Resource<GatewaySpec>, namespace: string): string[] {
  const out: string[] = [];
  for (const server of gw.spec.servers) {
    for (const h of server.hosts) {
      const { namespace: part, host } = splitNamespacedHost(h);
      if (namespaceAdmits(part, gw.metadata.namespace, namespace)) out.push(normalizeHost(host));
    }
  }
  return out;
}

function boundGatewayResources(
  ctx: AnalysisContext,
  vs: Resource<VirtualServiceSpec>,
): Resource<GatewaySpec>[] {
  const out: Resource<GatewaySpec>[] = [];
  for (const ref of vs.spec.gateways ?? []) {
    const g = parseGatewayRef(ref, vs.metadata.namespace);
    const gw = ctx.get<GatewaySpec>("Gateway", g.namespace, g.name);
    if (gw) out.push(gw);
  }
  return out;
}

/** MSH0132: each host of a gateway-bound VirtualService is accepted by one of its gateways. */
export const gatewayHostNotFound = defineAnalyzer({
  code: "MSH0132",
  istioCode: "IST0132",
  name: "VirtualServiceHostNotFoundInGateway",
  severity: "warning",
  description: "A host of a VirtualService bound only to gateways is accepted by none of those gateways.",
}, (ctx, report) => {
  for (const vs of ctx.ofKind<VirtualServiceSpec>("VirtualService")) {
    const refs = vs.spec.gateways ?? [];
    if (refs.length === 0 || refs.includes(MESH_GATEWAY)) continue;
    const gateways = boundGatewayResources(ctx, vs);
    if (gateways.length === 0) continue;
    const ns = vs.metadata.namespace;
    const accepted = gateways.flatMap((gw) => hostsAcceptedFor(gw, ns));
    (vs.spec.hosts ?? []).forEach((h, i) => {
      const host = ctx.resolveHost(h, ns);
      if (accepted.some((a) => hostsOverlap(a, host))) return;
      const names = gateways.map((gw) => `${gw.metadata.namespace}/${gw.metadata.name}`).join(", ");
      const many = gateways.length > 1;
      const verb = many ? "accept" : "accepts";
      const offer = accepted.length > 0
        ? `${verb} only ${[...new Set(accepted)].join(", ")}`
        : `${verb} no host from namespace ${ns}`;
      report(
        vs,
        `spec.hosts[${i}]`,
        `host ${host} is not accepted by gateway${
          many ? "s" : ""
        } ${names}, which ${offer}; no traffic reaches it`,
      );
    });
  }
});
