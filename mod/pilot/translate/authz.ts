/**
 * AuthorizationPolicy → Envoy RBAC (`envoy.config.rbac.v3.RBAC`), for the HTTP RBAC filter of
 * inbound connection managers (Envoy and proxyless gRPC, gRFC A41) and the network RBAC filter
 * of TCP chains. Istio's builder (pilot/pkg/security/authz) is the reference for semantics:
 *
 * - One RBAC config per action, evaluated in this order: AUDIT (action LOG), DENY, ALLOW. A
 *   request denied by a DENY policy is never let through by an ALLOW one.
 * - When any ALLOW policy selects the workload, requests matching no ALLOW rule are denied; an
 *   ALLOW policy without rules contributes no rule, so on its own it denies everything.
 * - Policy names are `ns[NS]-policy[NAME]-rule[INDEX]`; one Envoy policy per rule. Within a
 *   rule, `from` entries are OR'ed, fields of one source AND'ed, values of one field OR'ed;
 *   the same for `to`; every `when` condition is AND'ed.
 * - Principals are matched against the peer certificate's URI SAN with the `spiffe://`
 *   prefix; `*` alone means "any authenticated peer", `*x` a suffix, `x*` a prefix.
 *   Namespaces match the principal with the regex `.*\/ns/NS/.*`.
 * - Request principals and `request.auth.*` conditions are matched, as Istio does, against the
 *   dynamic metadata the JWT filter (jwt.ts) writes: namespace `envoy.filters.http.jwt_authn`,
 *   key = the issuer, value = the verified payload. A request principal `ISS/SUB` becomes a
 *   match of `sub` under the key `ISS` (for each configured issuer the value can name; `*`
 *   means "some payload has a `sub`"); `request.auth.audiences` matches `aud`,
 *   `request.auth.presenter` `azp`, `request.auth.claims[a][b]` the path `a`, `b`, each as a
 *   string or as one element of a list. This needs the issuers the JWT filter is configured
 *   with ({@link buildRbac}'s `jwtIssuers`); a value no configured issuer can produce matches
 *   nothing.
 * - Fields a chain cannot evaluate (HTTP fields on TCP chains; request principals and
 *   `request.auth.*` conditions where no JWT filter runs: no RequestAuthentication applies, TCP
 *   chains, gateways, proxyless gRPC) fail closed: an ALLOW rule using one is dropped (it
 *   matches nothing), while for a DENY or AUDIT rule the field is left out (the rule matches
 *   more).
 * - CUSTOM policies delegate to an external authorizer (ext_authz) named by `provider.name` in
 *   MeshConfig extensionProviders. {@link buildRbac} skips them; {@link buildCustomRbac} gives
 *   their rules as one RBAC config that ext_authz.ts runs in shadow mode, so the authorizer is
 *   called only for requests a CUSTOM rule matches. Its fields a chain cannot evaluate are left
 *   out, as for DENY (the authorizer is asked more often, never less).
 *
 * @module
 */
import { create } from "@bufbuild/protobuf";
import { HeaderMatcherSchema } from "#gen/envoy/config/route/v3/route_components_pb.ts";
import {
  type Permission,
  PermissionSchema,
  type Policy,
  PolicySchema,
  type Principal,
  PrincipalSchema,
  type RBAC,
  RBAC_Action,
  RBACSchema,
} from "#gen/envoy/config/rbac/v3/rbac_pb.ts";
import { type StringMatcher, StringMatcherSchema } from "#gen/envoy/type/matcher/v3/string_pb.ts";
import { MetadataMatcherSchema } from "#gen/envoy/type/matcher/v3/metadata_pb.ts";
import { type ValueMatcher, ValueMatcherSchema } from "#gen/envoy/type/matcher/v3/value_pb.ts";
import { type Filter, FilterSchema } from "#gen/envoy/config/listener/v3/listener_components_pb.ts";
import {
  type HttpFilter,
  HttpFilterSchema,
} from "#gen/envoy/extensions/filters/network/http_connection_manager/v3/http_connection_manager_pb.ts";
import { RBACSchema as HttpRbacSchema } from "#gen/envoy/extensions/filters/http/rbac/v3/rbac_pb.ts";
import { RBACSchema as NetworkRbacSchema } from "#gen/envoy/extensions/filters/network/rbac/v3/rbac_pb.ts";
import type {
  AuthorizationAction,
  AuthorizationPolicySpec,
  AuthorizationRule,
  Condition,
  Operation,
  Source,
} from "../../api/kinds/security.ts";
import type { Resource } from "../../api/resource.ts";
import { cidrRange, typedConfig } from "./conversion.ts";
import { JWT_FILTER } from "./jwt.ts";

