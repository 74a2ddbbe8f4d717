/**
 * TLS transport sockets: the upstream side (DestinationRule `tls`: DISABLE, SIMPLE, MUTUAL,
 * ISTIO_MUTUAL) and the downstream side of gateway servers. Secrets come from the node agent's
 * SDS server (the `sds-grpc` cluster of the Envoy bootstrap): the workload's own certificate is
 * the secret `default`, the mesh root `ROOTCA`, a `credentialName` names its own secret and its
 * CA `<credentialName>-cacert` (the agent reads both from its credential directory, see
 * mod/agent/sds_server.ts).
 *
 * This file is the seam for the security work: auto-mTLS (transport socket matches on the
 * endpoints' `tlsMode`) and PeerAuthentication (inbound filter chains) build on these functions.
 *
 * @module
 */
import { create } from "@bufbuild/protobuf";
import {
  ApiConfigSource_ApiType,
  ApiVersion,
  type ConfigSource,
  ConfigSourceSchema,
} from "#gen/envoy/config/core/v3/config_source_pb.ts";
import { type TransportSocket, TransportSocketSchema } from "#gen/envoy/config/core/v3/base_pb.ts";
import {
  type CertificateValidationContext,
  CertificateValidationContext_TrustChainVerification,
  CertificateValidationContextSchema,
  type TlsCertificate,
  TlsCertificateSchema,
  type TlsParameters,
  TlsParameters_TlsProtocol,
  TlsParametersSchema,
} from "#gen/envoy/extensions/transport_sockets/tls/v3/common_pb.ts";
import {
  type SdsSecretConfig,
  SdsSecretConfigSchema,
} from "#gen/envoy/extensions/transport_sockets/tls/v3/secret_pb.ts";
import {
  type CommonTlsContext,
  CommonTlsContext_CombinedCertificateValidationContextSchema,
  CommonTlsContextSchema,
  type DownstreamTlsContext,
  DownstreamTlsContextSchema,
  type UpstreamTlsContext,
  UpstreamTlsContextSchema,
} from "#gen/envoy/extensions/transport_sockets/tls/v3/tls_pb.ts";
import type { ClientTLSSettings, ServerTLSSettings, TLSProtocol } from "../../api/kinds/networking.ts";
import { isHttp2Protocol, type Protocol } from "../model/service.ts";
import { exactMatcher, typedConfig, zeroDuration } from "./conversion.ts";

/** The Envoy bootstrap cluster that reaches the node agent's SDS server. */
export const SDS_CLUSTER = "sds-grpc";
/** SDS name of the workload's own certificate and key. */
export const SDS_WORKLOAD_CERT = "default";
/** SDS name of the mesh's root certificate. */
export const SDS_ROOT_CA = "ROOTCA";
/** The CA bundle used to verify external servers when a rule names no `caCertificates`. */
export const SYSTEM_CA_FILE = "/etc/ssl/certs/ca-certificates.crt";
/** The transport socket name Envoy knows TLS by. */
export const TLS_TRANSPORT_SOCKET = "envoy.transport_sockets.tls";

/** `spiffe://TRUST_DOMAIN/ns/NAMESPACE/sa/SERVICE_ACCOUNT`. */
export function spiffeId(trustDomain: string, namespace: string, serviceAccount: string): string {
  return `spiffe://${trustDomain}/ns/${namespace}/sa/${serviceAccount}`;
}

/** Where secrets are fetched from: the node agent's SDS server over the bootstrap's `sds-grpc` cluster. */
export function agentSdsConfig(): ConfigSource {
  return create(ConfigSourceSchema, {
    configSourceSpecifier: {
      case: "apiConfigSource",
      value: {
        apiType: ApiConfigSource_ApiType.GRPC,
        transportApiVersion: ApiVersion.V3,
        grpcServices: [{ targetSpecifier: { case: "envoyGrpc", value: { clusterName: SDS_CLUSTER } } }],
        setNodeOnFirstMessageOnly: true,
      },
    },
    initialFetchTimeout: zeroDuration(),
    resourceApiVersion: ApiVersion.V3,
  });
}

/** A secret fetched by name from the node agent. */
export function sdsSecret(name: string): SdsSecretConfig {
  return create(SdsSecretConfigSchema, { name, sdsConfig: agentSdsConfig() });
}

/** What upstream TLS needs to know about the destination. */
export interface UpstreamTlsTarget {
  /** The service's host name. */
  readonly host: string;
  readonly port: number;
  readonly protocol: Protocol;
  /** Subset name, "" for the service's default cluster. */
  readonly subset: string;
  /** SPIFFE identities the destination's workloads present, for ISTIO_MUTUAL. */
  readonly identities: readonly string[];
}

