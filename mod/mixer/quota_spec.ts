/**
 * Istio 1.x's QuotaSpec and QuotaSpecBinding: which quotas a request to a bound service charges,
 * and how much. In Istio the proxy's mixer filter read them and put the quota names and charges
 * into its Check call; in meshd the rate-limit service stands where that filter stood, so mixer
 * reads them itself when Envoy's descriptor names the destination service.
 *
 * - A binding applies to a request when one of its `services` is the destination: `service: "*"`
 *   is every service, `service: HOST` the service with that host name, otherwise `name` and
 *   `namespace` (the binding's own when not given) are the destination service's, and `domain`,
 *   when given, makes the host `NAME.NAMESPACE.svc.DOMAIN`.
 * - A QuotaSpec rule applies when it has no `match`, or one of its match clauses holds: every
 *   attribute the clause names is a string in the request and matches (`exact`, `prefix`, or
 *   `regex` over the whole value).
 * - Every applying rule asks for its quotas; a quota name asked for twice keeps the later charge,
 *   as the names were keys of one map in Mixer's Check call.
 *
 * @module
 */
import {
  mixerGroup,
  quotaSpecBindingOf,
  type QuotaSpecBindingSpec,
  quotaSpecOf,
  type QuotaSpecSpec,
} from "../api/kinds/mixer.ts";
import type { ConfigSnapshot } from "../galley/mod.ts";
import { errorMessage } from "../shared/errors.ts";
import type { AttributeBag } from "./client/wire.ts";

/** One quota a request asks for. */
export interface QuotaRequirement {
  /** The quota instance's name as the QuotaSpec writes it (NAME or NAME.NAMESPACE). */
  readonly quota: string;
  /** Units per request. */
  readonly charge: number;
}

/** The QuotaSpecs and their bindings, ready to answer per request. */
export interface QuotaSpecs {
  /** Number of bindings. */
  readonly bindings: number;
  /**
   * The quotas a request asks for, when a binding applies to its destination service; undefined
   * when none does (the request then charges every quota whose rule matches it).
   */
  requirements(bag: Readonly<AttributeBag>): QuotaRequirement[] | undefined;
}

type Matcher = (value: string) => boolean;

interface CompiledSpecRule {
  /** undefined: the rule always applies. */
  readonly clauses?: readonly (readonly (readonly [string, Matcher])[])[];
  readonly quotas: readonly QuotaRequirement[];
}

interface CompiledBinding {
  readonly services: readonly ((bag: Readonly<AttributeBag>) => boolean)[];
  readonly rules: readonly CompiledSpecRule[];
}

type StringMatch = { exact?: string; prefix?: string; regex?: string };

function matcher(m: StringMatch): Matcher {
  if (m.exact !== undefined) return (v) => v === m.exact;
  if (m.prefix !== undefined) return (v) => v.startsWith(m.prefix!);
  if (m.regex !== undefined) {
    const re = new RegExp(`^(?:${m.regex})$`, "u");
    return (v) => re.test(v);
  }
  return () => true;
}

function compileSpec(spec: QuotaSpecSpec): CompiledSpecRule[] {
  return (spec.rules ?? []).map((rule) => ({
    clauses: rule.match && rule.match.length > 0
      ? rule.match.map((m) =>
        Object.entries(m.clause ?? {}).map(([name, sm]) => [name, matcher(sm)] as const)
      )
      : undefined,
    quotas: (rule.quotas ?? []).map((q) => ({ quota: q.quota, charge: q.charge ?? 0 })),
  }));
}

function ruleApplies(rule: CompiledSpecRule, bag: Readonly<AttributeBag>): boolean {
  if (!rule.clauses) return true;
  return rule.clauses.some((clause) =>
    clause.every(([name, test]) => {
      const v = bag[name];
      return typeof v === "string" && test(v);
    })
  );
}

type BoundService = NonNullable<QuotaSpecBindingSpec["services"]>[number];

/** Whether `svc` of a binding in `namespace` is the bag's destination service. */
export function serviceBound(svc: BoundService, namespace: string, bag: Readonly<AttributeBag>): boolean {
  const host = bag["destination.service.host"];
  if (svc.service === "*") return true;
  if (svc.service) return host === svc.service;
  if (!svc.name) return false;
  const ns = svc.namespace || namespace;
  if (svc.domain) return host === `${svc.name}.${ns}.svc.${svc.domain}`;
  return bag["destination.service.name"] === svc.name && bag["destination.service.namespace"] === ns;
}

/**
 * Compiles the snapshot's QuotaSpecBindings with the QuotaSpecs they name. A binding naming a
 * QuotaSpec that does not exist, or a spec with a regex that does not compile, is reported
 * through `problem` and left out (a binding with no spec left binds nothing).
 */
export function compileQuotaSpecs(
  snapshot: ConfigSnapshot,
  problem: (resource: string, message: string) => void,
): QuotaSpecs {
  const specs = new Map<string, CompiledSpecRule[] | undefined>();
  for (const r of snapshot.list(mixerGroup, "QuotaSpec")) {
    const key = `${r.metadata.namespace}/${r.metadata.name}`;
    try {
      specs.set(key, compileSpec(quotaSpecOf(r)));
    } catch (err) {
      problem(`QuotaSpec ${key}`, `left out: ${errorMessage(err)}`);
      specs.set(key, undefined);
    }
  }
  const bindings: CompiledBinding[] = [];
  for (const r of snapshot.list(mixerGroup, "QuotaSpecBinding")) {
    const ns = r.metadata.namespace;
    const spec = quotaSpecBindingOf(r);
    const rules: CompiledSpecRule[] = [];
    for (const ref of spec.quotaSpecs ?? []) {
      const key = `${ref.namespace || ns}/${ref.name}`;
      const compiled = specs.get(key);
      if (compiled) rules.push(...compiled);
      else if (!specs.has(key)) {
        problem(`QuotaSpecBinding ${ns}/${r.metadata.name}`, `QuotaSpec ${key} not found`);
      }
    }
    if (rules.length === 0) continue;
    bindings.push({
      services: (spec.services ?? []).map((svc) => (bag: Readonly<AttributeBag>) =>
        serviceBound(svc, ns, bag)
      ),
      rules,
    });
  }
  return {
    bindings: bindings.length,
    requirements(bag) {
      let bound = false;
      const wanted = new Map<string, number>();
      for (const b of bindings) {
        if (!b.services.some((applies) => applies(bag))) continue;
        bound = true;
        for (const rule of b.rules) {
          if (!ruleApplies(rule, bag)) continue;
          for (const q of rule.quotas) {
            wanted.delete(q.quota);
            wanted.set(q.quota, q.charge);
          }
        }
      }
      return bound ? [...wanted].map(([quota, charge]) => ({ quota, charge })) : undefined;
    },
  };
}
