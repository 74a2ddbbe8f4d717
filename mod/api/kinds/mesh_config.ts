/**
 * config.meshd.io/v1alpha1 MeshConfig: meshd's own mesh-wide settings (one per mesh; any
 * metadata.name). A resource's spec is merged over {@link defaultMeshConfig}.
 *
 * `extensionProviders` follows Istio's MeshConfig (`istio.io/api` mesh/v1alpha1): every provider
 * kind parses with its fields; the external authorizers (`envoyExtAuthzGrpc`,
 * `envoyExtAuthzHttp`), which AuthorizationPolicy `action: CUSTOM` names, are validated as Istio
 * validates them and used by pilot, as are `envoyFileAccessLog`, which Telemetry access logging
 * names, and `zipkin`, which Telemetry tracing names. The other tracing, metrics, logging and SDS
 * kinds are accepted with a "not supported" warning: meshd does not use them.
 *
 * `defaultConfig.tracing` is the tracing part of Istio's ProxyConfig, kept to `zipkin.address`
 * (`host:port`) and `sampling` (percent, default 1): pilot reports spans there where no Telemetry
 * names a tracing provider. Without it, tracing stays off unless Telemetry sets it.
 *
 * `meshNetworks` is Istio's MeshNetworks (`istio.io/api` mesh/v1alpha1 `MeshNetworks`): per
 * network, which endpoints belong to it (`fromCidr`) and the gateways (`address` or
 * `registryServiceName`, and `port`, usually 15443) through which proxies of other networks reach
 * them. `fromRegistry` and a gateway's `locality` parse with a "not supported" warning.
 *
 * @module
 */

import type { Diagnostic, Resource } from "../resource.ts";
import {
  checkSchema,
  dns1123LabelProblem,
  fieldPath,
  indexPath,
  type Infer,
  isCIDR,
  isIP,
  type Reporter,
  t,
} from "../schema.ts";
import { hostProblem } from "./networking.ts";

// ---------------------------------------------------------------------------------------------
// Extension providers
// ---------------------------------------------------------------------------------------------

/**
 * Explains what is wrong with an extension provider's `service`, or undefined: Istio's forms
 * are a host name ("ext-authz.foo.svc.cluster.local"), an IP address, or "NAMESPACE/HOST" (a
 * host of that namespace); wildcards are not allowed (the service names one cluster).
 */
export function providerServiceProblem(service: string): string | undefined {
  const quoted = JSON.stringify(service);
  const parts = service.split("/");
  if (parts.length > 2) return `service ${quoted} must be HOST or NAMESPACE/HOST`;
  const host = parts.at(-1)!;
  if (parts.length === 2) {
    const nsProblem = dns1123LabelProblem(parts[0]!);
    if (nsProblem) return `service ${quoted}: namespace ${nsProblem}`;
  }
  if (host.includes("*")) return `service ${quoted} must name one host; wildcards are not allowed`;
  if (parts.length === 1 && isIP(host)) return undefined;
  return hostProblem(host);
}

/** Envoy's HTTP status codes (`envoy.type.v3.StatusCode`), what `statusOnError` may name. */
const ENVOY_STATUS_CODES: ReadonlySet<number> = new Set([
  100,
  200,
  201,
  202,
  203,
  204,
  205,
  206,
  207,
  208,
  226,
  300,
  301,
  302,
  303,
  304,
  305,
  307,
  308,
  400,
  401,
  402,
  403,
  404,
  405,
  406,
  407,
  408,
  409,
  410,
  411,
  412,
  413,
  414,
  415,
  416,
  417,
  421,
  422,
  423,
  424,
  426,
  428,
  429,
  431,
  500,
  501,
  502,
  503,
  504,
  505,
  506,
  507,
  508,
  510,
  511,
]);

const providerService = t.string({
  required: true,
  check: (v, path, report) => {
    const problem = providerServiceProblem(v);
    if (problem) report.error(path, problem);
  },
});

const providerPort = t.int({ required: true, min: 1, max: 65535 });

