/**
 * MSH0130 and MSH0131 together: a route whose match blocks all repeat earlier ones is dead
 * (MSH0130, at the route) and each repeated block is reported too (MSH0131, at the block), as
 * istioctl reports IST0130 and IST0131 for a duplicate route. A route dead because earlier
 * blocks overlap its own is reported once, at the route.
 */
import { describe, expect, test } from "bun:test";
import { ineffectiveMatches, unreachableRoutes } from "../../../mod/galley/analyzers/route_reachability.ts";
import { at, findings, run } from "../_analyze_fixture.ts";

const vs = (section: string) =>
  `apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: { name: site, namespace: default }
spec:
  hosts: [reviews]
${section}`;

describe("MSH0130 and MSH0131 on a duplicate route", () => {
  test("an HTTP route repeating an earlier match gets both findings", () => {
    const yaml = vs(`  http:
    - match: [{ uri: { prefix: /cart } }]
      route: [{ destination: { host: reviews } }]
    - name: copy
      match: [{ name: again, uri: { prefix: /cart } }]
      route: [{ destination: { host: reviews } }]
`);
    expect(findings(run(unreachableRoutes, yaml))).toEqual([
      at("MSH0130", "VirtualService default/site", "spec.http[1]", yaml, "name: copy"),
    ]);
    const ds = run(ineffectiveMatches, yaml);
    expect(findings(ds)).toEqual([
      at("MSH0131", "VirtualService default/site", "spec.http[1].match[0]", yaml, "name: again"),
    ]);
    expect(ds[0]!.istio).toBe("IST0131");
    expect(ds[0]!.message).toBe(
      "spec.http[1].match[0] is never used: it repeats spec.http[0].match[0], which is tried first",
    );
  });

  test("a TCP route repeating an earlier match gets both findings", () => {
    const yaml = vs(`  tcp:
    - match: [{ port: 9080 }]
      route: [{ destination: { host: reviews } }]
    - match: [{ port: 9080 }]
      route: [{ destination: { host: reviews } }]
`);
    expect(findings(run(unreachableRoutes, yaml))).toEqual([
      at("MSH0130", "VirtualService default/site", "spec.tcp[1]", yaml, "- match: [{ port: 9080 }]", 2),
    ]);
    expect(findings(run(ineffectiveMatches, yaml))).toEqual([
      at(
        "MSH0131",
        "VirtualService default/site",
        "spec.tcp[1].match[0]",
        yaml,
        "- match: [{ port: 9080 }]",
        2,
      ),
    ]);
  });

  test("a route dead only by overlap is reported at the route alone", () => {
    const yaml = vs(`  http:
    - match: [{ uri: { prefix: /cart } }]
      route: [{ destination: { host: reviews } }]
    - match: [{ uri: { prefix: /cart/items } }]
      route: [{ destination: { host: reviews } }]
`);
    expect(findings(run(unreachableRoutes, yaml))).toEqual([
      at("MSH0130", "VirtualService default/site", "spec.http[1]", yaml, "prefix: /cart/items"),
    ]);
    expect(run(ineffectiveMatches, yaml)).toEqual([]);
  });
});
