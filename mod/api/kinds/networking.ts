/**
 * networking.istio.io (v1, v1beta1, v1alpha3): the validation galley applies to VirtualService,
 * DestinationRule, Gateway, ServiceEntry, WorkloadEntry, WorkloadGroup and Sidecar, and the typed
 * models pilot consumes. Each model is inferred from its schema (`Infer<typeof schema>`), so a
 * field the schema accepts is a field of the type. Field names are Istio's YAML (protobuf JSON)
 * names.
 *
 * Validation follows Istio's own validation of these kinds (pkg/config/validation): route weights
 * are relative, partial wildcards (`*foo.example.com`) are accepted where Istio accepts them, and
 * values Istio accepts but meshd does not implement are accepted with a warning saying so. Where
 * the two still differ, meshd is stricter (subsets need labels).
 *
 * @module
 */

import { hostCovers, splitNamespacedHost } from "../hosts.ts";
import { re2Error } from "../cel.ts";
import type { Diagnostic, Resource } from "../resource.ts";
import {
  checkSchema,
  fieldPath,
  indexPath,
  type Infer,
  type InferFields,
  isDNS1123Label,
  isIP,
  isIPOrCIDR,
  labelsSchema,
  rangeProblem,
  type Reporter,
  type Schema,
  t,
} from "../schema.ts";

// ---------------------------------------------------------------------------------------------
// Rules shared by several kinds
// ---------------------------------------------------------------------------------------------

/** Port protocols Istio understands (matched case-insensitively, as Istio does). */
export const protocols = [
  "HTTP",
  "HTTPS",
  "HTTP2",
  "GRPC",
  "GRPC-WEB",
  "MONGO",
  "REDIS",
  "MYSQL",
  "TCP",
  "TLS",
  "UDP",
] as const;

const httpProtocols = new Set(["HTTP", "HTTP2", "GRPC", "GRPC-WEB"]);
const tlsProtocols = new Set(["HTTPS", "TLS"]);

/** A port protocol name (case-insensitive), e.g. "HTTP", "grpc"; "" means unset, as in Istio. */
export const protocolSchema = t.string({
  check: (value, path, report) => {
    if (value !== "" && !(protocols as readonly string[]).includes(value.toUpperCase())) {
      report.error(path, `unsupported protocol ${JSON.stringify(value)}; use one of ${protocols.join(", ")}`);
    }
  },
});

/** A port number, 1..65535. */
export const portNumberSchema = t.int({ min: 1, max: 65535 });

const istioLabel = /^[a-zA-Z0-9]([-a-zA-Z0-9]*[a-zA-Z0-9])?$/;

/** True for a DNS label as Istio checks names of subsets, ports and gateways (upper case allowed). */
function isIstioLabel(text: string): boolean {
  return text.length > 0 && text.length <= 63 && istioLabel.test(text);
}

/** Options of {@link hostProblem}. */
export interface HostOptions {
  /**
   * Accept a partial wildcard in the first label (`*foo.example.com`, `*-foo.example.com`), as
   * Istio does for VirtualService, DestinationRule, ServiceEntry and destination hosts. Gateway
   * and Sidecar hosts allow only a whole `*` label.
   */
  readonly partialWildcard?: boolean;
}

/** Istio's first label of a wildcard host: `*`, or `*` or `*-` before a DNS label. */
const partialWildcardLabel = /^\*-?[a-zA-Z0-9]([-a-zA-Z0-9]*[a-zA-Z0-9])?$/;

/**
 * Explains why `host` is not a valid host name, or returns undefined. A wildcard is allowed only
 * as a whole leading label (`*.example.com`, or `*` alone), or with `opts.partialWildcard` at the
 * start of the leading label (`*foo.example.com`); short names (`reviews`) are allowed.
 */
export function hostProblem(host: string, opts: HostOptions = {}): string | undefined {
  if (host === "") return "host must not be empty";
  if (host.length > 255) {
    return `host ${JSON.stringify(host.slice(0, 40) + "…")} is too long (at most 255 characters)`;
  }
  const labels = host.split(".");
  if (labels.length > 1 && labels[labels.length - 1] === "") labels.pop();
  for (let i = 0; i < labels.length; i++) {
    const label = labels[i]!;
    if (label.includes("*")) {
      if (i === 0 && label === "*") continue;
      if (i === 0 && opts.partialWildcard && label.length <= 63 && partialWildcardLabel.test(label)) continue;
      return i === 0
        ? `partial wildcard in host ${JSON.stringify(host)} is not allowed; ` +
          'a wildcard must be a whole leading "*." label'
        : `host ${JSON.stringify(host)}: a wildcard is only allowed as the leading "*." label`;
    }
    if (!isIstioLabel(label)) {
      return `host ${JSON.stringify(host)} is invalid: label ${JSON.stringify(label)} ` +
        "must be 1-63 letters, digits or '-', starting and ending with a letter or digit";
    }
  }
  const tld = labels[labels.length - 1]!;
  if (labels.length > 1 && /^\d+$/.test(tld)) {
    return `host ${JSON.stringify(host)} is invalid: ` +
      `the top-level domain ${JSON.stringify(tld)} cannot be all-numeric`;
  }
  return undefined;
}

/** Explains why `host` is not a fully qualified domain name without wildcards, or returns undefined. */
export function fqdnProblem(host: string): string | undefined {
  if (host.includes("*")) {
    return `host ${JSON.stringify(host)} must be a fully qualified domain name without wildcards`;
  }
  return hostProblem(host);
}

const hostSchema = t.string({
  required: true,
  check: (value, path, report) => {
    const problem = hostProblem(value, { partialWildcard: true });
    if (problem) report.error(path, problem);
  },
});

const percentSchema = t.object({ value: t.number({ min: 0, max: 100 }) });

/** A percentage in 0..100. */
export type Percent = Infer<typeof percentSchema>;

const durationSchema = t.duration();

function regexCheck(value: string, path: string, report: Reporter): void {
  if (value.length > 1024) {
    report.error(path, `regex is too long (${value.length} characters; at most 1024)`);
    return;
  }
  const problem = re2Error(value);
  if (problem) {
    report.error(path, `invalid regex ${JSON.stringify(value)}: ${problem} (Istio uses RE2 syntax)`);
  }
}

const stringMatchSchema = t.object(
  {
    exact: t.string(),
    prefix: t.string(),
    regex: t.string(),
  },
  {
    exactlyOneOf: [["exact", "prefix", "regex"]],
    check: (m, path, report) => {
      if (m.prefix === "") report.error(fieldPath(path, "prefix"), "prefix match must not be empty");
      if (m.regex !== undefined) {
        if (m.regex === "") report.error(fieldPath(path, "regex"), "regex match must not be empty");
        else regexCheck(m.regex, fieldPath(path, "regex"), report);
      }
    },
  },
);

/** A string match: exactly one of exact, prefix or regex (RE2). */
export type StringMatch = Infer<typeof stringMatchSchema>;

const portSelectorSchema = t.object({ number: portNumberSchema });

/** Selects a port of a destination service. */
export type PortSelector = Infer<typeof portSelectorSchema>;

const destinationSchema = t.object(
  {
    host: hostSchema,
    subset: t.string({ check: subsetNameCheck }),
    port: portSelectorSchema,
  },
  {
    check: (d, path, report) => {
      if (d.host === "*") report.error(fieldPath(path, "host"), 'destination host must not be "*"');
    },
  },
);

/** A service (and optionally subset and port) that traffic goes to. */
export type Destination = Infer<typeof destinationSchema>;

function subsetNameCheck(value: string, path: string, report: Reporter): void {
  if (value === "") report.error(path, "subset name must not be empty");
  else if (!isIstioLabel(value)) {
    report.error(
      path,
      `invalid subset name ${JSON.stringify(value)}: use letters, digits and '-' (a DNS-1123 label)`,
    );
  }
}

/** exportTo entries: ".", "*", "~" or namespace names, without contradictions. */
const exportToSchema = t.array(t.string(), {
  check: (entries, path, report) => {
    const seen = new Set<string>();
    const namespace = report.resource.metadata.namespace;
    entries.forEach((entry, i) => {
      const at = indexPath(path, i);
      const key = entry === "." ? namespace : entry;
      if (entry !== "." && entry !== "*" && entry !== "~" && !isDNS1123Label(entry)) {
        report.error(
          at,
          `invalid exportTo entry ${JSON.stringify(entry)}: use ".", "*", "~" or a namespace name`,
        );
      } else if (seen.has(key)) {
        report.error(
          at,
          key === entry
            ? `duplicate exportTo entry ${JSON.stringify(entry)}`
            : `"." duplicates the namespace ${namespace}`,
        );
      }
      seen.add(key);
    });
    if (entries.length > 1 && entries.includes("*")) {
      report.error(path, 'cannot export to "*" (everyone) and to other namespaces');
    }
    if (entries.length > 1 && entries.includes("~")) {
      report.error(path, 'cannot export to "~" (no one) and to other namespaces');
    }
  },
});

/** A gateway reference in a VirtualService: `mesh`, `namespace/name`, or a legacy name. */
function gatewayNameCheck(value: string, path: string, report: Reporter): void {
  if (value === "mesh") return;
  const slash = value.indexOf("/");
  if (slash < 0) {
    const problem = fqdnProblem(value);
    if (problem) {
      report.error(path, `invalid gateway name ${JSON.stringify(value)}: use "namespace/name" or "mesh"`);
    }
    return;
  }
  const ns = value.slice(0, slash);
  const name = value.slice(slash + 1);
  if (!isDNS1123Label(ns)) {
    report.error(
      path,
      `invalid namespace ${JSON.stringify(ns)} in gateway reference ${JSON.stringify(value)}`,
    );
  } else if (!isIstioLabel(name)) {
    report.error(path, `invalid gateway name ${JSON.stringify(name)} in ${JSON.stringify(value)}`);
  }
}

const gatewayNamesSchema = t.array(t.string({ check: gatewayNameCheck }));

const networkingSelectorSchema = t.object(
  { labels: labelsSchema() },
  {
    check: (s, path, report) => {
      if (!s.labels || Object.keys(s.labels).length === 0) {
        report.warning(path, "workload selector has no labels; it selects every workload in the namespace");
      }
    },
  },
);

/** Workload selector of networking kinds (`labels`). */
export type WorkloadSelector = Infer<typeof networkingSelectorSchema>;

/** istio.type.v1beta1 WorkloadSelector (`matchLabels`), shared with the security and telemetry kinds. */
export const matchLabelsSelectorSchema = t.object(
  { matchLabels: labelsSchema() },
  {
    check: (s, path, report) => {
      if (!s.matchLabels || Object.keys(s.matchLabels).length === 0) {
        report.warning(path, "selector has no matchLabels; it selects every workload in the namespace");
      }
    },
  },
);

/** Workload selector of istio.type.v1beta1 (`matchLabels`). */
export type MatchLabelsSelector = Infer<typeof matchLabelsSelectorSchema>;