/** The HTTP filter name of RBAC. */
export const HTTP_RBAC_FILTER = "envoy.filters.http.rbac";
/** The network filter name of RBAC. */
export const NETWORK_RBAC_FILTER = "envoy.filters.network.rbac";

/** Which kind of filter the RBAC config is for: HTTP fields only work in `http`. */
export type RbacFlavor = "http" | "tcp";

/** One RBAC config with the action it enforces. */
export interface RbacConfig {
  readonly action: Exclude<AuthorizationAction, "CUSTOM">;
  readonly rules: RBAC;
}

/** Raised inside a field builder when the field cannot be evaluated on this chain. */
class Unsupported {
  constructor(readonly what: string) {}
}

function escapeRegex(s: string): string {
  return s.replace(/[.*+?^${}()|[\]\\]/g, "\\$&");
}

function matcher(
  pattern: { case: "exact" | "prefix" | "suffix"; value: string } | { case: "safeRegex"; value: string },
  ignoreCase = false,
): StringMatcher {
  return pattern.case === "safeRegex"
    ? create(StringMatcherSchema, { matchPattern: { case: "safeRegex", value: { regex: pattern.value } } })
    : create(StringMatcherSchema, { matchPattern: pattern, ignoreCase });
}

/** Istio's value syntax: `*` = present, `*x` = suffix x, `x*` = prefix x, else exact; `prefix` prepended. */
function wildcardMatcher(v: string, prefix = "", ignoreCase = false): StringMatcher {
  if (v === "*") return matcher({ case: "safeRegex", value: ".+" });
  if (v.startsWith("*")) return matcher({ case: "suffix", value: v.slice(1) }, ignoreCase);
  if (v.endsWith("*")) return matcher({ case: "prefix", value: prefix + v.slice(0, -1) }, ignoreCase);
  return matcher({ case: "exact", value: prefix + v }, ignoreCase);
}

const SPIFFE = "spiffe://";

function principalId(v: string): Principal {
  return create(PrincipalSchema, {
    identifier: { case: "authenticated", value: { principalName: wildcardMatcher(v, SPIFFE) } },
  });
}

function namespaceId(v: string): Principal {
  let regex: string;
  if (v === "*") regex = ".*/ns/[^/]+/.*";
  else if (v.startsWith("*")) regex = `.*/ns/[^/]*${escapeRegex(v.slice(1))}/.*`;
  else if (v.endsWith("*")) regex = `.*/ns/${escapeRegex(v.slice(0, -1))}[^/]*/.*`;
  else regex = `.*/ns/${escapeRegex(v)}/.*`;
  return create(PrincipalSchema, {
    identifier: {
      case: "authenticated",
      value: { principalName: matcher({ case: "safeRegex", value: regex }) },
    },
  });
}

function serviceAccountId(v: string): Principal {
  const slash = v.indexOf("/");
  const ns = slash < 0 ? "" : v.slice(0, slash);
  const sa = slash < 0 ? v : v.slice(slash + 1);
  return create(PrincipalSchema, {
    identifier: {
      case: "authenticated",
      value: { principalName: matcher({ case: "suffix", value: `/ns/${ns}/sa/${sa}` }) },
    },
  });
}

