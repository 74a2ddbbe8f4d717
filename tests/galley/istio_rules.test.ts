/**
 * One row per validation rule where meshd was measured against Istio's own validation
 * (pkg/config/validation) and found too strict or too lenient: what Istio accepts is accepted
 * (sometimes with a warning, as Istio warns), what Istio rejects is rejected, each at its file,
 * line and field. Also the parts of the current API that were missing (telemetry.istio.io/v1,
 * ServiceEntry DYNAMIC_DNS, newer fields), accepted with a warning where meshd does not act on
 * them.
 */
import { describe, expect, test } from "bun:test";
import { resource } from "./kinds/_check.ts";
import { parseConfig } from "../../mod/galley/parse.ts";
import { validateResource } from "../../mod/galley/validate.ts";

/** A diagnostic as a row expects it: severity, field, line, and a part of the message. */
type Expected = readonly [severity: "error" | "warning", field: string, line: number, message: string];

interface Row {
  readonly name: string;
  readonly yaml: string;
  /** Every error and warning, in order; [] for a resource Istio accepts without a word. */
  readonly expect: readonly Expected[];
}

const vs = (spec: string) => resource({ apiVersion: "networking.istio.io/v1", kind: "VirtualService" }, spec);
const dr = (spec: string) =>
  resource({ apiVersion: "networking.istio.io/v1", kind: "DestinationRule" }, spec);
const gw = (spec: string) =>
  resource({ apiVersion: "networking.istio.io/v1", kind: "Gateway", name: "gw" }, spec);
const se = (spec: string) => resource({ apiVersion: "networking.istio.io/v1", kind: "ServiceEntry" }, spec);
const ra = (spec: string) =>
  resource({ apiVersion: "security.istio.io/v1", kind: "RequestAuthentication" }, spec);
const ap = (spec: string) =>
  resource({ apiVersion: "security.istio.io/v1", kind: "AuthorizationPolicy" }, spec);

/** A resource with annotations; its spec starts on line 9. */
const annotated = (apiVersion: string, kind: string, annotations: string, spec: string) =>
  `apiVersion: ${apiVersion}\nkind: ${kind}\nmetadata:\n  name: example\n  namespace: default\n` +
  `  annotations:\n    ${annotations}\nspec:\n${spec}`;

const tooStrict: readonly Row[] = [
  {
    name: "route weights are relative: they need not add up to 100",
    yaml: vs(`  hosts: [reviews]
  http:
  - route:
    - destination: {host: reviews, subset: v1}
      weight: 1
    - destination: {host: reviews, subset: v2}
      weight: 3
`),
    expect: [],
  },
  {
    name: "partial wildcards in VirtualService, DestinationRule and destination hosts",
    yaml: vs(`  hosts: ["*-api.example.com"]
  http:
  - route:
    - destination: {host: "*api.example.com"}
`) + "\n---\n" + dr(`  host: "*api.example.com"\n`),
    expect: [],
  },
  {
    name: "a partial wildcard ServiceEntry host is a warning unless resolution is DYNAMIC_DNS",
    yaml: se(`  hosts: ["*api.example.com"]
  ports: [{number: 443, name: tls, protocol: TLS}]
  resolution: NONE
`),
    expect: [["warning", "spec.hosts[0]", 7, "only resolution DYNAMIC_DNS resolves such hosts"]],
  },
  {
    name: "SNI hosts in the outbound_ form on a gateway-bound VirtualService",
    yaml: vs(`  hosts: ["*"]
  gateways: [istio-system/cross-network]
  tls:
  - match:
    - sniHosts: [outbound_.9080_._.reviews.default.svc.cluster.local]
    route:
    - destination: {host: reviews.default.svc.cluster.local}
`),
    expect: [],
  },
  {
    name: "an IP address as SNI host is a warning",
    yaml: vs(`  hosts: ["*.example.com"]
  gateways: [gw]
  tls:
  - match:
    - sniHosts: [10.0.0.1]
    route:
    - destination: {host: a.example.com}
`),
    expect: [["warning", "spec.tls[0].match[0].sniHosts[0]", 11, "is an IP address"]],
  },
  {
    name: "a STATIC ServiceEntry without endpoints",
    yaml: se(`  hosts: [db.internal]
  addresses: [10.1.0.1]
  ports: [{number: 5432, name: tcp-pg, protocol: TCP}]
  resolution: STATIC
`),
    expect: [],
  },
  {
    name: "a RequestAuthentication rule with jwksUri and no issuer",
    yaml: ra(`  jwtRules:
  - jwksUri: https://example.com/.well-known/jwks.json
`),
    expect: [],
  },
  {
    name: "a Gateway server bound to a unix socket listens on port 0",
    yaml: gw(`  servers:
  - port: {number: 0, name: uds, protocol: HTTP}
    bind: unix:///var/run/gw.sock
    hosts: ["*"]
`),
    expect: [],
  },
  {
    name: "literal path segments after {**} in AuthorizationPolicy paths",
    yaml: ap(`  rules:
  - to:
    - operation:
        paths: ["/api/{**}/edit", "/{*}/items/{**}"]
`),
    expect: [],
  },
  {
    name: 'protocol: "" means unset on ServiceEntry ports',
    yaml: se(`  hosts: [api.example.com]
  ports: [{number: 80, name: web, protocol: ""}]
  resolution: DNS
`),
    expect: [],
  },
];

