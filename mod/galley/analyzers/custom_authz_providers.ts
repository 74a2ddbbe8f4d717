/**
 * AuthorizationPolicies with `action: CUSTOM` whose provider pilot cannot use. Pilot then enforces
 * the policy's rules as DENY (fail closed), so every request the external authorizer would have
 * been asked about is refused. The reasons are the ones pilot applies (mod/api
 * ext_authz_provider.ts), checked here without a proxy:
 *
 * - `provider.name` is not among MeshConfig `extensionProviders`, or names a provider that is not
 *   an external authorizer (`envoyExtAuthzGrpc` or `envoyExtAuthzHttp`);
 * - the provider's `service` is not a ServiceEntry host (in NAMESPACE for `NAMESPACE/HOST`; a bare
 *   host found in several namespaces is ambiguous), the `port` is not one of its ports, or the
 *   service is not exported to the namespace of a workload the policy selects;
 * - the CUSTOM policies selecting one workload name more than one provider.
 *
 * Which workloads a policy selects: those its selector matches in its namespace, or in every
 * namespace for a policy in the mesh's root namespace. A policy attached with targetRef(s) is
 * checked from its own namespace and left out of the one-provider check, since which proxies a
 * reference names is not decided here. Sidecar egress hosts, which pilot also applies, are not.
 *
 * @module
 */

import {
  findExtAuthzProvider,
  findProviderService,
  severalCustomProviders,
} from "../../api/ext_authz_provider.ts";
import { isVisibleFrom, type Labels } from "../../api/mod.ts";
import type { AuthorizationPolicySpec } from "../../api/kinds/security.ts";
import type { Resource } from "../../api/resource.ts";
import type { AnalysisContext, MeshService, Workload } from "./_context.ts";
import { defineAnalyzer, type Report } from "./_define.ts";

type Policy = Resource<AuthorizationPolicySpec>;

const FIELD = "spec.provider.name";

function attachedByReference(p: Policy): boolean {
  return p.spec.targetRef !== undefined || (p.spec.targetRefs ?? []).length > 0;
}

/** The workloads a policy applies to (none for one attached by reference). */
function selectedWorkloads(ctx: AnalysisContext, p: Policy): readonly Workload[] {
  if (attachedByReference(p)) return [];
  const ns = p.metadata.namespace;
  return ctx.workloadsSelected(
    p.spec.selector?.matchLabels as Labels | undefined,
    ns === ctx.mesh.rootNamespace ? undefined : ns,
  );
}

/** The namespaces from which the provider's service must be visible: the workloads', else the policy's. */
function consumerNamespaces(ctx: AnalysisContext, p: Policy, workloads: readonly Workload[]): string[] {
  const namespaces = new Set(workloads.map((w) => w.namespace));
  if (namespaces.size === 0 && p.metadata.namespace !== ctx.mesh.rootNamespace) {
    namespaces.add(p.metadata.namespace);
  }
  return [...namespaces].sort();
}

/** Reports why the provider of one CUSTOM policy cannot be used, if it cannot. */
function checkProvider(
  ctx: AnalysisContext,
  report: Report,
  p: Policy,
  workloads: readonly Workload[],
): void {
  const name = p.spec.provider?.name ?? "";
  const provider = findExtAuthzProvider(ctx.mesh.extensionProviders, name);
  const failClosed = "; pilot denies the requests this CUSTOM policy matches";
  if (!provider.ok) {
    report(p, FIELD, `${provider.reason}${failClosed}`);
    return;
  }
  const { service, port } = provider.value.config;
  const candidates = ctx.services.map((s) => ({
    hostname: s.host,
    namespace: s.namespace,
    ports: s.ports,
    s,
  }));
  const found = findProviderService(candidates, service, port);
  if (!found.ok) {
    report(p, FIELD, `extension provider ${JSON.stringify(name)}: ${found.reason}${failClosed}`);
    return;
  }
  for (const ns of consumerNamespaces(ctx, p, workloads)) {
    const visible = (c: { s: MeshService }) => isVisibleFrom(c.s.visibility, ns);
    const seen = findProviderService(candidates, service, port, visible);
    if (seen.ok) continue;
    report(
      p,
      FIELD,
      `extension provider ${JSON.stringify(name)}: service ${found.value.hostname} is not exported to ` +
        `namespace ${ns} (exportTo of ServiceEntry ${found.value.s.namespace}/${found.value.s.entry.metadata.name}), ` +
        `so its proxies have no cluster for it${failClosed}`,
    );
    return;
  }
}

/** MSH0187: the provider of every CUSTOM AuthorizationPolicy is one pilot can configure. */
export const customAuthzProviderUnusable = defineAnalyzer({
  code: "MSH0187",
  name: "CustomAuthorizationProviderUnusable",
  severity: "error",
  description: "An AuthorizationPolicy with action CUSTOM names a provider pilot cannot use: not in " +
    "MeshConfig extensionProviders, not an external authorizer, its service or port not found or not " +
    "exported to the workloads, or another provider for the same workload; pilot then denies the " +
    "requests the policy matches.",
}, (ctx, report) => {
  const custom = ctx.ofKind<AuthorizationPolicySpec>("AuthorizationPolicy").filter((p) =>
    p.spec.action === "CUSTOM"
  );
  const providersOf = new Map<Workload, Map<string, Policy[]>>();
  const selected = new Map<Policy, readonly Workload[]>();
  for (const p of custom) {
    const workloads = selectedWorkloads(ctx, p);
    selected.set(p, workloads);
    checkProvider(ctx, report, p, workloads);
    for (const w of workloads) {
      const byName = providersOf.get(w) ?? new Map<string, Policy[]>();
      providersOf.set(w, byName);
      const name = p.spec.provider?.name ?? "";
      byName.set(name, [...(byName.get(name) ?? []), p]);
    }
  }
  for (const p of custom) {
    const w = selected.get(p)!.find((x) => (providersOf.get(x)?.size ?? 0) > 1);
    if (!w) continue;
    const byName = providersOf.get(w)!;
    const problem = severalCustomProviders([...byName.keys()].sort());
    const own = p.spec.provider?.name ?? "";
    const others = [...byName.entries()].filter(([n]) => n !== own).flatMap(([n, ps]) =>
      ps.map((o) => `${o.metadata.namespace}/${o.metadata.name} (${JSON.stringify(n)})`)
    );
    report(
      p,
      FIELD,
      `${w.label} is also selected by CUSTOM AuthorizationPolicy ${others.join(", ")}: ${problem}; ` +
        "pilot denies the requests these CUSTOM policies match on that workload",
    );
  }
});