function directIpId(v: string): Principal {
  return create(PrincipalSchema, { identifier: { case: "directRemoteIp", value: cidrRange(v) } });
}

function remoteIpId(v: string): Principal {
  return create(PrincipalSchema, { identifier: { case: "remoteIp", value: cidrRange(v) } });
}

function headerMatcher(name: string, v: string) {
  return create(HeaderMatcherSchema, {
    name,
    headerMatchSpecifier: { case: "stringMatch", value: wildcardMatcher(v, "", name === ":authority") },
  });
}

function headerId(name: string, v: string): Principal {
  return create(PrincipalSchema, { identifier: { case: "header", value: headerMatcher(name, v) } });
}

/** A match on the JWT payload of `issuer` at `path` (a claim and nested keys). */
function jwtMetadataId(issuer: string, path: readonly string[], value: ValueMatcher): Principal {
  return create(PrincipalSchema, {
    identifier: {
      case: "metadata",
      value: create(MetadataMatcherSchema, {
        filter: JWT_FILTER,
        path: [issuer, ...path].map((key) => ({ segment: { case: "key" as const, value: key } })),
        value,
      }),
    },
  });
}

function presentValue(): ValueMatcher {
  return create(ValueMatcherSchema, { matchPattern: { case: "presentMatch", value: true } });
}

function stringValue(m: StringMatcher): ValueMatcher {
  return create(ValueMatcherSchema, { matchPattern: { case: "stringMatch", value: m } });
}

/** A claim that is either the string or a list with the string among its elements. */
function claimValue(m: StringMatcher): ValueMatcher {
  return create(ValueMatcherSchema, {
    matchPattern: {
      case: "orMatch",
      value: {
        valueMatchers: [
          stringValue(m),
          create(ValueMatcherSchema, {
            matchPattern: {
              case: "listMatch",
              value: { matchPattern: { case: "oneOf", value: stringValue(m) } },
            },
          }),
        ],
      },
    },
  });
}

/** Matches nothing: used for a value no configured issuer can produce. */
function noId(): Principal {
  return create(PrincipalSchema, { identifier: { case: "notId", value: anyId() } });
}

/**
 * A request principal (`ISS/SUB`, with Istio's `*`, `x*`, `*x`) as matches of `sub` in the
 * payload of each of `issuers` that the value can name.
 */
function requestPrincipalId(v: string, issuers: readonly string[]): Principal {
  const alts: Principal[] = [];
  for (const iss of issuers) {
    const full = `${iss}/`;
    let value: ValueMatcher | undefined;
    if (v === "*") value = presentValue();
    else if (v.endsWith("*")) {
      const p = v.slice(0, -1);
      if (full.startsWith(p)) value = presentValue();
      else if (p.startsWith(full)) {
        value = stringValue(matcher({ case: "prefix", value: p.slice(full.length) }));
      }
    } else if (v.startsWith("*")) {
      const x = v.slice(1);
      const slash = x.lastIndexOf("/");
      if (slash < 0) value = stringValue(matcher({ case: "suffix", value: x }));
      else if (full.endsWith(x.slice(0, slash + 1))) {
        value = stringValue(matcher({ case: "exact", value: x.slice(slash + 1) }));
      }
    } else if (v.startsWith(full)) {
      value = stringValue(matcher({ case: "exact", value: v.slice(full.length) }));
    }
    if (value) alts.push(jwtMetadataId(iss, ["sub"], value));
  }
  return alts.length === 0 ? noId() : orIds(alts);
}

/** A `request.auth.*` claim (path below the payload) matching `v` for any of `issuers`. */
function claimId(path: readonly string[], v: string, issuers: readonly string[]): Principal {
  return orIds(issuers.map((iss) => jwtMetadataId(iss, path, claimValue(wildcardMatcher(v)))));
}

