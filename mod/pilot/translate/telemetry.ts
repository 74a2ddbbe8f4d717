/**
 * The Telemetry API (telemetry.istio.io) for Envoy: which access logs and what tracing a
 * connection manager gets, from the Telemetry resources in force for its proxy
 * (PushContext.telemetryFor: root namespace, namespace, workload, merged in that order as
 * Istio's pilot merges them).
 *
 * Access logging: every entry names providers (or inherits the previous entry's, or the
 * defaults); `match.mode` picks the side (CLIENT for outbound and gateway connection managers,
 * SERVER for inbound); `disabled: true` removes its providers. The same applies to the TCP
 * proxies of a proxy (tcp_proxy.ts), on the side of their listener. Providers are MeshConfig
 * `extensionProviders` of kind `envoyFileAccessLog`, and two built-in ones: `envoy` (the file
 * logger of the mesh's `accessLogFile`, /dev/stdout when unset, as Istio's built-in provider) and
 * `mixer` (the gRPC access log to mixer, on sidecars when mixer runs). The defaults are the
 * legacy sinks in force: `envoy` when `accessLogFile` is set, `mixer` when mixer runs. Without
 * any Telemetry access logging the legacy sinks apply unchanged.
 *
 * Tracing: the last entry matching the side sets `randomSamplingPercentage` (Istio's default 1%),
 * `customTags`, `providers` and `disableSpanReporting`, written into the connection manager's
 * tracing settings. A provider is a MeshConfig `extensionProviders` entry of kind `zipkin`: its
 * `service` (`NAMESPACE/HOST` or a host, looked up as for external authorizers, ext_authz.ts)
 * and `port` name the collector's cluster `outbound|PORT||HOST`, to which Envoy's Zipkin tracer
 * sends JSON v2 spans at `path` (default `/api/v2/spans`), with 128-bit trace ids unless
 * `enable64bitTraceId`. Without a provider, with span reporting disabled, or when the provider
 * cannot be used (another kind, service not found or not visible), no tracer is configured and
 * the settings decide only sampling and tags as propagated to applications.
 *
 * The mesh's default tracing (MeshConfig `defaultConfig.tracing`, Istio's ProxyConfig tracing)
 * is the base the Telemetry entries override: its `sampling` is the random sampling unless an
 * entry sets `randomSamplingPercentage`, and where no entry names a provider, spans go to its
 * `zipkin.address`: to the outbound cluster of the registry service of that host and port
 * (looked up as providers are), or else to the cluster `zipkin` that pilot builds for the
 * address itself (STATIC for an IP, STRICT_DNS for a name), as Istio's bootstrap does.
 * `disableSpanReporting` turns either off.
 *
 * @module
 */
import { create, type JsonObject } from "@bufbuild/protobuf";
import { type AccessLog, AccessLogSchema } from "#gen/envoy/config/accesslog/v3/accesslog_pb.ts";
import { type Tracing_Http, Tracing_HttpSchema } from "#gen/envoy/config/trace/v3/http_tracer_pb.ts";
import {
  ZipkinConfig_CollectorEndpointVersion,
  ZipkinConfigSchema,
} from "#gen/envoy/config/trace/v3/zipkin_pb.ts";
import { FileAccessLogSchema } from "#gen/envoy/extensions/access_loggers/file/v3/file_pb.ts";
import {
  type HttpConnectionManager_Tracing,
  HttpConnectionManager_TracingSchema,
} from "#gen/envoy/extensions/filters/network/http_connection_manager/v3/http_connection_manager_pb.ts";
import {
  type CustomTag as EnvoyCustomTag,
  CustomTagSchema,
} from "#gen/envoy/type/tracing/v3/custom_tag_pb.ts";
import {
  DEFAULT_TRACING_SAMPLING,
  type ExtensionProvider,
  type MeshConfig,
  splitMeshAddress,
} from "../../api/kinds/mesh_config.ts";
import type {
  AccessLogging,
  CustomTag,
  TelemetrySpec,
  Tracing,
  WorkloadMode,
} from "../../api/kinds/telemetry.ts";
import type { Resource } from "../../api/resource.ts";
import type { PilotFeatures } from "../model/push_context.ts";
import { FILE_ACCESS_LOG, mixerAccessLogs } from "./access_log.ts";
import { typedConfig } from "./conversion.ts";
import type { TrafficDirection } from "./http_filter_context.ts";