const tooLenient: readonly Row[] = [
  {
    name: "serviceAccounts together with namespaces or principals",
    yaml: ap(`  rules:
  - from:
    - source:
        namespaces: [bookinfo]
        serviceAccounts: [bookinfo/reviews]
`),
    expect: [[
      "error",
      "spec.rules[0].from[0].source.serviceAccounts",
      11,
      "serviceAccounts cannot be combined with namespaces",
    ]],
  },
  {
    name: "the istio.io/dry-run annotation on a kind that does not allow it",
    yaml: annotated(
      "networking.istio.io/v1",
      "DestinationRule",
      'istio.io/dry-run: "true"',
      "  host: reviews\n",
    ),
    expect: [[
      "error",
      'metadata.annotations["istio.io/dry-run"]',
      7,
      "only allowed on an AuthorizationPolicy",
    ]],
  },
  {
    name: "the istio.io/dry-run annotation with a value that is not a boolean",
    yaml: annotated(
      "security.istio.io/v1",
      "AuthorizationPolicy",
      'istio.io/dry-run: "yes"',
      "  action: DENY\n  rules: [{}]\n",
    ),
    expect: [[
      "error",
      'metadata.annotations["istio.io/dry-run"]',
      7,
      'invalid istio.io/dry-run value "yes"',
    ]],
  },
  {
    name: "the istio.io/dry-run annotation on a CUSTOM policy",
    yaml: annotated(
      "security.istio.io/v1",
      "AuthorizationPolicy",
      'istio.io/dry-run: "true"',
      "  action: CUSTOM\n  provider: {name: ext}\n  rules: [{}]\n",
    ),
    expect: [["error", 'metadata.annotations["istio.io/dry-run"]', 7, "only supports action ALLOW or DENY"]],
  },
  {
    name:
      "the istio.io/dry-run annotation on an ALLOW policy is accepted, with a warning that meshd enforces it",
    yaml: annotated(
      "security.istio.io/v1",
      "AuthorizationPolicy",
      'istio.io/dry-run: "true"',
      "  rules: [{}]\n",
    ),
    expect: [["warning", 'metadata.annotations["istio.io/dry-run"]', 7, "not supported by meshd; ignored"]],
  },
  {
    name: "HTTP/2 keepalive without an interval",
    yaml: dr(`  host: reviews
  trafficPolicy:
    connectionPool:
      http:
        http2KeepAlive: {timeout: 5s}
`),
    expect: [[
      "error",
      "spec.trafficPolicy.connectionPool.http.http2KeepAlive.interval",
      11,
      "http2KeepAlive needs interval",
    ]],
  },
  {
    name: "redirect.prefixRewrite with an exact URI match",
    yaml: vs(`  hosts: [reviews]
  http:
  - match:
    - uri: {exact: /old}
    redirect: {prefixRewrite: /new}
`),
    expect: [["error", "spec.http[0].match[0].uri", 10, "every URI match to be a prefix match"]],
  },
  {
    name: "a unix endpoint with DNS resolution",
    yaml: se(`  hosts: [local.example.com]
  ports: [{number: 80, name: http, protocol: HTTP}]
  resolution: DNS
  endpoints:
  - address: unix:///var/run/app.sock
`),
    expect: [["error", "spec.endpoints[0].address", 11, "cannot be resolved with resolution DNS"]],
  },
  {
    name: "credentialName together with certificate files",
    yaml: gw(`  servers:
  - port: {number: 443, name: https, protocol: HTTPS}
    hosts: ["*"]
    tls:
      mode: SIMPLE
      credentialName: gw-cert
      serverCertificate: /etc/certs/cert.pem
      privateKey: /etc/certs/key.pem
`),
    expect: [["error", "spec.servers[0].tls.credentialName", 12, "only one certificate source may be set"]],
  },
  {
    name: "a VirtualService without hosts (a delegate) that delegates again",
    yaml: vs(`  http:
  - delegate: {name: other}
`),
    expect: [["error", "spec.http[0].delegate", 8, "cannot delegate again"]],
  },
  {
    name: "an out-of-range value is named in the message",
    yaml: se(`  hosts: [db.internal]
  ports: [{number: 70000, name: tcp-pg, protocol: TCP}]
`),
    expect: [["error", "spec.ports[0].number", 8, "70000: must be 1–65535"]],
  },
  {
    name: "a Gateway server on port 0 without a unix socket",
    yaml: gw(`  servers:
  - port: {number: 0, name: http, protocol: HTTP}
    hosts: ["*"]
`),
    expect: [["error", "spec.servers[0].port.number", 8, "0: must be 1–65535"]],
  },
  {
    name: "{*} after {**} in an AuthorizationPolicy path",
    yaml: ap(`  rules:
  - to:
    - operation:
        paths: ["/{**}/x/{*}"]
`),
    expect: [["error", "spec.rules[0].to[0].operation.paths[0]", 10, "{**} must be the last operator"]],
  },
  {
    name: "a RequestAuthentication rule with neither issuer nor jwksUri",
    yaml: ra(`  jwtRules:
  - audiences: [bookinfo]
`),
    expect: [["error", "spec.jwtRules[0].issuer", 8, "issuer or jwksUri must be set"]],
  },
];

