import { describe, expect, test } from "bun:test";
import { ineffectiveMatches, unreachableRoutes } from "../../mod/galley/analyzers/route_reachability.ts";
import { jwtClaimRoutingWithoutRequestAuthentication } from "../../mod/galley/analyzers/jwt_claim_routes.ts";
import { unknownDestinationRuleHost } from "../../mod/galley/analyzers/destination_rule_hosts.ts";
import {
  conflictingGateways,
  gatewayDuplicateCertificate,
} from "../../mod/galley/analyzers/gateway_conflicts.ts";
import { conflictingServiceEntryProtocol } from "../../mod/galley/analyzers/service_entry_protocols.ts";
import {
  conflictingTelemetrySelectors,
  multipleTelemetriesWithoutSelector,
} from "../../mod/galley/analyzers/telemetry_selectors.ts";
import { at, BASE, findings, run } from "./_analyze_fixture.ts";

const vs = (http: string) =>
  `apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: { name: r, namespace: default }
spec:
  hosts: [reviews]
  http:
${http}`;

describe("MSH0130/MSH0131 overlapping matches (IST0130/IST0131)", () => {
  test("a later prefix under an earlier prefix is overlapped; the rule with only that match is dead", () => {
    const yaml = vs(`    - match: [{ uri: { prefix: /api } }]
      route: [{ destination: { host: reviews } }]
    - match: [{ uri: { prefix: /api/v2 } }]
      route: [{ destination: { host: reviews } }]
    - match: [{ uri: { exact: /api/v2/x }, headers: { x-a: { exact: "1" } } }, { uri: { prefix: /other } }]
      route: [{ destination: { host: reviews } }]
`);
    expect(findings(run(unreachableRoutes, yaml))).toEqual([
      at("MSH0130", "VirtualService default/r", "spec.http[1]", yaml, "prefix: /api/v2"),
    ]);
    const ineffective = run(ineffectiveMatches, yaml);
    expect(findings(ineffective)).toEqual([
      at("MSH0131", "VirtualService default/r", "spec.http[2].match[0]", yaml, "exact: /api/v2/x"),
    ]);
    expect(ineffective[0]!.message).toContain(
      "spec.http[0].match[0], which is tried first, takes every request",
    );
    expect(ineffective[0]!.istio).toBe("IST0131");
  });

  test("an earlier match with a condition the later one lacks does not overlap it", () => {
    const yaml = vs(`    - match: [{ uri: { prefix: /api }, headers: { end-user: { exact: jason } } }]
      route: [{ destination: { host: reviews } }]
    - match: [{ uri: { prefix: /api/v2 } }]
      route: [{ destination: { host: reviews } }]
    - match: [{ uri: { prefix: /API }, ignoreUriCase: true }]
      route: [{ destination: { host: reviews } }]
    - match: [{ uri: { prefix: /api/v3 }, method: { exact: GET } }]
      route: [{ destination: { host: reviews } }]
`);
    // Rule 3 is overlapped by rule 2 (case folded prefix /api covers /api/v3); rules 1 and 2 are not.
    expect(findings(run(unreachableRoutes, yaml))).toEqual([
      at("MSH0130", "VirtualService default/r", "spec.http[3]", yaml, "prefix: /api/v3"),
    ]);
  });
});

const gateway = (name: string, selector: string, servers: string) =>
  `apiVersion: networking.istio.io/v1
kind: Gateway
metadata: { name: ${name}, namespace: default }
spec:
  selector: ${selector}
  servers:
${servers}
`;

const INGRESS = `apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: { name: ingress, namespace: default }
spec: { address: 192.0.2.9, labels: { istio: ingressgateway } }
`;

