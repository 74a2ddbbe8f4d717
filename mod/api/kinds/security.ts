/**
 * security.istio.io (v1, v1beta1): validation of PeerAuthentication, RequestAuthentication and
 * AuthorizationPolicy, and their typed models, each inferred from its schema.
 *
 * @module
 */

import type { Diagnostic, Resource } from "../resource.ts";
import {
  checkSchema,
  fieldPath,
  indexPath,
  type Infer,
  type InferFields,
  isIPOrCIDR,
  type Reporter,
  type Schema,
  suggest,
  t,
} from "../schema.ts";
import { matchLabelsSelectorSchema } from "./networking.ts";

// ---------------------------------------------------------------------------------------------
// Shared pieces
// ---------------------------------------------------------------------------------------------

/**
 * Kinds a policy may target in Istio. meshd honours ServiceEntry and both Gateways (pilot's
 * targetRefApplies says how) and refuses the ones with `unsupported`.
 */
const allowedTargets: readonly { group: string; kind: string; unsupported?: string }[] = [
  {
    group: "",
    kind: "Service",
    unsupported: "Kubernetes Services have no workloads of their own in meshd (Istio attaches these " +
      "policies to waypoints); target the ServiceEntry, or use a selector",
  },
  { group: "networking.istio.io", kind: "ServiceEntry" },
  { group: "networking.istio.io", kind: "Gateway" },
  { group: "gateway.networking.k8s.io", kind: "Gateway" },
  {
    group: "gateway.networking.k8s.io",
    kind: "GatewayClass",
    unsupported: "meshd has no waypoints; target a Gateway or ServiceEntry, or use a selector",
  },
];

/** istio.type.v1beta1 PolicyTargetReference. */
export const targetRefSchema = t.object(
  {
    group: t.string(),
    kind: t.string({ required: true }),
    name: t.string({ required: true }),
    namespace: t.string(),
  },
  {
    check: (ref, path, report) => {
      if (ref.namespace) {
        report.error(
          fieldPath(path, "namespace"),
          "targetRef namespace must not be set; cross-namespace references are not supported",
        );
      }
      const group = ref.group ?? "";
      const shown = `${group ? `${group}/` : ""}${ref.kind}`;
      const target = allowedTargets.find((a) => a.kind === ref.kind && a.group === group);
      if (!target) {
        const all = allowedTargets.map((a) => (a.group ? `${a.group}/${a.kind}` : a.kind)).join(", ");
        report.error(path, `targetRef must refer to one of ${all}; got ${shown}`);
      } else if (target.unsupported) {
        report.error(
          fieldPath(path, "kind"),
          `targetRef to a ${shown} is not supported by meshd: ${target.unsupported}`,
        );
      }
    },
  },
);

/** A reference to the resource a policy attaches to (instead of a selector). */
export type PolicyTargetReference = Infer<typeof targetRefSchema>;

/** The fields that attach a policy to workloads: selector, targetRef, targetRefs (one at most). */
export const policyTargetFields = {
  selector: matchLabelsSelectorSchema,
  targetRef: targetRefSchema,
  targetRefs: t.array(targetRefSchema),
};

/** Groups of fields that are mutually exclusive on policies with a target. */
export const policyTargetOneOf: readonly (readonly string[])[] = [["selector", "targetRef", "targetRefs"]];

const nonEmptyStrings = t.array(t.string({ nonEmpty: true }));

const headerName = /^[-_A-Za-z0-9]+$/;

function headerNameCheck(value: string, path: string, report: Reporter): void {
  if (!headerName.test(value)) report.error(path, `${JSON.stringify(value)} is not a valid header name`);
}

// ---------------------------------------------------------------------------------------------
// PeerAuthentication
// ---------------------------------------------------------------------------------------------

const mtlsModeSchema = t.enum(["UNSET", "DISABLE", "PERMISSIVE", "STRICT"]);

/** Mutual TLS modes. */
export type MtlsMode = Infer<typeof mtlsModeSchema>;

const mtlsSchema = t.object({ mode: mtlsModeSchema });

