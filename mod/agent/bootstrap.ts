/**
 * The bootstraps the agent writes next to the certificates:
 *
 * - `envoy-bootstrap.json`: an envoy.config.bootstrap.v3.Bootstrap built as a protobuf message
 *   and written as proto JSON (so it decodes with Envoy's own protos). ADS over gRPC to the
 *   discovery address through the `xds-grpc` cluster (mutual TLS with the SDS secrets `default`
 *   and `ROOTCA` unless the control plane auth policy is NONE), the `sds-grpc` cluster on the
 *   agent's Unix socket, and the admin interface on 127.0.0.1:15000.
 * - `grpc-bootstrap.json`: gRFC A27 for proxyless gRPC applications: `xds_servers` (xds_v3),
 *   the node with GENERATOR "grpc", a `file_watcher` certificate provider named `default` over
 *   the agent's cert-chain.pem, key.pem and root-cert.pem, and Istio's server listener name
 *   template. With mutual TLS to the control plane the server's channel_creds are gRFC A65
 *   `tls` credentials over the same files (Go, Java and C-core support them; grpc-js-xds 1.14
 *   knows only `insecure` and `google_default`, so a grpc-js application needs the plaintext
 *   port and `--control-plane-auth NONE`).
 *
 * @module
 */
import { create, createRegistry, type JsonObject, toJson } from "@bufbuild/protobuf";
import { anyPack } from "@bufbuild/protobuf/wkt";
import { isIP } from "node:net";
import { join } from "node:path";
import { type Bootstrap, BootstrapSchema } from "#gen/envoy/config/bootstrap/v3/bootstrap_pb.ts";
import {
  type Cluster,
  Cluster_DiscoveryType,
  ClusterSchema,
} from "#gen/envoy/config/cluster/v3/cluster_pb.ts";
import { type Address, AddressSchema } from "#gen/envoy/config/core/v3/address_pb.ts";
import { TransportSocketSchema } from "#gen/envoy/config/core/v3/base_pb.ts";
import {
  ApiConfigSource_ApiType,
  ApiConfigSourceSchema,
  ApiVersion,
  type ConfigSource,
  ConfigSourceSchema,
} from "#gen/envoy/config/core/v3/config_source_pb.ts";
import { GrpcServiceSchema } from "#gen/envoy/config/core/v3/grpc_service_pb.ts";
import { ClusterLoadAssignmentSchema } from "#gen/envoy/config/endpoint/v3/endpoint_pb.ts";
import {
  LbEndpointSchema,
  LocalityLbEndpointsSchema,
} from "#gen/envoy/config/endpoint/v3/endpoint_components_pb.ts";
import {
  file_envoy_extensions_transport_sockets_tls_v3_tls,
  UpstreamTlsContextSchema,
} from "#gen/envoy/extensions/transport_sockets/tls/v3/tls_pb.ts";
import { SdsSecretConfigSchema } from "#gen/envoy/extensions/transport_sockets/tls/v3/secret_pb.ts";
import {
  file_envoy_extensions_upstreams_http_v3_http_protocol_options,
  HttpProtocolOptionsSchema,
} from "#gen/envoy/extensions/upstreams/http/v3/http_protocol_options_pb.ts";
import { splitHostPort } from "../cli/setting.ts";
import { parseAddrList } from "./endpoints.ts";
import { CERT_CHAIN_FILE, KEY_FILE, ROOT_CERT_FILE, writeFileAtomic } from "./files.ts";
import { nodeId, nodeMetadata, type WorkloadInfo, xdsNode } from "./node.ts";
import { DEFAULT_SECRET, ROOT_SECRET } from "./sds_server.ts";

/** File name of the Envoy bootstrap in the output directory. */
export const ENVOY_BOOTSTRAP_FILE = "envoy-bootstrap.json";
/** File name of the proxyless gRPC bootstrap in the output directory. */
export const GRPC_BOOTSTRAP_FILE = "grpc-bootstrap.json";
/** The ADS cluster of the Envoy bootstrap. */
export const XDS_CLUSTER = "xds-grpc";
/** The SDS cluster of the Envoy bootstrap. */
export const SDS_CLUSTER = "sds-grpc";
/** Envoy's admin address (Istio's). */
export const ENVOY_ADMIN_ADDR = "127.0.0.1:15000";
/** How often gRPC's file_watcher re-reads the certificate files, at most. */
export const CERT_REFRESH_INTERVAL = "60s";

/**
 * The file_watcher refresh interval for certificates living `certTtlMs`: a tenth of the
 * lifetime (so a renewed certificate is picked up long before the old one expires), between 1 s
 * and CERT_REFRESH_INTERVAL.
 */
export function certRefreshInterval(certTtlMs: number | undefined): string {
  if (certTtlMs === undefined) return CERT_REFRESH_INTERVAL;
  return `${Math.max(1, Math.min(60, Math.floor(certTtlMs / 10_000)))}s`;
}
/** Istio's name template for proxyless gRPC server listeners. */
export const SERVER_LISTENER_TEMPLATE = "xds.istio.io/grpc/lds/inbound/%s";