function unixPathProblem(address: string): string | undefined {
  const path = address.slice("unix://".length);
  if (path === "") return "unix address must not be empty";
  if (path.startsWith("@")) return undefined;
  if (!path.startsWith("/") || path.endsWith("/")) return `${path} is not an absolute path to a file`;
  return undefined;
}

// ---------------------------------------------------------------------------------------------
// VirtualService
// ---------------------------------------------------------------------------------------------

const validHTTPMethods = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "CONNECT", "OPTIONS", "TRACE"];

/** retryOn values: Envoy's x-envoy-retry-on and x-envoy-retry-grpc-on policies. */
export const retryOnPolicies = [
  "5xx",
  "gateway-error",
  "reset",
  "reset-before-request",
  "connect-failure",
  "envoy-ratelimited",
  "retriable-4xx",
  "refused-stream",
  "retriable-status-codes",
  "retriable-headers",
  "http3-post-connect-failure",
  "cancelled",
  "deadline-exceeded",
  "internal",
  "resource-exhausted",
  "unavailable",
];

const grpcStatusValues = [
  "OK",
  "CANCELLED",
  "UNKNOWN",
  "INVALID_ARGUMENT",
  "DEADLINE_EXCEEDED",
  "NOT_FOUND",
  "ALREADY_EXISTS",
  "PERMISSION_DENIED",
  "RESOURCE_EXHAUSTED",
  "FAILED_PRECONDITION",
  "ABORTED",
  "OUT_OF_RANGE",
  "UNIMPLEMENTED",
  "INTERNAL",
  "UNAVAILABLE",
  "DATA_LOSS",
  "UNAUTHENTICATED",
] as const;

/** gRPC status code names, as fault injection's grpcStatus spells them. */
export const grpcStatusNames: readonly string[] = grpcStatusValues;

function headerMatchNameCheck(name: string, path: string, report: Reporter): void {
  if (name === "") report.error(path, "header name must not be empty");
  else if (name.startsWith("@request.auth.claims")) return;
  else if (name !== name.toLowerCase()) {
    report.error(path, `header name ${JSON.stringify(name)} must be lower case`);
  } else if (!/^[-_a-z0-9]+$/.test(name)) {
    report.error(path, `${JSON.stringify(name)} is not a valid header name`);
  }
}

function headerValueCheck(value: string, path: string, report: Reporter): void {
  // deno-lint-ignore no-control-regex
  if (/[\x00-\x08\x0a-\x1f\x7f]/.test(value)) {
    report.error(path, "header value must not contain control characters");
    return;
  }
  let open = false;
  for (let i = 0; i < value.length; i++) {
    if (value[i] !== "%") continue;
    if (!open && value[i + 1] === "%") {
      i++;
      continue;
    }
    open = !open;
  }
  if (open) {
    report.error(
      path,
      `header value ${JSON.stringify(value)} has an unmatched '%'; write "%%" for a literal percent sign`,
    );
  }
}

function headerOperationsSchema(direction: "request" | "response") {
  const nameCheck = (allowAuthority: boolean) => (name: string, path: string, report: Reporter) => {
    const lower = name.toLowerCase();
    if (name === "") report.error(path, "header name must not be empty");
    else if (allowAuthority && (lower === "host" || lower === ":authority")) return;
    else if (lower === "host") {
      report.error(path, `invalid header ${JSON.stringify(name)}: cannot set the Host header here`);
    } else if (name.startsWith(":")) {
      report.error(path, `invalid header ${JSON.stringify(name)}: header names cannot start with ":"`);
    }
  };
  const valuesMap = (allowAuthority: boolean) =>
    t.map(t.string({ check: headerValueCheck }), { key: nameCheck(allowAuthority) });
  return t.object({
    set: valuesMap(direction === "request"),
    add: valuesMap(direction === "request"),
    remove: t.array(t.string({ check: nameCheck(false) })),
  });
}

/** Header manipulations for one direction. */
export type HeaderOperations = Infer<ReturnType<typeof headerOperationsSchema>>;

const headersSchema = t.object({
  request: headerOperationsSchema("request"),
  response: headerOperationsSchema("response"),
});

/** Request and response header manipulations. */
export type Headers = Infer<typeof headersSchema>;

const httpMatchSchema = t.object({
  name: t.string(),
  uri: stringMatchSchema,
  scheme: stringMatchSchema,
  method: stringMatchSchema,
  authority: stringMatchSchema,
  headers: t.map(stringMatchSchema, { key: headerMatchNameCheck }),
  port: portNumberSchema,
  sourceLabels: labelsSchema(),
  gateways: gatewayNamesSchema,
  queryParams: t.map(stringMatchSchema),
  ignoreUriCase: t.bool(),
  withoutHeaders: t.map(stringMatchSchema, { key: headerMatchNameCheck }),
  sourceNamespace: t.string({
    check: (v, path, report) => {
      if (!isDNS1123Label(v)) {
        report.error(path, `sourceNamespace ${JSON.stringify(v)} is not a valid namespace name`);
      }
    },
  }),
  statPrefix: t.string(),
});

/** Conditions an HTTP request must meet for a route to apply. */
export type HTTPMatchRequest = Infer<typeof httpMatchSchema>;

/** A route weight: Istio's int32, never negative. */
const weightSchema = t.int({
  min: 0,
  check: (w, path, report) => {
    const problem = rangeProblem(w, 0, 2 ** 31 - 1);
    if (problem) report.error(path, problem);
  },
});

/**
 * Weights are relative, as in Istio: each destination gets its weight's share of the sum, so they
 * need not add up to 100; with more than one destination the sum must not be 0.
 */
function weightsCheck(
  routes: readonly { readonly weight?: number }[],
  path: string,
  report: Reporter,
): void {
  if (routes.length === 1) {
    const w = routes[0]!.weight;
    if (w !== undefined && w !== 100 && w !== 0) {
      report.warning(
        indexPath(path, 0) + ".weight",
        `a single destination receives all traffic; weight ${w} has no effect`,
      );
    }
    return;
  }
  const total = routes.reduce((sum, r) => sum + (r.weight ?? 0), 0);
  if (total === 0) {
    const unset = routes.some((r) => r.weight === undefined)
      ? " (destinations without a weight count as 0)"
      : "";
    report.error(path, `the route weights add up to 0; give at least one destination a weight${unset}`);
  }
}

const httpRouteDestinationSchema = t.object({
  destination: t.required(destinationSchema),
  weight: weightSchema,
  headers: headersSchema,
});

/** A weighted HTTP destination. */
export type HTTPRouteDestination = Infer<typeof httpRouteDestinationSchema>;

const routeDestinationSchema = t.object({
  destination: t.required(destinationSchema),
  weight: weightSchema,
});

/** A weighted TCP/TLS destination. */
export type RouteDestination = Infer<typeof routeDestinationSchema>;

const httpRedirectSchema = t.object(
  {
    uri: t.string(),
    authority: t.string(),
    port: portNumberSchema,
    derivePort: t.enum(["FROM_PROTOCOL_DEFAULT", "FROM_REQUEST_PORT"]),
    scheme: t.enum(["http", "https"]),
    redirectCode: t.int({ min: 300, max: 399 }),
    prefixRewrite: t.string(),
  },
  {
    oneOf: [["port", "derivePort"], ["uri", "prefixRewrite"]],
    check: (r, path, report) => {
      if (!r.uri && !r.authority && r.port === undefined && !r.derivePort && !r.scheme && !r.prefixRewrite) {
        report.error(path, "redirect must set uri, authority, scheme or port");
      }
    },
  },
);

/** An HTTP redirect response. */
export type HTTPRedirect = Infer<typeof httpRedirectSchema>;

const httpBodySchema = t.object({ string: t.string(), bytes: t.string() }, { oneOf: [["string", "bytes"]] });

/** A response body: a string or base64 bytes. */
export type HTTPBody = Infer<typeof httpBodySchema>;

const httpDirectResponseSchema = t.object(
  {
    status: t.int({ required: true, min: 200, max: 599 }),
    body: httpBodySchema,
  },
  {
    check: (d, path, report) => {
      const size = d.body?.string?.length ?? Math.floor(((d.body?.bytes?.length ?? 0) * 3) / 4);
      if (size > 1024 * 1024) {
        report.error(fieldPath(path, "body"), "direct response body must be smaller than 1MB");
      } else if (size > 100 * 1024) {
        report.warning(fieldPath(path, "body"), "large direct response bodies slow down config distribution");
      }
    },
  },
);

/** A fixed response sent without contacting a destination. */
export type HTTPDirectResponse = Infer<typeof httpDirectResponseSchema>;

const delegateSchema = t.object({ name: t.string({ required: true }), namespace: t.string() });

/** Delegation to another VirtualService. */
export type Delegate = Infer<typeof delegateSchema>;

const regexRewriteSchema = t.object({
  match: t.string({ required: true, check: regexCheck }),
  rewrite: t.string({ required: true }),
});

/** Regex rewrite of the URI. */
export type RegexRewrite = Infer<typeof regexRewriteSchema>;

const httpRewriteSchema = t.object(
  {
    uri: t.string(),
    authority: t.string(),
    uriRegexRewrite: regexRewriteSchema,
  },
  {
    oneOf: [["uri", "uriRegexRewrite"]],
    check: (r, path, report) => {
      if (!r.uri && !r.uriRegexRewrite && !r.authority) {
        report.error(path, "rewrite must set uri, uriRegexRewrite or authority");
      }
    },
  },
);

/** URI and authority rewrites before forwarding. */
export type HTTPRewrite = Infer<typeof httpRewriteSchema>;

const httpRetrySchema = t.object(
  {
    attempts: t.int({ min: 0 }),
    perTryTimeout: durationSchema,
    retryOn: t.string({
      check: (value, path, report) => {
        for (const policy of value.split(",").map((p) => p.trim())) {
          if (/^\d+$/.test(policy)) {
            const code = Number(policy);
            if (code < 100 || code > 599) {
              report.error(path, `${JSON.stringify(policy)} is not an HTTP status code`);
            }
          } else if (!retryOnPolicies.includes(policy)) {
            report.error(
              path,
              `${JSON.stringify(policy)} is not a valid retryOn policy; ` +
                `use ${retryOnPolicies.join(", ")} or HTTP status codes`,
            );
          }
        }
      },
    }),
    retryRemoteLocalities: t.bool(),
    retryIgnorePreviousHosts: t.bool(),
    backoff: durationSchema,
  },
  {
    check: (r, path, report) => {
      if (
        r.attempts === 0 &&
        (r.perTryTimeout !== undefined || r.retryOn !== undefined || r.retryRemoteLocalities !== undefined)
      ) {
        report.error(
          fieldPath(path, "attempts"),
          "retry policy is configured but attempts is 0 (retries disabled)",
        );
      }
    },
  },
);

/** Retry policy. */
export type HTTPRetry = Infer<typeof httpRetrySchema>;