const peerAuthenticationSchema = t.object(
  {
    selector: matchLabelsSelectorSchema,
    mtls: mtlsSchema,
    portLevelMtls: t.map(mtlsSchema, {
      minEntries: 1,
      key: (key, path, report) => {
        const n = /^\d+$/.test(key) ? Number(key) : NaN;
        if (!(n >= 1 && n <= 65535)) {
          report.error(path, `port ${JSON.stringify(key)} must be a number between 1 and 65535`);
        }
      },
    }),
  },
  {
    check: (pa, path, report) => {
      const hasSelector = Object.keys(pa.selector?.matchLabels ?? {}).length > 0;
      if (pa.portLevelMtls && !hasSelector) {
        report.error(
          fieldPath(path, "portLevelMtls"),
          "portLevelMtls needs a selector with matchLabels; mesh- and namespace-wide policies cannot set port-level mTLS",
        );
      }
    },
  },
);

/**
 * security.istio.io PeerAuthentication spec; `portLevelMtls` maps port numbers (as string keys)
 * to mTLS settings for that port.
 */
export type PeerAuthenticationSpec = Infer<typeof peerAuthenticationSchema>;

// ---------------------------------------------------------------------------------------------
// RequestAuthentication
// ---------------------------------------------------------------------------------------------

function jwksUriCheck(value: string, path: string, report: Reporter): void {
  let url: URL;
  try {
    url = new URL(value);
  } catch {
    report.error(path, `jwksUri ${JSON.stringify(value)} is not a valid URL`);
    return;
  }
  if (url.protocol !== "https:" && url.protocol !== "http:") {
    report.error(
      path,
      `jwksUri scheme ${JSON.stringify(url.protocol.slice(0, -1))} is not supported; use https (or http)`,
    );
  } else if (url.hostname === "") report.error(path, `jwksUri ${JSON.stringify(value)} has no host`);
}

function jwksCheck(value: string, path: string, report: Reporter): void {
  let parsed: unknown;
  try {
    parsed = JSON.parse(value);
  } catch (e) {
    report.error(path, `jwks is not valid JSON: ${e instanceof Error ? e.message : String(e)}`);
    return;
  }
  const keys = (parsed as { keys?: unknown } | null)?.keys;
  if (
    !Array.isArray(keys) ||
    keys.some((k) => typeof k !== "object" || k === null || typeof (k as { kty?: unknown }).kty !== "string")
  ) {
    report.error(path, 'jwks must be a JSON Web Key Set: {"keys": [{"kty": ..., ...}]}');
  }
}

const jwtHeaderSchema = t.object({
  name: t.string({ required: true, check: headerNameCheck }),
  prefix: t.string(),
});

/** Where to find a JWT in a header. */
export type JWTHeader = Infer<typeof jwtHeaderSchema>;

const jwtRuleSchema = t.object(
  {
    issuer: t.string(),
    audiences: nonEmptyStrings,
    jwksUri: t.string({ check: jwksUriCheck }),
    jwks: t.string({ check: jwksCheck }),
    fromHeaders: t.array(jwtHeaderSchema),
    fromParams: nonEmptyStrings,
    outputPayloadToHeader: t.string({ check: headerNameCheck }),
    fromCookies: nonEmptyStrings,
    forwardOriginalToken: t.bool(),
    outputClaimToHeaders: t.array(t.object({
      header: t.string({ required: true, check: headerNameCheck }),
      claim: t.string({ required: true }),
    })),
    timeout: t.duration(),
    spaceDelimitedClaims: nonEmptyStrings,
    presence: t.enum(["OPTIONAL", "REQUIRED"]),
  },
  {
    oneOf: [["jwks", "jwksUri"]],
    check: (rule, path, report) => {
      if (!rule.issuer && !rule.jwksUri) {
        report.error(fieldPath(path, "issuer"), "issuer or jwksUri must be set");
      }
    },
  },
);

/** One accepted JWT issuer and how to verify its tokens. */
export type JWTRule = Infer<typeof jwtRuleSchema>;

const requestAuthenticationSchema = t.object(
  { ...policyTargetFields, jwtRules: t.array(jwtRuleSchema) },
  {
    oneOf: policyTargetOneOf,
    check: (ra, path, report) => {
      const issuers = new Map<string, number>();
      ra.jwtRules?.forEach((rule, i) => {
        if (!rule.issuer) return;
        const first = issuers.get(rule.issuer);
        const at = indexPath(fieldPath(path, "jwtRules"), i);
        if (first !== undefined) {
          report.warning(
            fieldPath(at, "issuer"),
            `issuer ${JSON.stringify(rule.issuer)} is also configured by jwtRules[${first}]`,
          );
        } else issuers.set(rule.issuer, i);
      });
    },
  },
);