/** The built-in provider logging to the mesh's access log file (Istio's `envoy`). */
export const ENVOY_PROVIDER = "envoy";
/** The built-in provider logging to mixer over gRPC. */
export const MIXER_PROVIDER = "mixer";

/** Istio's sampling percentage when neither Telemetry nor the mesh sets one. */
export const DEFAULT_SAMPLING_PERCENTAGE = DEFAULT_TRACING_SAMPLING;

/** The side of a connection a connection manager serves: CLIENT outbound and at gateways, SERVER inbound. */
export function workloadModeOf(direction: TrafficDirection): Exclude<WorkloadMode, "CLIENT_AND_SERVER"> {
  return direction === "inbound" ? "SERVER" : "CLIENT";
}

function modeMatches(match: { mode?: WorkloadMode } | undefined, mode: WorkloadMode): boolean {
  const m = match?.mode ?? "CLIENT_AND_SERVER";
  return m === "CLIENT_AND_SERVER" || m === mode;
}

const providerNames = (refs: readonly { name: string }[] | undefined): string[] =>
  (refs ?? []).map((p) => p.name);

/**
 * The access-log providers in force for one side, as Istio's mergeLogs: `levels` are the
 * accessLogging lists of the applicable Telemetries, root first. The providers named last
 * (or `defaults`) are the ones in scope; walking every entry in order, each in-scope provider it
 * names (or inherits) is added when its mode matches, or removed when it says `disabled`.
 * Undefined when no level has access logging (the legacy sinks then apply).
 */
export function mergeAccessLogging(
  levels: readonly (readonly AccessLogging[])[],
  defaults: readonly string[],
  mode: WorkloadMode,
): string[] | undefined {
  const present = levels.filter((l) => l.length > 0);
  if (present.length === 0) return undefined;
  let scope = [...defaults];
  for (const level of present) {
    const names = new Set(level.flatMap((e) => providerNames(e.providers)));
    if (names.size > 0) scope = [...names];
  }
  const inScope = new Set(scope);
  const out = new Set<string>();
  let parent = [...defaults];
  for (const level of present) {
    for (const entry of level) {
      const named = providerNames(entry.providers);
      const names = named.length > 0 ? named : parent;
      parent = names;
      for (const name of names) {
        if (!inScope.has(name) || !modeMatches(entry.match, mode)) continue;
        if (entry.disabled) out.delete(name);
        else out.add(name);
      }
    }
  }
  return [...out].sort();
}

/** The providers access logs go to without Telemetry: the legacy sinks in force. */
export function defaultAccessLogProviders(mesh: MeshConfig, features: PilotFeatures): string[] {
  return [...(mesh.accessLogFile ? [ENVOY_PROVIDER] : []), ...(features.mixer ? [MIXER_PROVIDER] : [])];
}

function findProvider(mesh: MeshConfig, name: string): ExtensionProvider | undefined {
  return mesh.extensionProviders.find((p) => p.name.toLowerCase() === name.toLowerCase());
}

type FileProvider = NonNullable<ExtensionProvider["envoyFileAccessLog"]>;

