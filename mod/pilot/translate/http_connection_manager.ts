/**
 * The HTTP connection manager network filter: codec detection, the route table (over RDS, or
 * inline for inbound ports), the HTTP filters, and the settings Istio uses (paths normalised,
 * slashes merged, websockets allowed, no stream idle timeout, tracing off unless Telemetry or the
 * mesh's `defaultConfig.tracing` sets it, spans reported to the Zipkin provider Telemetry names or
 * else to the mesh's Zipkin address). Access logs and tracing follow the Telemetry API
 * (telemetry.ts); without it, the mesh's access log file, and when mixer runs, sidecars'
 * connection managers (not gateways') also log to it over gRPC.
 *
 * @module
 */
import { create } from "@bufbuild/protobuf";
import type { Filter } from "#gen/envoy/config/listener/v3/listener_components_pb.ts";
import { FilterSchema } from "#gen/envoy/config/listener/v3/listener_components_pb.ts";
import type { RouteConfiguration } from "#gen/envoy/config/route/v3/route_pb.ts";
import {
  type HttpConnectionManager,
  HttpConnectionManager_CodecType,
  HttpConnectionManager_PathWithEscapedSlashesAction,
  HttpConnectionManagerSchema,
  RdsSchema,
} from "#gen/envoy/extensions/filters/network/http_connection_manager/v3/http_connection_manager_pb.ts";
import { accessLogs, mixerAccessLogs } from "./access_log.ts";
import { adsConfigSource, typedConfig, zeroDuration } from "./conversion.ts";
import { lookupProviderTarget } from "./ext_authz.ts";
import { buildHttpFilters, type HttpFilterContext } from "./http_filters.ts";
import { telemetryAccessLogs, telemetryTracing } from "./telemetry.ts";
import type { AccessLog } from "#gen/envoy/config/accesslog/v3/accesslog_pb.ts";
import type { PushContext } from "../model/push_context.ts";

/** The network filter name of the HTTP connection manager. */
export const HCM_FILTER = "envoy.filters.network.http_connection_manager";

/** What one connection manager is for. */
export interface HcmOptions extends HttpFilterContext {
  readonly statPrefix: string;
  /** Where routes come from: an RDS name, or an inline route configuration. */
  readonly routes: { readonly rds: string } | { readonly inline: RouteConfiguration };
}

/**
 * An HTTP connection manager. Gateways use the client's address (they face the outside);
 * sidecars trust the x-forwarded-for their own clients set, so `use_remote_address` is false.
 */
export function httpConnectionManager(opts: HcmOptions): HttpConnectionManager {
  const telemetries = opts.push.telemetryFor(opts.proxy);
  const hcm = create(HttpConnectionManagerSchema, {
    codecType: HttpConnectionManager_CodecType.AUTO,
    statPrefix: opts.statPrefix,
    httpFilters: buildHttpFilters(opts),
    useRemoteAddress: opts.direction === "gateway",
    normalizePath: true,
    mergeSlashes: true,
    pathWithEscapedSlashesAction: HttpConnectionManager_PathWithEscapedSlashesAction.KEEP_UNCHANGED,
    upgradeConfigs: [{ upgradeType: "websocket" }],
    streamIdleTimeout: zeroDuration(),
    accessLog: hcmAccessLogs(opts, telemetries),
  });
  const tracing = telemetryTracing(telemetries, {
    mesh: opts.push.mesh,
    direction: opts.direction,
    lookup: (service, port) => lookupProviderTarget(opts.push, opts.proxy, service, port),
  });
  if (tracing) hcm.tracing = tracing;
  hcm.routeSpecifier = "rds" in opts.routes
    ? {
      case: "rds",
      value: create(RdsSchema, { configSource: adsConfigSource(), routeConfigName: opts.routes.rds }),
    }
    : { case: "routeConfig", value: opts.routes.inline };
  return hcm;
}

/**
 * The access logs of a connection manager: what the Telemetry API gives it (telemetry.ts), or,
 * when no Telemetry configures access logging, the mesh's access log file and, on sidecars, the
 * gRPC access log to mixer when it runs.
 */
function hcmAccessLogs(opts: HcmOptions, telemetries: ReturnType<PushContext["telemetryFor"]>): AccessLog[] {
  const { mesh, features } = opts.push;
  return telemetryAccessLogs(telemetries, { mesh, features, direction: opts.direction }) ?? [
    ...accessLogs(mesh),
    ...(opts.direction === "gateway" ? [] : mixerAccessLogs(mesh, features)),
  ];
}

/** Wraps a connection manager as a listener's network filter. */
export function hcmFilter(hcm: HttpConnectionManager): Filter {
  return create(FilterSchema, {
    name: HCM_FILTER,
    configType: { case: "typedConfig", value: typedConfig(HttpConnectionManagerSchema, hcm) },
  });
}