const httpFaultDelaySchema = t.object(
  {
    fixedDelay: durationSchema,
    exponentialDelay: durationSchema,
    percentage: percentSchema,
    percent: t.int({ min: 0, max: 100 }),
  },
  {
    oneOf: [["fixedDelay", "exponentialDelay"], ["percentage", "percent"]],
    check: (d, path, report) => {
      if (d.exponentialDelay !== undefined) {
        report.error(
          fieldPath(path, "exponentialDelay"),
          "exponentialDelay is not supported; use fixedDelay",
        );
      } else if (d.fixedDelay === undefined) report.error(path, "delay needs fixedDelay");
      if (d.percent !== undefined) {
        report.warning(fieldPath(path, "percent"), '"percent" is deprecated; use "percentage"');
      }
    },
  },
);

/** Delay injection (`percent` is deprecated: use percentage). */
export type HTTPFaultDelay = Infer<typeof httpFaultDelaySchema>;

const httpFaultAbortSchema = t.object(
  {
    httpStatus: t.int({ min: 200, max: 599 }),
    grpcStatus: t.enum(grpcStatusValues),
    http2Error: t.string(),
    percentage: percentSchema,
  },
  {
    oneOf: [["httpStatus", "grpcStatus", "http2Error"]],
    check: (a, path, report) => {
      if (a.http2Error !== undefined) {
        report.error(
          fieldPath(path, "http2Error"),
          "http2Error aborts are not supported; use httpStatus or grpcStatus",
        );
      } else if (a.httpStatus === undefined && a.grpcStatus === undefined) {
        report.error(path, "abort needs httpStatus (200..599) or grpcStatus");
      }
    },
  },
);

/** Abort injection. */
export type HTTPFaultAbort = Infer<typeof httpFaultAbortSchema>;

const httpFaultSchema = t.object(
  { delay: httpFaultDelaySchema, abort: httpFaultAbortSchema },
  {
    check: (f, path, report) => {
      if (!f.delay && !f.abort) report.error(path, "fault injection needs a delay, an abort or both");
    },
  },
);

/** Fault injection. */
export type HTTPFaultInjection = Infer<typeof httpFaultSchema>;

const corsHeaderCheck = (name: string, path: string, report: Reporter) => {
  if (name === "*") return;
  if (!/^[-_A-Za-z0-9]+$/.test(name)) {
    report.error(path, `${JSON.stringify(name)} is not a valid header name`);
  }
};

const corsPolicySchema = t.object(
  {
    allowOrigin: t.array(t.string()),
    allowOrigins: t.array(stringMatchSchema),
    allowMethods: t.array(t.string({
      check: (m, path, report) => {
        if (m !== "*" && !validHTTPMethods.includes(m)) {
          report.error(
            path,
            `${JSON.stringify(m)} is not an HTTP method; use ${validHTTPMethods.join(", ")}`,
          );
        }
      },
    })),
    allowHeaders: t.array(t.string({ check: corsHeaderCheck })),
    exposeHeaders: t.array(t.string({ check: corsHeaderCheck })),
    maxAge: t.duration({ precision: "s", min: "1s" }),
    allowCredentials: t.bool(),
    unmatchedPreflights: t.enum(["UNSPECIFIED", "FORWARD", "IGNORE"]),
  },
  {
    check: (c, path, report) => {
      if (c.allowOrigin) {
        report.warning(fieldPath(path, "allowOrigin"), '"allowOrigin" is deprecated; use "allowOrigins"');
      }
    },
  },
);

/** CORS policy (`allowOrigin` is deprecated: use allowOrigins). */
export type CorsPolicy = Infer<typeof corsPolicySchema>;

const httpMirrorPolicySchema = t.object({
  destination: t.required(destinationSchema),
  percentage: percentSchema,
});

/** Traffic mirroring to one destination. */
export type HTTPMirrorPolicy = Infer<typeof httpMirrorPolicySchema>;

const httpRouteFields = {
  name: t.string(),
  match: t.array(httpMatchSchema),
  route: t.array(httpRouteDestinationSchema, { check: weightsCheck }),
  redirect: httpRedirectSchema,
  directResponse: httpDirectResponseSchema,
  delegate: delegateSchema,
  rewrite: httpRewriteSchema,
  timeout: durationSchema,
  retries: httpRetrySchema,
  fault: httpFaultSchema,
  mirror: destinationSchema,
  mirrors: t.array(httpMirrorPolicySchema),
  mirrorPercent: t.int({ min: 0, max: 100 }),
  mirrorPercentage: percentSchema,
  corsPolicy: corsPolicySchema,
  headers: headersSchema,
};

const httpRouteSchema = t.object(httpRouteFields, { check: httpRouteCheck });

/** One HTTP route rule (`mirrorPercent` is deprecated: use mirrorPercentage). */
export type HTTPRoute = Infer<typeof httpRouteSchema>;

function httpRouteCheck(h: InferFields<typeof httpRouteFields>, path: string, report: Reporter): void {
  const has = (v: unknown) => v !== undefined;
  const at = (field: string) => fieldPath(path, field);
  const hasRoute = (h.route?.length ?? 0) > 0;
  if (has(h.redirect) && hasRoute) {
    report.error(at("redirect"), "an HTTP route cannot have both route and redirect");
  }
  if (has(h.directResponse) && hasRoute) {
    report.error(at("directResponse"), "an HTTP route cannot have both route and directResponse");
  }
  if (has(h.directResponse) && has(h.redirect)) {
    report.error(at("directResponse"), "an HTTP route cannot have both redirect and directResponse");
  }
  if (has(h.delegate) && (hasRoute || has(h.redirect) || has(h.directResponse))) {
    report.error(
      at("delegate"),
      "an HTTP route with delegate cannot also have route, redirect or directResponse",
    );
  }
  if (has(h.redirect) && has(h.fault)) {
    report.error(at("fault"), "an HTTP route cannot have both fault and redirect");
  }
  if (has(h.redirect) && has(h.rewrite)) {
    report.error(at("rewrite"), "an HTTP route cannot have both rewrite and redirect");
  }
  if (has(h.directResponse) && has(h.fault)) {
    report.error(at("fault"), "an HTTP route cannot have both fault and directResponse");
  }
  if (has(h.directResponse) && has(h.rewrite)) {
    report.error(at("rewrite"), "an HTTP route cannot have both rewrite and directResponse");
  }
  if (h.redirect?.prefixRewrite) {
    h.match?.forEach((m, i) => {
      if (m.uri !== undefined && m.uri.prefix === undefined) {
        report.error(
          fieldPath(indexPath(at("match"), i), "uri"),
          "redirect.prefixRewrite needs every URI match to be a prefix match",
        );
      }
    });
  }
  if (!hasRoute && !has(h.redirect) && !has(h.directResponse) && !has(h.delegate)) {
    report.error(path, "an HTTP route needs route, redirect, directResponse or delegate");
  }
  if (has(h.mirror) && has(h.mirrors)) {
    report.error(at("mirrors"), "only one of mirror or mirrors may be set");
  }
  if (has(h.mirrorPercent)) {
    report.warning(at("mirrorPercent"), '"mirrorPercent" is deprecated; use "mirrorPercentage"');
  }
  const authoritySets = [
    h.rewrite?.authority,
    ...Object.entries({ ...h.headers?.request?.set, ...h.headers?.request?.add })
      .filter(([k]) => [":authority", "host"].includes(k.toLowerCase()))
      .map(([, v]) => v),
  ].filter((v) => v !== undefined && v !== "");
  if (authoritySets.length > 1) {
    report.error(
      at("headers"),
      "the authority is rewritten more than once (rewrite.authority and a Host/:authority header)",
    );
  }
}

const tlsMatchSchema = t.object({
  sniHosts: t.array(t.string({ required: true }), { required: true, minItems: 1 }),
  destinationSubnets: t.array(t.string({ check: cidrCheck })),
  port: portNumberSchema,
  sourceLabels: labelsSchema(),
  gateways: gatewayNamesSchema,
  sourceNamespace: t.string(),
});

/** Match conditions of a TLS route (by SNI). */
export type TLSMatchAttributes = Infer<typeof tlsMatchSchema>;

const l4MatchSchema = t.object({
  destinationSubnets: t.array(t.string({ check: cidrCheck })),
  port: portNumberSchema,
  sourceSubnet: t.string({ check: cidrCheck }),
  sourceLabels: labelsSchema(),
  gateways: gatewayNamesSchema,
  sourceNamespace: t.string(),
});

/** L4 match conditions of a TCP route. */
export type L4MatchAttributes = Infer<typeof l4MatchSchema>;

function cidrCheck(value: string, path: string, report: Reporter): void {
  if (!isIPOrCIDR(value)) report.error(path, `${JSON.stringify(value)} is not an IP address or CIDR block`);
}

const routesSchema = t.array(routeDestinationSchema, {
  required: true,
  minItems: 1,
  check: weightsCheck,
});

const tlsRouteSchema = t.object({
  match: t.array(tlsMatchSchema, { required: true, minItems: 1 }),
  route: routesSchema,
});

/** A TLS passthrough route rule. */
export type TLSRoute = Infer<typeof tlsRouteSchema>;

const tcpRouteSchema = t.object({ match: t.array(l4MatchSchema), route: routesSchema });

/** An opaque TCP route rule. */
export type TCPRoute = Infer<typeof tcpRouteSchema>;

const virtualServiceFields = {
  hosts: t.array(t.string()),
  gateways: gatewayNamesSchema,
  http: t.array(httpRouteSchema),
  tls: t.array(tlsRouteSchema),
  tcp: t.array(tcpRouteSchema),
  exportTo: exportToSchema,
};

const virtualServiceSchema = t.object(virtualServiceFields, { check: virtualServiceCheck });

/** networking.istio.io VirtualService spec. */
export type VirtualServiceSpec = Infer<typeof virtualServiceSchema>;