describe("MSH0149 JWT claim routing without RequestAuthentication (IST0149)", () => {
  const route = `${INGRESS}---
${
    gateway(
      "edge",
      "{ istio: ingressgateway }",
      `    - port: { number: 80, name: http, protocol: HTTP }
      hosts: [shop.example.com]`,
    )
  }---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: { name: shop, namespace: default }
spec:
  hosts: [shop.example.com]
  gateways: [edge]
  http:
    - match: [{ headers: { "@request.auth.claims.group": { exact: admin } } }]
      route: [{ destination: { host: reviews } }]
`;
  test("reports a claim route through a gateway whose workload no RequestAuthentication covers", () => {
    const ds = run(jwtClaimRoutingWithoutRequestAuthentication, route);
    expect(findings(ds)).toEqual([
      at(
        "MSH0149",
        "VirtualService default/shop",
        "spec.http[0].match[0].headers",
        route,
        "@request.auth.claims",
      ),
    ]);
    expect(ds[0]!.message).toContain("WorkloadEntry default/ingress");
  });

  test("a RequestAuthentication selecting the gateway, or mesh-wide in the root namespace, clears it", () => {
    const ra = (ns: string, selector: string) =>
      `---
apiVersion: security.istio.io/v1
kind: RequestAuthentication
metadata: { name: jwt, namespace: ${ns} }
spec:
  ${selector}
  jwtRules: [{ issuer: https://issuer.example.com, jwksUri: https://issuer.example.com/jwks }]
`;
    expect(
      run(
        jwtClaimRoutingWithoutRequestAuthentication,
        route + ra("default", "selector: { matchLabels: { istio: ingressgateway } }"),
      ),
    ).toEqual([]);
    expect(
      run(
        jwtClaimRoutingWithoutRequestAuthentication,
        route + ra("istio-system", "selector: { matchLabels: { istio: ingressgateway } }"),
      ),
    ).toEqual([]);
    expect(
      run(
        jwtClaimRoutingWithoutRequestAuthentication,
        route + ra("other", "selector: { matchLabels: { istio: ingressgateway } }"),
      ).length,
    ).toBe(1);
    expect(
      run(
        jwtClaimRoutingWithoutRequestAuthentication,
        route + ra("default", "selector: { matchLabels: { app: reviews } }"),
      ).length,
    ).toBe(1);
  });
});

describe("MSH0174 DestinationRule host matches no service (IST0174)", () => {
  test("reports unknown hosts and hosts not exported to the rule's namespace", () => {
    const yaml = `apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: { name: typo, namespace: default }
spec: { host: reviewz }
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: { name: private, namespace: default }
spec:
  hosts: [private.example.com]
  exportTo: ["."]
  resolution: DNS
  ports: [{ number: 443, name: tls, protocol: TLS }]
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: { name: hidden, namespace: shop }
spec: { host: private.example.com }
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: { name: fine, namespace: shop }
spec: { host: reviews.default.svc.cluster.local }
`;
    const ds = run(unknownDestinationRuleHost, yaml);
    expect(findings(ds)).toEqual([
      at("MSH0174", "DestinationRule default/typo", "spec.host", yaml, "host: reviewz"),
      at("MSH0174", "DestinationRule shop/hidden", "spec.host", yaml, "host: private.example.com"),
    ]);
    expect(ds[0]!.message).toContain("did you mean reviews.default.svc.cluster.local");
    expect(ds[1]!.message).toContain("not exported to namespace shop");
    expect(run(unknownDestinationRuleHost, "", BASE)).toEqual([]);
  });
});