/** security.istio.io RequestAuthentication spec. */
export type RequestAuthenticationSpec = Infer<typeof requestAuthenticationSchema>;

// ---------------------------------------------------------------------------------------------
// AuthorizationPolicy
// ---------------------------------------------------------------------------------------------

function ipListCheck(values: readonly string[], path: string, report: Reporter): void {
  values.forEach((v, i) => {
    if (!isIPOrCIDR(v)) {
      report.error(indexPath(path, i), `${JSON.stringify(v)} is not an IP address or CIDR block`);
    }
  });
}

function portListCheck(values: readonly string[], path: string, report: Reporter): void {
  values.forEach((v, i) => {
    const n = /^\d+$/.test(v) ? Number(v) : NaN;
    if (!(n >= 1 && n <= 65535)) {
      report.error(indexPath(path, i), `port ${JSON.stringify(v)} must be a number between 1 and 65535`);
    }
  });
}

const ipList = t.array(t.string({ nonEmpty: true }), { check: ipListCheck });
const portList = t.array(t.string({ nonEmpty: true }), { check: portListCheck });

const sourceSchema = t.object(
  {
    principals: nonEmptyStrings,
    notPrincipals: nonEmptyStrings,
    requestPrincipals: nonEmptyStrings,
    notRequestPrincipals: nonEmptyStrings,
    namespaces: nonEmptyStrings,
    notNamespaces: nonEmptyStrings,
    serviceAccounts: nonEmptyStrings,
    notServiceAccounts: nonEmptyStrings,
    ipBlocks: ipList,
    notIpBlocks: ipList,
    remoteIpBlocks: ipList,
    notRemoteIpBlocks: ipList,
    trustDomains: nonEmptyStrings,
    notTrustDomains: nonEmptyStrings,
  },
  {
    check: (s, path, report) => {
      if (Object.values(s).every((v) => !v?.length)) report.error(path, "source must set at least one field");
      const accounts = s.serviceAccounts?.length
        ? "serviceAccounts"
        : s.notServiceAccounts?.length
        ? "notServiceAccounts"
        : undefined;
      const others = (["principals", "notPrincipals", "namespaces", "notNamespaces"] as const)
        .filter((f) => s[f]?.length);
      if (accounts && others.length > 0) {
        report.error(
          fieldPath(path, accounts),
          `${accounts} cannot be combined with ${others.join(" or ")}`,
        );
      }
    },
  },
);

/** Who a request comes from. */
export type Source = Infer<typeof sourceSchema>;