function virtualServiceCheck(
  vs: InferFields<typeof virtualServiceFields>,
  path: string,
  report: Reporter,
): void {
  const hosts = vs.hosts ?? [];
  const gateways = vs.gateways ?? [];
  const boundToGateway = gateways.length > 0 && !gateways.includes("mesh");
  const appliesToMesh = gateways.length === 0 || gateways.includes("mesh");
  if (hosts.length === 0) {
    if (gateways.length > 0) {
      report.error(fieldPath(path, "gateways"), "a delegate VirtualService (no hosts) cannot have gateways");
    }
    if (vs.tls?.length) {
      report.error(fieldPath(path, "tls"), "a delegate VirtualService (no hosts) cannot have tls routes");
    }
    if (vs.tcp?.length) {
      report.error(fieldPath(path, "tcp"), "a delegate VirtualService (no hosts) cannot have tcp routes");
    }
    vs.http?.forEach((route, i) => {
      if (route.delegate) {
        report.error(
          fieldPath(indexPath(fieldPath(path, "http"), i), "delegate"),
          "a delegate VirtualService (no hosts) cannot delegate again; give it hosts to make it a root",
        );
      }
    });
  }
  let hostsValid = true;
  hosts.forEach((host, i) => {
    const at = indexPath(fieldPath(path, "hosts"), i);
    if (isIP(host)) return;
    const problem = hostProblem(host, { partialWildcard: true });
    if (problem) {
      report.error(at, problem);
      hostsValid = false;
    } else if (host === "*" && appliesToMesh) {
      report.error(at, 'wildcard host "*" is not allowed for virtual services bound to the mesh');
      hostsValid = false;
    }
  });
  if (hostsValid) {
    for (let i = 0; i < hosts.length; i++) {
      for (let j = i + 1; j < hosts.length; j++) {
        const a = hosts[i]!;
        const b = hosts[j]!;
        if (hostCovers(a, b) || hostCovers(b, a)) {
          report.error(
            indexPath(fieldPath(path, "hosts"), j),
            `duplicate hosts in virtual service: ${a} and ${b}`,
          );
        }
      }
    }
  }
  if (!vs.http?.length && !vs.tcp?.length && !vs.tls?.length) {
    report.error(path, "a VirtualService needs http, tcp or tls routes");
  }
  if (!boundToGateway) {
    vs.http?.forEach((route, i) =>
      route.match?.forEach((m, j) => {
        for (const key of [...Object.keys(m.headers ?? {}), ...Object.keys(m.withoutHeaders ?? {})]) {
          if (key.startsWith("@request.auth.claims")) {
            report.error(
              indexPath(fieldPath(indexPath(fieldPath(path, "http"), i), "match"), j),
              `JWT claim based routing (${key}) is only supported for virtual services bound to gateways`,
            );
          }
        }
      })
    );
  }
  vs.tls?.forEach((route, i) =>
    route.match.forEach((m, j) =>
      m.sniHosts.forEach((sni, k) => {
        const at = indexPath(
          fieldPath(indexPath(fieldPath(indexPath(fieldPath(path, "tls"), i), "match"), j), "sniHosts"),
          k,
        );
        const problem = boundToGateway && sni.startsWith("outbound_")
          ? outboundSNIProblem(sni)
          : hostProblem(sni, { partialWildcard: true });
        if (problem) {
          if (isIP(sni)) {
            report.warning(
              at,
              `SNI host ${JSON.stringify(sni)} is an IP address, which the SNI specification forbids; ` +
                "most clients never send it",
            );
          } else report.error(at, problem);
          return;
        }
        if (hosts.length > 0 && !hosts.some((h) => hostCovers(h, sni))) {
          report.error(
            at,
            `SNI host ${JSON.stringify(sni)} is not covered by any host of the virtual service ` +
              `(${hosts.join(", ")})`,
          );
        }
      })
    )
  );
}

/**
 * Explains why `sni` is not an SNI name in the form gateways in AUTO_PASSTHROUGH mode see
 * (`outbound_.PORT_._.HOST`, e.g. `outbound_.80_._.reviews.default.svc.cluster.local`), or
 * returns undefined.
 */
export function outboundSNIProblem(sni: string): string | undefined {
  const format = "outbound_.<port>_._.<hostname>";
  const parts = sni.split("_");
  if (sni.length > 255) {
    return `SNI host ${JSON.stringify(sni.slice(0, 40) + "…")} is too long (at most 255 characters)`;
  }
  if (parts.length < 4 || parts[0] !== "outbound") {
    return `SNI host ${JSON.stringify(sni)} is invalid; it should follow the ${format} format`;
  }
  const port = parts[1]!.replace(/^\.+|\.+$/g, "");
  const hostname = parts.slice(3).join("_").replace(/^\.+|\.+$/g, "");
  if (!/^\d+$/.test(port)) {
    return `SNI host ${JSON.stringify(sni)} is invalid: port ${JSON.stringify(port)} is not a number; ` +
      `it should follow the ${format} format`;
  }
  const problem = hostname === ""
    ? "the host name is empty"
    : hostProblem(hostname, { partialWildcard: true });
  return problem
    ? `SNI host ${JSON.stringify(sni)} is invalid (${problem}); it should follow the ${format} format`
    : undefined;
}

// ---------------------------------------------------------------------------------------------
// DestinationRule
// ---------------------------------------------------------------------------------------------

function isPrime(n: number): boolean {
  if (n < 2) return false;
  if (n < 4) return true;
  if (n % 2 === 0) return false;
  for (let f = 3; f * f <= n; f += 2) if (n % f === 0) return false;
  return true;
}

const consistentHashSchema = t.object(
  {
    httpHeaderName: t.string({ nonEmpty: true }),
    httpCookie: t.object({
      name: t.string({ required: true }),
      path: t.string(),
      ttl: t.duration({ min: "0" }),
      attributes: t.array(t.object({ name: t.string({ required: true }), value: t.string() })),
    }),
    useSourceIp: t.bool(),
    httpQueryParameterName: t.string({ nonEmpty: true }),
    ringHash: t.object({ minimumRingSize: t.int({ min: 0 }) }),
    maglev: t.object({
      tableSize: t.int({
        required: true,
        min: 1,
        max: 5000010,
        check: (n, path, report) => {
          if (!isPrime(n)) report.error(path, `maglev tableSize must be a prime number, got ${n}`);
        },
      }),
    }),
    minimumRingSize: t.int({ min: 0 }),
  },
  {
    exactlyOneOf: [["httpHeaderName", "httpCookie", "useSourceIp", "httpQueryParameterName"]],
    oneOf: [["ringHash", "maglev", "minimumRingSize"]],
    check: (c, path, report) => {
      if (c.minimumRingSize !== undefined) {
        report.warning(
          fieldPath(path, "minimumRingSize"),
          '"minimumRingSize" is deprecated; use ringHash.minimumRingSize',
        );
      }
    },
  },
);

/** Consistent-hash load balancing (`minimumRingSize` is deprecated: use ringHash.minimumRingSize). */
export type ConsistentHashLB = Infer<typeof consistentHashSchema>;

function localitySegments(locality: string): string[] | string {
  const parts = locality.split("/");
  if (parts.length > 3) return `locality ${JSON.stringify(locality)} has more than region/zone/subzone`;
  if (parts.some((p) => p === "")) {
    return `locality ${JSON.stringify(locality)} must not contain empty region, zone or subzone`;
  }
  const stars = (locality.match(/\*/g) ?? []).length;
  if (stars > 1 || (stars === 1 && parts[parts.length - 1] !== "*")) {
    return `locality ${JSON.stringify(locality)}: a wildcard '*' may appear once, as the whole last part`;
  }
  return parts;
}

function localitiesOverlap(a: readonly string[], b: readonly string[]): boolean {
  for (let i = 0; i < Math.min(a.length, b.length); i++) {
    if (a[i] === "*" || b[i] === "*") return true;
    if (a[i] !== b[i]) return false;
  }
  return true;
}

function localityListCheck(localities: readonly { value: string; path: string }[], report: Reporter): void {
  const seen: { parts: string[]; value: string }[] = [];
  for (const { value, path } of localities) {
    const parts = localitySegments(value);
    if (typeof parts === "string") {
      report.error(path, parts);
      continue;
    }
    const clash = seen.find((s) => localitiesOverlap(s.parts, parts));
    if (clash) {
      report.error(path, `locality ${JSON.stringify(value)} overlaps with ${JSON.stringify(clash.value)}`);
    }
    seen.push({ parts, value });
  }
}

const localityLbSchema = t.object(
  {
    distribute: t.array(t.object({
      from: t.string({ required: true }),
      to: t.map(t.int({ min: 1, max: 100 }), { required: true, minEntries: 1 }),
    })),
    failover: t.array(t.object({ from: t.string({ required: true }), to: t.string({ required: true }) })),
    failoverPriority: t.array(t.string({ nonEmpty: true })),
    enabled: t.bool(),
  },
  {
    check: (lb, path, report) => {
      if (lb.distribute?.length && lb.failover?.length) {
        report.error(fieldPath(path, "failover"), "distribute and failover cannot both be set");
        return;
      }
      const distributePath = fieldPath(path, "distribute");
      lb.distribute?.forEach((d, i) => {
        const at = indexPath(distributePath, i);
        const total = Object.values(d.to ?? {}).reduce((s, w) => s + w, 0);
        if (total !== 100) {
          report.error(fieldPath(at, "to"), `locality weights must add up to 100, got ${total}`);
        }
        localityListCheck(
          Object.keys(d.to ?? {}).map((value) => ({ value, path: fieldPath(fieldPath(at, "to"), value) })),
          report,
        );
      });
      localityListCheck(
        (lb.distribute ?? []).map((d, i) => ({
          value: d.from ?? "",
          path: fieldPath(indexPath(distributePath, i), "from"),
        })),
        report,
      );
      lb.failover?.forEach((f, i) => {
        const at = indexPath(fieldPath(path, "failover"), i);
        if (f.from === f.to) report.error(at, "failover from and to must be different regions");
        for (const side of ["from", "to"] as const) {
          const v = f[side] ?? "";
          if (v.includes("/")) {
            report.error(
              fieldPath(at, side),
              `failover names regions only; ${JSON.stringify(v)} contains '/'`,
            );
          } else if (v.includes("*")) {
            report.error(fieldPath(at, side), "failover regions cannot contain '*'");
          }
        }
      });
      const topology = [
        "topology.kubernetes.io/region",
        "topology.kubernetes.io/zone",
        "topology.istio.io/subzone",
      ];
      if (lb.failover?.length && lb.failoverPriority?.some((p) => topology.includes(p))) {
        report.error(
          fieldPath(path, "failoverPriority"),
          "failover and topology labels in failoverPriority cannot be combined",
        );
      }
    },
  },
);

/** Locality-weighted load balancing. */
export type LocalityLoadBalancerSetting = Infer<typeof localityLbSchema>;

const simpleLBSchema = t.enum([
  "UNSPECIFIED",
  "LEAST_CONN",
  "RANDOM",
  "PASSTHROUGH",
  "ROUND_ROBIN",
  "LEAST_REQUEST",
]);

/** Simple load-balancing algorithms. */
export type SimpleLB = Infer<typeof simpleLBSchema>;

