/**
 * Gateway routes that bypass the subset split of mesh routes (istioctl's IST0140,
 * IngressRouteRulesNotAffected). A VirtualService bound only to the mesh decides routes for
 * sidecars, not for gateways: a request entering through a gateway takes the gateway's
 * VirtualService, and when that one sends it to host H without a subset, it goes to every
 * workload of H, whatever subsets (v1 only, a canary weight, ...) the mesh VirtualService for H
 * routes to. Routes are not chained from one VirtualService to another.
 *
 * A finding needs a VirtualService bound to at least one gateway other than `mesh` with an HTTP
 * route to H without a subset, and another VirtualService that applies to the mesh, has H among
 * its hosts, and routes H to a subset. Hosts are compared after resolving short names in each
 * VirtualService's namespace (istioctl compares them as written). Unlike istioctl, a subset whose
 * labels select every workload of H is no split (a mesh route "all to v1" where only v1 runs):
 * the gateway reaches the same workloads, so there is nothing to warn about.
 *
 * @module
 */

import { selectorMatches } from "../../api/mod.ts";
import type { DestinationRuleSpec, VirtualServiceSpec } from "../../api/kinds/networking.ts";
import type { Resource } from "../../api/resource.ts";
import type { AnalysisContext } from "./_context.ts";
import { defineAnalyzer } from "./_define.ts";
import { boundGateways, MESH_GATEWAY } from "./_routes.ts";

/**
 * Whether subset `name` of `host` (resolved; the route written in `ns`) holds every workload of
 * the host, so routing to it reaches the same workloads as routing to the host. False when the
 * workloads or the subset are not known.
 */
function subsetHoldsAll(ctx: AnalysisContext, host: string, name: string, ns: string): boolean {
  const services = ctx.servicesFor(host, ns);
  if (services.length === 0 || services.some((s) => s.workloads === undefined)) return false;
  const workloads = services.flatMap((s) => s.workloads ?? []);
  if (workloads.length === 0) return false;
  const subset = ctx.ofKind<DestinationRuleSpec>("DestinationRule")
    .filter((dr) => ctx.resolveHost(dr.spec.host, dr.metadata.namespace) === host)
    .flatMap((dr) => dr.spec.subsets ?? [])
    .find((x) => x.name === name);
  return subset !== undefined && workloads.every((w) => selectorMatches(subset.labels, w.labels));
}

/**
 * The hosts a mesh VirtualService splits by subset: its own hosts that an HTTP route sends to a
 * subset narrower than the host (one that leaves out some of the host's workloads, or is not known
 * to hold them all).
 */
function subsetSplitHosts(ctx: AnalysisContext, vs: Resource<VirtualServiceSpec>): Set<string> {
  const ns = vs.metadata.namespace;
  const own = new Set((vs.spec.hosts ?? []).map((h) => ctx.resolveHost(h, ns)));
  const out = new Set<string>();
  for (const h of vs.spec.http ?? []) {
    for (const r of h.route ?? []) {
      const subset = r.destination.subset;
      if (!subset) continue;
      const host = ctx.resolveHost(r.destination.host, ns);
      if (own.has(host) && !subsetHoldsAll(ctx, host, subset, ns)) out.add(host);
    }
  }
  return out;
}

/** MSH0140: gateway routes to a host without a subset, where mesh routes split that host by subset. */
export const ingressRouteRulesNotAffected = defineAnalyzer({
  code: "MSH0140",
  istioCode: "IST0140",
  istioNote: "Unlike istioctl, hosts are compared after resolving short names, and a subset that holds " +
    "every workload of the host is no split.",
  name: "IngressRouteRulesNotAffected",
  severity: "warning",
  description: "A VirtualService bound to a gateway routes to a host without a subset while a mesh " +
    "VirtualService for that host routes it by subset; the subsets do not apply to requests through " +
    "the gateway.",
}, (ctx, report) => {
  const all = ctx.ofKind<VirtualServiceSpec>("VirtualService");
  const meshSplits = all
    .filter((vs) => boundGateways(vs.spec, vs.metadata.namespace).includes(MESH_GATEWAY))
    .map((vs) => ({ vs, hosts: subsetSplitHosts(ctx, vs) }))
    .filter((m) => m.hosts.size > 0);
  if (meshSplits.length === 0) return;
  for (const vs of all) {
    const ns = vs.metadata.namespace;
    const gateways = boundGateways(vs.spec, ns).filter((g) => g !== MESH_GATEWAY);
    if ((vs.spec.gateways ?? []).length === 0 || gateways.length === 0) continue;
    (vs.spec.http ?? []).forEach((h, i) => {
      (h.route ?? []).forEach((r, j) => {
        if (r.destination.subset) return;
        const host = ctx.resolveHost(r.destination.host, ns);
        const splitting = meshSplits.filter((m) => m.vs !== vs && m.hosts.has(host));
        if (splitting.length === 0) return;
        const m = splitting[0]!.vs;
        const more = splitting.length > 1 ? ` (and ${splitting.length - 1} more)` : "";
        report(
          vs,
          `spec.http[${i}].route[${j}].destination.host`,
          `routes to ${host} without a subset, but VirtualService ${m.metadata.namespace}/${m.metadata.name}` +
            `${more} routes ${host} by subset for the mesh only; requests through gateway ` +
            `${gateways.join(", ")} go to every workload of ${host}. Name the subset here too`,
        );
      });
    });
  }
});