const currentAPI: readonly Row[] = [
  {
    name: "telemetry.istio.io/v1 Telemetry",
    yaml: resource(
      { apiVersion: "telemetry.istio.io/v1", kind: "Telemetry" },
      "  tracing:\n  - randomSamplingPercentage: 10\n",
    ),
    expect: [],
  },
  {
    name: "ServiceEntry resolution DYNAMIC_DNS parses, with a warning that meshd ignores it",
    yaml: se(`  hosts: ["*.example.com"]
  ports: [{number: 443, name: tls, protocol: TLS}]
  resolution: DYNAMIC_DNS
`),
    expect: [["warning", "spec.resolution", 9, "DYNAMIC_DNS is not supported by meshd; ignored"]],
  },
  {
    name: "ServiceEntry resolution DYNAMIC_DNS follows Istio's rules (wildcard hosts only)",
    yaml: se(`  hosts: [api.example.com]
  ports: [{number: 443, name: tls, protocol: TLS}]
  resolution: DYNAMIC_DNS
`),
    expect: [
      ["error", "spec.hosts[0]", 7, "must be a wildcard for resolution DYNAMIC_DNS"],
      ["warning", "spec.resolution", 9, "not supported by meshd; ignored"],
    ],
  },
  {
    name: "outlierDetection.outlierDetectionHttpErrorCodes parses, with a warning that meshd ignores it",
    yaml: dr(`  host: reviews
  trafficPolicy:
    outlierDetection:
      consecutive5xxErrors: 3
      outlierDetectionHttpErrorCodes: [500, 503]
`),
    expect: [[
      "warning",
      "spec.trafficPolicy.outlierDetection.outlierDetectionHttpErrorCodes",
      11,
      "not supported by meshd; ignored",
    ]],
  },
  {
    name: "newer fields parse; those meshd ignores warn so",
    yaml: dr(`  host: reviews
  trafficPolicy:
    loadBalancer:
      backendUtilization: {weightUpdatePeriod: 1s}
`) + "\n---\n" + gw(`  servers:
  - port: {number: 443, name: https, protocol: HTTPS}
    hosts: ["*"]
    tls: {mode: SIMPLE, credentialName: cert, ecdhCurves: [P-256]}
`) + "\n---\n" + ra(`  jwtRules:
  - issuer: https://issuer.example.com
    presence: REQUIRED
`) + "\n---\n" + ap(`  rules:
  - when:
    - key: source.trustDomain
      values: [cluster.local]
`),
    expect: [
      [
        "warning",
        "spec.trafficPolicy.loadBalancer.backendUtilization",
        10,
        "not supported by meshd; ignored",
      ],
      ["warning", "spec.rules[0].when[0].key", 44, "not supported by meshd; ignored"],
    ],
  },
  {
    name: "snake_case aliases Istio's CRDs still list are refused, naming the field meshd reads",
    yaml: ra(`  jwtRules:
  - issuer: https://issuer.example.com
    jwks_uri: https://issuer.example.com/jwks
`),
    expect: [["error", "spec.jwtRules[0].jwks_uri", 9, 'unknown field "jwks_uri" (did you mean "jwksUri"?)']],
  },
];

/** Errors and warnings of `yaml` (parse, then validation) as rows. */
function findings(yaml: string): Expected[] {
  const parsed = parseConfig(yaml, "rules.yaml");
  return [...parsed.diagnostics, ...parsed.resources.flatMap((r) => validateResource(r))]
    .filter((d) => d.severity !== "info")
    .map((d) => [d.severity as "error" | "warning", d.field ?? "", d.pos?.line ?? 0, d.message]);
}

function runTable(rows: readonly Row[]): void {
  for (const row of rows) {
    test(row.name, () => {
      const got = findings(row.yaml);
      expect(got.map(([s, f, l]) => [s, f, l])).toEqual(row.expect.map(([s, f, l]) => [s, f, l]));
      got.forEach(([, , , message], i) => expect(message).toContain(row.expect[i]![3]));
    });
  }
}

describe("what Istio accepts and meshd refused", () => runTable(tooStrict));
describe("what Istio rejects and meshd accepted", () => runTable(tooLenient));
describe("the current Istio API", () => runTable(currentAPI));