const loadBalancerSchema = t.object(
  {
    simple: simpleLBSchema,
    consistentHash: consistentHashSchema,
    localityLbSetting: localityLbSchema,
    zoneAwareLbSetting: t.object({
      enabled: t.bool(),
      failover: t.array(t.object({ from: t.string(), to: t.string() })),
      failoverPriority: t.array(t.string()),
      minClusterSize: t.int({ min: 0 }),
    }, {
      check: (z, path, report) => {
        // Istio orders endpoints into region priorities for zone-aware balancing; meshd turns
        // on Envoy's zone-aware routing only, inside one priority.
        const refuse = (at: string, name: string) =>
          report.warning(
            at,
            `zoneAwareLbSetting.${name} is not supported by meshd; ignored (use localityLbSetting.${name})`,
          );
        if (z.failoverPriority !== undefined) refuse(fieldPath(path, "failoverPriority"), "failoverPriority");
        z.failover?.forEach((f, i) => {
          const at = indexPath(fieldPath(path, "failover"), i);
          // Both parts are named, so that neither reads as honoured.
          if (f.from !== undefined) refuse(fieldPath(at, "from"), "failover");
          if (f.to !== undefined) refuse(fieldPath(at, "to"), "failover");
        });
      },
    }),
    warmupDurationSecs: durationSchema,
    warmup: t.object({
      duration: t.duration({ required: true }),
      minimumPercent: t.number({ min: 0, max: 100 }),
      aggression: t.number({ min: 1 }),
    }),
    backendUtilization: t.object({
      errorUtilizationPenaltyPercent: t.int({ min: 0 }),
      metricNamesForComputingUtilization: t.array(t.string({ nonEmpty: true })),
      weightExpirationPeriod: durationSchema,
      weightStabilizationPeriod: durationSchema,
      weightUpdatePeriod: durationSchema,
    }),
  },
  {
    oneOf: [["simple", "consistentHash", "backendUtilization"], ["warmupDurationSecs", "warmup"]],
    check: (lb, path, report) => {
      if (lb.backendUtilization) {
        report.warning(
          fieldPath(path, "backendUtilization"),
          "backendUtilization is not supported by meshd; ignored (endpoints are balanced round robin)",
        );
      }
      if (lb.simple === "LEAST_CONN") {
        report.warning(fieldPath(path, "simple"), "LEAST_CONN is deprecated; use LEAST_REQUEST");
      }
    },
  },
);

/**
 * Load-balancer settings: `simple` or `consistentHash`, optionally locality- or zone-aware, with
 * slow-start `warmup` (or the older `warmupDurationSecs`).
 */
export type LoadBalancerSettings = Infer<typeof loadBalancerSchema>;

const connectionPoolSchema = t.object(
  {
    tcp: t.object({
      maxConnections: t.int({ min: 0 }),
      connectTimeout: durationSchema,
      tcpKeepalive: t.object({ probes: t.int({ min: 0 }), time: durationSchema, interval: durationSchema }),
      maxConnectionDuration: durationSchema,
      idleTimeout: durationSchema,
    }),
    http: t.object({
      http1MaxPendingRequests: t.int({ min: 0 }),
      http2MaxRequests: t.int({ min: 0 }),
      maxRequestsPerConnection: t.int({ min: 0 }),
      maxRetries: t.int({ min: 0 }),
      idleTimeout: durationSchema,
      h2UpgradePolicy: t.enum(["DEFAULT", "DO_NOT_UPGRADE", "UPGRADE"]),
      useClientProtocol: t.bool(),
      maxConcurrentStreams: t.int({ min: 0 }),
      http2KeepAlive: t.object({ interval: durationSchema, timeout: durationSchema }),
    }, {
      check: (h, path, report) => {
        if (h.http2KeepAlive) {
          for (const f of ["interval", "timeout"] as const) {
            if (h.http2KeepAlive[f] === undefined) {
              report.error(fieldPath(fieldPath(path, "http2KeepAlive"), f), `http2KeepAlive needs ${f}`);
            }
          }
        }
        if (h.h2UpgradePolicy === "UPGRADE" && h.useClientProtocol === true) {
          report.error(
            fieldPath(path, "useClientProtocol"),
            "useClientProtocol must not be true when h2UpgradePolicy is UPGRADE",
          );
        }
      },
    }),
  },
  {
    check: (c, path, report) => {
      if (!c.tcp && !c.http) report.error(path, "connection pool needs tcp or http settings");
    },
  },
);

/** Connection-pool limits. */
export type ConnectionPoolSettings = Infer<typeof connectionPoolSchema>;

const outlierDetectionSchema = t.object(
  {
    consecutiveErrors: t.int({ min: 0 }),
    splitExternalLocalOriginErrors: t.bool(),
    consecutiveLocalOriginFailures: t.int({ min: 0 }),
    consecutiveGatewayErrors: t.int({ min: 0 }),
    consecutive5xxErrors: t.int({ min: 0 }),
    interval: durationSchema,
    baseEjectionTime: durationSchema,
    maxEjectionPercent: t.int({ min: 0, max: 100 }),
    minHealthPercent: t.int({ min: 0, max: 100 }),
    outlierDetectionHttpErrorCodes: t.array(t.int({ min: 100, max: 599 })),
  },
  {
    check: (o, path, report) => {
      if (o.outlierDetectionHttpErrorCodes !== undefined) {
        report.warning(
          fieldPath(path, "outlierDetectionHttpErrorCodes"),
          "outlierDetectionHttpErrorCodes is not supported by meshd; ignored (only 5xx responses count as errors)",
        );
      }
      if (o.consecutiveErrors !== undefined) {
        report.warning(
          fieldPath(path, "consecutiveErrors"),
          '"consecutiveErrors" is deprecated; use consecutive5xxErrors or consecutiveGatewayErrors',
        );
      }
      if ((o.consecutiveLocalOriginFailures ?? 0) > 0 && !o.splitExternalLocalOriginErrors) {
        report.error(
          fieldPath(path, "consecutiveLocalOriginFailures"),
          "consecutiveLocalOriginFailures needs splitExternalLocalOriginErrors: true",
        );
      }
    },
  },
);

/** Outlier detection (passive health checking; `consecutiveErrors` is deprecated). */
export type OutlierDetection = Infer<typeof outlierDetectionSchema>;

const clientTLSFields = {
  mode: t.enum(["DISABLE", "SIMPLE", "MUTUAL", "ISTIO_MUTUAL"]),
  clientCertificate: t.string(),
  privateKey: t.string(),
  caCertificates: t.string(),
  credentialName: t.string(),
  subjectAltNames: t.array(t.string()),
  sni: t.string(),
  insecureSkipVerify: t.bool(),
  caCrl: t.string(),
};

const clientTLSSchema = t.object(clientTLSFields, { check: clientTLSCheck });

/** TLS settings for connections to upstream services. */
export type ClientTLSSettings = Infer<typeof clientTLSSchema>;

function clientTLSCheck(tls: InferFields<typeof clientTLSFields>, path: string, report: Reporter): void {
  const at = (f: string) => fieldPath(path, f);
  if (tls.insecureSkipVerify) {
    if (tls.mode === "SIMPLE" && (tls.caCertificates || tls.credentialName || tls.subjectAltNames)) {
      report.error(
        at("insecureSkipVerify"),
        "insecureSkipVerify cannot be combined with caCertificates, credentialName or subjectAltNames",
      );
    }
    if (tls.mode === "MUTUAL" && (tls.caCertificates || tls.subjectAltNames)) {
      report.error(
        at("insecureSkipVerify"),
        "insecureSkipVerify cannot be combined with caCertificates or subjectAltNames",
      );
    }
  }
  if ((tls.mode === "SIMPLE" || tls.mode === "MUTUAL") && tls.credentialName) {
    if (tls.clientCertificate || tls.privateKey || tls.caCertificates || tls.caCrl) {
      report.error(
        at("credentialName"),
        "credentialName cannot be combined with clientCertificate, privateKey, caCertificates or caCrl",
      );
    }
    return;
  }
  if (tls.mode === "MUTUAL") {
    if (!tls.clientCertificate) {
      report.error(path, "MUTUAL TLS needs clientCertificate and privateKey, or credentialName");
    } else if (!tls.privateKey) report.error(path, "MUTUAL TLS needs privateKey with clientCertificate");
  }
}

const trafficPolicyCore = {
  loadBalancer: loadBalancerSchema,
  connectionPool: connectionPoolSchema,
  outlierDetection: outlierDetectionSchema,
  tls: clientTLSSchema,
};

const portTrafficPolicySchema = t.object(
  { port: t.required(portSelectorSchema), ...trafficPolicyCore },
  {
    check: (p, path, report) => {
      if (p.port?.number === undefined) {
        report.error(fieldPath(path, "port"), "portLevelSettings entries need port.number");
      }
      if (!p.loadBalancer && !p.connectionPool && !p.outlierDetection && !p.tls) {
        report.error(path, "port traffic policy needs loadBalancer, connectionPool, outlierDetection or tls");
      }
    },
  },
);

/** Traffic policy for one port. */
export type PortTrafficPolicy = Infer<typeof portTrafficPolicySchema>;

const trafficPolicySchema = t.object(
  {
    ...trafficPolicyCore,
    portLevelSettings: t.array(portTrafficPolicySchema, {
      check: (list, path, report) => {
        const seen = new Map<number, number>();
        list.forEach((p, i) => {
          const n = p.port?.number;
          if (n === undefined) return;
          const first = seen.get(n);
          if (first !== undefined) {
            report.error(
              fieldPath(indexPath(path, i), "port"),
              `port ${n} already has settings at ${indexPath(path, first)}`,
            );
          } else seen.set(n, i);
        });
      },
    }),
    tunnel: t.object({
      protocol: t.enum(["CONNECT", "POST"]),
      targetHost: t.string({
        required: true,
        check: (h, path, report) => {
          if (!isIP(h) && fqdnProblem(h)) {
            report.error(path, `tunnel targetHost ${JSON.stringify(h)} must be an FQDN or an IP address`);
          }
        },
      }),
      targetPort: t.required(portNumberSchema),
    }),
    proxyProtocol: t.object({ version: t.enum(["V1", "V2"]) }),
    retryBudget: t.object({
      percent: t.number({ min: 0, max: 100 }),
      minRetryConcurrency: t.int({ min: 0 }),
      budgetInterval: durationSchema,
    }, {
      check: (b, path, report) => {
        if (b.budgetInterval !== undefined) {
          report.warning(
            fieldPath(path, "budgetInterval"),
            "retryBudget.budgetInterval is not supported by meshd; ignored (Envoy's retry budget counts active requests)",
          );
        }
      },
    }),
  },
  {
    oneOf: [["tunnel", "proxyProtocol"]],
    check: (p, path, report) => {
      if (Object.values(p).every((v) => v === undefined || v === null)) {
        report.error(path, "traffic policy must set at least one field");
      }
    },
  },
);

/** Policies applied to traffic towards a service. */
export type TrafficPolicy = Infer<typeof trafficPolicySchema>;

const subsetSchema = t.object({
  name: t.string({ required: true, check: subsetNameCheck }),
  labels: labelsSchema({ required: true, minEntries: 1 }),
  trafficPolicy: trafficPolicySchema,
});

/** A named subset of a service's endpoints. */
export type Subset = Infer<typeof subsetSchema>;