/** A literal segment of a path template: RFC 3986 path characters, as Envoy accepts them. */
const templateLiteral = /^[a-zA-Z0-9\-._~%!$&'()+,;:@=]+$/;

/**
 * Whether a path uses a template Istio cannot handle, as Istio checks it: whole segments `{*}`
 * (one segment) and `{**}` (any number), no template operator after `{**}` (literal segments
 * may follow it), no other braces, and valid literal segments in a template.
 */
function pathTemplateProblem(path: string): string | undefined {
  const template = path.includes("{*}") || path.includes("{**}");
  if (!template && !/[{}]/.test(path)) return undefined;
  const segments = path.replace(/^\/+|\/+$/g, "").split("/");
  let sawMatchAny = false;
  for (const s of segments) {
    if (s === "{*}" || s === "{**}") {
      if (sawMatchAny) {
        return `invalid or unsupported path template ${JSON.stringify(path)}: ` +
          `${s} after {**}; {**} must be the last operator`;
      }
      sawMatchAny = s === "{**}";
      continue;
    }
    if (/[{}]/.test(s)) {
      return `invalid or unsupported path template ${JSON.stringify(path)}: ` +
        `segment ${JSON.stringify(s)} has '{' or '}' outside {*} and {**}`;
    }
    if (template && !templateLiteral.test(s)) {
      return `invalid or unsupported path template ${JSON.stringify(path)}: ` +
        `segment ${JSON.stringify(s)} is not a valid literal`;
    }
  }
  return undefined;
}

const pathList = t.array(t.string({ nonEmpty: true }), {
  check: (paths, path, report) =>
    paths.forEach((p, i) => {
      const problem = pathTemplateProblem(p);
      if (problem) report.error(indexPath(path, i), problem);
    }),
});

const operationSchema = t.object(
  {
    hosts: nonEmptyStrings,
    notHosts: nonEmptyStrings,
    ports: portList,
    notPorts: portList,
    methods: nonEmptyStrings,
    notMethods: nonEmptyStrings,
    paths: pathList,
    notPaths: pathList,
  },
  {
    check: (op, path, report) => {
      if (Object.values(op).every((v) => !v?.length)) {
        report.error(path, "operation must set at least one field");
      }
    },
  },
);

/** What a request does. */
export type Operation = Infer<typeof operationSchema>;

/** Condition keys AuthorizationPolicy understands; `[name]` stands for a bracketed name. */
export const conditionKeys = [
  "request.headers[name]",
  "source.ip",
  "remote.ip",
  "source.namespace",
  "source.principal",
  "source.trustDomain",
  "request.auth.principal",
  "request.auth.audiences",
  "request.auth.presenter",
  "request.auth.claims[name]",
  "destination.ip",
  "destination.port",
  "connection.sni",
  "experimental.envoy.filters.*",
];

/** Checks a `when` condition key and its values; returns the problem, or undefined. */
function conditionProblem(key: string, values: readonly string[]): string | undefined {
  const bracketed = (prefix: string) => {
    const rest = key.slice(prefix.length);
    return /^(\[[^\[\]]+\])+$/.test(rest) ? undefined : `bad key ${JSON.stringify(key)}: use ${prefix}[NAME]`;
  };
  if (key.startsWith("request.headers")) return bracketed("request.headers");
  if (key.startsWith("request.auth.claims")) return bracketed("request.auth.claims");
  if (key.startsWith("experimental.envoy.filters.")) {
    return /\[[^\]]+\]$/.test(key)
      ? undefined
      : `bad key ${JSON.stringify(key)}: should have the form a.b[c]`;
  }
  switch (key) {
    case "source.ip":
    case "remote.ip":
    case "destination.ip": {
      const bad = values.find((v) => !isIPOrCIDR(v));
      return bad === undefined ? undefined : `${JSON.stringify(bad)} is not an IP address or CIDR block`;
    }
    case "destination.port": {
      const bad = values.find((v) => !(/^\d+$/.test(v) && Number(v) >= 1 && Number(v) <= 65535));
      return bad === undefined
        ? undefined
        : `port ${JSON.stringify(bad)} must be a number between 1 and 65535`;
    }
    case "source.namespace":
    case "source.principal":
    case "source.trustDomain":
    case "request.auth.principal":
    case "request.auth.audiences":
    case "request.auth.presenter":
    case "connection.sni":
      return undefined;
    case "destination.namespace":
      return "destination.namespace is replaced by the policy's metadata.namespace";
    case "destination.name":
    case "destination.user":
      return `${key} is no longer supported`;
  }
  if (key.startsWith("destination.labels")) return "destination.labels is replaced by the policy's selector";
  const plain = conditionKeys.map((k) => k.replace("[name]", "").replace(".*", ""));
  const guess = suggest(key, plain);
  return `unknown condition key ${JSON.stringify(key)}` + (guess ? ` (did you mean ${guess}?)` : "");
}

const conditionSchema = t.object(
  { key: t.string({ required: true }), values: nonEmptyStrings, notValues: nonEmptyStrings },
  {
    check: (c, path, report) => {
      if (!c.values?.length && !c.notValues?.length) {
        report.error(path, `condition on ${c.key} needs values or notValues`);
        return;
      }
      const problem = conditionProblem(c.key, [...(c.values ?? []), ...(c.notValues ?? [])]);
      if (problem) report.error(fieldPath(path, "key"), problem);
      else if (c.key === "source.trustDomain") {
        report.warning(
          fieldPath(path, "key"),
          "the condition key source.trustDomain is not supported by meshd; ignored (an ALLOW rule " +
            "using it never matches, a DENY rule matches without it); use from.source.trustDomains",
        );
      }
    },
  },
);