const statusOnError = t.string({
  check: (v, path, report) => {
    if (v === "") return;
    const code = /^\d+$/.test(v) ? Number(v) : NaN;
    if (!ENVOY_STATUS_CODES.has(code)) {
      report.error(
        path,
        `statusOnError ${JSON.stringify(v)} must be an HTTP status code Envoy knows, such as "403"`,
      );
    }
  },
});

const requestBodySchema = t.object({
  maxRequestBytes: t.int({ min: 0, max: 4294967295 }),
  allowPartialMessage: t.bool(),
  packAsBytes: t.bool(),
});

/** Header names as Istio lists them for ext_authz: exact, `x*` prefix or `*x` suffix; not `*` alone. */
const headerPatterns = t.array(t.string({
  nonEmpty: true,
  check: (v, path, report) => {
    if (v === "*") {
      report.error(
        path,
        'a single wildcard ("*") is not supported; use a prefix ("x-*") or suffix ("*-id") match',
      );
    }
  },
}));

const extAuthzGrpcSchema = t.object({
  service: providerService,
  port: providerPort,
  timeout: t.duration(),
  failOpen: t.bool(),
  clearRouteCache: t.bool(),
  statusOnError,
  includeRequestBodyInCheck: requestBodySchema,
});

/** An `envoyExtAuthzGrpc` provider: Envoy's ext_authz over gRPC (envoy.service.auth.v3). */
export type ExtAuthzGrpcProvider = Infer<typeof extAuthzGrpcSchema>;