const destinationRuleSchema = t.object(
  {
    host: hostSchema,
    trafficPolicy: trafficPolicySchema,
    subsets: t.array(subsetSchema, {
      check: (subsets, path, report) => {
        const seen = new Map<string, number>();
        subsets.forEach((s, i) => {
          const first = seen.get(s.name);
          if (first !== undefined) {
            report.error(
              fieldPath(indexPath(path, i), "name"),
              `duplicate subset name ${JSON.stringify(s.name)} (also at ${indexPath(path, first)})`,
            );
          } else seen.set(s.name, i);
        });
      },
    }),
    exportTo: exportToSchema,
    workloadSelector: matchLabelsSelectorSchema,
  },
  {
    check: (dr, path, report) => {
      const lb = dr.trafficPolicy?.loadBalancer?.localityLbSetting;
      if (lb && (lb.failover?.length || lb.failoverPriority?.length) && !dr.trafficPolicy?.outlierDetection) {
        report.warning(
          fieldPath(path, "trafficPolicy"),
          "locality failover needs outlierDetection to take effect",
        );
      }
      if (dr.workloadSelector && dr.exportTo) {
        const ns = report.resource.metadata.namespace;
        if (dr.exportTo.some((e) => e !== "." && e !== ns)) {
          report.error(
            fieldPath(path, "exportTo"),
            "a destination rule with a workloadSelector cannot be exported beyond its own namespace",
          );
        }
      }
    },
  },
);

/** networking.istio.io DestinationRule spec. */
export type DestinationRuleSpec = Infer<typeof destinationRuleSchema>;

// ---------------------------------------------------------------------------------------------
// Gateway
// ---------------------------------------------------------------------------------------------

const tlsProtocolSchema = t.enum(["TLS_AUTO", "TLSV1_0", "TLSV1_1", "TLSV1_2", "TLSV1_3"]);

/** TLS protocol versions. */
export type TLSProtocol = Infer<typeof tlsProtocolSchema>;

const serverTLSFields = {
  httpsRedirect: t.bool(),
  mode: t.enum(["PASSTHROUGH", "SIMPLE", "MUTUAL", "AUTO_PASSTHROUGH", "ISTIO_MUTUAL", "OPTIONAL_MUTUAL"]),
  serverCertificate: t.string(),
  privateKey: t.string(),
  caCertificates: t.string(),
  caCrl: t.string(),
  credentialName: t.string(),
  credentialNames: t.array(t.string({ nonEmpty: true })),
  caCertCredentialName: t.string(),
  tlsCertificates: t.array(
    t.object({ serverCertificate: t.string(), privateKey: t.string(), caCertificates: t.string() }),
  ),
  subjectAltNames: t.array(t.string()),
  verifyCertificateSpki: t.array(t.string()),
  verifyCertificateHash: t.array(t.string()),
  minProtocolVersion: tlsProtocolSchema,
  maxProtocolVersion: tlsProtocolSchema,
  cipherSuites: t.array(t.string()),
  ecdhCurves: t.array(t.string({ nonEmpty: true })),
  insecureSkipVerify: t.bool(),
};

const serverTLSSchema = t.object(serverTLSFields, { check: serverTLSCheck });

/** TLS settings of a gateway server. */
export type ServerTLSSettings = Infer<typeof serverTLSSchema>;

function serverTLSCheck(tls: InferFields<typeof serverTLSFields>, path: string, report: Reporter): void {
  const at = (f: string) => fieldPath(path, f);
  if (tls.ecdhCurves?.length) ecdhCurvesCheck(tls.ecdhCurves, tls.mode, at("ecdhCurves"), report);
  const hasCredential = !!(tls.credentialName || tls.credentialNames?.length || tls.tlsCertificates?.length);
  if (tls.mode === "ISTIO_MUTUAL") {
    for (const f of ["serverCertificate", "privateKey", "caCertificates", "credentialName"] as const) {
      if (tls[f]) report.error(at(f), `ISTIO_MUTUAL TLS uses the mesh's certificates; ${f} must not be set`);
    }
    return;
  }
  if (
    (tls.mode === "PASSTHROUGH" || tls.mode === "AUTO_PASSTHROUGH") &&
    (tls.serverCertificate || tls.privateKey || hasCredential)
  ) {
    report.warning(path, `${tls.mode} mode does not terminate TLS; the certificates are ignored`);
  }
  const sources = [
    tls.serverCertificate && tls.privateKey ? "serverCertificate/privateKey" : undefined,
    tls.credentialName ? "credentialName" : undefined,
    tls.credentialNames?.length ? "credentialNames" : undefined,
    tls.tlsCertificates?.length ? "tlsCertificates" : undefined,
  ].filter((x) => x !== undefined);
  if (sources.length > 1) {
    report.error(
      at(sources[1]!.split("/")[0]!),
      `only one certificate source may be set: found ${sources.join(" and ")}`,
    );
  }
  if (tls.mode === "SIMPLE" || tls.mode === "MUTUAL" || tls.mode === "OPTIONAL_MUTUAL") {
    if (tls.caCrl && hasCredential) {
      report.error(
        at("caCrl"),
        "caCrl cannot be combined with credentialName; put the CRL in the credential",
      );
    }
    if (tls.caCrl && tls.mode === "SIMPLE") {
      report.error(at("caCrl"), "caCrl is not supported with SIMPLE TLS");
    }
    if (hasCredential) return;
    if (!tls.serverCertificate) {
      report.error(path, `${tls.mode} TLS needs serverCertificate and privateKey, or credentialName`);
    } else if (!tls.privateKey) report.error(path, `${tls.mode} TLS needs privateKey with serverCertificate`);
    if (tls.mode !== "SIMPLE" && !tls.caCertificates) {
      report.error(path, `${tls.mode} TLS needs caCertificates (the client CA bundle)`);
    }
  }
}

/** The ECDH curve names Istio recognises (Envoy refuses a listener naming another). */
const ECDH_CURVES = new Set([
  "P-224",
  "P-256",
  "P-384",
  "P-521",
  "X25519",
  "X25519Kyber768Draft00",
  "X25519MLKEM768",
]);

/**
 * ecdhCurves: honoured (Envoy's `tls_params.ecdh_curves`) where the server terminates TLS with its
 * own certificate (SIMPLE, MUTUAL, OPTIONAL_MUTUAL); ISTIO_MUTUAL uses the mesh's TLS settings,
 * which have no curves, and passthrough modes terminate nothing, as in Istio.
 * Unknown or repeated curve names are warned about, as Istio does for MeshConfig's tlsDefaults.
 */
function ecdhCurvesCheck(
  curves: readonly string[],
  mode: string | undefined,
  path: string,
  report: Reporter,
): void {
  if (mode !== "SIMPLE" && mode !== "MUTUAL" && mode !== "OPTIONAL_MUTUAL") {
    report.warning(
      path,
      `ecdhCurves is ignored with ${mode ?? "PASSTHROUGH"} TLS: it applies to SIMPLE, MUTUAL and ` +
        "OPTIONAL_MUTUAL, as in Istio",
    );
    return;
  }
  const seen = new Set<string>();
  curves.forEach((c, i) => {
    if (!ECDH_CURVES.has(c)) {
      report.warning(
        indexPath(path, i),
        `unrecognized ECDH curve ${JSON.stringify(c)} (known: ${
          [...ECDH_CURVES].join(", ")
        }); Envoy may refuse it`,
      );
    } else if (seen.has(c)) report.warning(indexPath(path, i), `duplicate ECDH curve ${JSON.stringify(c)}`);
    seen.add(c);
  });
}

/** `namespace/host` (or a plain host on gateways) as Gateway and Sidecar hosts are written. */
function namespacedHostCheck(kind: "gateway" | "sidecar") {
  return (value: string, path: string, report: Reporter): void => {
    const hasNamespace = value.includes("/");
    if (!hasNamespace && kind === "sidecar") {
      report.error(
        path,
        `host ${JSON.stringify(value)} must be of the form namespace/dnsName ` +
          '(e.g. "./*" or "istio-system/*")',
      );
      return;
    }
    const { namespace: ns, host } = splitNamespacedHost(value);
    if (hasNamespace) {
      const special = kind === "sidecar" ? ["*", ".", "~"] : ["*", "."];
      if (ns === "" || host === "") {
        report.error(path, `host ${JSON.stringify(value)}: namespace and dnsName must not be empty`);
        return;
      }
      if (!special.includes(ns) && !isDNS1123Label(ns)) {
        report.error(
          path,
          `invalid namespace ${JSON.stringify(ns)} in host ${JSON.stringify(value)}; ` +
            `use ${special.join(", ")} or a namespace name`,
        );
        return;
      }
    }
    if (host === "*") return;
    if (kind === "gateway" && isIP(host)) return;
    if (!host.includes(".")) {
      report.error(
        path,
        `host ${JSON.stringify(host)} is a short name; ` +
          `${kind} hosts must be fully qualified (contain a '.') or "*"`,
      );
      return;
    }
    const problem = hostProblem(host);
    if (problem) report.error(path, problem);
  };
}

const gatewayPortSchema = t.object(
  {
    // 1..65535, or 0 for a server bound to a unix:// socket: checked by the server.
    number: t.int({ required: true }),
    protocol: t.required(protocolSchema),
    name: t.string({ required: true }),
    targetPort: t.int(),
  },
  {
    check: (p, path, report) => {
      if (p.targetPort !== undefined) {
        report.error(fieldPath(path, "targetPort"), "targetPort has no effect on gateways; remove it");
      }
    },
  },
);

/** A port a gateway server exposes (`targetPort` has no effect on gateways). */
export type Port = Infer<typeof gatewayPortSchema>;

const serverSchema = t.object(
  {
    port: t.required(gatewayPortSchema),
    bind: t.string({ check: bindCheck }),
    hosts: t.array(t.string({ check: namespacedHostCheck("gateway") }), { required: true, minItems: 1 }),
    tls: serverTLSSchema,
    defaultEndpoint: t.string(),
    name: t.string(),
  },
  {
    check: (s, path, report) => {
      const protocol = s.port.protocol.toUpperCase();
      if (tlsProtocols.has(protocol) && !s.tls) {
        report.error(fieldPath(path, "tls"), `servers with protocol ${s.port.protocol} need tls settings`);
      } else if (!tlsProtocols.has(protocol) && s.tls) {
        const onlyRedirect = Object.keys(s.tls).every((k) => k === "httpsRedirect");
        if (!httpProtocols.has(protocol)) {
          report.error(
            fieldPath(path, "tls"),
            `servers with protocol ${s.port.protocol} cannot have tls settings; use HTTPS or TLS`,
          );
        } else if (!onlyRedirect) {
          report.error(
            fieldPath(path, "tls"),
            `plain-text ${s.port.protocol} servers can only set tls.httpsRedirect`,
          );
        }
      }
      if (s.defaultEndpoint) {
        // Istio's API marks a gateway server's defaultEndpoint NOT IMPLEMENTED; its pilot ignores it.
        report.warning(
          fieldPath(path, "defaultEndpoint"),
          "defaultEndpoint is not supported on gateway servers; ignored (route with a VirtualService)",
        );
      }
      if (s.bind?.startsWith("unix://") && s.port.number !== 0) {
        report.error(
          fieldPath(fieldPath(path, "port"), "number"),
          `${s.port.number}: port number must be 0 for unix domain socket binds`,
        );
      } else if (!s.bind?.startsWith("unix://")) {
        const problem = rangeProblem(s.port.number, 1, 65535);
        if (problem) {
          report.error(
            fieldPath(fieldPath(path, "port"), "number"),
            s.port.number === 0 ? `${problem} (0 only for a server bound to a unix:// socket)` : problem,
          );
        }
      }
    },
  },
);