function orIds(ids: Principal[]): Principal {
  return ids.length === 1
    ? ids[0]!
    : create(PrincipalSchema, { identifier: { case: "orIds", value: { ids } } });
}

function andIds(ids: Principal[]): Principal {
  return ids.length === 1
    ? ids[0]!
    : create(PrincipalSchema, { identifier: { case: "andIds", value: { ids } } });
}

function notId(id: Principal): Principal {
  return create(PrincipalSchema, { identifier: { case: "notId", value: id } });
}

function anyId(): Principal {
  return create(PrincipalSchema, { identifier: { case: "any", value: true } });
}

function orRules(rules: Permission[]): Permission {
  return rules.length === 1
    ? rules[0]!
    : create(PermissionSchema, { rule: { case: "orRules", value: { rules } } });
}

function andRules(rules: Permission[]): Permission {
  return rules.length === 1
    ? rules[0]!
    : create(PermissionSchema, { rule: { case: "andRules", value: { rules } } });
}

function notRule(rule: Permission): Permission {
  return create(PermissionSchema, { rule: { case: "notRule", value: rule } });
}

function anyRule(): Permission {
  return create(PermissionSchema, { rule: { case: "any", value: true } });
}

function headerRule(name: string, v: string): Permission {
  return create(PermissionSchema, { rule: { case: "header", value: headerMatcher(name, v) } });
}

function pathRule(v: string): Permission {
  return create(PermissionSchema, {
    rule: { case: "urlPath", value: { rule: { case: "path", value: wildcardMatcher(v) } } },
  });
}

function portRule(v: string): Permission {
  const port = Number(v);
  if (!Number.isInteger(port) || port < 0 || port > 65535) throw new Unsupported(`port ${v}`);
  return create(PermissionSchema, { rule: { case: "destinationPort", value: port } });
}

function destinationIpRule(v: string): Permission {
  return create(PermissionSchema, { rule: { case: "destinationIp", value: cidrRange(v) } });
}

function sniRule(v: string): Permission {
  return create(PermissionSchema, { rule: { case: "requestedServerName", value: wildcardMatcher(v) } });
}

/** Builds a field's values (OR'ed) or their negation; undefined for no values. */
function field<T>(
  values: readonly string[] | undefined,
  notValues: readonly string[] | undefined,
  one: (v: string) => T,
  or: (xs: T[]) => T,
  not: (x: T) => T,
): T[] {
  const out: T[] = [];
  if (values && values.length > 0) out.push(or(values.map(one)));
  if (notValues && notValues.length > 0) out.push(not(or(notValues.map(one))));
  return out;
}

/** The builder state for one rule: whether a field the chain cannot evaluate is to fail closed. */
interface RuleCtx {
  readonly flavor: RbacFlavor;
  /** True for ALLOW: an unsupported field drops the whole rule. False: the field is left out. */
  readonly strict: boolean;
  /** Issuers the JWT filter puts payloads in metadata for; none: request.auth.* is unsupported. */
  readonly jwtIssuers: readonly string[];
}

/** Whether request principals and `request.auth.*` can be evaluated. */
function hasJwt(ctx: RuleCtx): boolean {
  return ctx.flavor === "http" && ctx.jwtIssuers.length > 0;
}

function guard<T>(ctx: RuleCtx, what: string, ok: boolean, build: () => T[]): T[] {
  if (ok) return build();
  if (ctx.strict) throw new Unsupported(what);
  return [];
}

