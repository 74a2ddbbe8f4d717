/**
 * AuthorizationPolicy CUSTOM end to end with a real external authorizer: meshd's own mixer (a
 * `meshd serve --modules=mixer` process with a listchecker rule) named as an `envoyExtAuthzGrpc`
 * provider. The sidecar config pilot generates is followed as Envoy would follow it (ext_authz
 * filter → its cluster → that cluster's endpoint), and the Check request Envoy sends for a
 * request the CUSTOM rule matches is made there: allowed for a listed user, denied otherwise.
 * There is no Envoy binary here; the filter config plus a real Check call is the shape used in
 * tests/mixer too.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { createClient } from "@connectrpc/connect";
import { createGrpcTransport } from "@connectrpc/connect-node";
import { anyUnpack } from "@bufbuild/protobuf/wkt";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { ExtAuthzSchema } from "#gen/envoy/extensions/filters/http/ext_authz/v3/ext_authz_pb.ts";
import { RBACSchema as HttpRbacSchema } from "#gen/envoy/extensions/filters/http/rbac/v3/rbac_pb.ts";
import { HttpConnectionManagerSchema } from "#gen/envoy/extensions/filters/network/http_connection_manager/v3/http_connection_manager_pb.ts";
import { Authorization } from "#gen/envoy/service/auth/v3/external_auth_pb.ts";
import { buildEndpoints, buildListeners } from "../../../mod/pilot/translate/mod.ts";
import { eventually, type MeshdProcess, startMeshd } from "../../e2e/_meshd.ts";
import { docs, mixerYaml } from "../../mixer/_harness.ts";
import { pushFrom, WEB_SERVICE, webSidecar } from "../_push.ts";

const MIXER_POLICY = docs(
  mixerYaml("handler", "admins", {
    compiledAdapter: "listchecker",
    params: { overrides: ["alice"], cachingInterval: "200ms", cachingUseCount: 100 },
  }),
  mixerYaml("instance", "user", {
    compiledTemplate: "listentry",
    params: { value: 'request.headers["x-user"]' },
  }),
  mixerYaml("rule", "admins", {
    match: 'request.path.startsWith("/admin/")',
    actions: [{ handler: "admins", instances: ["user"] }],
  }),
);

/** The sidecar's config: mixer named as the CUSTOM provider through a ServiceEntry for meshd. */
const sidecarConfig = (port: number) => `
apiVersion: config.meshd.io/v1alpha1
kind: MeshConfig
metadata: { name: mesh, namespace: istio-system }
spec:
  extensionProviders:
    - name: meshd-mixer
      envoyExtAuthzGrpc: { service: istio-system/meshd, port: ${port}, timeout: 1s }
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: { name: meshd, namespace: istio-system }
spec:
  hosts: [meshd.istio-system.svc.cluster.local]
  location: MESH_INTERNAL
  resolution: STATIC
  ports: [{ number: ${port}, name: grpc, protocol: GRPC }]
  endpoints: [{ address: 127.0.0.1 }]
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: { name: admin, namespace: app }
spec:
  selector: { matchLabels: { app: web } }
  action: CUSTOM
  provider: { name: meshd-mixer }
  rules: [{ to: [{ operation: { paths: ["/admin/*"] } }] }]
`;

/** The CheckRequest Envoy's ext_authz sends for an inbound HTTP request to web. */
const envoyCheck = (user: string, path: string) => ({
  attributes: {
    source: {
      address: {
        address: {
          case: "socketAddress" as const,
          value: { address: "10.0.0.7", portSpecifier: { case: "portValue" as const, value: 41000 } },
        },
      },
      principal: "spiffe://cluster.local/ns/app/sa/client",
    },
    destination: {
      address: {
        address: {
          case: "socketAddress" as const,
          value: { address: "10.0.0.1", portSpecifier: { case: "portValue" as const, value: 80 } },
        },
      },
    },
    request: {
      http: {
        method: "GET",
        path,
        host: "web.app.svc.cluster.local",
        scheme: "http",
        protocol: "HTTP/1.1",
        headers: { "x-user": user, ":path": path, ":method": "GET" },
      },
    },
  },
});