/** One server (listener) of a gateway. */
export type Server = Infer<typeof serverSchema>;

function bindCheck(value: string, path: string, report: Reporter): void {
  if (value.startsWith("unix://")) {
    const problem = unixPathProblem(value);
    if (problem) report.error(path, problem);
  } else if (!isIP(value)) {
    report.error(path, `bind ${JSON.stringify(value)} must be an IP address or unix:// path`);
  }
}

const gatewaySchema = t.object(
  {
    servers: t.array(serverSchema, {
      required: true,
      minItems: 1,
      check: (servers, path, report) => {
        const names = new Map<string, number>();
        servers.forEach((s, i) => {
          const first = names.get(s.port.name);
          if (first !== undefined) {
            report.error(
              fieldPath(fieldPath(indexPath(path, i), "port"), "name"),
              `port name ${JSON.stringify(s.port.name)} is already used by ${indexPath(path, first)}`,
            );
          } else names.set(s.port.name, i);
        });
      },
    }),
    selector: labelsSchema(),
  },
  {
    check: (_g, _path, report) => {
      const name = report.resource.metadata.name;
      if (!isDNS1123Label(name)) {
        report.error(
          "metadata.name",
          `gateway name ${JSON.stringify(name)} must be a DNS-1123 label (no dots)`,
        );
      }
    },
  },
);

/** networking.istio.io Gateway spec. */
export type GatewaySpec = Infer<typeof gatewaySchema>;

// ---------------------------------------------------------------------------------------------
// WorkloadEntry, ServiceEntry, WorkloadGroup
// ---------------------------------------------------------------------------------------------

const portNameCheck = (name: string, path: string, report: Reporter) => {
  if (!isIstioLabel(name)) {
    report.error(
      path,
      `invalid port name ${JSON.stringify(name)}: use letters, digits and '-' (a DNS-1123 label)`,
    );
  }
};

const workloadEntryFields = {
  address: t.string(),
  ports: t.map(portNumberSchema, { key: portNameCheck }),
  labels: labelsSchema(),
  network: t.string(),
  locality: t.string(),
  weight: t.int({ min: 0 }),
  serviceAccount: t.string(),
};

function workloadAddressCheck(
  we: InferFields<typeof workloadEntryFields>,
  path: string,
  report: Reporter,
  allowFQDN: boolean,
): void {
  const at = fieldPath(path, "address");
  const addr = we.address ?? "";
  if (addr === "") {
    if (!we.network) report.error(at, "address is required (unless network is set)");
    return;
  }
  if (addr.startsWith("unix://")) {
    const problem = unixPathProblem(addr);
    if (problem) report.error(at, problem);
    if (we.ports && Object.keys(we.ports).length > 0) {
      report.error(fieldPath(path, "ports"), `unix endpoint ${addr} must not have ports`);
    }
    return;
  }
  if (isIP(addr)) return;
  if (!allowFQDN) report.error(at, `address ${JSON.stringify(addr)} must be an IP address or a unix:// path`);
  else if (fqdnProblem(addr)) {
    report.error(at, `address ${JSON.stringify(addr)} is not an IP address, a host name or a unix:// path`);
  }
}

const workloadEntrySchema = t.object(workloadEntryFields, {
  check: (we, path, report) => workloadAddressCheck(we, path, report, true),
});

/** networking.istio.io WorkloadEntry spec (also the endpoints of a ServiceEntry). */
export type WorkloadEntrySpec = Infer<typeof workloadEntrySchema>;

const servicePortSchema = t.object({
  number: t.required(portNumberSchema),
  protocol: protocolSchema,
  name: t.string({ required: true, check: portNameCheck }),
  targetPort: portNumberSchema,
});

/** A port of a ServiceEntry. */
export type ServicePort = Infer<typeof servicePortSchema>;

const serviceEntryFields = {
  hosts: t.array(hostSchema, { required: true, minItems: 1 }),
  addresses: t.array(t.string({ check: cidrCheck })),
  ports: t.array(servicePortSchema, {
    check: (ports, path, report) => {
      const numbers = new Map<number, number>();
      const names = new Map<string, number>();
      ports.forEach((p, i) => {
        const at = indexPath(path, i);
        const n = numbers.get(p.number);
        if (n !== undefined) {
          report.error(
            fieldPath(at, "number"),
            `port ${p.number} is already defined at ${indexPath(path, n)}`,
          );
        } else numbers.set(p.number, i);
        const m = names.get(p.name);
        if (m !== undefined) {
          report.error(
            fieldPath(at, "name"),
            `port name ${JSON.stringify(p.name)} is already defined at ${indexPath(path, m)}`,
          );
        } else names.set(p.name, i);
      });
    },
  }),
  location: t.enum(["MESH_EXTERNAL", "MESH_INTERNAL"]),
  resolution: t.enum(["NONE", "STATIC", "DNS", "DNS_ROUND_ROBIN", "DYNAMIC_DNS"]),
  endpoints: t.array(t.object(workloadEntryFields)),
  workloadSelector: networkingSelectorSchema,
  exportTo: exportToSchema,
  subjectAltNames: t.array(t.string()),
};

const serviceEntrySchema = t.object(serviceEntryFields, {
  oneOf: [["workloadSelector", "endpoints"]],
  check: serviceEntryCheck,
});

/** networking.istio.io ServiceEntry spec. */
export type ServiceEntrySpec = Infer<typeof serviceEntrySchema>;

function serviceEntryCheck(se: InferFields<typeof serviceEntryFields>, path: string, report: Reporter): void {
  const at = (f: string) => fieldPath(path, f);
  const resolution = se.resolution ?? "NONE";
  const endpoints = se.endpoints ?? [];
  se.hosts.forEach((h, i) => {
    if (h === "*") report.error(indexPath(at("hosts"), i), 'host "*" is not allowed in a service entry');
    else if (h.includes("*") && !h.startsWith("*.") && resolution !== "DYNAMIC_DNS") {
      report.warning(
        indexPath(at("hosts"), i),
        `partial wildcard host ${JSON.stringify(h)}: only resolution DYNAMIC_DNS resolves such hosts`,
      );
    }
  });
  if ((se.addresses ?? []).some((a) => a.includes("/")) && resolution !== "NONE" && resolution !== "STATIC") {
    report.error(at("addresses"), "CIDR addresses are allowed only with resolution NONE or STATIC");
  }
  const portNames = new Set((se.ports ?? []).map((p) => p.name));
  const endpointPortsCheck = (we: InferFields<typeof workloadEntryFields>, epPath: string) => {
    for (const name of Object.keys(we.ports ?? {})) {
      if (!portNames.has(name)) {
        report.error(
          fieldPath(fieldPath(epPath, "ports"), name),
          `endpoint port ${JSON.stringify(name)} is not a port of the service entry`,
        );
      }
    }
  };
  switch (resolution) {
    case "NONE":
      if (endpoints.length > 0) report.error(at("endpoints"), "resolution NONE takes no endpoints");
      break;
    case "STATIC":
      endpoints.forEach((we, i) => {
        const epPath = indexPath(at("endpoints"), i);
        workloadAddressCheck(we, epPath, report, false);
        endpointPortsCheck(we, epPath);
        if (we.address?.startsWith("unix://") && (se.ports?.length ?? 0) !== 1) {
          report.error(epPath, "unix endpoints need exactly one service port");
        }
      });
      break;
    case "DNS":
    case "DNS_ROUND_ROBIN":
      if (endpoints.length === 0) {
        se.hosts.forEach((h, i) => {
          if (h.includes("*")) {
            report.error(
              indexPath(at("hosts"), i),
              `wildcard host ${JSON.stringify(h)} cannot be resolved with resolution ${resolution}; ` +
                "add endpoints or use NONE",
            );
          }
        });
      }
      if (resolution === "DNS_ROUND_ROBIN" && endpoints.length > 1) {
        report.error(at("endpoints"), "resolution DNS_ROUND_ROBIN takes at most one endpoint");
      }
      endpoints.forEach((we, i) => {
        const epPath = indexPath(at("endpoints"), i);
        if (we.address?.startsWith("unix://")) {
          report.error(
            fieldPath(epPath, "address"),
            `unix endpoint ${we.address} cannot be resolved with resolution ${resolution}; use STATIC`,
          );
          return;
        }
        workloadAddressCheck(we, epPath, report, true);
        endpointPortsCheck(we, epPath);
      });
      if (se.workloadSelector) {
        report.warning(
          at("workloadSelector"),
          `workloadSelector has no effect with resolution ${resolution}`,
        );
      }
      break;
    case "DYNAMIC_DNS":
      dynamicDNSCheck(se, path, report);
      break;
  }
  if (resolution !== "NONE" && resolution !== "DYNAMIC_DNS" && se.hosts.length > 1) {
    const plain = (se.ports ?? []).find((p) => {
      const proto = (p.protocol ?? "").toUpperCase();
      return !httpProtocols.has(proto) && !tlsProtocols.has(proto);
    });
    if (plain) {
      report.error(
        at("hosts"),
        `multiple hosts with a non-HTTP, non-TLS port (${plain.name}) need resolution NONE`,
      );
    }
  }
}

/** Istio's rules for resolution DYNAMIC_DNS, which meshd accepts but does not implement. */
function dynamicDNSCheck(se: InferFields<typeof serviceEntryFields>, path: string, report: Reporter): void {
  const at = (f: string) => fieldPath(path, f);
  se.hosts.forEach((h, i) => {
    if (!h.startsWith("*")) {
      report.error(
        indexPath(at("hosts"), i),
        `host ${JSON.stringify(h)} must be a wildcard for resolution DYNAMIC_DNS`,
      );
    }
  });
  if (se.addresses?.length) report.error(at("addresses"), "resolution DYNAMIC_DNS takes no addresses");
  if (se.endpoints?.length) report.error(at("endpoints"), "resolution DYNAMIC_DNS takes no endpoints");
  (se.ports ?? []).forEach((p, i) => {
    const proto = (p.protocol ?? "").toUpperCase();
    if (!["HTTP", "TLS", "GRPC", "HTTP2"].includes(proto)) {
      report.error(
        fieldPath(indexPath(at("ports"), i), "protocol"),
        `resolution DYNAMIC_DNS supports only HTTP, TLS, GRPC and HTTP2 ports, got ${
          JSON.stringify(p.protocol ?? "")
        }`,
      );
    }
  });
  report.warning(
    at("resolution"),
    "resolution DYNAMIC_DNS is not supported by meshd; ignored (treated as NONE)",
  );
}