function sourceIds(src: Source, ctx: RuleCtx): Principal[] {
  const hasRequestPrincipals =
    (src.requestPrincipals?.length ?? 0) + (src.notRequestPrincipals?.length ?? 0) >
      0;
  return [
    ...field(src.principals, src.notPrincipals, principalId, orIds, notId),
    ...field(src.serviceAccounts, src.notServiceAccounts, serviceAccountId, orIds, notId),
    ...guard(
      ctx,
      "requestPrincipals",
      !hasRequestPrincipals || hasJwt(ctx),
      () =>
        field(
          src.requestPrincipals,
          src.notRequestPrincipals,
          (v) => requestPrincipalId(v, ctx.jwtIssuers),
          orIds,
          notId,
        ),
    ),
    ...field(src.namespaces, src.notNamespaces, namespaceId, orIds, notId),
    ...field(src.ipBlocks, src.notIpBlocks, directIpId, orIds, notId),
    ...field(src.remoteIpBlocks, src.notRemoteIpBlocks, remoteIpId, orIds, notId),
    ...field(
      src.trustDomains,
      src.notTrustDomains,
      (td) => principalId(td === "*" ? "*" : `${td}/*`),
      orIds,
      notId,
    ),
  ];
}

function operationRules(op: Operation, ctx: RuleCtx): Permission[] {
  const http = ctx.flavor === "http";
  const some = (a?: readonly string[], b?: readonly string[]) => (a?.length ?? 0) + (b?.length ?? 0) > 0;
  return [
    ...guard(
      ctx,
      "hosts",
      http || !some(op.hosts, op.notHosts),
      () => field(op.hosts, op.notHosts, (v) => headerRule(":authority", v), orRules, notRule),
    ),
    ...field(op.ports, op.notPorts, portRule, orRules, notRule),
    ...guard(
      ctx,
      "methods",
      http || !some(op.methods, op.notMethods),
      () => field(op.methods, op.notMethods, (v) => headerRule(":method", v), orRules, notRule),
    ),
    ...guard(
      ctx,
      "paths",
      http || !some(op.paths, op.notPaths),
      () => field(op.paths, op.notPaths, pathRule, orRules, notRule),
    ),
  ];
}

/** A `when` condition: principals or permissions it adds. */
function condition(c: Condition, ctx: RuleCtx): { ids: Principal[]; rules: Permission[] } {
  const http = ctx.flavor === "http";
  const key = c.key;
  const header = /^request\.headers\[(.+)\]$/.exec(key);
  if (header) {
    const name = header[1]!.toLowerCase();
    return {
      ids: guard(ctx, key, http, () => field(c.values, c.notValues, (v) => headerId(name, v), orIds, notId)),
      rules: [],
    };
  }
  const claims = /^request\.auth\.claims((?:\[[^\[\]]+\])+)$/.exec(key);
  const jwtPath = claims
    ? [...claims[1]!.matchAll(/\[([^\[\]]+)\]/g)].map((m) => m[1]!)
    : key === "request.auth.audiences"
    ? ["aud"]
    : key === "request.auth.presenter"
    ? ["azp"]
    : undefined;
  if (jwtPath || key === "request.auth.principal") {
    const one = jwtPath
      ? (v: string) => claimId(jwtPath, v, ctx.jwtIssuers)
      : (v: string) => requestPrincipalId(v, ctx.jwtIssuers);
    return {
      ids: guard(ctx, key, hasJwt(ctx), () => field(c.values, c.notValues, one, orIds, notId)),
      rules: [],
    };
  }
  switch (key) {
    case "source.ip":
      return { ids: field(c.values, c.notValues, directIpId, orIds, notId), rules: [] };
    case "remote.ip":
      return { ids: field(c.values, c.notValues, remoteIpId, orIds, notId), rules: [] };
    case "source.namespace":
      return { ids: field(c.values, c.notValues, namespaceId, orIds, notId), rules: [] };
    case "source.principal":
      return { ids: field(c.values, c.notValues, principalId, orIds, notId), rules: [] };
    case "destination.ip":
      return { ids: [], rules: field(c.values, c.notValues, destinationIpRule, orRules, notRule) };
    case "destination.port":
      return { ids: [], rules: field(c.values, c.notValues, portRule, orRules, notRule) };
    case "connection.sni":
      return { ids: [], rules: field(c.values, c.notValues, sniRule, orRules, notRule) };
    default:
      // request.auth.* (needs JWT authentication), experimental.* and unknown keys.
      return { ids: guard(ctx, key, false, () => []), rules: [] };
  }
}