describe("MSH0145 and MSH0138 gateways on the same proxies (IST0145, IST0138)", () => {
  const https = (host: string, cred: string) =>
    `    - port: { number: 443, name: https, protocol: HTTPS }
      hosts: [${host}]
      tls: { mode: SIMPLE, credentialName: ${cred} }`;
  test("the same host and port on two gateways of one workload conflict; other hosts do not", () => {
    const yaml = `${INGRESS}---
${gateway("a", "{ istio: ingressgateway }", https("shop.example.com", "shop-cert"))}---
${gateway("b", "{ istio: ingressgateway }", https("shop.example.com", "other-cert"))}---
${gateway("c", "{ istio: ingressgateway }", https("blog.example.com", "blog-cert"))}---
${gateway("d", "{ istio: eastwest }", https("shop.example.com", "x-cert"))}`;
    expect(findings(run(conflictingGateways, yaml))).toEqual([
      at("MSH0145", "Gateway default/a", "spec.servers[0]", yaml, "- port: { number: 443", 1),
      at("MSH0145", "Gateway default/b", "spec.servers[0]", yaml, "- port: { number: 443", 2),
    ]);
  });

  test("one credential served by two gateways of one workload is reported on both", () => {
    const yaml = `${INGRESS}---
${gateway("a", "{ istio: ingressgateway }", https("shop.example.com", "wild-cert"))}---
${gateway("b", "{ istio: ingressgateway }", https("blog.example.com", "wild-cert"))}---
${gateway("c", "{ istio: ingressgateway }", https("news.example.com", "news-cert"))}`;
    const ds = run(gatewayDuplicateCertificate, yaml);
    expect(ds.map((d) => [d.resource, d.field, d.istio])).toEqual([
      ["Gateway default/a", "spec.servers[0].tls", "IST0138"],
      ["Gateway default/b", "spec.servers[0].tls", "IST0138"],
    ]);
    expect(ds[0]!.message).toContain("credentialName wild-cert is also served by Gateway default/b");
  });
});

describe("MSH0177 ServiceEntries disagree on a port's protocol (IST0177)", () => {
  const se = (name: string, ns: string, protocol: string, exportTo = "") =>
    `apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: { name: ${name}, namespace: ${ns} }
spec:
  hosts: [db.example.com]
  addresses: [198.51.100.7]
  resolution: DNS
  ${exportTo}
  ports: [{ number: 5432, name: db, protocol: ${protocol} }]
`;
  test("reports both entries when visible to a common namespace, not when exportTo keeps them apart", () => {
    const yaml = `${se("a", "one", "TCP")}---\n${se("b", "two", "HTTP")}`;
    expect(findings(run(conflictingServiceEntryProtocol, yaml))).toEqual([
      at("MSH0177", "ServiceEntry one/a", "spec.ports[0]", yaml, "ports:", 1),
      at("MSH0177", "ServiceEntry two/b", "spec.ports[0]", yaml, "ports:", 2),
    ]);
    const apart = `${se("a", "one", "TCP", 'exportTo: ["."]')}---\n${
      se("b", "two", "HTTP", 'exportTo: ["."]')
    }`;
    expect(run(conflictingServiceEntryProtocol, apart)).toEqual([]);
    expect(run(conflictingServiceEntryProtocol, `${se("a", "one", "TCP")}---\n${se("b", "two", "TCP")}`))
      .toEqual([]);
  });
});

describe("MSH0159 and MSH0185 Telemetry selectors (IST0159, IST0160)", () => {
  const tel = (name: string, selector: string) =>
    `apiVersion: telemetry.istio.io/v1
kind: Telemetry
metadata: { name: ${name}, namespace: default }
spec:
  ${selector}
  accessLogging: [{ disabled: true }]
`;
  test("two selector-less Telemetries in a namespace, and two selecting one workload, are reported", () => {
    const yaml = [
      tel("all-1", ""),
      tel("all-2", ""),
      tel("reviews", "selector: { matchLabels: { app: reviews } }"),
      tel("v1", "selector: { matchLabels: { version: v1 } }"),
      tel("ratings", "selector: { matchLabels: { app: ratings, version: v2 } }"),
    ].join("---\n");
    expect(run(multipleTelemetriesWithoutSelector, yaml).map((d) => [d.resource, d.istio])).toEqual([
      ["Telemetry default/all-1", "IST0160"],
      ["Telemetry default/all-2", "IST0160"],
    ]);
    const ds = run(conflictingTelemetrySelectors, yaml);
    expect(ds.map((d) => [d.resource, d.istio])).toEqual([
      ["Telemetry default/reviews", "IST0159"],
      ["Telemetry default/v1", "IST0159"],
    ]);
    expect(ds[0]!.message).toContain(
      "WorkloadEntry default/reviews-v1, which Telemetry default/v1 also selects",
    );
  });
});