/** Envoy's file access logger for an `envoyFileAccessLog` provider: path, text or JSON labels format. */
export function fileAccessLog(p: FileProvider): AccessLog {
  const path = p.path || "/dev/stdout";
  const fmt = p.logFormat;
  const logFormat = fmt?.text !== undefined
    ? {
      format: {
        case: "textFormatSource" as const,
        value: {
          specifier: {
            case: "inlineString" as const,
            value: fmt.text.endsWith("\n") ? fmt.text : `${fmt.text}\n`,
          },
        },
      },
      omitEmptyValues: p.omitEmptyValues ?? false,
    }
    : fmt?.labels !== undefined
    ? {
      format: { case: "jsonFormat" as const, value: fmt.labels as JsonObject },
      omitEmptyValues: p.omitEmptyValues ?? false,
    }
    : undefined;
  return create(AccessLogSchema, {
    name: FILE_ACCESS_LOG,
    configType: {
      case: "typedConfig",
      value: typedConfig(
        FileAccessLogSchema,
        create(FileAccessLogSchema, {
          path,
          ...(logFormat ? { accessLogFormat: { case: "logFormat" as const, value: logFormat } } : {}),
        }),
      ),
    },
  });
}

/** What an access log provider is given besides its name. */
export interface AccessLogContext {
  readonly mesh: MeshConfig;
  readonly features: PilotFeatures;
  readonly direction: TrafficDirection;
  /** A TCP proxy rather than a connection manager: the HTTP-only `mixer` logger does not apply. */
  readonly tcp?: boolean;
}

/**
 * The Envoy access logs of one provider: an `envoyFileAccessLog` extension provider, or the
 * built-in `envoy` and `mixer` (HTTP connection managers of sidecars only); none for unknown
 * names and for provider kinds meshd does not build (MeshConfig validation says which).
 */
export function providerAccessLogs(name: string, ctx: AccessLogContext): AccessLog[] {
  const p = findProvider(ctx.mesh, name);
  if (p) return p.envoyFileAccessLog ? [fileAccessLog(p.envoyFileAccessLog)] : [];
  if (name === ENVOY_PROVIDER) return [fileAccessLog({ path: ctx.mesh.accessLogFile || "/dev/stdout" })];
  if (name === MIXER_PROVIDER && ctx.direction !== "gateway" && !ctx.tcp) {
    return mixerAccessLogs(ctx.mesh, ctx.features);
  }
  return [];
}

/**
 * The access logs Telemetry gives a connection manager on `direction`, or undefined when no
 * applicable Telemetry configures access logging (the caller keeps the legacy sinks).
 */
export function telemetryAccessLogs(
  telemetries: readonly Resource<TelemetrySpec>[],
  ctx: AccessLogContext,
): AccessLog[] | undefined {
  const names = mergeAccessLogging(
    telemetries.map((t) => t.spec.accessLogging ?? []),
    defaultAccessLogProviders(ctx.mesh, ctx.features),
    workloadModeOf(ctx.direction),
  );
  return names?.flatMap((n) => providerAccessLogs(n, ctx));
}

/** Tracing settings merged for one side: the last value of each field wins. */
export interface TracingSpec {
  readonly randomSamplingPercentage: number;
  readonly customTags: Readonly<Record<string, CustomTag>>;
  /** The provider spans are reported to (the first one the last entry naming providers lists). */
  readonly provider?: string;
  readonly disableSpanReporting: boolean;
}

/**
 * Istio's Tracing merge for one side: entries of the applicable Telemetries in order, those whose
 * mode matches; `randomSamplingPercentage`, `customTags` (replaced as a whole), `providers` and
 * `disableSpanReporting` override what came before, starting from `base` (the mesh's default
 * tracing, see {@link meshTracingBase}). Undefined when no Telemetry sets tracing and there is
 * no base.
 */