/** Istio's SNI for mesh mTLS: `outbound_.PORT_.SUBSET_.HOST`. */
export function istioMtlsSni(target: Pick<UpstreamTlsTarget, "host" | "port" | "subset">): string {
  return `outbound_.${target.port}_.${target.subset}_.${target.host}`;
}

function validationFromSettings(
  tls: ClientTLSSettings,
  sans: readonly string[],
): CertificateValidationContext {
  return create(CertificateValidationContextSchema, {
    trustedCa: { specifier: { case: "filename", value: tls.caCertificates || SYSTEM_CA_FILE } },
    matchSubjectAltNames: sans.map(exactMatcher),
    ...(tls.caCrl ? { crl: { specifier: { case: "filename", value: tls.caCrl } } } : {}),
  });
}

function fileCertificate(chain: string, key: string): TlsCertificate {
  return create(TlsCertificateSchema, {
    certificateChain: { specifier: { case: "filename", value: chain } },
    privateKey: { specifier: { case: "filename", value: key } },
  });
}

/** The mesh identity: the workload certificate and the mesh root, both over SDS. */
function istioMutualContext(sans: readonly string[], alpn: readonly string[]): CommonTlsContext {
  return create(CommonTlsContextSchema, {
    tlsCertificateSdsSecretConfigs: [sdsSecret(SDS_WORKLOAD_CERT)],
    validationContextType: {
      case: "combinedValidationContext",
      value: {
        defaultValidationContext: { matchSubjectAltNames: sans.map(exactMatcher) },
        validationContextSdsSecretConfig: sdsSecret(SDS_ROOT_CA),
      },
    },
    alpnProtocols: [...alpn],
  });
}

/**
 * The UpstreamTlsContext a DestinationRule's `tls` asks for, or undefined for DISABLE (and
 * for no mode).
 *
 * - ISTIO_MUTUAL: SDS secrets `default` and `ROOTCA`, SANs = the rule's `subjectAltNames` or
 *   the destination's SPIFFE identities, SNI `outbound_.PORT_.SUBSET_.HOST`, ALPN `istio`.
 * - SIMPLE: verify the server with `caCertificates` (the system bundle when unset; nothing with
 *   `insecureSkipVerify`) and `subjectAltNames`; SNI is `sni` or the host name.
 * - MUTUAL: SIMPLE plus a client certificate from files, or every secret from `credentialName`.
 */
export function upstreamTlsContext(
  tls: ClientTLSSettings,
  target: UpstreamTlsTarget,
): UpstreamTlsContext | undefined {
  const sans = tls.subjectAltNames && tls.subjectAltNames.length > 0 ? tls.subjectAltNames : undefined;
  switch (tls.mode) {
    case "ISTIO_MUTUAL": {
      const alpn = isHttp2Protocol(target.protocol)
        ? ["istio-peer-exchange", "istio", "h2"]
        : ["istio-peer-exchange", "istio"];
      return create(UpstreamTlsContextSchema, {
        commonTlsContext: istioMutualContext(sans ?? target.identities, alpn),
        sni: tls.sni || istioMtlsSni(target),
      });
    }
    case "SIMPLE":
    case "MUTUAL": {
      const common = create(CommonTlsContextSchema, {});
      if (tls.credentialName) {
        if (tls.mode === "MUTUAL") common.tlsCertificateSdsSecretConfigs = [sdsSecret(tls.credentialName)];
        if (!tls.insecureSkipVerify) {
          common.validationContextType = {
            case: "combinedValidationContext",
            value: create(CommonTlsContext_CombinedCertificateValidationContextSchema, {
              defaultValidationContext: { matchSubjectAltNames: (sans ?? []).map(exactMatcher) },
              validationContextSdsSecretConfig: sdsSecret(`${tls.credentialName}-cacert`),
            }),
          };
        }
      } else {
        if (tls.mode === "MUTUAL" && tls.clientCertificate && tls.privateKey) {
          common.tlsCertificates = [fileCertificate(tls.clientCertificate, tls.privateKey)];
        }
        if (!tls.insecureSkipVerify) {
          common.validationContextType = {
            case: "validationContext",
            value: validationFromSettings(tls, sans ?? []),
          };
        }
      }
      const sni = tls.sni || (target.host.startsWith("*") ? "" : target.host);
      return create(UpstreamTlsContextSchema, { commonTlsContext: common, sni });
    }
    default:
      return undefined;
  }
}

/** Wraps an upstream TLS context as the `envoy.transport_sockets.tls` transport socket. */
export function upstreamTransportSocket(context: UpstreamTlsContext): TransportSocket {
  return create(TransportSocketSchema, {
    name: TLS_TRANSPORT_SOCKET,
    configType: { case: "typedConfig", value: typedConfig(UpstreamTlsContextSchema, context) },
  });
}

