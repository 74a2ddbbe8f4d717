/** Telemetry fixtures for pilot's tests: Telemetry resources as YAML, and reading access logs back. */
import { fromBinary } from "@bufbuild/protobuf";
import type { AccessLog } from "#gen/envoy/config/accesslog/v3/accesslog_pb.ts";
import { FileAccessLogSchema } from "#gen/envoy/extensions/access_loggers/file/v3/file_pb.ts";

/** A Telemetry `namespace/name` as YAML; `spec` is the spec's body, one field a line, unindented. */
export function telemetry(namespace: string, name: string, spec: string): string {
  return `
apiVersion: telemetry.istio.io/v1
kind: Telemetry
metadata: { name: ${name}, namespace: ${namespace} }
spec:
${spec.split("\n").map((l) => `  ${l}`).join("\n")}
`;
}

/**
 * A MeshConfig logging to /var/log/mesh.log, with one extension provider, text-log, a file access
 * log to /var/log/text.log in the text format `format`.
 */
export function meshWithTextLog(format: string): string {
  return `
apiVersion: config.meshd.io/v1alpha1
kind: MeshConfig
metadata: { name: mesh, namespace: istio-system }
spec:
  accessLogFile: /var/log/mesh.log
  extensionProviders:
    - name: text-log
      envoyFileAccessLog:
        path: /var/log/text.log
        logFormat: { text: "${format}" }
`;
}

/** The file path of each file access log, and the name of each other logger, in order. */
export function accessLogPaths(logs: readonly AccessLog[]): string[] {
  return logs.map((a) =>
    a.configType.case === "typedConfig" && a.name === "envoy.access_loggers.file"
      ? fromBinary(FileAccessLogSchema, a.configType.value.value).path
      : a.name
  );
}