/** How the workload authenticates to the control plane's xDS port. */
export type ControlPlaneAuth = "MUTUAL_TLS" | "NONE";

/** Inputs shared by both bootstraps. */
export interface BootstrapOptions {
  readonly workload: WorkloadInfo;
  /** HOST:PORT of pilot's xDS, or a comma list of its replicas. */
  readonly discoveryAddr: string;
  readonly controlPlaneAuth: ControlPlaneAuth;
  /** The directory holding cert-chain.pem, key.pem and root-cert.pem. */
  readonly certDir: string;
  /** The agent's SDS socket. */
  readonly sdsSocket: string;
  /** Name the discovery server's certificate must carry (SNI); default its host when a DNS name. */
  readonly discoveryServerName?: string;
  /** Envoy's admin address (default 127.0.0.1:15000). */
  readonly envoyAdminAddr?: string;
  /** Lifetime of the workload certificates; decides how often gRPC re-reads them. */
  readonly certTtlMs?: number;
}

/** The registry for the Any types the Envoy bootstrap packs, for JSON. */
export const bootstrapRegistry = createRegistry(
  file_envoy_extensions_transport_sockets_tls_v3_tls,
  file_envoy_extensions_upstreams_http_v3_http_protocol_options,
);

function hostPort(addr: string, what: string): { host: string; port: number } {
  const hp = splitHostPort(addr);
  if (hp === undefined || hp.host === "") {
    throw new Error(`${what}: want HOST:PORT, got ${JSON.stringify(addr)}`);
  }
  return hp;
}

function socketAddress(host: string, port: number): Address {
  return create(AddressSchema, {
    address: {
      case: "socketAddress",
      value: { address: host, portSpecifier: { case: "portValue", value: port } },
    },
  });
}

const http2Options = () => ({
  "envoy.extensions.upstreams.http.v3.HttpProtocolOptions": anyPack(
    HttpProtocolOptionsSchema,
    create(HttpProtocolOptionsSchema, {
      upstreamProtocolOptions: {
        case: "explicitHttpConfig",
        value: { protocolConfig: { case: "http2ProtocolOptions", value: {} } },
      },
    }),
  ),
});

function grpcSource(cluster: string) {
  return create(ApiConfigSourceSchema, {
    apiType: ApiConfigSource_ApiType.GRPC,
    transportApiVersion: ApiVersion.V3,
    setNodeOnFirstMessageOnly: true,
    grpcServices: [
      create(GrpcServiceSchema, { targetSpecifier: { case: "envoyGrpc", value: { clusterName: cluster } } }),
    ],
  });
}

function sdsSource(): ConfigSource {
  return create(ConfigSourceSchema, {
    configSourceSpecifier: { case: "apiConfigSource", value: grpcSource(SDS_CLUSTER) },
    resourceApiVersion: ApiVersion.V3,
    initialFetchTimeout: { seconds: 0n, nanos: 0 },
  });
}

const adsSource = () =>
  create(ConfigSourceSchema, {
    configSourceSpecifier: { case: "ads", value: {} },
    resourceApiVersion: ApiVersion.V3,
  });

/** The replicas of --discovery-addr. Throws, naming the setting, on a malformed list. */
function discoveryHosts(o: BootstrapOptions): Array<{ host: string; port: number }> {
  const addrs = parseAddrList(o.discoveryAddr, "--discovery-addr");
  return addrs.map((a) => hostPort(a, "--discovery-addr"));
}

function xdsCluster(o: BootstrapOptions): Cluster {
  const hosts = discoveryHosts(o);
  const named = hosts.find((h) => isIP(h.host) === 0);
  const sni = o.discoveryServerName ?? named?.host ?? "";
  return create(ClusterSchema, {
    name: XDS_CLUSTER,
    clusterDiscoveryType: {
      case: "type",
      value: named === undefined ? Cluster_DiscoveryType.STATIC : Cluster_DiscoveryType.STRICT_DNS,
    },
    connectTimeout: { seconds: 1n, nanos: 0 },
    loadAssignment: create(ClusterLoadAssignmentSchema, {
      clusterName: XDS_CLUSTER,
      endpoints: [create(LocalityLbEndpointsSchema, {
        lbEndpoints: hosts.map(({ host, port }) =>
          create(LbEndpointSchema, {
            hostIdentifier: { case: "endpoint", value: { address: socketAddress(host, port) } },
          })
        ),
      })],
    }),
    typedExtensionProtocolOptions: http2Options(),
    ...(o.controlPlaneAuth === "MUTUAL_TLS"
      ? {
        transportSocket: create(TransportSocketSchema, {
          name: "envoy.transport_sockets.tls",
          configType: {
            case: "typedConfig",
            value: anyPack(
              UpstreamTlsContextSchema,
              create(UpstreamTlsContextSchema, {
                sni,
                commonTlsContext: {
                  alpnProtocols: ["h2"],
                  tlsCertificateSdsSecretConfigs: [
                    create(SdsSecretConfigSchema, { name: DEFAULT_SECRET, sdsConfig: sdsSource() }),
                  ],
                  validationContextType: {
                    case: "validationContextSdsSecretConfig",
                    value: create(SdsSecretConfigSchema, { name: ROOT_SECRET, sdsConfig: sdsSource() }),
                  },
                },
              }),
            ),
          },
        }),
      }
      : {}),
  });
}