const TLS_VERSIONS: Readonly<Record<TLSProtocol, TlsParameters_TlsProtocol>> = {
  TLS_AUTO: TlsParameters_TlsProtocol.TLS_AUTO,
  TLSV1_0: TlsParameters_TlsProtocol.TLSv1_0,
  TLSV1_1: TlsParameters_TlsProtocol.TLSv1_1,
  TLSV1_2: TlsParameters_TlsProtocol.TLSv1_2,
  TLSV1_3: TlsParameters_TlsProtocol.TLSv1_3,
};

/**
 * The server's TLS parameters. ecdhCurves count only where the server terminates TLS with its own
 * certificate (not ISTIO_MUTUAL, whose mesh settings have no curves), as Istio applies them.
 */
function tlsParameters(tls: ServerTLSSettings): TlsParameters | undefined {
  const curves = tls.mode === "ISTIO_MUTUAL" ? [] : [...new Set(tls.ecdhCurves ?? [])];
  if (!tls.minProtocolVersion && !tls.maxProtocolVersion && !tls.cipherSuites?.length && !curves.length) {
    return undefined;
  }
  return create(TlsParametersSchema, {
    ...(tls.minProtocolVersion ? { tlsMinimumProtocolVersion: TLS_VERSIONS[tls.minProtocolVersion] } : {}),
    ...(tls.maxProtocolVersion ? { tlsMaximumProtocolVersion: TLS_VERSIONS[tls.maxProtocolVersion] } : {}),
    cipherSuites: [...(tls.cipherSuites ?? [])],
    ecdhCurves: curves,
  });
}

/** True for gateway server TLS modes where the gateway terminates TLS itself. */
export function terminatesTls(tls: ServerTLSSettings | undefined): boolean {
  return tls?.mode === "SIMPLE" || tls?.mode === "MUTUAL" || tls?.mode === "ISTIO_MUTUAL" ||
    tls?.mode === "OPTIONAL_MUTUAL";
}

/**
 * Istio's name for "the gateway's own mesh certificate" as a credential: it stands for the SDS
 * secrets `default` (and `ROOTCA` for its CA).
 */
export const BUILTIN_CREDENTIAL = "builtin://";
/** Suffix of the SDS secret that holds a credential's CA certificates. */
export const CA_CERT_SUFFIX = "-cacert";

/** The SDS secret a gateway credential name stands for (`builtin://` is the workload's own). */
export function credentialSecretName(name: string): string {
  if (name === BUILTIN_CREDENTIAL) return SDS_WORKLOAD_CERT;
  if (name === BUILTIN_CREDENTIAL + CA_CERT_SUFFIX) return SDS_ROOT_CA;
  return name;
}

/** The credential names of a gateway server: `credentialNames`, else `credentialName`. */
export function serverCredentialNames(tls: ServerTLSSettings): string[] {
  if (tls.credentialNames && tls.credentialNames.length > 0) return [...tls.credentialNames];
  return tls.credentialName ? [tls.credentialName] : [];
}

/**
 * The SDS secret holding the client CA of a server with credentials: `caCertCredentialName`,
 * else the first credential's `<name>-cacert` (Envoy validates clients against one CA even when
 * it serves several certificates).
 */
export function serverCaSecretName(tls: ServerTLSSettings, credentials: readonly string[]): string {
  if (tls.caCertCredentialName) return credentialSecretName(tls.caCertCredentialName);
  return credentialSecretName(`${credentials[0]}${CA_CERT_SUFFIX}`);
}

/**
 * Certificate files of a gateway server, in order: `tlsCertificates` (several pairs, e.g. RSA
 * and ECDSA, Envoy picks by the client's capabilities), else `serverCertificate`/`privateKey`.
 */
function serverCertificateFiles(tls: ServerTLSSettings): TlsCertificate[] {
  if (tls.tlsCertificates && tls.tlsCertificates.length > 0) {
    return tls.tlsCertificates.flatMap((c) =>
      c.serverCertificate && c.privateKey ? [fileCertificate(c.serverCertificate, c.privateKey)] : []
    );
  }
  return tls.serverCertificate && tls.privateKey
    ? [fileCertificate(tls.serverCertificate, tls.privateKey)]
    : [];
}

/** The client CA file of a server without credentials: `caCertificates`, else the first pair's. */
function serverCaFile(tls: ServerTLSSettings): string | undefined {
  return tls.caCertificates || tls.tlsCertificates?.find((c) => c.caCertificates)?.caCertificates ||
    undefined;
}