const extAuthzHttpSchema = t.object({
  service: providerService,
  port: providerPort,
  timeout: t.duration(),
  pathPrefix: t.string({
    check: (v, path, report) => {
      if (v !== "" && (!v.startsWith("/") || /[\s#?]/.test(v))) {
        report.error(path, `pathPrefix ${JSON.stringify(v)} must be a URL path beginning with "/"`);
      }
    },
  }),
  failOpen: t.bool(),
  clearRouteCache: t.bool(),
  statusOnError,
  includeHeadersInCheck: headerPatterns,
  includeRequestHeadersInCheck: headerPatterns,
  includeAdditionalHeadersInCheck: t.map(t.string()),
  includeRequestBodyInCheck: requestBodySchema,
  headersToUpstreamOnAllow: headerPatterns,
  headersToDownstreamOnDeny: headerPatterns,
  headersToDownstreamOnAllow: headerPatterns,
});

/** An `envoyExtAuthzHttp` provider: Envoy's ext_authz calling an HTTP service. */
export type ExtAuthzHttpProvider = Infer<typeof extAuthzHttpSchema>;

const httpHeaderSchema = t.object(
  { name: t.string({ required: true }), value: t.string(), envName: t.string() },
  { oneOf: [["value", "envName"]] },
);
const serviceAndPort = { service: providerService, port: providerPort };
const logFormatSchema = t.object({ text: t.string(), labels: t.any() }, { oneOf: [["text", "labels"]] });

/** The provider kinds besides ext_authz: zipkin and envoyFileAccessLog are used, the others parsed only. */
const unusedProviderKinds = {
  zipkin: t.object({
    ...serviceAndPort,
    maxTagLength: t.int({ min: 0 }),
    enable64bitTraceId: t.bool(),
    path: t.string(),
    traceContextOption: t.enum(["USE_B3", "USE_B3_WITH_W3C_PROPAGATION"]),
    timeout: t.duration(),
    headers: t.array(httpHeaderSchema),
  }),
  lightstep: t.object({ ...serviceAndPort, accessToken: t.string(), maxTagLength: t.int({ min: 0 }) }),
  datadog: t.object({ ...serviceAndPort, maxTagLength: t.int({ min: 0 }) }),
  stackdriver: t.object({
    debug: t.bool(),
    maxNumberOfAttributes: t.int({ min: 0 }),
    maxNumberOfAnnotations: t.int({ min: 0 }),
    maxNumberOfMessageEvents: t.int({ min: 0 }),
    maxTagLength: t.int({ min: 0 }),
    logging: t.object({ labels: t.map(t.string()) }),
  }),
  opencensus: t.object({
    ...serviceAndPort,
    context: t.array(t.enum(["UNSPECIFIED", "W3C_TRACE_CONTEXT", "GRPC_BIN", "CLOUD_TRACE_CONTEXT", "B3"])),
    maxTagLength: t.int({ min: 0 }),
  }),
  skywalking: t.object({ ...serviceAndPort, accessToken: t.string() }),
  opentelemetry: t.object({
    ...serviceAndPort,
    maxTagLength: t.int({ min: 0 }),
    http: t.object({ path: t.string(), timeout: t.duration(), headers: t.array(httpHeaderSchema) }),
    grpc: t.object({ timeout: t.duration(), initialMetadata: t.array(httpHeaderSchema) }),
    resourceDetectors: t.object({ environment: t.object({}), dynatrace: t.object({}) }),
    serviceAttributeEnrichment: t.enum(["ISTIO_CANONICAL", "OTEL_SEMANTIC_CONVENTIONS"]),
    dynatraceSampler: t.any(),
  }, { oneOf: [["http", "grpc"]] }),
  prometheus: t.object({}),
  envoyFileAccessLog: t.object({ path: t.string(), logFormat: logFormatSchema, omitEmptyValues: t.bool() }),
  envoyHttpAls: t.object({
    ...serviceAndPort,
    logName: t.string(),
    filterStateObjectsToLog: t.array(t.string()),
    additionalRequestHeadersToLog: t.array(t.string()),
    additionalResponseHeadersToLog: t.array(t.string()),
    additionalResponseTrailersToLog: t.array(t.string()),
  }),
  envoyTcpAls: t.object({
    ...serviceAndPort,
    logName: t.string(),
    filterStateObjectsToLog: t.array(t.string()),
  }),
  envoyOtelAls: t.object({ ...serviceAndPort, logName: t.string(), logFormat: logFormatSchema }),
  sds: t.object({ name: t.string(), ...serviceAndPort }),
};

const PROVIDER_KINDS = ["envoyExtAuthzGrpc", "envoyExtAuthzHttp", ...Object.keys(unusedProviderKinds)];

const extensionProviderSchema = t.object({
  name: t.string({ required: true }),
  envoyExtAuthzGrpc: extAuthzGrpcSchema,
  envoyExtAuthzHttp: extAuthzHttpSchema,
  ...unusedProviderKinds,
}, {
  exactlyOneOf: [PROVIDER_KINDS],
  check: (p, path, report) => {
    for (const kind of Object.keys(unusedProviderKinds)) {
      if (kind in p && kind !== "envoyFileAccessLog" && kind !== "zipkin") {
        report.warning(
          fieldPath(path, kind),
          `extension provider ${JSON.stringify(p.name)}: ${kind} is not supported; meshd uses only ` +
            "envoyExtAuthzGrpc and envoyExtAuthzHttp providers (for AuthorizationPolicy CUSTOM), " +
            "envoyFileAccessLog (for Telemetry access logging) and zipkin (for Telemetry tracing)",
        );
      }
    }
  },
});

/** One MeshConfig extension provider: a name and exactly one provider kind. */
export type ExtensionProvider = Infer<typeof extensionProviderSchema>;

function uniqueProviderNames(providers: readonly ExtensionProvider[], path: string, report: Reporter): void {
  const seen = new Map<string, number>();
  providers.forEach((p, i) => {
    const first = seen.get(p.name);
    if (first !== undefined) {
      report.error(
        fieldPath(indexPath(path, i), "name"),
        `extension provider name ${JSON.stringify(p.name)} is already used by extensionProviders[${first}]`,
      );
    } else seen.set(p.name, i);
  });
}

// ---------------------------------------------------------------------------------------------
// Mesh networks
// ---------------------------------------------------------------------------------------------

const networkEndpointsSchema = t.object({
  fromCidr: t.string({
    check: (v, path, report) => {
      if (!isCIDR(v) && !isIP(v)) {
        report.error(path, `fromCidr ${JSON.stringify(v)} must be an IP range such as "10.2.0.0/16"`);
      }
    },
  }),
  fromRegistry: t.string({
    check: (v, path, report) => {
      const problem = dns1123LabelProblem(v);
      if (problem) report.error(path, `fromRegistry: ${problem}`);
      else {
        report.warning(
          path,
          `fromRegistry ${JSON.stringify(v)} is not supported: meshd places endpoints in a network by ` +
            "their WorkloadEntry network, their topology.istio.io/network label or fromCidr",
        );
      }
    },
  }),
}, { exactlyOneOf: [["fromCidr", "fromRegistry"]] });

const networkGatewaySchema = t.object({
  registryServiceName: t.string({
    check: (v, path, report) => {
      const problem = v.includes("*") ? "must name one host; wildcards are not allowed" : hostProblem(v);
      if (problem) report.error(path, `registryServiceName ${JSON.stringify(v)}: ${problem}`);
    },
  }),
  address: t.string({
    check: (v, path, report) => {
      if (!isIP(v)) {
        report.error(
          path,
          `gateway address ${JSON.stringify(v)} must be an IP address (proxies are sent it as an ` +
            "endpoint); name a service with registryServiceName instead",
        );
      }
    },
  }),
  port: t.int({ required: true, min: 1, max: 65535 }),
  locality: t.string({
    check: (_v, path, report) => {
      report.warning(
        path,
        "locality of a network gateway is not supported; its endpoints keep the locality of the " +
          "workloads behind it",
      );
    },
  }),
}, { exactlyOneOf: [["registryServiceName", "address"]] });

/** One gateway of a network: an IP address or a registry service, and its port. */
export type MeshNetworkGateway = Infer<typeof networkGatewaySchema>;

const networkSchema = t.object({
  endpoints: t.array(networkEndpointsSchema),
  gateways: t.array(networkGatewaySchema),
});

/** One network of {@link MeshNetworks}. */
export type MeshNetwork = Infer<typeof networkSchema>;

const meshNetworksSchema = t.object({
  networks: t.map(networkSchema, {
    key: (name, path, report) => {
      if (name === "" || /[\s/|~]/.test(name)) {
        report.error(
          path,
          `network name ${JSON.stringify(name)} must be non-empty, without spaces, "/", "|" or "~"`,
        );
      }
    },
  }),
});

/** Istio's MeshNetworks: the networks of a multi-network mesh by name. */
export type MeshNetworks = Infer<typeof meshNetworksSchema>;

// ---------------------------------------------------------------------------------------------
// MeshConfig
// ---------------------------------------------------------------------------------------------

/**
 * Splits `host:port` (an IPv6 host in brackets) where the host is an IP address or a DNS name
 * and the port 1..65535; undefined otherwise.
 */
export function splitMeshAddress(v: string): { readonly host: string; readonly port: number } | undefined {
  const m = /^(?:\[([^\]]+)\]|([^:]+)):(\d+)$/.exec(v);
  const port = m ? Number(m[3]) : NaN;
  const host = m ? (m[1] ?? m[2]!) : "";
  const bracketed = m?.[1] !== undefined;
  if (!m || !(port >= 1 && port <= 65535)) return undefined;
  if (bracketed ? !(isIP(host) && host.includes(":")) : !isIP(host) && hostProblem(host)) return undefined;
  return { host, port };
}

/** A field check that `field` is `host:port`, quoting `example` in its message. */
function addressCheck(field: string, example: string) {
  return (v: string, path: string, report: Reporter): void => {
    if (!splitMeshAddress(v)) {
      report.error(path, `${field} ${JSON.stringify(v)} must be host:port, e.g. "${example}"`);
    }
  };
}

/** Istio's sampling percentage when neither Telemetry nor the mesh sets one. */
export const DEFAULT_TRACING_SAMPLING = 1;

const proxyTracingSchema = t.object({
  /** The Zipkin collector's `host:port`: a mesh service's host and port, or any address. */
  zipkin: t.object({
    address: t.string({
      required: true,
      check: addressCheck("zipkin address", "zipkin.istio-system.svc.cluster.local:9411"),
    }),
  }),
  /** Percentage of requests traced at random, 0 to 100 (default 1). */
  sampling: t.number({ min: 0, max: 100 }),
});

/** The mesh's default tracing as written (Istio's ProxyConfig `tracing`, zipkin and sampling only). */
export type ProxyTracingSpec = Infer<typeof proxyTracingSchema>;

/** The mesh's default tracing in force: the collector address, if any, and the sampling percentage. */
export interface ProxyTracing {
  readonly zipkin?: { readonly address: string };
  readonly sampling: number;
}

const meshMtlsModeSchema = t.enum(["STRICT", "PERMISSIVE", "DISABLE"]);

/** Mesh-wide default for peer authentication. */
export type MeshMtlsMode = Infer<typeof meshMtlsModeSchema>;

const meshConfigSchema = t.object({
  /** SPIFFE trust domain of workload identities. */
  trustDomain: t.string({
    check: (v, path, report) => {
      const domain = v.endsWith(".") ? v.slice(0, -1) : v;
      if (domain === "" || domain.includes("*") || domain !== domain.toLowerCase() || hostProblem(domain)) {
        report.error(
          path,
          `trust domain ${JSON.stringify(v)} must be a lower-case DNS name such as "cluster.local"`,
        );
      }
    },
  }),
  /** Namespace whose config applies mesh-wide. */
  rootNamespace: t.string({
    check: (v, path, report) => {
      const problem = dns1123LabelProblem(v);
      if (problem) report.error(path, problem);
    },
  }),
  /** mTLS mode where no PeerAuthentication says otherwise. */
  defaultMtlsMode: meshMtlsModeSchema,
  /** What sidecars do with traffic to hosts not in the registry. */
  outboundTrafficPolicy: t.object({ mode: t.enum(["ALLOW_ANY", "REGISTRY_ONLY"]) }),
  /** Use mTLS automatically towards workloads that have a sidecar. */
  enableAutoMtls: t.bool(),
  /** Connect timeout for upstream connections, a duration string. */
  connectTimeout: t.duration({ min: "1ms", max: "1h" }),
  /** Mixer behaviour: allow requests when policy checks cannot be made. */
  mixer: t.object({ failOpen: t.bool() }),
  /** Envoy access log path ("" disables, "/dev/stdout" logs to stdout). */
  accessLogFile: t.string({
    check: (v, path, report) => {
      if (v !== "" && !v.startsWith("/")) {
        report.error(path, `accessLogFile ${JSON.stringify(v)} must be an absolute path (e.g. /dev/stdout)`);
      }
    },
  }),
  /** Defaults for proxies; an empty discoveryAddress leaves it to the agent's flags. */
  defaultConfig: t.object({
    discoveryAddress: t.string({ check: addressCheck("discoveryAddress", "meshd.example.internal:15012") }),
    /** Where sidecars report spans when no Telemetry names a tracing provider (Istio's ProxyConfig tracing). */
    tracing: proxyTracingSchema,
  }),
  /** External services pilot configures proxies to call (Istio's extensionProviders). */
  extensionProviders: t.array(extensionProviderSchema, { check: uniqueProviderNames }),
  /** The networks of a multi-network mesh (Istio's MeshNetworks); none by default. */
  meshNetworks: meshNetworksSchema,
  /**
   * The IPv4 range pilot allocates virtual IPs from for ServiceEntry hosts that declare no
   * address (Istio's DNS auto-allocation; its default 240.240.0.0/16), which node proxies
   * answer DNS with and capture traffic to.
   */
  autoAllocateVipRange: t.string({
    check: (v, path, report) => {
      const bits = Number(v.slice(v.indexOf("/") + 1));
      if (!isCIDR(v) || v.includes(":") || bits > 30) {
        report.error(
          path,
          `autoAllocateVipRange ${JSON.stringify(v)} must be an IPv4 CIDR block of at least 4 addresses, ` +
            `such as "240.240.0.0/16"`,
        );
      }
    },
  }),
});

/** The spec of a MeshConfig resource as written: every field optional. */
export type MeshConfigSpec = Infer<typeof meshConfigSchema>;

/** `T` with every field, at every depth, present. */
type Complete<T> = { readonly [K in keyof T]-?: Complete<NonNullable<T[K]>> };

/**
 * The effective mesh settings: every field of {@link MeshConfigSpec} resolved; the extension
 * providers as written (none by default).
 */
export type MeshConfig =
  & Complete<Omit<MeshConfigSpec, "extensionProviders" | "meshNetworks" | "defaultConfig">>
  & {
    /** Proxy defaults; `tracing` is absent unless a MeshConfig sets it (then no default tracer). */
    readonly defaultConfig: { readonly discoveryAddress: string; readonly tracing?: ProxyTracing };
    readonly extensionProviders: readonly ExtensionProvider[];
    readonly meshNetworks: { readonly networks: Readonly<Record<string, MeshNetwork>> };
  };

/** The settings in force when no MeshConfig resource exists. */
export const defaultMeshConfig: MeshConfig = {
  trustDomain: "cluster.local",
  rootNamespace: "istio-system",
  defaultMtlsMode: "PERMISSIVE",
  outboundTrafficPolicy: { mode: "ALLOW_ANY" },
  enableAutoMtls: true,
  connectTimeout: "10s",
  mixer: { failOpen: true },
  accessLogFile: "",
  defaultConfig: { discoveryAddress: "" },
  extensionProviders: [],
  meshNetworks: { networks: {} },
  autoAllocateVipRange: "240.240.0.0/16",
};

/**
 * Merges a MeshConfig spec, or a validated MeshConfig resource, over `base` (default
 * {@link defaultMeshConfig}), field by field.
 */
export function mergeMeshConfig(
  source: MeshConfigSpec | Resource | undefined,
  base: MeshConfig = defaultMeshConfig,
): MeshConfig {
  const spec: MeshConfigSpec = source === undefined
    ? {}
    : isResource(source)
    ? (source.spec ?? {}) as MeshConfigSpec
    : source;
  return {
    trustDomain: spec.trustDomain ?? base.trustDomain,
    rootNamespace: spec.rootNamespace ?? base.rootNamespace,
    defaultMtlsMode: spec.defaultMtlsMode ?? base.defaultMtlsMode,
    outboundTrafficPolicy: { mode: spec.outboundTrafficPolicy?.mode ?? base.outboundTrafficPolicy.mode },
    enableAutoMtls: spec.enableAutoMtls ?? base.enableAutoMtls,
    connectTimeout: spec.connectTimeout ?? base.connectTimeout,
    mixer: { failOpen: spec.mixer?.failOpen ?? base.mixer.failOpen },
    accessLogFile: spec.accessLogFile ?? base.accessLogFile,
    defaultConfig: {
      discoveryAddress: spec.defaultConfig?.discoveryAddress ?? base.defaultConfig.discoveryAddress,
      ...optionalTracing(mergeProxyTracing(spec.defaultConfig?.tracing, base.defaultConfig.tracing)),
    },
    extensionProviders: spec.extensionProviders ?? base.extensionProviders,
    meshNetworks: { networks: spec.meshNetworks?.networks ?? base.meshNetworks.networks },
    autoAllocateVipRange: spec.autoAllocateVipRange ?? base.autoAllocateVipRange,
  };
}

/**
 * The default tracing of `spec` over `base`, field by field (sampling defaulting to
 * {@link DEFAULT_TRACING_SAMPLING}); undefined when neither sets tracing.
 */
export function mergeProxyTracing(
  spec: ProxyTracingSpec | undefined,
  base: ProxyTracing | undefined,
): ProxyTracing | undefined {
  if (spec === undefined) return base;
  const zipkin = spec.zipkin ?? base?.zipkin;
  return {
    ...(zipkin ? { zipkin: { address: zipkin.address } } : {}),
    sampling: spec.sampling ?? base?.sampling ?? DEFAULT_TRACING_SAMPLING,
  };
}

const optionalTracing = (tracing: ProxyTracing | undefined) => (tracing ? { tracing } : {});

function isResource(v: MeshConfigSpec | Resource): v is Resource {
  return "kind" in v && "metadata" in v;
}

/** The API group of MeshConfig. */
export const meshConfigGroup = "config.meshd.io";

/** Versions of config.meshd.io meshd accepts. */
export const meshConfigVersions: readonly string[] = ["v1alpha1"];

/** Validates a MeshConfig resource. */
export function validateMeshConfig(r: Resource): Diagnostic[] {
  return checkSchema(r, meshConfigSchema);
}
