import { describe, expect, test } from "bun:test";
import { createRegistry, fromJson, type JsonObject } from "@bufbuild/protobuf";
import { anyUnpack } from "@bufbuild/protobuf/wkt";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { BootstrapSchema } from "#gen/envoy/config/bootstrap/v3/bootstrap_pb.ts";
import { Cluster_DiscoveryType } from "#gen/envoy/config/cluster/v3/cluster_pb.ts";
import {
  file_envoy_extensions_transport_sockets_tls_v3_tls,
  UpstreamTlsContextSchema,
} from "#gen/envoy/extensions/transport_sockets/tls/v3/tls_pb.ts";
import { file_envoy_extensions_upstreams_http_v3_http_protocol_options } from "#gen/envoy/extensions/upstreams/http/v3/http_protocol_options_pb.ts";
import {
  type BootstrapOptions,
  buildGrpcBootstrap,
  ENVOY_BOOTSTRAP_FILE,
  GRPC_BOOTSTRAP_FILE,
  writeBootstraps,
} from "../../mod/agent/bootstrap.ts";
import { proxyFromNode } from "../../mod/pilot/model/proxy.ts";

// Envoy's own descriptors, independent of the registry the agent writes with.
const registry = createRegistry(
  file_envoy_extensions_transport_sockets_tls_v3_tls,
  file_envoy_extensions_upstreams_http_v3_http_protocol_options,
);

const opts: BootstrapOptions = {
  workload: {
    ip: "10.1.2.3",
    name: "vm-1",
    namespace: "vms",
    serviceAccount: "app-sa",
    trustDomain: "cluster.local",
    labels: { app: "ratings", version: "v1" },
    workloadGroup: "ratings",
  },
  discoveryAddr: "10.0.0.1:15012",
  controlPlaneAuth: "MUTUAL_TLS",
  certDir: "/var/run/meshd-agent",
  sdsSocket: "/var/run/meshd-agent/sds.sock",
};

