/**
 * VirtualService delegation, checked from both ends. A VirtualService without hosts is a
 * delegate: it routes only the requests that a root VirtualService (one with hosts) hands to it
 * with `http[].delegate: { name, namespace }`, where `namespace` defaults to the root's own.
 * Pilot merges a delegate's rules under the root's rule only when the delegate exists, has no
 * hosts, and is exported to the root's namespace; otherwise it drops the root's rule (Istio's
 * mergeVirtualServicesIfNeeded does the same). So:
 *
 * - a delegate reference that names no such VirtualService routes nothing (MSH0105);
 * - a VirtualService without hosts that no root can delegate to routes nothing (MSH0186),
 *   usually because the root names it wrongly or its `hosts` were left out by mistake.
 *
 * Istio accepts both silently; istioctl has no message for either.
 *
 * @module
 */

import { exportedTo } from "../../api/mod.ts";
import type { VirtualServiceSpec } from "../../api/kinds/networking.ts";
import type { Resource } from "../../api/resource.ts";
import { suggest } from "../../shared/suggest.ts";
import type { AnalysisContext } from "./_context.ts";
import { defineAnalyzer } from "./_define.ts";

type VirtualService = Resource<VirtualServiceSpec>;

/** One `http[].delegate` of a root VirtualService, resolved to the namespace/name it names. */
interface DelegateRef {
  readonly root: VirtualService;
  readonly field: string;
  readonly namespace: string;
  readonly name: string;
}

/** Every delegate reference of every root (a VirtualService with hosts). */
function delegateRefs(ctx: AnalysisContext): DelegateRef[] {
  const out: DelegateRef[] = [];
  for (const root of ctx.ofKind<VirtualServiceSpec>("VirtualService")) {
    if ((root.spec.hosts ?? []).length === 0) continue;
    (root.spec.http ?? []).forEach((h, i) => {
      if (!h.delegate) return;
      out.push({
        root,
        field: `spec.http[${i}].delegate`,
        namespace: h.delegate.namespace || root.metadata.namespace,
        name: h.delegate.name,
      });
    });
  }
  return out;
}

function key(vs: { readonly namespace: string; readonly name: string }): string {
  return `${vs.namespace}/${vs.name}`;
}

/** Why `ref` does not reach a delegate pilot can merge, or undefined when it does. */
function refProblem(ctx: AnalysisContext, ref: DelegateRef): string | undefined {
  const d = ctx.get<VirtualServiceSpec>("VirtualService", ref.namespace, ref.name);
  if (!d) return `no VirtualService ${key(ref)} exists`;
  if ((d.spec.hosts ?? []).length > 0) {
    return `VirtualService ${key(ref)} has hosts, and only a VirtualService without hosts can be a delegate`;
  }
  if (!exportedTo(d.spec.exportTo, ref.namespace, ref.root.metadata.namespace)) {
    return `VirtualService ${key(ref)} is not exported to namespace ${ref.root.metadata.namespace}`;
  }
  return undefined;
}

/** MSH0105: every delegate reference names a VirtualService without hosts that the root can see. */
export const delegateNotFound = defineAnalyzer({
  code: "MSH0105",
  name: "DelegateVirtualServiceNotFound",
  severity: "error",
  description: "An HTTP route delegates to a VirtualService that does not exist, has hosts, or is not " +
    "exported to the root's namespace; pilot drops the route.",
}, (ctx, report) => {
  const withoutHosts = ctx.ofKind<VirtualServiceSpec>("VirtualService")
    .filter((vs) => (vs.spec.hosts ?? []).length === 0)
    .map((vs) => key({ namespace: vs.metadata.namespace, name: vs.metadata.name }));
  for (const ref of delegateRefs(ctx)) {
    const problem = refProblem(ctx, ref);
    if (!problem) continue;
    const near = suggest(key(ref), withoutHosts.filter((k) => k !== key(ref)));
    report(
      ref.root,
      ref.field,
      `delegates to ${key(ref)}, but ${problem}; pilot drops this route` +
        (near ? ` (did you mean ${near}?)` : ""),
    );
  }
});

/** MSH0186: a VirtualService without hosts is a delegate some root can use. */
export const unusedDelegateVirtualService = defineAnalyzer({
  code: "MSH0186",
  name: "VirtualServiceWithoutHostsNotDelegated",
  severity: "warning",
  description: "A VirtualService has no hosts, so it only routes as a delegate, and no VirtualService " +
    "with hosts delegates to it (or none it is exported to); it routes nothing.",
}, (ctx, report) => {
  const refs = delegateRefs(ctx);
  const used = new Set(refs.filter((r) => refProblem(ctx, r) === undefined).map(key));
  const unresolved = refs.filter((r) => !ctx.get("VirtualService", r.namespace, r.name)).map(key);
  for (const vs of ctx.ofKind<VirtualServiceSpec>("VirtualService")) {
    const own = key({ namespace: vs.metadata.namespace, name: vs.metadata.name });
    if ((vs.spec.hosts ?? []).length > 0 || used.has(own)) continue;
    const named = refs.filter((r) => key(r) === own);
    const why = named.length > 0
      ? `the VirtualServices that delegate to it (${
        [
          ...new Set(
            named.map((r) => key({ namespace: r.root.metadata.namespace, name: r.root.metadata.name })),
          ),
        ]
          .join(", ")
      }) are in namespaces it is not exported to`
      : "no VirtualService with hosts delegates to it (http[].delegate)";
    const typo = named.length > 0 ? undefined : suggest(own, unresolved);
    report(
      vs,
      "spec",
      `VirtualService ${own} has no hosts and ${why}, so it routes nothing; set hosts, or name it in a delegate` +
        (typo ? ` (a delegate names ${typo}, which does not exist: is this the one meant?)` : ""),
    );
  }
});