/** An extra condition on a request attribute. */
export type Condition = Infer<typeof conditionSchema>;

const ruleSchema = t.object({
  from: t.array(t.object({ source: t.required(sourceSchema) }), { minItems: 1 }),
  to: t.array(t.object({ operation: t.required(operationSchema) }), { minItems: 1 }),
  when: t.array(conditionSchema),
});

/** One authorization rule: all of from, to and when must match. */
export type AuthorizationRule = Infer<typeof ruleSchema>;

const authorizationActionSchema = t.enum(["ALLOW", "DENY", "AUDIT", "CUSTOM"]);

/** Authorization actions. */
export type AuthorizationAction = Infer<typeof authorizationActionSchema>;

const authorizationPolicyFields = {
  ...policyTargetFields,
  rules: t.array(ruleSchema),
  action: authorizationActionSchema,
  provider: t.object({ name: t.string() }),
};

const authorizationPolicySchema = t.object(authorizationPolicyFields, {
  oneOf: policyTargetOneOf,
  check: authorizationPolicyCheck,
});

/** security.istio.io AuthorizationPolicy spec. */
export type AuthorizationPolicySpec = Infer<typeof authorizationPolicySchema>;

function authorizationPolicyCheck(
  ap: InferFields<typeof authorizationPolicyFields>,
  path: string,
  report: Reporter,
): void {
  const action = ap.action ?? "ALLOW";
  const at = (f: string) => fieldPath(path, f);
  if (action === "CUSTOM") {
    if (!ap.rules?.length) {
      report.error(
        at("rules"),
        "a CUSTOM policy without rules never triggers; add an empty rule {} to apply it to every request",
      );
    }
    if (!ap.provider?.name) report.error(at("provider"), "a CUSTOM policy needs provider.name");
    ap.rules?.forEach((rule, i) => {
      const rulePath = indexPath(at("rules"), i);
      rule.from?.forEach((from, j) => {
        for (
          const f of [
            "principals",
            "notPrincipals",
            "requestPrincipals",
            "notRequestPrincipals",
            "namespaces",
            "notNamespaces",
          ] as const
        ) {
          if (from.source?.[f]?.length) {
            report.error(
              fieldPath(fieldPath(indexPath(fieldPath(rulePath, "from"), j), "source"), f),
              `${f} is not supported with the CUSTOM action`,
            );
          }
        }
      });
      rule.when?.forEach((c, j) => {
        if (
          c.key === "source.namespace" || c.key === "source.principal" || c.key.startsWith("request.auth.")
        ) {
          report.error(
            fieldPath(indexPath(fieldPath(rulePath, "when"), j), "key"),
            `${c.key} is not supported with the CUSTOM action`,
          );
        }
      });
    });
  } else if (ap.provider) {
    report.error(at("provider"), `provider can only be set with the CUSTOM action, not ${action}`);
  }
  if (action === "DENY" && !ap.rules?.length) {
    report.error(
      at("rules"),
      "a DENY policy without rules never triggers; add an empty rule {} to deny every request",
    );
  }
}

// ---------------------------------------------------------------------------------------------
// Entry points
// ---------------------------------------------------------------------------------------------

/** The API group of these kinds. */
export const securityGroup = "security.istio.io";

/** Versions of security.istio.io meshd accepts. */
export const securityVersions: readonly string[] = ["v1", "v1beta1"];

/** Schemas of the security kinds, by kind. */
export const securitySchemas: Readonly<Record<string, Schema>> = {
  PeerAuthentication: peerAuthenticationSchema,
  RequestAuthentication: requestAuthenticationSchema,
  AuthorizationPolicy: authorizationPolicySchema,
};

/** Validates a PeerAuthentication. */
export function validatePeerAuthentication(r: Resource): Diagnostic[] {
  return checkSchema(r, peerAuthenticationSchema);
}

/** Validates a RequestAuthentication. */
export function validateRequestAuthentication(r: Resource): Diagnostic[] {
  return checkSchema(r, requestAuthenticationSchema);
}

/** Validates an AuthorizationPolicy. */
export function validateAuthorizationPolicy(r: Resource): Diagnostic[] {
  return checkSchema(r, authorizationPolicySchema);
}
