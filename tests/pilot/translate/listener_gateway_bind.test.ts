/**
 * Gateway servers' `bind` and `name`, a gateway server's `defaultEndpoint` (refused: Istio does
 * not implement it), and the client CA fields of Sidecar ingress TLS.
 */
import { describe, expect, test } from "bun:test";
import { anyUnpack } from "@bufbuild/protobuf/wkt";
import type { Listener } from "#gen/envoy/config/listener/v3/listener_pb.ts";
import type { Filter } from "#gen/envoy/config/listener/v3/listener_components_pb.ts";
import type { TransportSocket } from "#gen/envoy/config/core/v3/base_pb.ts";
import { HttpConnectionManagerSchema } from "#gen/envoy/extensions/filters/network/http_connection_manager/v3/http_connection_manager_pb.ts";
import { DownstreamTlsContextSchema } from "#gen/envoy/extensions/transport_sockets/tls/v3/tls_pb.ts";
import { buildListeners, buildRoutes } from "../../../mod/pilot/translate/mod.ts";
import { gatewayPorts } from "../../../mod/pilot/translate/gateway_server.ts";
import { pushFrom, sidecar } from "../_push.ts";
import { readCase } from "./_golden.ts";
import { diagnose, expectValid } from "../../galley/kinds/_check.ts";

const find = (ls: Listener[], name: string) => {
  const l = ls.find((x) => x.name === name);
  if (!l) throw new Error(`no listener ${name} in ${ls.map((x) => x.name).join(", ")}`);
  return l;
};
const hcm = (f: Filter) =>
  f.configType.case === "typedConfig"
    ? anyUnpack(f.configType.value, HttpConnectionManagerSchema)
    : undefined;
const rds = (l: Listener) => {
  const h = hcm(l.filterChains[0]!.filters.at(-1)!)!;
  return h.routeSpecifier.case === "rds" ? h.routeSpecifier.value.routeConfigName : undefined;
};
const downstream = (ts: TransportSocket | undefined) =>
  ts?.configType.case === "typedConfig"
    ? anyUnpack(ts.configType.value, DownstreamTlsContextSchema)
    : undefined;

describe("Gateway server bind", () => {
  const { push, proxy } = readCase("gateway_bind");
  const ls = buildListeners(push, proxy);

  test("servers on one port with different binds are separate listeners on their addresses", () => {
    expect(gatewayPorts(push, proxy).map((gp) => `${gp.port}|${gp.bind ?? ""}`)).toEqual([
      "0|unix:///var/run/edge/db.sock",
      "8080|",
      "8080|10.101.0.7",
      "8443|",
      "8443|10.101.0.7",
    ]);
    const bound = find(ls, "10.101.0.7_8080");
    expect(bound.address?.address).toEqual({
      case: "socketAddress",
      value: expect.objectContaining({
        address: "10.101.0.7",
        portSpecifier: { case: "portValue", value: 8080 },
      }),
    });
    expect(find(ls, "0.0.0.0_8080").address?.address.value).toMatchObject({ address: "0.0.0.0" });
  });

  test("a bound server's RDS name ends in .BIND and carries only the hosts of that server", () => {
    expect(rds(find(ls, "0.0.0.0_8080"))).toBe("http.8080");
    expect(rds(find(ls, "10.101.0.7_8080"))).toBe("http.8080.10.101.0.7");
    expect(rds(find(ls, "10.101.0.7_8443"))).toBe("https.8443.https-internal.bind.edge.10.101.0.7");
    const routes = new Map(
      buildRoutes(push, proxy).map((r) => [r.name, r.virtualHosts.map((v) => v.domains[0])]),
    );
    expect(routes.get("http.8080")).toEqual(["public.example.com"]);
    expect(routes.get("http.8080.10.101.0.7")).toEqual(["internal.example.com"]);
    expect(routes.get("https.8443.https-internal.bind.edge.10.101.0.7")).toEqual(["internal.example.com"]);
  });

  test("a server bound to a unix socket listens on that socket", () => {
    const l = find(ls, "unix:///var/run/edge/db.sock_0");
    expect(l.address?.address).toEqual({
      case: "pipe",
      value: expect.objectContaining({ path: "/var/run/edge/db.sock" }),
    });
    expect(l.filterChains[0]!.filters.at(-1)!.name).toBe("envoy.filters.network.tcp_proxy");
  });
});

