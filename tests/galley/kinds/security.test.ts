import { describe, expect, test } from "bun:test";
import { errorsOf, expectErrorOn, expectOneError, expectValid, resource } from "./_check.ts";

const pa = (spec: string) =>
  resource({
    apiVersion: "security.istio.io/v1",
    kind: "PeerAuthentication",
    name: "default",
    namespace: "istio-system",
  }, spec);
const ra = (spec: string) =>
  resource({ apiVersion: "security.istio.io/v1beta1", kind: "RequestAuthentication", name: "jwt" }, spec);
const ap = (spec: string) =>
  resource({ apiVersion: "security.istio.io/v1", kind: "AuthorizationPolicy", name: "policy" }, spec);

describe("PeerAuthentication", () => {
  test("validateResource() accepts mesh-wide STRICT and workload port-level settings", () => {
    expectValid(pa(`  mtls:
    mode: STRICT
`));
    expectValid(pa(`  selector:
    matchLabels: {app: ratings}
  mtls: {mode: PERMISSIVE}
  portLevelMtls:
    8080:
      mode: DISABLE
`));
  });

  test("validateResource() requires a selector for portLevelMtls", () => {
    expectOneError(
      pa(`  mtls: {mode: STRICT}
  portLevelMtls:
    8080: {mode: DISABLE}
`),
      "spec.portLevelMtls",
      8,
      "portLevelMtls needs a selector with matchLabels",
    );
  });

  test("validateResource() rejects port keys outside 1..65535 and unknown modes", () => {
    expectOneError(
      pa(`  selector:
    matchLabels: {app: ratings}
  portLevelMtls:
    70000: {mode: DISABLE}
`),
      'spec.portLevelMtls["70000"]',
      10,
      'port "70000" must be a number between 1 and 65535',
    );
    expectOneError(
      pa(`  mtls:
    mode: ON
`),
      "spec.mtls.mode",
      8,
      'must be one of UNSET, DISABLE, PERMISSIVE, STRICT; got "ON"',
    );
  });
});

describe("RequestAuthentication", () => {
  test("validateResource() accepts JWT rules", () => {
    expectValid(ra(`  selector:
    matchLabels: {app: httpbin}
  jwtRules:
  - issuer: "issuer-foo"
    jwksUri: https://example.com/.well-known/jwks.json
    audiences: [bookstore]
    fromHeaders:
    - name: x-jwt-assertion
      prefix: "Bearer "
    fromParams: [my_token]
    outputPayloadToHeader: x-jwt-payload
  - issuer: "issuer-bar"
    jwks: '{"keys": [{"kty": "RSA", "e": "AQAB", "n": "abc"}]}'
`));
  });

  test("validateResource() requires an issuer or a jwksUri (Istio accepts jwksUri alone)", () => {
    expectValid(ra(`  jwtRules:
  - jwksUri: https://example.com/jwks.json
`));
    expectOneError(
      ra(`  jwtRules:
  - audiences: [a]
`),
      "spec.jwtRules[0].issuer",
      8,
      "issuer or jwksUri must be set",
    );
  });

  test("validateResource() requires an http(s) jwksUri and rejects jwks with jwksUri", () => {
    expectOneError(
      ra(`  jwtRules:
  - issuer: foo
    jwksUri: ftp://example.com/jwks.json
`),
      "spec.jwtRules[0].jwksUri",
      9,
      'jwksUri scheme "ftp" is not supported',
    );
    expectOneError(
      ra(`  jwtRules:
  - issuer: foo
    jwksUri: https://example.com/jwks.json
    jwks: '{"keys": []}'
`),
      "spec.jwtRules[0].jwksUri",
      9,
      "only one of jwks or jwksUri may be set",
    );
    expectOneError(
      ra(`  jwtRules:
  - issuer: foo
    jwks: "not json"
`),
      "spec.jwtRules[0].jwks",
      9,
      "jwks is not valid JSON",
    );
  });

  test("validateResource() checks header names of fromHeaders and outputPayloadToHeader", () => {
    expectOneError(
      ra(`  jwtRules:
  - issuer: foo
    outputPayloadToHeader: "x jwt"
`),
      "spec.jwtRules[0].outputPayloadToHeader",
      9,
      '"x jwt" is not a valid header name',
    );
    expectOneError(
      ra(`  jwtRules:
  - issuer: foo
    fromHeaders:
    - prefix: "Bearer "
`),
      "spec.jwtRules[0].fromHeaders[0].name",
      10,
      "is required",
    );
  });
});