const probeSchema = t.object(
  {
    initialDelaySeconds: t.int({ min: 0 }),
    timeoutSeconds: t.int({ min: 0 }),
    periodSeconds: t.int({ min: 0 }),
    successThreshold: t.int({ min: 0 }),
    failureThreshold: t.int({ min: 0 }),
    httpGet: t.object({
      path: t.string(),
      port: t.required(portNumberSchema),
      host: t.string(),
      scheme: t.enum(["HTTP", "HTTPS"]),
      httpHeaders: t.array(t.object({
        name: t.string({
          required: true,
          check: (n, path, report) => {
            if (!/^[-_A-Za-z0-9]+$/.test(n)) {
              report.error(path, `${JSON.stringify(n)} is not a valid header name`);
            }
          },
        }),
        value: t.string(),
      })),
    }),
    tcpSocket: t.object({ host: t.string(), port: t.required(portNumberSchema) }),
    exec: t.object({ command: t.array(t.string(), { required: true, minItems: 1 }) }),
    grpc: t.object({ port: portNumberSchema, service: t.string() }),
  },
  { exactlyOneOf: [["httpGet", "tcpSocket", "exec", "grpc"]] },
);

/** Readiness probe of a WorkloadGroup. */
export type ReadinessProbe = Infer<typeof probeSchema>;

const workloadGroupSchema = t.object({
  metadata: t.object({ labels: labelsSchema(), annotations: t.map(t.string()) }),
  template: t.object(workloadEntryFields, {
    required: true,
    check: (we, path, report) => {
      if (we.address) {
        report.error(
          fieldPath(path, "address"),
          "template.address must not be set; each registering workload supplies its own",
        );
      }
    },
  }),
  probe: probeSchema,
});

/** networking.istio.io WorkloadGroup spec. */
export type WorkloadGroupSpec = Infer<typeof workloadGroupSchema>;

// ---------------------------------------------------------------------------------------------
// Sidecar
// ---------------------------------------------------------------------------------------------

const sidecarPortSchema = t.object(
  {
    number: t.int({ min: 0, max: 65535 }),
    protocol: protocolSchema,
    name: t.string({ check: portNameCheck }),
    targetPort: t.int(),
  },
  {
    check: (p, path, report) => {
      if (p.targetPort !== undefined) {
        report.error(fieldPath(path, "targetPort"), "targetPort has no effect on sidecars; remove it");
      }
    },
  },
);

/** A port of a sidecar listener (`targetPort` has no effect on sidecars). */
export type SidecarPort = Infer<typeof sidecarPortSchema>;

const captureModeSchema = t.enum(["DEFAULT", "IPTABLES", "NONE"]);

/** How traffic reaches a sidecar listener. */
export type CaptureMode = Infer<typeof captureModeSchema>;

function defaultEndpointCheck(value: string, path: string, report: Reporter): void {
  if (value.startsWith("unix://")) {
    const problem = unixPathProblem(value);
    if (problem) report.error(path, problem);
    return;
  }
  const m = /^(?:(127\.0\.0\.1|0\.0\.0\.0)|\[(::1|::)\])?:(\d+)$/.exec(value);
  const port = m ? Number(m[3]) : NaN;
  if (!m || port < 1 || port > 65535) {
    report.error(
      path,
      `defaultEndpoint ${JSON.stringify(value)} must be ` +
        "127.0.0.1:PORT, 0.0.0.0:PORT, [::1]:PORT, [::]:PORT or unix:///path",
    );
  }
}

const ingressListenerSchema = t.object(
  {
    port: t.required(sidecarPortSchema),
    bind: t.string({ check: bindCheck }),
    captureMode: captureModeSchema,
    defaultEndpoint: t.string({ check: defaultEndpointCheck }),
    tls: serverTLSSchema,
    connectionPool: connectionPoolSchema,
  },
  {
    check: (l, path, report) => {
      const at = (f: string) => fieldPath(path, f);
      const n = l.port.number ?? 0;
      if (n < 1) report.error(fieldPath(at("port"), "number"), `${n}: must be 1–65535`);
      if (l.tls) {
        if (l.tls.subjectAltNames?.length) {
          report.error(
            fieldPath(at("tls"), "subjectAltNames"),
            "subjectAltNames is not supported on sidecar ingress",
          );
        }
        if (l.tls.httpsRedirect) {
          report.error(
            fieldPath(at("tls"), "httpsRedirect"),
            "httpsRedirect is not supported on sidecar ingress",
          );
        }
        if (l.tls.credentialName) {
          report.error(
            fieldPath(at("tls"), "credentialName"),
            "credentialName is not supported on sidecar ingress",
          );
        }
        if (l.tls.mode === "ISTIO_MUTUAL" || l.tls.mode === "AUTO_PASSTHROUGH") {
          report.error(fieldPath(at("tls"), "mode"), `mode ${l.tls.mode} is not allowed on sidecar ingress`);
        }
      }
    },
  },
);

/** An inbound listener of a sidecar. */
export type IstioIngressListener = Infer<typeof ingressListenerSchema>;

const egressListenerSchema = t.object(
  {
    port: sidecarPortSchema,
    bind: t.string({ check: bindCheck }),
    captureMode: captureModeSchema,
    hosts: t.array(t.string({ check: namespacedHostCheck("sidecar") }), { required: true, minItems: 1 }),
  },
  {
    check: (l, path, report) => {
      if (!l.port) return;
      const unix = l.bind?.startsWith("unix://");
      const n = l.port.number ?? 0;
      if (n === 0 && !unix) {
        report.error(
          fieldPath(fieldPath(path, "port"), "number"),
          "port number 0 needs a unix:// bind address",
        );
      }
      if (n === 0 && unix && l.captureMode && l.captureMode !== "DEFAULT" && l.captureMode !== "NONE") {
        report.error(
          fieldPath(path, "captureMode"),
          "unix domain socket listeners need captureMode DEFAULT or NONE",
        );
      }
    },
  },
);

/** An outbound listener of a sidecar and the hosts it can reach. */
export type IstioEgressListener = Infer<typeof egressListenerSchema>;

const outboundTrafficPolicySchema = t.object(
  { mode: t.enum(["REGISTRY_ONLY", "ALLOW_ANY"]), egressProxy: destinationSchema },
  {
    check: (p, path, report) => {
      if (!p.egressProxy) return;
      const at = fieldPath(path, "egressProxy");
      if ((p.mode ?? "REGISTRY_ONLY") !== "ALLOW_ANY") {
        report.error(at, "egressProxy can only be set with mode ALLOW_ANY");
      }
      const problem = fqdnProblem(p.egressProxy.host);
      if (problem) report.error(fieldPath(at, "host"), problem);
      if (p.egressProxy.port?.number === undefined) {
        report.error(fieldPath(at, "port"), "egressProxy needs port.number");
      }
    },
  },
);

/** Policy for traffic to destinations outside the registry. */
export type OutboundTrafficPolicy = Infer<typeof outboundTrafficPolicySchema>;

const sidecarSchema = t.object(
  {
    workloadSelector: networkingSelectorSchema,
    ingress: t.array(ingressListenerSchema, {
      check: (listeners, path, report) => {
        const seen = new Map<number, number>();
        listeners.forEach((l, i) => {
          const n = l.port.number ?? 0;
          const first = seen.get(n);
          if (first !== undefined) {
            report.error(
              fieldPath(indexPath(path, i), "port"),
              `port ${n} is already used by ${indexPath(path, first)}`,
            );
          } else seen.set(n, i);
        });
      },
    }),
    egress: t.array(egressListenerSchema, {
      check: (listeners, path, report) => {
        const seen = new Map<string, number>();
        let catchAll: number | undefined;
        listeners.forEach((l, i) => {
          if (!l.port) {
            if (catchAll !== undefined) {
              report.error(
                indexPath(path, i),
                `only one egress listener may omit the port; ${indexPath(path, catchAll)} already does`,
              );
            } else if (i !== listeners.length - 1) {
              report.error(indexPath(path, i), "the egress listener without a port must be the last one");
            }
            catchAll ??= i;
            return;
          }
          const key = l.port.number ? `port ${l.port.number}` : `bind ${l.bind}`;
          const first = seen.get(key);
          if (first !== undefined) {
            report.error(
              fieldPath(indexPath(path, i), "port"),
              `${key} is already used by ${indexPath(path, first)}`,
            );
          } else seen.set(key, i);
        });
      },
    }),
    inboundConnectionPool: connectionPoolSchema,
    outboundTrafficPolicy: outboundTrafficPolicySchema,
  },
  {
    check: (s, path, report) => {
      if (!s.egress?.length && !s.ingress?.length && !s.outboundTrafficPolicy && !s.inboundConnectionPool) {
        report.error(
          path,
          "sidecar configuration is empty: set egress, ingress, outboundTrafficPolicy or inboundConnectionPool",
        );
      }
    },
  },
);

/** networking.istio.io Sidecar spec. */
export type SidecarSpec = Infer<typeof sidecarSchema>;

// ---------------------------------------------------------------------------------------------
// Entry points
// ---------------------------------------------------------------------------------------------

/** The API group of these kinds. */
export const networkingGroup = "networking.istio.io";

/** Versions of networking.istio.io meshd accepts. */
export const networkingVersions: readonly string[] = ["v1", "v1beta1", "v1alpha3"];

/** Schemas of the networking kinds, by kind. */
export const networkingSchemas: Readonly<Record<string, Schema>> = {
  VirtualService: virtualServiceSchema,
  DestinationRule: destinationRuleSchema,
  Gateway: gatewaySchema,
  ServiceEntry: serviceEntrySchema,
  WorkloadEntry: workloadEntrySchema,
  WorkloadGroup: workloadGroupSchema,
  Sidecar: sidecarSchema,
};

/** Validates a VirtualService. */
export function validateVirtualService(r: Resource): Diagnostic[] {
  return checkSchema(r, virtualServiceSchema);
}

/** Validates a DestinationRule. */
export function validateDestinationRule(r: Resource): Diagnostic[] {
  return checkSchema(r, destinationRuleSchema);
}

/** Validates a Gateway. */
export function validateGateway(r: Resource): Diagnostic[] {
  return checkSchema(r, gatewaySchema);
}

/** Validates a ServiceEntry. */
export function validateServiceEntry(r: Resource): Diagnostic[] {
  return checkSchema(r, serviceEntrySchema);
}

/** Validates a WorkloadEntry. */
export function validateWorkloadEntry(r: Resource): Diagnostic[] {
  return checkSchema(r, workloadEntrySchema);
}

/** Validates a WorkloadGroup. */
export function validateWorkloadGroup(r: Resource): Diagnostic[] {
  return checkSchema(r, workloadGroupSchema);
}

/** Validates a Sidecar. */
export function validateSidecar(r: Resource): Diagnostic[] {
  return checkSchema(r, sidecarSchema);
}
