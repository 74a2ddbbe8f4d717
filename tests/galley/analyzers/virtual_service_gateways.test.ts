/**
 * MSH0132 per gateway: a VirtualService bound to several gateways, one of which accepts none of
 * its hosts, gets a finding on that binding; hosts no gateway accepts keep their own finding.
 */
import { describe, expect, test } from "bun:test";
import { gatewayHostNotFound } from "../../../mod/galley/analyzers/virtual_service_gateways.ts";
import { at, findings, run } from "../_analyze_fixture.ts";

const GATEWAYS = `apiVersion: networking.istio.io/v1
kind: Gateway
metadata: { name: shop, namespace: ingress }
spec:
  selector: { istio: ingressgateway }
  servers: [{ port: { number: 80, name: http, protocol: HTTP }, hosts: ["*.shop.example.com"] }]
---
apiVersion: networking.istio.io/v1
kind: Gateway
metadata: { name: blog, namespace: ingress }
spec:
  selector: { istio: ingressgateway }
  servers: [{ port: { number: 8080, name: http, protocol: HTTP }, hosts: ["*.blog.example.com"] }]
---
`;

const vs = (name: string, hosts: string, gateways: string) =>
  `apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: { name: ${name}, namespace: default }
spec:
  hosts: [${hosts}]
  gateways: [${gateways}]
  http: [{ route: [{ destination: { host: reviews } }] }]
`;

describe("MSH0132 a bound gateway that accepts none of the hosts", () => {
  test("is reported on the binding when another bound gateway accepts a host", () => {
    const yaml = `${GATEWAYS}${vs("cart", "cart.shop.example.com", "ingress/shop, ingress/blog")}`;
    const ds = run(gatewayHostNotFound, yaml);
    expect(findings(ds)).toEqual([
      at("MSH0132", "VirtualService default/cart", "spec.gateways[1]", yaml, "gateways: [ingress/shop"),
    ]);
    expect(ds[0]!.istio).toBe("IST0132");
    expect(ds[0]!.message).toBe(
      "gateway ingress/blog accepts none of the hosts cart.shop.example.com (it accepts *.blog.example.com); " +
        "binding to it routes nothing",
    );
  });

  test("is not reported again when no bound gateway accepts any host, nor when each accepts one", () => {
    const yaml = `${GATEWAYS}${vs("lost", "cart.example.org", "ingress/shop, ingress/blog")}---
${vs("both", "cart.shop.example.com, news.blog.example.com", "ingress/shop, ingress/blog")}`;
    expect(findings(run(gatewayHostNotFound, yaml))).toEqual([
      at("MSH0132", "VirtualService default/lost", "spec.hosts[0]", yaml, "hosts: [cart.example.org]"),
    ]);
  });
});
