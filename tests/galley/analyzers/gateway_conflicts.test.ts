/**
 * MSH0145 and MSH0138 on gateways whose selectors nest: when every label of one gateway's
 * selector is also in the other's, every proxy the narrower selector picks runs both gateways,
 * so they conflict even before any workload is declared.
 */
import { describe, expect, test } from "bun:test";
import {
  conflictingGateways,
  gatewayDuplicateCertificate,
  selectorIncludes,
} from "../../../mod/galley/analyzers/gateway_conflicts.ts";
import { at, findings, run } from "../_analyze_fixture.ts";

const gateway = (name: string, selector: string, host: string, cred: string) =>
  `apiVersion: networking.istio.io/v1
kind: Gateway
metadata: { name: ${name}, namespace: edge }
spec:
  selector: ${selector}
  servers:
    - port: { number: 443, name: https, protocol: HTTPS }
      hosts: [${host}]
      tls: { mode: SIMPLE, credentialName: ${cred} }
`;

describe("selectorIncludes", () => {
  test("holds when every label of the first is in the second with the same value", () => {
    expect(selectorIncludes({ role: "edge" }, { role: "edge", tier: "public" })).toBe(true);
    expect(selectorIncludes({ role: "edge" }, { role: "edge" })).toBe(true);
    expect(selectorIncludes({}, { role: "edge" })).toBe(true);
    expect(selectorIncludes({ role: "edge", tier: "public" }, { role: "edge" })).toBe(false);
    expect(selectorIncludes({ role: "edge" }, { role: "internal" })).toBe(false);
  });
});

describe("MSH0145 ConflictingGateways with nested selectors", () => {
  test("a gateway whose selector is within another's shares its proxies; disjoint selectors do not", () => {
    const yaml = [
      gateway("public", "{ role: edge }", "shop.example.com", "shop-a"),
      gateway("public-eu", "{ role: edge, region: eu }", "shop.example.com", "shop-b"),
      gateway("internal", "{ role: internal }", "shop.example.com", "shop-c"),
    ].join("---\n");
    const ds = run(conflictingGateways, yaml);
    expect(findings(ds)).toEqual([
      at("MSH0145", "Gateway edge/public", "spec.servers[0]", yaml, "- port: { number: 443", 1),
      at("MSH0145", "Gateway edge/public-eu", "spec.servers[0]", yaml, "- port: { number: 443", 2),
    ]);
    expect(ds[0]!.message).toContain("also served by Gateway edge/public-eu");
    expect(ds.map((d) => d.istio)).toEqual(["IST0145", "IST0145"]);
  });
});

describe("MSH0138 GatewayDuplicateCertificate with nested selectors", () => {
  test("one credential on gateways with nested selectors is reported on both; other credentials are not", () => {
    const yaml = [
      gateway("public", "{ role: edge }", "shop.example.com", "wild-cert"),
      gateway("public-eu", "{ role: edge, region: eu }", "blog.example.com", "wild-cert"),
      gateway("internal", "{ role: internal }", "news.example.com", "wild-cert"),
      gateway("other", "{ role: edge, region: us }", "docs.example.com", "docs-cert"),
    ].join("---\n");
    const ds = run(gatewayDuplicateCertificate, yaml);
    expect(ds.map((d) => [d.resource, d.field, d.istio])).toEqual([
      ["Gateway edge/public", "spec.servers[0].tls", "IST0138"],
      ["Gateway edge/public-eu", "spec.servers[0].tls", "IST0138"],
    ]);
    expect(ds[0]!.message).toContain("credentialName wild-cert is also served by Gateway edge/public-eu");
  });
});