describe("CUSTOM provider: meshd's mixer as the external authorizer", () => {
  const dir = mkdtempSync(join(tmpdir(), "meshd-custom-authz-"));
  let meshd: MeshdProcess;

  beforeAll(async () => {
    writeFileSync(join(dir, "policy.yaml"), MIXER_POLICY);
    meshd = await startMeshd({ args: ["--modules=mixer", `--config-dir=${dir}`, "--config-debounce=20ms"] });
    expect(
      await eventually(async () => (await fetch(`http://${meshd.adminAddr}/healthz/ready`)).status === 200),
    ).toBe(true);
  });
  afterAll(async () => {
    await meshd?.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  test(
    "the generated ext_authz points /admin/ requests at mixer, which allows alice and denies mallory",
    async () => {
      const port = Number(meshd.grpcAddr.slice(meshd.grpcAddr.lastIndexOf(":") + 1));
      const push = pushFrom(WEB_SERVICE, sidecarConfig(port));
      const web = webSidecar();

      // Envoy's view: the inbound connection manager's CUSTOM filters.
      const inbound = buildListeners(push, web).find((l) => l.name === "virtualInbound")!;
      const hcmAny = inbound.filterChains.flatMap((fc) => fc.filters).find((f) =>
        f.name === "envoy.filters.network.http_connection_manager"
      )!;
      const hcm = anyUnpack(
        hcmAny.configType.case === "typedConfig" ? hcmAny.configType.value : undefined!,
        HttpConnectionManagerSchema,
      )!;
      const [shadowFilter, authzFilter] = hcm.httpFilters;
      expect([shadowFilter!.name, authzFilter!.name]).toEqual([
        "envoy.filters.http.rbac",
        "envoy.filters.http.ext_authz",
      ]);
      const shadow = anyUnpack(
        shadowFilter!.configType.case === "typedConfig" ? shadowFilter!.configType.value : undefined!,
        HttpRbacSchema,
      )!;
      const extAuthz = anyUnpack(
        authzFilter!.configType.case === "typedConfig" ? authzFilter!.configType.value : undefined!,
        ExtAuthzSchema,
      )!;

      // The shadow rule for /admin/* is what enables ext_authz: its name carries the filter's prefix.
      const enabledPrefix = extAuthz.filterEnabledMetadata!.value!.matchPattern.case === "stringMatch"
        ? extAuthz.filterEnabledMetadata!.value!.matchPattern.value.matchPattern.value as string
        : "";
      const [ruleName] = Object.keys(shadow.shadowRules!.policies);
      expect(ruleName!.startsWith(enabledPrefix)).toBe(true);
      expect(JSON.stringify(shadow.shadowRules!.policies[ruleName!]!.permissions)).toContain(
        '"value":"/admin/"',
      );

      // ext_authz → cluster → endpoint: the address Envoy would call.
      const service = extAuthz.services.case === "grpcService" ? extAuthz.services.value : undefined;
      const cluster = service?.targetSpecifier.case === "envoyGrpc"
        ? service.targetSpecifier.value.clusterName
        : "";
      expect(cluster).toBe(`outbound|${port}||meshd.istio-system.svc.cluster.local`);
      const cla = buildEndpoints(push, web).find((c) => c.clusterName === cluster)!;
      const socket = cla.endpoints[0]!.lbEndpoints[0]!.hostIdentifier;
      const address = socket.case === "endpoint" && socket.value.address?.address.case === "socketAddress"
        ? socket.value.address.address.value
        : undefined;
      expect(address?.address).toBe("127.0.0.1");
      const target = `${address!.address}:${address!.portSpecifier.value}`;
      expect(target).toBe(meshd.grpcAddr);

      // The Check Envoy sends there, answered by mixer's listchecker rule.
      const authz = createClient(Authorization, createGrpcTransport({ baseUrl: `http://${target}` }));
      const allowed = await authz.check(envoyCheck("alice", "/admin/users"));
      expect(allowed.status?.code ?? 0).toBe(0);
      expect(allowed.httpResponse.case).toBe("okResponse");
      const denied = await authz.check(envoyCheck("mallory", "/admin/users"));
      expect(denied.status?.code).not.toBe(0);
      expect(denied.status?.message).toContain("mallory is not whitelisted");
      expect(denied.httpResponse.case).toBe("deniedResponse");
    },
    30_000,
  );
});