function written(o: BootstrapOptions) {
  const dir = mkdtempSync(join(tmpdir(), "meshd-agent-boot-"));
  try {
    const paths = writeBootstraps(dir, o);
    expect(paths.envoy).toBe(join(dir, ENVOY_BOOTSTRAP_FILE));
    return {
      envoy: JSON.parse(readFileSync(paths.envoy, "utf8")) as JsonObject,
      grpc: JSON.parse(readFileSync(join(dir, GRPC_BOOTSTRAP_FILE), "utf8")) as JsonObject,
    };
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

describe("Envoy bootstrap", () => {
  test("decodes with Envoy's Bootstrap schema: node, ADS via xds-grpc, SDS cluster on the socket, admin", () => {
    const json = written(opts).envoy;
    const b = fromJson(BootstrapSchema, json, { registry });
    expect(b.node!.id).toBe("sidecar~10.1.2.3~vm-1.vms~vms.svc.cluster.local");
    expect(b.node!.cluster).toBe("ratings.vms");
    expect(b.node!.metadata).toMatchObject({
      NAMESPACE: "vms",
      LABELS: { app: "ratings", version: "v1" },
      SERVICE_ACCOUNT: "app-sa",
      AUTO_REGISTER_GROUP: "ratings",
      INSTANCE_IPS: "10.1.2.3",
    });
    const proxy = proxyFromNode(b.node!);
    expect([proxy.type, proxy.ip, proxy.namespace, proxy.autoRegisterGroup]).toEqual([
      "sidecar",
      "10.1.2.3",
      "vms",
      "ratings",
    ]);

    const ads = b.dynamicResources!.adsConfig!;
    expect(ads.grpcServices[0]!.targetSpecifier).toEqual(expect.objectContaining({ case: "envoyGrpc" }));
    expect((ads.grpcServices[0]!.targetSpecifier.value as { clusterName: string }).clusterName).toBe(
      "xds-grpc",
    );
    expect(b.dynamicResources!.cdsConfig!.configSourceSpecifier.case).toBe("ads");
    expect(b.dynamicResources!.ldsConfig!.configSourceSpecifier.case).toBe("ads");

    const [xds, sds] = b.staticResources!.clusters;
    expect(xds!.name).toBe("xds-grpc");
    expect(xds!.clusterDiscoveryType.value).toBe(Cluster_DiscoveryType.STATIC);
    const ep = xds!.loadAssignment!.endpoints[0]!.lbEndpoints[0]!.hostIdentifier.value as {
      address: { address: { value: { address: string; portSpecifier: { value: number } } } };
    };
    expect(ep.address.address.value.address).toBe("10.0.0.1");
    expect(ep.address.address.value.portSpecifier.value).toBe(15012);
    expect(Object.keys(xds!.typedExtensionProtocolOptions)).toEqual([
      "envoy.extensions.upstreams.http.v3.HttpProtocolOptions",
    ]);
    const tls = anyUnpack(xds!.transportSocket!.configType.value as never, UpstreamTlsContextSchema)!;
    expect(tls.commonTlsContext!.tlsCertificateSdsSecretConfigs.map((s) => s.name)).toEqual(["default"]);
    expect(tls.commonTlsContext!.validationContextType.case).toBe("validationContextSdsSecretConfig");
    expect((tls.commonTlsContext!.validationContextType.value as { name: string }).name).toBe("ROOTCA");
    const sdsSource = tls.commonTlsContext!.tlsCertificateSdsSecretConfigs[0]!.sdsConfig!;
    expect(sdsSource.configSourceSpecifier.case).toBe("apiConfigSource");

    expect(sds!.name).toBe("sds-grpc");
    const pipe = sds!.loadAssignment!.endpoints[0]!.lbEndpoints[0]!.hostIdentifier.value as {
      address: { address: { case: string; value: { path: string } } };
    };
    expect(pipe.address.address).toEqual(expect.objectContaining({ case: "pipe" }));
    expect(pipe.address.address.value.path).toBe("/var/run/meshd-agent/sds.sock");
    const admin = b.admin!.address!.address.value as { address: string; portSpecifier: { value: number } };
    expect([admin.address, admin.portSpecifier.value]).toEqual(["127.0.0.1", 15000]);
    // Written with Envoy's snake_case names.
    expect(Object.keys(json).sort()).toEqual(["admin", "dynamic_resources", "node", "static_resources"]);
  });

  test("a DNS discovery address uses STRICT_DNS and sends its name as SNI; NONE has no transport socket", () => {
    const b = fromJson(
      BootstrapSchema,
      written({ ...opts, discoveryAddr: "meshd.example.internal:15012" }).envoy,
      { registry },
    );
    const xds = b.staticResources!.clusters[0]!;
    expect(xds.clusterDiscoveryType.value).toBe(Cluster_DiscoveryType.STRICT_DNS);
    expect(anyUnpack(xds.transportSocket!.configType.value as never, UpstreamTlsContextSchema)!.sni).toBe(
      "meshd.example.internal",
    );
    const plain = fromJson(BootstrapSchema, written({ ...opts, controlPlaneAuth: "NONE" }).envoy, {
      registry,
    });
    expect(plain.staticResources!.clusters[0]!.transportSocket).toBeUndefined();
    const noGroup = fromJson(
      BootstrapSchema,
      written({ ...opts, workload: { ...opts.workload, workloadGroup: undefined } }).envoy,
      { registry },
    );
    expect(noGroup.node!.metadata!.AUTO_REGISTER_GROUP).toBeUndefined();
  });

  test("a malformed discovery address is refused, naming the setting", () => {
    expect(() => written({ ...opts, discoveryAddr: "nohost" })).toThrow(/--discovery-addr: want HOST:PORT/);
    expect(() => written({ ...opts, discoveryAddr: "10.0.0.1:15012,nohost" })).toThrow(
      '--discovery-addr: item 2 of the list: want HOST:PORT (port 0-65535), got "nohost"',
    );
  });

  test("a list of replicas gives the xds-grpc cluster one endpoint each, STRICT_DNS when one is a name", () => {
    const endpoints = (discoveryAddr: string) => {
      const b = fromJson(BootstrapSchema, written({ ...opts, discoveryAddr }).envoy, { registry });
      const xds = b.staticResources!.clusters[0]!;
      const addrs = xds.loadAssignment!.endpoints[0]!.lbEndpoints.map((e) => {
        const sa = (e.hostIdentifier.value as {
          address: { address: { value: { address: string; portSpecifier: { value: number } } } };
        })
          .address.address.value;
        return `${sa.address}:${sa.portSpecifier.value}`;
      });
      return { type: xds.clusterDiscoveryType.value, addrs };
    };
    expect(endpoints("10.0.0.1:15012,10.0.0.2:15012,10.0.0.3:15013")).toEqual({
      type: Cluster_DiscoveryType.STATIC,
      addrs: ["10.0.0.1:15012", "10.0.0.2:15012", "10.0.0.3:15013"],
    });
    expect(endpoints("10.0.0.1:15012,meshd-b.example.internal:15012")).toEqual({
      type: Cluster_DiscoveryType.STRICT_DNS,
      addrs: ["10.0.0.1:15012", "meshd-b.example.internal:15012"],
    });
  });
});

describe("gRPC bootstrap", () => {
  test("has xds_v3, the grpc generator, a file_watcher provider over the agent's files and Istio's listener template", () => {
    const g = buildGrpcBootstrap({ ...opts, controlPlaneAuth: "NONE", discoveryAddr: "127.0.0.1:15010" });
    expect(g).toEqual({
      xds_servers: [{
        server_uri: "127.0.0.1:15010",
        channel_creds: [{ type: "insecure" }],
        server_features: ["xds_v3"],
      }],
      node: {
        id: "proxyless~10.1.2.3~vm-1.vms~vms.svc.cluster.local",
        metadata: {
          NAMESPACE: "vms",
          LABELS: { app: "ratings", version: "v1" },
          SERVICE_ACCOUNT: "app-sa",
          INSTANCE_IPS: "10.1.2.3",
          WORKLOAD_NAME: "vm-1",
          AUTO_REGISTER_GROUP: "ratings",
          GENERATOR: "grpc",
        },
        locality: {},
      },
      certificate_providers: {
        default: {
          plugin_name: "file_watcher",
          config: {
            certificate_file: "/var/run/meshd-agent/cert-chain.pem",
            private_key_file: "/var/run/meshd-agent/key.pem",
            ca_certificate_file: "/var/run/meshd-agent/root-cert.pem",
            refresh_interval: "60s",
          },
        },
      },
      server_listener_resource_name_template: "xds.istio.io/grpc/lds/inbound/%s",
    });
  });

  test("replicas given as IP addresses become one ipv4:/ipv6: target; names one xds_servers entry each", () => {
    const uris = (discoveryAddr: string) =>
      (buildGrpcBootstrap({ ...opts, discoveryAddr }).xds_servers as JsonObject[]).map((x) => x.server_uri);
    expect(uris("10.0.0.1:15012")).toEqual(["10.0.0.1:15012"]);
    expect(uris("meshd.example.internal:15012")).toEqual(["meshd.example.internal:15012"]);
    expect(uris("10.0.0.1:15012, 10.0.0.2:15012")).toEqual(["ipv4:10.0.0.1:15012,10.0.0.2:15012"]);
    expect(uris("[fd00::1]:15012,[fd00::2]:15012")).toEqual(["ipv6:[fd00::1]:15012,[fd00::2]:15012"]);
    expect(uris("a.example:15012,b.example:15012")).toEqual(["a.example:15012", "b.example:15012"]);
  });

  test("grpc-js-xds's bootstrap validation accepts it", async () => {
    const { validateBootstrapConfig } = await import("@grpc/grpc-js-xds/build/src/xds-bootstrap.js") as {
      validateBootstrapConfig(o: unknown): {
        node: { id: string };
        certificateProviders: Record<string, { pluginName: string; config: { refreshIntervalMs: number } }>;
        serverListenerResourceNameTemplate: string;
      };
    };
    const v = validateBootstrapConfig(written({ ...opts, controlPlaneAuth: "NONE" }).grpc);
    expect(v.node.id).toBe("proxyless~10.1.2.3~vm-1.vms~vms.svc.cluster.local");
    expect(v.certificateProviders.default!.pluginName).toBe("file_watcher");
    expect(v.certificateProviders.default!.config.refreshIntervalMs).toBe(60_000);
    expect(v.serverListenerResourceNameTemplate).toBe("xds.istio.io/grpc/lds/inbound/%s");
  });

  test("with mutual TLS to the control plane the server uses gRFC A65 tls credentials over the same files", () => {
    const g = buildGrpcBootstrap(opts) as { xds_servers: Array<{ channel_creds: unknown }> };
    expect(g.xds_servers[0]!.channel_creds).toEqual([{
      type: "tls",
      config: {
        certificate_file: "/var/run/meshd-agent/cert-chain.pem",
        private_key_file: "/var/run/meshd-agent/key.pem",
        ca_certificate_file: "/var/run/meshd-agent/root-cert.pem",
        refresh_interval: "60s",
      },
    }]);
  });
});

test("certRefreshInterval() re-reads certificates at a tenth of their lifetime, between 1 s and 60 s", async () => {
  const { certRefreshInterval } = await import("../../mod/agent/bootstrap.ts");
  expect(certRefreshInterval(undefined)).toBe("60s");
  expect(certRefreshInterval(24 * 3_600_000)).toBe("60s");
  expect(certRefreshInterval(120_000)).toBe("12s");
  expect(certRefreshInterval(20_000)).toBe("2s");
  expect(certRefreshInterval(3_000)).toBe("1s");
});