export function mergeTracing(
  entries: readonly Tracing[],
  mode: WorkloadMode,
  base?: TracingSpec,
): TracingSpec | undefined {
  if (entries.length === 0 && base === undefined) return undefined;
  let sampling = base?.randomSamplingPercentage ?? DEFAULT_SAMPLING_PERCENTAGE;
  let tags: Readonly<Record<string, CustomTag>> = base?.customTags ?? {};
  let provider: string | undefined = base?.provider;
  let disabled = base?.disableSpanReporting ?? false;
  for (const e of entries) {
    if (!modeMatches(e.match, mode)) continue;
    if (e.randomSamplingPercentage !== undefined) sampling = e.randomSamplingPercentage;
    if (e.customTags !== undefined) tags = e.customTags;
    if (e.providers !== undefined && e.providers.length > 0) provider = e.providers[0]!.name;
    if (e.disableSpanReporting !== undefined) disabled = e.disableSpanReporting;
  }
  return {
    randomSamplingPercentage: sampling,
    customTags: tags,
    ...(provider !== undefined ? { provider } : {}),
    disableSpanReporting: disabled,
  };
}

/**
 * The tracing settings the mesh's default tracing gives before any Telemetry applies: its
 * sampling, no tags, no named provider (spans go to the mesh's Zipkin address, if any); undefined
 * when the mesh sets no default tracing.
 */
export function meshTracingBase(mesh: MeshConfig): TracingSpec | undefined {
  const tracing = mesh.defaultConfig.tracing;
  if (!tracing) return undefined;
  return { randomSamplingPercentage: tracing.sampling, customTags: {}, disableSpanReporting: false };
}

/** Envoy's name for its Zipkin tracer. */
export const ZIPKIN_TRACER = "envoy.tracers.zipkin";
/** Where a Zipkin collector takes JSON v2 spans when the provider names no `path`. */
export const ZIPKIN_DEFAULT_PATH = "/api/v2/spans";

/** A Zipkin collector as a proxy reaches it. */
export interface ZipkinCollector {
  /** `outbound|PORT||HOST`. */
  readonly cluster: string;
  /** The collector service's host name (the Host of span POSTs). */
  readonly hostname: string;
  readonly path: string;
  readonly traceId128bit: boolean;
}

/** Finds the cluster of a provider's service and port for the proxy being translated. */
export type ProviderLookup = (
  service: string,
  port: number,
) => { readonly hostname: string; readonly cluster: string } | { readonly reason: string };

/** The collector of the `zipkin` extension provider `name`, or why it cannot be used. */
export function zipkinCollector(
  mesh: MeshConfig,
  name: string,
  lookup: ProviderLookup,
): ZipkinCollector | { readonly reason: string } {
  const p = findProvider(mesh, name);
  if (!p) {
    return { reason: `tracing provider ${JSON.stringify(name)} is not in MeshConfig extensionProviders` };
  }
  if (!p.zipkin) return { reason: `tracing provider ${JSON.stringify(name)} is not a zipkin provider` };
  const target = lookup(p.zipkin.service, p.zipkin.port);
  if ("reason" in target) return { reason: `tracing provider ${JSON.stringify(name)}: ${target.reason}` };
  return {
    cluster: target.cluster,
    hostname: target.hostname,
    path: p.zipkin.path || ZIPKIN_DEFAULT_PATH,
    traceId128bit: !(p.zipkin.enable64bitTraceId ?? false),
  };
}

/** The cluster pilot builds for the mesh's Zipkin address when no registry service has it. */
export const ZIPKIN_CLUSTER = "zipkin";

/** Where the mesh's default tracer reports: the collector, and the address to dial when it is not a mesh service. */
export interface MeshZipkinTarget {
  readonly collector: ZipkinCollector;
  /** Set when the collector is {@link ZIPKIN_CLUSTER}, built for this host and port. */
  readonly direct?: { readonly host: string; readonly port: number };
}

/**
 * The collector of the mesh's default `zipkin.address`, or undefined when the mesh sets none: the
 * cluster of the registry service `lookup` finds for its host and port, else
 * {@link ZIPKIN_CLUSTER} dialling the address (`direct`). Spans are JSON v2 at
 * {@link ZIPKIN_DEFAULT_PATH} with 128-bit trace ids.
 */
