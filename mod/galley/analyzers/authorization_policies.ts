/**
 * The sources AuthorizationPolicy rules name: namespaces that hold nothing, and principals that
 * are malformed or name an identity no workload of the mesh has. Both are usually typos, and
 * both silently change what a policy allows (an ALLOW rule that never matches denies).
 *
 * A principal is a SPIFFE identity without its scheme, `TRUST_DOMAIN/ns/NAMESPACE/sa/ACCOUNT`;
 * like namespaces it may be `*`, or carry one `*` at the start (suffix match) or the end
 * (prefix match).
 *
 * @module
 */

import type { AuthorizationPolicySpec, Source } from "../../api/kinds/security.ts";
import { didYouMean } from "../../shared/suggest.ts";
import type { AnalysisContext } from "./_context.ts";
import type { Resource } from "../../api/resource.ts";
import { defineAnalyzer, type Report } from "./_define.ts";

/** Matches a value against an Istio string pattern: exact, `*`, `*suffix` or `prefix*`. */
export function patternMatches(pattern: string, value: string): boolean {
  if (pattern === "*") return true;
  if (pattern.startsWith("*")) return value.endsWith(pattern.slice(1));
  if (pattern.endsWith("*")) return value.startsWith(pattern.slice(0, -1));
  return pattern === value;
}

/** Calls `visit` with every value of a list field of every rule source, and its path. */
function eachSourceValue(
  ap: Resource<AuthorizationPolicySpec>,
  fields: readonly (keyof Source)[],
  visit: (value: string, field: string, negated: boolean) => void,
): void {
  (ap.spec.rules ?? []).forEach((rule, i) => {
    (rule.from ?? []).forEach((from, j) => {
      for (const key of fields) {
        const values = from.source?.[key];
        if (!Array.isArray(values)) continue;
        values.forEach((v: string, k) =>
          visit(v, `spec.rules[${i}].from[${j}].source.${key}[${k}]`, key.startsWith("not"))
        );
      }
    });
  });
}

/** MSH0160: namespaces in rule sources hold at least one resource. */
export const authorizationNamespaceNotFound = defineAnalyzer({
  code: "MSH0160",
  istioCode: "IST0101",
  istioNote: "istioctl reports a missing source namespace as ReferencedResourceNotFound (namespace).",
  name: "AuthorizationPolicyNamespaceNotFound",
  severity: "warning",
  description: "An AuthorizationPolicy rule names a source namespace in which no resource exists.",
}, (ctx, report) => {
  for (const ap of ctx.ofKind<AuthorizationPolicySpec>("AuthorizationPolicy")) {
    eachSourceValue(ap, ["namespaces", "notNamespaces"], (ns, field, negated) => {
      if ([...ctx.namespaces].some((n) => patternMatches(ns, n))) return;
      const effect = negated ? "excluding it changes nothing" : "this source never matches";
      report(
        ap,
        field,
        `namespace "${ns}" holds no resources in the mesh; ${effect}${didYouMean(ns, ctx.namespaces)}`,
      );
    });
  }
});

/** The positions of a principal's segments, left to right. */
const SHAPE = ["TRUST_DOMAIN", "ns", "NAMESPACE", "sa", "ACCOUNT"] as const;

/**
 * Why a principal is not of the form TRUST_DOMAIN/ns/NAMESPACE/sa/ACCOUNT (a leading `*` stands
 * for any start, a trailing `*` for any end), or undefined when it is.
 */
export function principalFormProblem(principal: string): string | undefined {
  if (principal === "*") return undefined;
  const suffix = principal.startsWith("*");
  const prefix = principal.endsWith("*");
  const body = principal.slice(suffix ? 1 : 0, prefix ? -1 : undefined);
  const form = "use TRUST_DOMAIN/ns/NAMESPACE/sa/SERVICE_ACCOUNT";
  if ((suffix && prefix) || body.includes("*")) {
    return `only one leading or trailing "*" is supported; ${form}`;
  }
  const segs = body.split("/");
  if (segs.length > SHAPE.length) return `too many "/" segments; ${form}`;
  for (let i = 0; i < segs.length; i++) {
    const seg = segs[i]!;
    // Align segments to the end for a suffix match, to the start otherwise.
    const pos = suffix ? SHAPE.length - segs.length + i : i;
    const expected = SHAPE[pos]!;
    const partial = (suffix && i === 0) || (prefix && i === segs.length - 1);
    const literal = expected === "ns" || expected === "sa";
    if (literal) {
      const ok = partial ? (suffix ? expected.endsWith(seg) : expected.startsWith(seg)) : seg === expected;
      if (!ok) return `expected "${expected}" where it has "${seg}"; ${form}`;
    } else if (seg === "" && !partial) {
      return `the ${expected} segment is empty; ${form}`;
    }
  }
  if (!suffix && !prefix && segs.length !== SHAPE.length) return `incomplete principal; ${form}`;
  return undefined;
}

/** Why a well-formed, exact principal names nobody in the mesh, or undefined. */
function identityProblem(ctx: AnalysisContext, principal: string): string | undefined {
  if (principal.includes("*")) return undefined;
  const [trustDomain, , namespace, , account] = principal.split("/") as [
    string,
    string,
    string,
    string,
    string,
  ];
  if (trustDomain !== ctx.mesh.trustDomain) {
    return `it names trust domain "${trustDomain}", but the mesh's trust domain is "${ctx.mesh.trustDomain}"`;
  }
  if (!ctx.namespaces.has(namespace)) {
    return `namespace "${namespace}" holds no resources in the mesh${didYouMean(namespace, ctx.namespaces)}`;
  }
  const accounts = new Set(
    ctx.workloads.filter((w) => w.namespace === namespace).map((w) => w.serviceAccount || "default"),
  );
  if (!accounts.has(account)) {
    return `no workload in namespace ${namespace} runs as service account "${account}"${
      didYouMean(account, accounts)
    }`;
  }
  return undefined;
}

function checkPrincipals(ctx: AnalysisContext, report: Report, ap: Resource<AuthorizationPolicySpec>): void {
  eachSourceValue(ap, ["principals", "notPrincipals"], (principal, field) => {
    const form = principalFormProblem(principal);
    if (form) {
      report(ap, field, `principal "${principal}" is malformed: ${form}`);
      return;
    }
    const identity = identityProblem(ctx, principal);
    if (identity) report(ap, field, `principal "${principal}" matches no workload identity: ${identity}`);
  });
}

/** MSH0161: principals are well-formed and name identities workloads of the mesh have. */
export const authorizationPrincipal = defineAnalyzer({
  code: "MSH0161",
  name: "AuthorizationPolicyInvalidPrincipal",
  severity: "warning",
  description: "An AuthorizationPolicy principal is not of the form TRUST_DOMAIN/ns/NAMESPACE/sa/ACCOUNT, " +
    "or names an identity no workload has.",
}, (ctx, report) => {
  for (const ap of ctx.ofKind<AuthorizationPolicySpec>("AuthorizationPolicy")) {
    checkPrincipals(ctx, report, ap);
  }
});
