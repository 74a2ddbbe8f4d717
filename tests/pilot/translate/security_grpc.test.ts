import { describe, expect, test } from "bun:test";
import { toJson } from "@bufbuild/protobuf";
import { anyUnpack } from "@bufbuild/protobuf/wkt";
import type { TransportSocket } from "#gen/envoy/config/core/v3/base_pb.ts";
import {
  DownstreamTlsContextSchema,
  UpstreamTlsContextSchema,
} from "#gen/envoy/extensions/transport_sockets/tls/v3/tls_pb.ts";
import { RBACSchema as HttpRbacSchema } from "#gen/envoy/extensions/filters/http/rbac/v3/rbac_pb.ts";
import { proxyFromNode } from "../../../mod/pilot/model/proxy.ts";
import { buildGrpcClusters, buildGrpcListeners } from "../../../mod/pilot/translate/grpc/mod.ts";
import { serverRbacFilters } from "../../../mod/pilot/translate/grpc/tls.ts";
import { pushFrom } from "../_push.ts";

const SERVICES = `
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: { name: echo, namespace: app }
spec:
  hosts: [echo.app.svc.cluster.local]
  location: MESH_INTERNAL
  resolution: STATIC
  ports: [{ number: 7070, name: grpc, protocol: GRPC }]
  endpoints: [{ address: 10.1.0.1, serviceAccount: echo, labels: { app: echo } }]
`;

const grpcProxy = (ip: string, labels: Record<string, string>) =>
  proxyFromNode({
    id: `proxyless~${ip}~p.app~app.svc.cluster.local`,
    metadata: { GENERATOR: "grpc", NAMESPACE: "app", LABELS: labels },
  });

const ISTIO_MUTUAL = `
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: { name: echo, namespace: app }
spec:
  host: echo.app.svc.cluster.local
  trafficPolicy: { tls: { mode: ISTIO_MUTUAL } }
`;

const tlsJson = (ts: TransportSocket | undefined, server: boolean) => {
  if (!ts || ts.configType.case !== "typedConfig") return undefined;
  return server
    ? toJson(DownstreamTlsContextSchema, anyUnpack(ts.configType.value, DownstreamTlsContextSchema)!)
    : toJson(UpstreamTlsContextSchema, anyUnpack(ts.configType.value, UpstreamTlsContextSchema)!);
};

describe("proxyless gRPC security", () => {
  const client = grpcProxy("10.9.9.9", {});

  test("ISTIO_MUTUAL clusters use certificate provider instances and verify the SPIFFE identities", () => {
    const clusters = buildGrpcClusters(pushFrom(SERVICES, ISTIO_MUTUAL), client);
    const c = clusters.find((x) => x.name === "outbound|7070||echo.app.svc.cluster.local")!;
    expect(tlsJson(c.transportSocket, false)).toEqual({
      commonTlsContext: {
        tlsCertificateProviderInstance: { instanceName: "default", certificateName: "default" },
        validationContext: {
          caCertificateProviderInstance: { instanceName: "default", certificateName: "ROOTCA" },
          matchSubjectAltNames: [{ exact: "spiffe://cluster.local/ns/app/sa/echo" }],
        },
      },
      sni: "outbound_.7070_._.echo.app.svc.cluster.local",
    });
  });

  test("without a DestinationRule gRPC clients stay plaintext (no auto-mTLS, as Istio's grpcgen)", () => {
    const clusters = buildGrpcClusters(pushFrom(SERVICES), client);
    expect(clusters.every((c) => c.transportSocket === undefined)).toBe(true);
  });

  test("server listeners require client certificates under STRICT and are plaintext otherwise", () => {
    const server = grpcProxy("10.1.0.1", { app: "echo" });
    const strict = pushFrom(
      SERVICES,
      `
apiVersion: security.istio.io/v1
kind: PeerAuthentication
metadata: { name: default, namespace: app }
spec: { mtls: { mode: STRICT } }
`,
    );
    const [l] = buildGrpcListeners(strict, server, ["xds.istio.io/grpc/lds/inbound/10.1.0.1:7070"]);
    expect(l!.filterChains.map((c) => c.name)).toEqual(["inbound-mtls"]);
    expect(tlsJson(l!.filterChains[0]!.transportSocket, true)).toEqual({
      commonTlsContext: {
        tlsCertificateProviderInstance: { instanceName: "default", certificateName: "default" },
        validationContext: {
          caCertificateProviderInstance: { instanceName: "default", certificateName: "ROOTCA" },
        },
      },
      requireClientCertificate: true,
    });
    const [plain] = buildGrpcListeners(pushFrom(SERVICES), server, [
      "xds.istio.io/grpc/lds/inbound/10.1.0.1:7070",
    ]);
    expect(plain!.filterChains[0]!.transportSocket).toBeUndefined();
  });

  test("serverRbacFilters() gives the RBAC filters of the policies selecting the server", () => {
    const push = pushFrom(
      SERVICES,
      `
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: { name: echo, namespace: app }
spec:
  selector: { matchLabels: { app: echo } }
  rules: [{ to: [{ operation: { paths: ["/echo.Echo/*"] } }] }]
`,
    );
    const filters = serverRbacFilters(push, grpcProxy("10.1.0.1", { app: "echo" }));
    expect(filters.map((f) => f.name)).toEqual(["envoy.filters.http.rbac"]);
    const f = filters[0]!;
    const rbac = f.configType.case === "typedConfig"
      ? anyUnpack(f.configType.value, HttpRbacSchema)
      : undefined;
    expect(toJson(HttpRbacSchema, rbac!)).toEqual({
      rules: {
        policies: {
          "ns[app]-policy[echo]-rule[0]": {
            permissions: [{ urlPath: { path: { prefix: "/echo.Echo/" } } }],
            principals: [{ any: true }],
          },
        },
      },
    });
    expect(serverRbacFilters(push, grpcProxy("10.1.0.2", { app: "other" }))).toEqual([]);
  });
});
