/**
 * VirtualServices against the Gateways they are bound to: each named gateway must exist, each
 * host of a VirtualService that is not bound to the mesh must be accepted by one of them, and
 * each gateway must accept one of its hosts.
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

/** The hosts of a VirtualService, resolved against its namespace. */
function resolvedHosts(ctx: AnalysisContext, vs: Resource<VirtualServiceSpec>): string[] {
  return (vs.spec.hosts ?? []).map((h) => ctx.resolveHost(h, vs.metadata.namespace));
}

/** "ns/name" of a resource. */
function fullName(r: Resource): string {
  return `${r.metadata.namespace}/${r.metadata.name}`;
}

/**
 * Hosts of a VirtualService bound only to gateways that none of those gateways accepts: no
 * traffic reaches them.
 */
function hostsNoGatewayAccepts(
  ctx: AnalysisContext,
  vs: Resource<VirtualServiceSpec>,
): { field: string; message: string }[] {
  const refs = vs.spec.gateways ?? [];
  if (refs.length === 0 || refs.includes(MESH_GATEWAY)) return [];
  const gateways = boundGatewayResources(ctx, vs);
  if (gateways.length === 0) return [];
  const ns = vs.metadata.namespace;
  const accepted = gateways.flatMap((gw) => hostsAcceptedFor(gw, ns));
  const names = gateways.map(fullName).join(", ");
  const many = gateways.length > 1;
  const verb = many ? "accept" : "accepts";
  const offer = accepted.length > 0
    ? `${verb} only ${[...new Set(accepted)].join(", ")}`
    : `${verb} no host from namespace ${ns}`;
  const out: { field: string; message: string }[] = [];
  resolvedHosts(ctx, vs).forEach((host, i) => {
    if (accepted.some((a) => hostsOverlap(a, host))) return;
    out.push({
      field: `spec.hosts[${i}]`,
      message: `host ${host} is not accepted by gateway${many ? "s" : ""} ${names}, which ${offer}; ` +
        "no traffic reaches it",
    });
  });
  return out;
}

/**
 * Gateways a VirtualService is bound to that accept none of its hosts, so the binding does
 * nothing, while another of its gateways accepts one. When none does, {@link hostsNoGatewayAccepts}
 * already reports each host; a VirtualService bound to the mesh as well is left alone, as one
 * VirtualService often serves a mesh host and a gateway host together.
 */
function gatewaysAcceptingNoHost(
  ctx: AnalysisContext,
  vs: Resource<VirtualServiceSpec>,
): { field: string; message: string }[] {
  const ns = vs.metadata.namespace;
  const hosts = resolvedHosts(ctx, vs);
  if (hosts.length === 0) return [];
  const bound = (vs.spec.gateways ?? []).flatMap((ref, i) => {
    if (ref === MESH_GATEWAY) return [];
    const g = parseGatewayRef(ref, ns);
    const gw = ctx.get<GatewaySpec>("Gateway", g.namespace, g.name);
    if (!gw) return [];
    const accepted = hostsAcceptedFor(gw, ns);
    return [{ i, gw, accepted, useful: hosts.some((h) => accepted.some((a) => hostsOverlap(a, h))) }];
  });
  if (!bound.some((b) => b.useful)) return [];
  return bound.filter((b) => !b.useful).map((b) => ({
    field: `spec.gateways[${b.i}]`,
    message: `gateway ${fullName(b.gw)} accepts none of the hosts ${hosts.join(", ")} (it accepts ${
      b.accepted.length > 0 ? [...new Set(b.accepted)].join(", ") : `no host from namespace ${ns}`
    }); binding to it routes nothing`,
  }));
}

/**
 * MSH0132: each host of a gateway-bound VirtualService is accepted by one of its gateways, and
 * each gateway it is bound to accepts one of its hosts.
 */
export const gatewayHostNotFound = defineAnalyzer({
  code: "MSH0132",
  istioCode: "IST0132",
  name: "VirtualServiceHostNotFoundInGateway",
  severity: "warning",
  description: "A host of a VirtualService bound only to gateways is accepted by none of those gateways, " +
    "or a gateway the VirtualService is bound to accepts none of its hosts.",
}, (ctx, report) => {
  for (const vs of ctx.ofKind<VirtualServiceSpec>("VirtualService")) {
    for (const f of hostsNoGatewayAccepts(ctx, vs)) report(vs, f.field, f.message);
    for (const f of gatewaysAcceptingNoHost(ctx, vs)) report(vs, f.field, f.message);
  }
});