function sdsCluster(socket: string): Cluster {
  return create(ClusterSchema, {
    name: SDS_CLUSTER,
    clusterDiscoveryType: { case: "type", value: Cluster_DiscoveryType.STATIC },
    connectTimeout: { seconds: 1n, nanos: 0 },
    loadAssignment: create(ClusterLoadAssignmentSchema, {
      clusterName: SDS_CLUSTER,
      endpoints: [create(LocalityLbEndpointsSchema, {
        lbEndpoints: [create(LbEndpointSchema, {
          hostIdentifier: {
            case: "endpoint",
            value: { address: create(AddressSchema, { address: { case: "pipe", value: { path: socket } } }) },
          },
        })],
      })],
    }),
    typedExtensionProtocolOptions: http2Options(),
  });
}

/** Builds the Envoy bootstrap. Throws, naming the setting, on a malformed address. */
export function buildEnvoyBootstrap(o: BootstrapOptions): Bootstrap {
  const admin = hostPort(o.envoyAdminAddr ?? ENVOY_ADMIN_ADDR, "Envoy admin address");
  return create(BootstrapSchema, {
    node: xdsNode(o.workload, "sidecar"),
    staticResources: { clusters: [xdsCluster(o), sdsCluster(o.sdsSocket)] },
    dynamicResources: {
      ldsConfig: adsSource(),
      cdsConfig: adsSource(),
      adsConfig: grpcSource(XDS_CLUSTER),
    },
    admin: { address: socketAddress(admin.host, admin.port) },
  });
}

/** The Envoy bootstrap as proto JSON (snake_case field names, as Envoy's docs write them). */
export function envoyBootstrapJson(b: Bootstrap): JsonObject {
  return toJson(BootstrapSchema, b, { registry: bootstrapRegistry, useProtoFieldName: true }) as JsonObject;
}

/**
 * The gRPC target URIs of the xDS server, one `xds_servers` entry each. grpc-js-xds (1.14)
 * follows only the first entry, so replicas given as IP addresses of one family go into one
 * `ipv4:`/`ipv6:` address list, which its pick_first policy fails over within; one HOST:PORT
 * stays as it is (gRPC's resolver follows every address of a name). A list holding host names
 * becomes one entry per item, in order (gRFC A71 fallback, which grpc-js-xds 1.14 does not
 * follow: give such clients one name resolving to every replica, or the replicas' addresses).
 */
export function xdsServerUris(discoveryAddr: string): string[] {
  const addrs = parseAddrList(discoveryAddr, "--discovery-addr");
  const families = new Set(addrs.map((a) => isIP(hostPort(a, "--discovery-addr").host)));
  if (addrs.length === 1 || families.size !== 1 || families.has(0)) return addrs;
  return [`${families.has(6) ? "ipv6" : "ipv4"}:${addrs.join(",")}`];
}

/** Builds the proxyless gRPC bootstrap (gRFC A27 JSON). */
export function buildGrpcBootstrap(o: BootstrapOptions): JsonObject {
  const serverUris = xdsServerUris(o.discoveryAddr);
  const files = {
    certificate_file: join(o.certDir, CERT_CHAIN_FILE),
    private_key_file: join(o.certDir, KEY_FILE),
    ca_certificate_file: join(o.certDir, ROOT_CERT_FILE),
    refresh_interval: certRefreshInterval(o.certTtlMs),
  };
  return {
    xds_servers: serverUris.map((uri) => ({
      server_uri: uri,
      channel_creds: o.controlPlaneAuth === "MUTUAL_TLS"
        ? [{ type: "tls", config: files }]
        : [{ type: "insecure" }],
      server_features: ["xds_v3"],
    })),
    node: {
      id: nodeId(o.workload, "proxyless"),
      metadata: nodeMetadata(o.workload, { GENERATOR: "grpc" }),
      locality: {},
    },
    certificate_providers: { default: { plugin_name: "file_watcher", config: files } },
    server_listener_resource_name_template: SERVER_LISTENER_TEMPLATE,
  };
}

/** Writes both bootstraps into `dir` atomically and returns their paths. */
export function writeBootstraps(dir: string, o: BootstrapOptions): { envoy: string; grpc: string } {
  const envoy = join(dir, ENVOY_BOOTSTRAP_FILE);
  const grpc = join(dir, GRPC_BOOTSTRAP_FILE);
  writeFileAtomic(envoy, JSON.stringify(envoyBootstrapJson(buildEnvoyBootstrap(o)), null, 2) + "\n", 0o644);
  writeFileAtomic(grpc, JSON.stringify(buildGrpcBootstrap(o), null, 2) + "\n", 0o644);
  return { envoy, grpc };
}