/** One rule as an RBAC policy, or undefined when it can never match on this chain. */
function rulePolicy(rule: AuthorizationRule, ctx: RuleCtx): Policy | undefined {
  try {
    const idParts: Principal[] = [];
    const ruleParts: Permission[] = [];
    const froms = (rule.from ?? []).map((f) => f.source ?? {});
    if (froms.length > 0) {
      const alternatives = froms.map((s) => sourceIds(s, ctx)).map((ids) =>
        ids.length === 0 ? anyId() : andIds(ids)
      );
      idParts.push(orIds(alternatives));
    }
    const tos = (rule.to ?? []).map((t) => t.operation ?? {});
    if (tos.length > 0) {
      const alternatives = tos.map((o) => operationRules(o, ctx)).map((rs) =>
        rs.length === 0 ? anyRule() : andRules(rs)
      );
      ruleParts.push(orRules(alternatives));
    }
    for (const c of rule.when ?? []) {
      const { ids, rules } = condition(c, ctx);
      idParts.push(...ids);
      ruleParts.push(...rules);
    }
    return create(PolicySchema, {
      permissions: [ruleParts.length === 0 ? anyRule() : andRules(ruleParts)],
      principals: [idParts.length === 0 ? anyId() : andIds(idParts)],
    });
  } catch (e) {
    if (e instanceof Unsupported) return undefined;
    throw e;
  }
}

const ACTIONS: Readonly<Record<RbacConfig["action"], RBAC_Action>> = {
  AUDIT: RBAC_Action.LOG,
  DENY: RBAC_Action.DENY,
  ALLOW: RBAC_Action.ALLOW,
};

/** The RBAC policy name of one rule, as Istio names them. */
export function rbacPolicyName(namespace: string, name: string, rule: number): string {
  return `ns[${namespace}]-policy[${name}]-rule[${rule}]`;
}

/** An RBAC policy that matches nothing (for a policy without rules, as Istio generates). */
function matchNeverPolicy(): Policy {
  return create(PolicySchema, { permissions: [notRule(anyRule())], principals: [anyId()] });
}

/** `policies` as a record sorted by name (stable output for content hashes). */
function sortedPolicies(policies: Readonly<Record<string, Policy>>): Record<string, Policy> {
  const sorted: Record<string, Policy> = {};
  for (const k of Object.keys(policies).sort()) sorted[k] = policies[k]!;
  return sorted;
}

/** The prefix of the RBAC policy names of CUSTOM rules sent to `provider` (Istio's). */
export function customPolicyPrefix(provider: string): string {
  return `istio-ext-authz-${provider}-`;
}

/**
 * The rules of CUSTOM `policies` (all naming one provider) as one RBAC config of action DENY,
 * for the shadow rules of the RBAC filter before `provider`'s ext_authz: policy names start
 * with {@link customPolicyPrefix}, which the ext_authz filter's `filter_enabled_metadata`
 * looks for. A field the chain cannot evaluate is left out of its rule (the rule matches more,
 * so the authorizer decides); a policy without rules contributes a rule that never matches.
 */
export function buildCustomRbac(
  policies: readonly Resource<AuthorizationPolicySpec>[],
  flavor: RbacFlavor,
  provider: string,
  jwtIssuers: readonly string[] = [],
): RBAC {
  const out: Record<string, Policy> = {};
  const prefix = customPolicyPrefix(provider);
  for (const p of policies) {
    const { namespace, name } = p.metadata;
    const rules = p.spec.rules ?? [];
    if (rules.length === 0) out[prefix + rbacPolicyName(namespace, name, 0)] = matchNeverPolicy();
    rules.forEach((rule, i) => {
      const policy = rulePolicy(rule, { flavor, strict: false, jwtIssuers });
      if (policy) out[prefix + rbacPolicyName(namespace, name, i)] = policy;
    });
  }
  return create(RBACSchema, { action: RBAC_Action.DENY, policies: sortedPolicies(out) });
}

