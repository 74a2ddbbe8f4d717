/**
 * Access logs: the mesh's `accessLogFile` as Envoy's file access logger, on every HTTP
 * connection manager and TCP proxy.
 *
 * @module
 */
import { create } from "@bufbuild/protobuf";
import { type AccessLog, AccessLogSchema } from "#gen/envoy/config/accesslog/v3/accesslog_pb.ts";
import { FileAccessLogSchema } from "#gen/envoy/extensions/access_loggers/file/v3/file_pb.ts";
import type { MeshConfig } from "../../galley/kinds/mesh_config.ts";
import { typedConfig } from "./conversion.ts";

/** Envoy's name for the file access logger. */
export const FILE_ACCESS_LOG = "envoy.access_loggers.file";

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
