/**
 * Access logs: the mesh's `accessLogFile` as Envoy's file access logger, on every HTTP
 * connection manager and TCP proxy; and, when mixer runs, Envoy's gRPC access logger sending
 * sidecars' HTTP requests to mixer (see {@link mixerAccessLogs}).
 *
 * @module
 */
import { create } from "@bufbuild/protobuf";
import { type AccessLog, AccessLogSchema } from "#gen/envoy/config/accesslog/v3/accesslog_pb.ts";
import { ApiVersion } from "#gen/envoy/config/core/v3/config_source_pb.ts";
import { FileAccessLogSchema } from "#gen/envoy/extensions/access_loggers/file/v3/file_pb.ts";
import { HttpGrpcAccessLogConfigSchema } from "#gen/envoy/extensions/access_loggers/grpc/v3/als_pb.ts";
import type { MeshConfig } from "../../api/kinds/mesh_config.ts";
import { mixerFilterSettings } from "../../api/mixer/filter_settings.ts";
import type { PilotFeatures } from "../model/push_context.ts";
import { durationFromString, typedConfig } from "./conversion.ts";

/** Envoy's name for the file access logger. */
export const FILE_ACCESS_LOG = "envoy.access_loggers.file";
/** Envoy's name for the HTTP gRPC access logger. */
export const HTTP_GRPC_ACCESS_LOG = "envoy.access_loggers.http_grpc";

/** The access logs to attach: one file logger when the mesh names a file, else none. */
export function accessLogs(mesh: MeshConfig): AccessLog[] {
  if (!mesh.accessLogFile) return [];
  return [
    create(AccessLogSchema, {
      name: FILE_ACCESS_LOG,
      configType: {
        case: "typedConfig",
        value: typedConfig(FileAccessLogSchema, create(FileAccessLogSchema, { path: mesh.accessLogFile })),
      },
    }),
  ];
}

/**
 * The trace context headers (B3 and W3C) sent with every access-log entry, so the spans mixer's
 * zipkin adapter makes from the entries join the traces the sidecars report.
 */
const TRACE_HEADERS = [
  "x-request-id",
  "x-b3-traceid",
  "x-b3-spanid",
  "x-b3-parentspanid",
  "x-b3-sampled",
  "x-b3-flags",
  "b3",
  "traceparent",
  "tracestate",
];

/**
 * The gRPC access log to mixer when it runs (`features.mixer`): HttpGrpcAccessLogConfig with
 * the log name, cluster and flush interval of {@link mixerFilterSettings}, v3 transport, and the
 * trace headers so mixer can join spans to traces; none
 * when mixer is off. Sidecars attach it to their inbound and outbound connection managers.
 */
export function mixerAccessLogs(mesh: MeshConfig, features: PilotFeatures): AccessLog[] {
  if (!features.mixer) return [];
  const s = mixerFilterSettings(mesh).accessLog;
  return [
    create(AccessLogSchema, {
      name: HTTP_GRPC_ACCESS_LOG,
      configType: {
        case: "typedConfig",
        value: typedConfig(
          HttpGrpcAccessLogConfigSchema,
          create(HttpGrpcAccessLogConfigSchema, {
            commonConfig: {
              logName: s.logName,
              grpcService: { targetSpecifier: { case: "envoyGrpc", value: { clusterName: s.clusterName } } },
              transportApiVersion: ApiVersion.V3,
              bufferFlushInterval: durationFromString(`${s.bufferFlushIntervalMs}ms`),
            },
            additionalRequestHeadersToLog: TRACE_HEADERS,
          }),
        ),
      },
    }),
  ];
}