/**
 * The DownstreamTlsContext of a gateway server that terminates TLS (SIMPLE, MUTUAL,
 * OPTIONAL_MUTUAL, ISTIO_MUTUAL), or undefined for passthrough modes; ALPN offers h2 and
 * http/1.1.
 *
 * - `credentialNames` (or `credentialName`): one SDS secret per name from the node agent, which
 *   reads them from its credential directory (mod/agent/sds_server.ts); clients of MUTUAL and
 *   OPTIONAL_MUTUAL are verified against `caCertCredentialName`, else `<first name>-cacert`.
 *   `builtin://` names the gateway's own mesh certificate (`default`, `ROOTCA`).
 * - `tlsCertificates` (or `serverCertificate`/`privateKey`): certificate files Envoy reads;
 *   clients verified against `caCertificates`, else the first pair's `caCertificates`.
 * - `insecureSkipVerify` on MUTUAL/OPTIONAL_MUTUAL asks for a client certificate but accepts
 *   an untrusted one (Envoy's ACCEPT_UNTRUSTED), as Istio renders it.
 * - `minProtocolVersion`, `maxProtocolVersion`, `cipherSuites` and `ecdhCurves` (the latter not
 *   for ISTIO_MUTUAL, as in Istio) become `common_tls_context.tls_params`.
 */
export function downstreamTlsContext(tls: ServerTLSSettings): DownstreamTlsContext | undefined {
  if (!terminatesTls(tls)) return undefined;
  const alpn = ["h2", "http/1.1"];
  const params = tlsParameters(tls);
  const sans = (tls.subjectAltNames ?? []).map(exactMatcher);
  let common: CommonTlsContext;
  if (tls.mode === "ISTIO_MUTUAL") {
    common = istioMutualContext(tls.subjectAltNames ?? [], alpn);
  } else {
    common = create(CommonTlsContextSchema, { alpnProtocols: alpn });
    const credentials = serverCredentialNames(tls);
    if (credentials.length > 0) {
      common.tlsCertificateSdsSecretConfigs = credentials.map((n) => sdsSecret(credentialSecretName(n)));
    } else common.tlsCertificates = serverCertificateFiles(tls);
    if (tls.mode !== "SIMPLE") {
      const extra = {
        matchSubjectAltNames: sans,
        verifyCertificateSpki: [...(tls.verifyCertificateSpki ?? [])],
        verifyCertificateHash: [...(tls.verifyCertificateHash ?? [])],
        ...(tls.insecureSkipVerify
          ? { trustChainVerification: CertificateValidationContext_TrustChainVerification.ACCEPT_UNTRUSTED }
          : {}),
      };
      const caFile = serverCaFile(tls);
      common.validationContextType = credentials.length > 0
        ? {
          case: "combinedValidationContext",
          value: create(CommonTlsContext_CombinedCertificateValidationContextSchema, {
            defaultValidationContext: extra,
            validationContextSdsSecretConfig: sdsSecret(serverCaSecretName(tls, credentials)),
          }),
        }
        : {
          case: "validationContext",
          value: create(CertificateValidationContextSchema, {
            ...extra,
            ...(caFile ? { trustedCa: { specifier: { case: "filename", value: caFile } } } : {}),
            ...(tls.caCrl ? { crl: { specifier: { case: "filename", value: tls.caCrl } } } : {}),
          }),
        };
    }
  }
  if (params) common.tlsParams = params;
  return create(DownstreamTlsContextSchema, {
    commonTlsContext: common,
    requireClientCertificate: tls.mode === "MUTUAL" || tls.mode === "ISTIO_MUTUAL",
  });
}

/** Wraps a downstream TLS context as the `envoy.transport_sockets.tls` transport socket. */
export function downstreamTransportSocket(context: DownstreamTlsContext): TransportSocket {
  return create(TransportSocketSchema, {
    name: TLS_TRANSPORT_SOCKET,
    configType: { case: "typedConfig", value: typedConfig(DownstreamTlsContextSchema, context) },
  });
}

/** ALPN a sidecar's inbound mTLS chain offers for HTTP ports (TCP ports offer none). */
const INBOUND_HTTP_ALPN = ["h2", "http/1.1"];

/**
 * The DownstreamTlsContext of a sidecar's inbound mTLS chain (PeerAuthentication STRICT or
 * PERMISSIVE): the workload certificate (SDS `default`), peers verified against the mesh root
 * (SDS `ROOTCA`), a client certificate required; ALPN h2 and http/1.1 for HTTP ports.
 */
export function inboundMtlsContext(http: boolean): DownstreamTlsContext {
  return create(DownstreamTlsContextSchema, {
    commonTlsContext: istioMutualContext([], http ? INBOUND_HTTP_ALPN : []),
    requireClientCertificate: true,
  });
}