describe("AuthorizationPolicy", () => {
  test("validateResource() accepts an ALLOW policy with from, to and when", () => {
    expectValid(ap(`  selector:
    matchLabels: {app: httpbin}
  action: ALLOW
  rules:
  - from:
    - source:
        principals: ["cluster.local/ns/default/sa/sleep"]
    - source:
        namespaces: ["test"]
        ipBlocks: ["10.0.0.0/8", "192.168.1.7"]
    to:
    - operation:
        methods: ["GET"]
        paths: ["/info*", "/api/{*}/items/{**}"]
        ports: ["8080"]
    when:
    - key: request.auth.claims[iss]
      values: ["https://accounts.google.com"]
    - key: request.headers[x-user]
      notValues: ["guest"]
    - key: source.ip
      values: ["10.1.0.0/16"]
    - key: destination.port
      values: ["9080"]
`));
  });

  test("validateResource() accepts deny-all: ALLOW with an empty rules list, or an empty spec", () => {
    expectValid(ap(`  rules: []\n`));
    expectValid(ap(`  {}\n`));
  });

  test("validateResource() rejects an unknown action", () => {
    expectOneError(
      ap(`  action: PERMIT\n`),
      "spec.action",
      7,
      'must be one of ALLOW, DENY, AUDIT, CUSTOM; got "PERMIT"',
    );
  });

  test("validateResource() requires provider.name for CUSTOM and rules for DENY", () => {
    expectOneError(
      ap(`  action: CUSTOM
  rules:
  - to:
    - operation: {paths: ["/admin"]}
`),
      "spec.provider",
      6,
      "a CUSTOM policy needs provider.name",
    );
    expectOneError(ap(`  action: DENY\n`), "spec.rules", 6, "a DENY policy without rules never triggers");
    expectOneError(
      ap(`  action: ALLOW
  provider: {name: ext-authz}
`),
      "spec.provider",
      8,
      "provider can only be set with the CUSTOM action",
    );
  });

  test("validateResource() checks ipBlocks and operation ports", () => {
    expectOneError(
      ap(`  rules:
  - from:
    - source:
        ipBlocks: ["10.0.0.0/33"]
`),
      "spec.rules[0].from[0].source.ipBlocks[0]",
      10,
      '"10.0.0.0/33" is not an IP address or CIDR block',
    );
    expectOneError(
      ap(`  rules:
  - to:
    - operation:
        ports: ["http"]
`),
      "spec.rules[0].to[0].operation.ports[0]",
      10,
      'port "http" must be a number between 1 and 65535',
    );
  });

  test("validateResource() checks when conditions: known keys and non-empty values", () => {
    expectOneError(
      ap(`  rules:
  - when:
    - key: source.namespaces
      values: ["foo"]
`),
      "spec.rules[0].when[0].key",
      9,
      'unknown condition key "source.namespaces" (did you mean source.namespace?)',
    );
    expectOneError(
      ap(`  rules:
  - when:
    - key: request.auth.claims[groups]
`),
      "spec.rules[0].when[0]",
      9,
      "condition on request.auth.claims[groups] needs values or notValues",
    );
    expectOneError(
      ap(`  rules:
  - when:
    - key: request.headers
      values: ["x"]
`),
      "spec.rules[0].when[0].key",
      9,
      "use request.headers[NAME]",
    );
    expectOneError(
      ap(`  rules:
  - when:
    - key: source.principal
      values: [""]
`),
      "spec.rules[0].when[0].values[0]",
      10,
      "must not be empty",
    );
  });

  test("validateResource() makes selector and targetRef exclusive and checks targetRef kinds", () => {
    expectOneError(
      ap(`  selector:
    matchLabels: {app: httpbin}
  targetRef:
    group: networking.istio.io
    kind: ServiceEntry
    name: httpbin
`),
      "spec.targetRef",
      9,
      "only one of selector, targetRef or targetRefs may be set",
    );
    expectErrorOn(
      ap(`  targetRef:
    kind: Deployment
    name: httpbin
`),
      "spec.targetRef",
      "targetRef must refer to one of Service",
    );
  });

  test("validateResource() reports empty from and empty sources", () => {
    const errors = errorsOf(ap(`  rules:
  - from: []
  - from:
    - source: {}
`));
    expect(errors.map((d) => [d.field, d.message])).toEqual([
      ["spec.rules[0].from", "must have at least one entry"],
      ["spec.rules[1].from[0].source", "source must set at least one field"],
    ]);
  });
});