describe("Gateway server name", () => {
  const { push, proxy } = readCase("gateway_bind");
  const ls = buildListeners(push, proxy);

  test("an HTTPS server's name is its HTTP stat prefix; unnamed servers keep outbound_LISTENER", () => {
    const named = find(ls, "0.0.0.0_8443").filterChains[0]!;
    expect(hcm(named.filters.at(-1)!)!.statPrefix).toBe("public-https");
    const unnamed = find(ls, "10.101.0.7_8443").filterChains[0]!;
    expect(hcm(unnamed.filters.at(-1)!)!.statPrefix).toBe("outbound_10.101.0.7_8443");
    expect(hcm(find(ls, "10.101.0.7_8080").filterChains[0]!.filters.at(-1)!)!.statPrefix)
      .toBe("outbound_10.101.0.7_8080");
  });
});

describe("Gateway server defaultEndpoint", () => {
  const gateway = (extra: string) => `
apiVersion: networking.istio.io/v1
kind: Gateway
metadata: { name: gw, namespace: edge }
spec:
  selector: { istio: edge }
  servers:
    - port: { number: 8080, name: http, protocol: HTTP }
      hosts: ["*"]
${extra}`;

  test("is refused as not supported (a warning), as Istio leaves it unimplemented", () => {
    const ds = diagnose(gateway("      defaultEndpoint: 127.0.0.1:8080\n"));
    expect(ds.map((d) => [d.severity, d.field, d.message])).toEqual([[
      "warning",
      "spec.servers[0].defaultEndpoint",
      "defaultEndpoint is not supported on gateway servers; ignored (route with a VirtualService)",
    ]]);
    expectValid(gateway(""));
  });
});

describe("Sidecar ingress TLS client CA", () => {
  const push = pushFrom(`
apiVersion: networking.istio.io/v1
kind: Sidecar
metadata: { name: app, namespace: app }
spec:
  workloadSelector: { labels: { app: app } }
  ingress:
    - port: { number: 9443, protocol: HTTPS, name: https-sds }
      captureMode: NONE
      defaultEndpoint: 127.0.0.1:8443
      tls: { mode: MUTUAL, credentialNames: [app-cert], caCertCredentialName: app-clients }
    - port: { number: 9444, protocol: HTTPS, name: https-files }
      captureMode: NONE
      defaultEndpoint: 127.0.0.1:8444
      tls:
        mode: MUTUAL
        tlsCertificates:
          - { serverCertificate: /etc/app/rsa.pem, privateKey: /etc/app/rsa-key.pem, caCertificates: /etc/app/clients.pem }
          - { serverCertificate: /etc/app/ecdsa.pem, privateKey: /etc/app/ecdsa-key.pem }
    - port: { number: 9445, protocol: HTTPS, name: https-simple }
      captureMode: NONE
      defaultEndpoint: 127.0.0.1:8445
      tls: { mode: SIMPLE, credentialNames: [app-cert], caCertCredentialName: app-clients }
`);
  const ls = buildListeners(push, sidecar("10.0.0.9", "app", { app: "app" }));
  const context = (name: string) => downstream(find(ls, name).filterChains[0]!.transportSocket)!;

  test("caCertCredentialName names the SDS secret clients are verified against", () => {
    const ctx = context("0.0.0.0_9443");
    expect(ctx.requireClientCertificate?.valueOf()).toBeTruthy();
    const common = ctx.commonTlsContext!;
    expect(common.tlsCertificateSdsSecretConfigs.map((s) => s.name)).toEqual(["app-cert"]);
    const vc = common.validationContextType;
    expect(vc.case === "combinedValidationContext" && vc.value.validationContextSdsSecretConfig?.name)
      .toBe("app-clients");
  });

  test("tlsCertificates[].caCertificates is the client CA file when caCertificates is unset", () => {
    const common = context("0.0.0.0_9444").commonTlsContext!;
    expect(common.tlsCertificates.map((c) => c.certificateChain?.specifier.value)).toEqual([
      "/etc/app/rsa.pem",
      "/etc/app/ecdsa.pem",
    ]);
    const vc = common.validationContextType;
    expect(vc.case === "validationContext" && vc.value.trustedCa?.specifier.value).toBe(
      "/etc/app/clients.pem",
    );
  });

  test("SIMPLE verifies no client, so the CA fields do not apply (as in Istio)", () => {
    expect(context("0.0.0.0_9445").commonTlsContext!.validationContextType.case).toBeUndefined();
  });
});
