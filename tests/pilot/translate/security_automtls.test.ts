import { describe, expect, test } from "bun:test";
import { anyUnpack } from "@bufbuild/protobuf/wkt";
import type { Cluster } from "#gen/envoy/config/cluster/v3/cluster_pb.ts";
import { UpstreamTlsContextSchema } from "#gen/envoy/extensions/transport_sockets/tls/v3/tls_pb.ts";
import { buildClusters } from "../../../mod/pilot/translate/mod.ts";
import { pushFrom, sidecar } from "../_push.ts";

const entry = (name: string, endpoints: string, extra = "") => `
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: { name: ${name}, namespace: app }
spec:
  hosts: [${name}.app.svc.cluster.local]
  location: MESH_INTERNAL
  resolution: STATIC
  ports: [{ number: 80, name: http, protocol: HTTP }]
  endpoints: ${endpoints}
${extra}`;

const SERVICES = [
  entry(
    "mesh",
    "[{ address: 10.0.0.1, serviceAccount: mesh-sa, labels: { app: mesh } }, { address: 10.0.0.2, serviceAccount: other-sa, labels: { app: mesh } }]",
  ),
  entry("plain", "[{ address: 10.0.1.1 }]"),
  entry("mixed", "[{ address: 10.0.2.1, serviceAccount: a }, { address: 10.0.2.2 }]"),
  entry(
    "optout",
    "[{ address: 10.0.3.1, serviceAccount: a, labels: { security.istio.io/tlsMode: disabled } }]",
  ),
  entry("legacy", "[{ address: 10.0.4.1, serviceAccount: legacy, labels: { app: legacy } }]"),
  `
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: { name: ext, namespace: app }
spec:
  hosts: [ext.example.com]
  location: MESH_EXTERNAL
  resolution: STATIC
  ports: [{ number: 80, name: http, protocol: HTTP }]
  endpoints: [{ address: 192.0.2.1, serviceAccount: x }]
`,
];

const client = sidecar("10.9.9.9", "app", {});

function tlsOf(clusters: Cluster[], name: string) {
  const c = clusters.find((x) => x.name === name);
  if (!c) throw new Error(`no cluster ${name}`);
  const ts = c.transportSocket;
  if (!ts || ts.configType.case !== "typedConfig") return undefined;
  return anyUnpack(ts.configType.value, UpstreamTlsContextSchema);
}

describe("auto-mTLS", () => {
  test("clusters whose endpoints all carry a mesh identity get ISTIO_MUTUAL with their SPIFFE SANs", () => {
    const clusters = buildClusters(pushFrom(...SERVICES), client);
    const tls = tlsOf(clusters, "outbound|80||mesh.app.svc.cluster.local")!;
    expect(tls.sni).toBe("outbound_.80_._.mesh.app.svc.cluster.local");
    const common = tls.commonTlsContext!;
    expect(common.tlsCertificateSdsSecretConfigs.map((s) => s.name)).toEqual(["default"]);
    expect(common.validationContextType.case).toBe("combinedValidationContext");
    const v = common.validationContextType.case === "combinedValidationContext"
      ? common.validationContextType.value
      : undefined;
    expect(v?.validationContextSdsSecretConfig?.name).toBe("ROOTCA");
    expect(v?.defaultValidationContext?.matchSubjectAltNames.map((m) => m.matchPattern.value)).toEqual([
      "spiffe://cluster.local/ns/app/sa/mesh-sa",
      "spiffe://cluster.local/ns/app/sa/other-sa",
    ]);
  });

  test("plaintext for endpoints without identity, mixed clusters, tlsMode disabled and mesh-external services", () => {
    const clusters = buildClusters(pushFrom(...SERVICES), client);
    for (
      const host of [
        "plain.app.svc.cluster.local",
        "mixed.app.svc.cluster.local",
        "optout.app.svc.cluster.local",
        "ext.example.com",
      ]
    ) {
      expect(tlsOf(clusters, `outbound|80||${host}`)).toBeUndefined();
    }
  });

  test("a DISABLE PeerAuthentication at the destination turns auto-mTLS off", () => {
    const push = pushFrom(
      ...SERVICES,
      `
apiVersion: security.istio.io/v1
kind: PeerAuthentication
metadata: { name: legacy, namespace: app }
spec:
  selector: { matchLabels: { app: legacy } }
  mtls: { mode: DISABLE }
`,
    );
    const clusters = buildClusters(push, client);
    expect(tlsOf(clusters, "outbound|80||legacy.app.svc.cluster.local")).toBeUndefined();
    expect(tlsOf(clusters, "outbound|80||mesh.app.svc.cluster.local")).toBeDefined();
  });

  test("a DestinationRule tls setting wins, and enableAutoMtls: false turns the feature off", () => {
    const dr = pushFrom(
      ...SERVICES,
      `
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: { name: mesh, namespace: app }
spec:
  host: mesh.app.svc.cluster.local
  trafficPolicy: { tls: { mode: DISABLE } }
`,
    );
    expect(tlsOf(buildClusters(dr, client), "outbound|80||mesh.app.svc.cluster.local")).toBeUndefined();
    const off = pushFrom(
      ...SERVICES,
      `
apiVersion: config.meshd.io/v1alpha1
kind: MeshConfig
metadata: { name: mesh, namespace: istio-system }
spec: { enableAutoMtls: false }
`,
    );
    expect(tlsOf(buildClusters(off, client), "outbound|80||mesh.app.svc.cluster.local")).toBeUndefined();
  });

  test("output is deterministic", () => {
    const a = buildClusters(pushFrom(...SERVICES), client);
    const b = buildClusters(pushFrom(...[...SERVICES].reverse()), client);
    expect(a).toEqual(b);
  });
});