export function meshZipkinTarget(mesh: MeshConfig, lookup: ProviderLookup): MeshZipkinTarget | undefined {
  const address = mesh.defaultConfig.tracing?.zipkin?.address;
  const hostPort = address === undefined ? undefined : splitMeshAddress(address);
  if (!hostPort) return undefined;
  const found = lookup(hostPort.host, hostPort.port);
  const common = { path: ZIPKIN_DEFAULT_PATH, traceId128bit: true };
  return "reason" in found
    ? { collector: { cluster: ZIPKIN_CLUSTER, hostname: hostPort.host, ...common }, direct: hostPort }
    : { collector: { cluster: found.cluster, hostname: found.hostname, ...common } };
}

/** Envoy's Zipkin tracer reporting JSON v2 spans to `c`. */
export function zipkinTracer(c: ZipkinCollector): Tracing_Http {
  return create(Tracing_HttpSchema, {
    name: ZIPKIN_TRACER,
    configType: {
      case: "typedConfig",
      value: typedConfig(
        ZipkinConfigSchema,
        create(ZipkinConfigSchema, {
          collectorCluster: c.cluster,
          collectorEndpoint: c.path,
          collectorEndpointVersion: ZipkinConfig_CollectorEndpointVersion.HTTP_JSON,
          collectorHostname: c.hostname,
          traceId128bit: c.traceId128bit,
          sharedSpanContext: false,
        }),
      ),
    },
  });
}

/** Envoy's custom tag for a Telemetry one; undefined for `formatter` (Envoy's CustomTag has no such source here). */
export function envoyCustomTag(tag: string, c: CustomTag): EnvoyCustomTag | undefined {
  if (c.literal) {
    return create(CustomTagSchema, { tag, type: { case: "literal", value: { value: c.literal.value } } });
  }
  if (c.environment) {
    return create(CustomTagSchema, {
      tag,
      type: {
        case: "environment",
        value: { name: c.environment.name, defaultValue: c.environment.defaultValue ?? "" },
      },
    });
  }
  if (c.header) {
    return create(CustomTagSchema, {
      tag,
      type: {
        case: "requestHeader",
        value: { name: c.header.name, defaultValue: c.header.defaultValue ?? "" },
      },
    });
  }
  return undefined;
}

/** What the tracing settings of one connection manager are built from. */
export interface TracingContext {
  readonly mesh: MeshConfig;
  readonly direction: TrafficDirection;
  /** Finds a provider's collector cluster as the proxy sees it. */
  readonly lookup: ProviderLookup;
}

/**
 * The connection manager's tracing settings from Telemetry over the mesh's default tracing, or
 * undefined when neither sets tracing: client and overall sampling 100%, random sampling as
 * merged, custom tags sorted by name, and the Zipkin tracer of the merged provider (or, when no
 * Telemetry names one, of the mesh's Zipkin address) unless span reporting is disabled or the
 * provider cannot be used (then no spans are reported).
 */
export function telemetryTracing(
  telemetries: readonly Resource<TelemetrySpec>[],
  ctx: TracingContext,
): HttpConnectionManager_Tracing | undefined {
  const spec = mergeTracing(
    telemetries.flatMap((t) => t.spec.tracing ?? []),
    workloadModeOf(ctx.direction),
    meshTracingBase(ctx.mesh),
  );
  if (!spec) return undefined;
  const collector = spec.disableSpanReporting
    ? undefined
    : spec.provider !== undefined
    ? zipkinCollector(ctx.mesh, spec.provider, ctx.lookup)
    : meshZipkinTarget(ctx.mesh, ctx.lookup)?.collector;
  return create(HttpConnectionManager_TracingSchema, {
    clientSampling: { value: 100 },
    randomSampling: { value: spec.randomSamplingPercentage },
    overallSampling: { value: 100 },
    customTags: Object.keys(spec.customTags).sort().flatMap((k) =>
      envoyCustomTag(k, spec.customTags[k]!) ?? []
    ),
    ...(collector && !("reason" in collector) ? { provider: zipkinTracer(collector) } : {}),
  });
}
