/**
 * Mixer-model rules (config.istio.io/v1alpha2) against the handlers and instances they wire
 * together: both must exist, and every instance's template must be one its handler's adapter
 * consumes (a listchecker checks listentry instances, a quota adapter counts quota instances).
 * Which templates an adapter consumes comes from its descriptor in mod/api/mixer's adapter table.
 *
 * References are `NAME` (the rule's namespace), `NAME.NAMESPACE`, or Istio's fully qualified
 * `NAME.KIND.NAMESPACE` (`parseMixerRef`, shared with mixer's dispatch).
 *
 * @module
 */

import type { HandlerSpec, InstanceSpec, RuleSpec } from "../../api/kinds/mixer.ts";
import { adapterDescriptor, parseMixerRef } from "../../api/mixer/mod.ts";
import { didYouMean } from "../../shared/suggest.ts";
import type { AnalysisContext } from "./_context.ts";
import type { Resource } from "../../api/resource.ts";
import { defineAnalyzer, type Report } from "./_define.ts";

export { parseMixerRef };

interface Reference<S> {
  readonly ref: string;
  readonly field: string;
  readonly target: Resource<S> | undefined;
  readonly key: string;
}

function lookup<S>(
  ctx: AnalysisContext,
  kind: string,
  ref: string,
  namespace: string,
  field: string,
): Reference<S> {
  const { namespace: ns, name } = parseMixerRef(ref, namespace, (n, x) => ctx.get(kind, n, x) !== undefined);
  return { ref, field, target: ctx.get<S>(kind, ns, name), key: `${ns}/${name}` };
}

/** Every handler and instance reference of a rule, resolved. */
function actionsOf(ctx: AnalysisContext, rule: Resource<RuleSpec>) {
  const ns = rule.metadata.namespace;
  return (rule.spec.actions ?? []).map((a, i) => ({
    handler: lookup<HandlerSpec>(ctx, "handler", a.handler, ns, `spec.actions[${i}].handler`),
    instances: (a.instances ?? []).map((ref, j) =>
      lookup<InstanceSpec>(ctx, "instance", ref, ns, `spec.actions[${i}].instances[${j}]`)
    ),
  }));
}

function notFound(
  ctx: AnalysisContext,
  report: Report,
  rule: Resource,
  kind: string,
  r: Reference<unknown>,
): void {
  const known = ctx.ofKind(kind).map((x) => `${x.metadata.namespace}/${x.metadata.name}`);
  const shown = r.key === r.ref ? `"${r.ref}"` : `"${r.ref}" (${r.key})`;
  report(rule, r.field, `${kind} ${shown} not found${didYouMean(r.key, known)}; this action never runs`);
}

/** MSH0170: every rule action names an existing handler. */
export const mixerHandlerNotFound = defineAnalyzer({
  code: "MSH0170",
  name: "MixerHandlerNotFound",
  severity: "error",
  description: "A Mixer rule action names a handler that does not exist.",
}, (ctx, report) => {
  for (const rule of ctx.ofKind<RuleSpec>("rule")) {
    for (const a of actionsOf(ctx, rule)) {
      if (!a.handler.target) notFound(ctx, report, rule, "handler", a.handler);
    }
  }
});

/** MSH0171: every rule action names existing instances. */
export const mixerInstanceNotFound = defineAnalyzer({
  code: "MSH0171",
  name: "MixerInstanceNotFound",
  severity: "error",
  description: "A Mixer rule action names an instance that does not exist.",
}, (ctx, report) => {
  for (const rule of ctx.ofKind<RuleSpec>("rule")) {
    for (const a of actionsOf(ctx, rule)) {
      for (const inst of a.instances) if (!inst.target) notFound(ctx, report, rule, "instance", inst);
    }
  }
});

/** MSH0172: every instance's template is one its handler's adapter accepts. */
export const mixerTemplateMismatch = defineAnalyzer({
  code: "MSH0172",
  name: "MixerTemplateMismatch",
  severity: "error",
  description:
    "A Mixer rule sends an instance to a handler whose adapter does not accept the instance's template.",
}, (ctx, report) => {
  for (const rule of ctx.ofKind<RuleSpec>("rule")) {
    for (const a of actionsOf(ctx, rule)) {
      const adapter = a.handler.target?.spec.compiledAdapter;
      const accepted = adapter === undefined ? undefined : adapterDescriptor(adapter)?.templates;
      if (!accepted) continue;
      for (const inst of a.instances) {
        const template = inst.target?.spec.compiledTemplate;
        if (!template || accepted.includes(template)) continue;
        report(
          rule,
          inst.field,
          `instance ${inst.key} has template ${template}, ` +
            `but handler ${a.handler.key} uses adapter ${adapter}, ` +
            `which accepts only ${accepted.join(" or ")} instances`,
        );
      }
    }
  }
});