/** The suffix of the names of CUSTOM rules denied because their provider cannot be used (Istio's). */
export const BAD_CUSTOM_SUFFIX = "-deny-due-to-bad-CUSTOM-action";

/**
 * Fail closed for CUSTOM rules whose provider cannot be used (unknown, invalid, unresolvable,
 * or several providers for one workload): the same rules enforced as DENY, each name given
 * {@link BAD_CUSTOM_SUFFIX}, so exactly the requests the authorizer would have been asked
 * about are refused.
 */
export function badCustomRbac(rules: RBAC): RBAC {
  const out: Record<string, Policy> = {};
  for (const [name, policy] of Object.entries(rules.policies)) out[name + BAD_CUSTOM_SUFFIX] = policy;
  return create(RBACSchema, { action: RBAC_Action.DENY, policies: sortedPolicies(out) });
}

/**
 * The RBAC configs for `policies` (those selecting one workload), in evaluation order AUDIT,
 * DENY, ALLOW; an action no policy uses has no config. CUSTOM policies are skipped
 * ({@link buildCustomRbac} and ext_authz.ts handle them). `flavor` says whether HTTP attributes can be evaluated; `jwtIssuers` are the
 * issuers of the JWT filter running before RBAC (none: request principals and `request.auth.*`
 * cannot be evaluated and fail closed).
 */
export function buildRbac(
  policies: readonly Resource<AuthorizationPolicySpec>[],
  flavor: RbacFlavor,
  jwtIssuers: readonly string[] = [],
): RbacConfig[] {
  const out: RbacConfig[] = [];
  for (const action of ["AUDIT", "DENY", "ALLOW"] as const) {
    const selected = policies.filter((p) => (p.spec.action ?? "ALLOW") === action);
    if (selected.length === 0) continue;
    const rbacPolicies: Record<string, Policy> = {};
    for (const p of selected) {
      (p.spec.rules ?? []).forEach((rule, i) => {
        const policy = rulePolicy(rule, { flavor, strict: action === "ALLOW", jwtIssuers });
        if (policy) rbacPolicies[rbacPolicyName(p.metadata.namespace, p.metadata.name, i)] = policy;
      });
    }
    // DENY and AUDIT configs without a rule would do nothing; an ALLOW config without one denies all.
    if (action !== "ALLOW" && Object.keys(rbacPolicies).length === 0) continue;
    out.push({
      action,
      rules: create(RBACSchema, { action: ACTIONS[action], policies: sortedPolicies(rbacPolicies) }),
    });
  }
  return out;
}

/** The RBAC HTTP filters for `configs`, one per config in evaluation order. */
export function rbacHttpFilters(configs: readonly RbacConfig[]): HttpFilter[] {
  return configs.map((c) =>
    create(HttpFilterSchema, {
      name: HTTP_RBAC_FILTER,
      configType: {
        case: "typedConfig",
        value: typedConfig(HttpRbacSchema, create(HttpRbacSchema, { rules: c.rules })),
      },
    })
  );
}

/** The RBAC network filters for `configs` (stat prefix `tcp.`, as Istio), in evaluation order. */
export function rbacNetworkFilters(configs: readonly RbacConfig[]): Filter[] {
  return configs.map((c) =>
    create(FilterSchema, {
      name: NETWORK_RBAC_FILTER,
      configType: {
        case: "typedConfig",
        value: typedConfig(
          NetworkRbacSchema,
          create(NetworkRbacSchema, { rules: c.rules, statPrefix: "tcp." }),
        ),
      },
    })
  );
}
