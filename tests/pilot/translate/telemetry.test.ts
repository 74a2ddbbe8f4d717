/**
 * The Telemetry API on Envoy (mod/pilot/translate/telemetry.ts): which Telemetries apply to a
 * proxy, how their access logging and tracing merge as Istio's pilot merges them, what the
 * connection managers get, and the fields validation refuses because meshd does not build them.
 */
import { describe, expect, test } from "bun:test";
import { fromBinary } from "@bufbuild/protobuf";
import { FileAccessLogSchema } from "#gen/envoy/extensions/access_loggers/file/v3/file_pb.ts";
import type { AccessLogging } from "../../../mod/api/kinds/telemetry.ts";
import { validateResource } from "../../../mod/galley/validate.ts";
import { parseConfig } from "../../../mod/galley/parse.ts";
import { defaultMeshConfig, mergeMeshConfig } from "../../../mod/api/kinds/mesh_config.ts";
import { HTTP_GRPC_ACCESS_LOG } from "../../../mod/pilot/translate/access_log.ts";
import { httpConnectionManager } from "../../../mod/pilot/translate/http_connection_manager.ts";
import {
  mergeAccessLogging,
  mergeTracing,
  providerAccessLogs,
  telemetryAccessLogs,
} from "../../../mod/pilot/translate/telemetry.ts";
import type { PushContext } from "../../../mod/pilot/model/push_context.ts";
import type { Proxy } from "../../../mod/pilot/model/proxy.ts";
import { pushFrom, sidecar, WEB_SERVICE, webSidecar } from "../_push.ts";
import { accessLogPaths, meshWithTextLog, telemetry } from "../_telemetry.ts";

const MESH = meshWithTextLog("%REQ(:METHOD)% %RESPONSE_CODE%");

/** The file paths of the access logs of a connection manager for `proxy` on `direction`. */
function logPaths(push: PushContext, proxy: Proxy, direction: "inbound" | "outbound" | "gateway"): string[] {
  const hcm = httpConnectionManager({
    push,
    proxy,
    direction,
    port: 80,
    statPrefix: "x",
    routes: { rds: "80" },
  });
  return accessLogPaths(hcm.accessLog);
}

describe("which Telemetries apply", () => {
  const push = pushFrom(
    WEB_SERVICE,
    telemetry("istio-system", "root", "accessLogging: [{}]"),
    telemetry(
      "istio-system",
      "root-selected",
      "selector: { matchLabels: { app: web } }\naccessLogging: [{}]",
    ),
    telemetry("app", "ns", "accessLogging: [{}]"),
    telemetry("app", "other", "selector: { matchLabels: { app: other } }\naccessLogging: [{}]"),
    telemetry("app", "web", "selector: { matchLabels: { app: web } }\naccessLogging: [{}]"),
    telemetry("other", "web", "selector: { matchLabels: { app: web } }\naccessLogging: [{}]"),
  );

  test("root namespace-wide, then namespace-wide, then the workload's; selectors elsewhere do not apply", () => {
    const names = push.telemetryFor(webSidecar()).map((t) => `${t.metadata.namespace}/${t.metadata.name}`);
    expect(names).toEqual(["istio-system/root", "app/ns", "app/web"]);
  });

  test("a workload no selector picks gets the namespace-wide levels only", () => {
    const names = push.telemetryFor(sidecar("10.0.0.9", "app", { app: "db" })).map((t) => t.metadata.name);
    expect(names).toEqual(["root", "ns"]);
  });
});

describe("merging access logging as Istio does", () => {
  const entries = (...e: AccessLogging[]) => e;

  test("no access logging at any level: undefined, so the legacy sinks stay", () => {
    expect(mergeAccessLogging([[], []], ["envoy"], "CLIENT")).toBeUndefined();
  });

  test("an entry without providers inherits the defaults; disabled removes them", () => {
    expect(mergeAccessLogging([entries({})], ["envoy"], "CLIENT")).toEqual(["envoy"]);
    expect(mergeAccessLogging([entries({}), entries({ disabled: true })], ["envoy"], "SERVER")).toEqual([]);
  });

  test("providers named by a lower level replace the scope of higher ones", () => {
    const root = entries({ providers: [{ name: "a" }] });
    const ns = entries({ providers: [{ name: "b" }] });
    expect(mergeAccessLogging([root, ns], [], "CLIENT")).toEqual(["b"]);
  });

  test("match.mode picks the side: SERVER entries do not touch client-side logs", () => {
    const root = entries({ providers: [{ name: "a" }] });
    const ns = entries({ providers: [{ name: "a" }], match: { mode: "SERVER" }, disabled: true });
    expect(mergeAccessLogging([root, ns], [], "CLIENT")).toEqual(["a"]);
    expect(mergeAccessLogging([root, ns], [], "SERVER")).toEqual([]);
  });
});

describe("access logs on connection managers", () => {
  test("without Telemetry the mesh's access log file stays", () => {
    expect(logPaths(pushFrom(MESH, WEB_SERVICE), webSidecar(), "outbound")).toEqual(["/var/log/mesh.log"]);
  });

  test("disabled at the root namespace turns off the mesh's access log file everywhere", () => {
    const push = pushFrom(
      MESH,
      WEB_SERVICE,
      telemetry("istio-system", "off", "accessLogging: [{ disabled: true }]"),
    );
    expect(logPaths(push, webSidecar(), "outbound")).toEqual([]);
    expect(logPaths(push, webSidecar(), "inbound")).toEqual([]);
  });

  test("an envoyFileAccessLog provider with a text format, on the server side only", () => {
    const push = pushFrom(
      MESH,
      WEB_SERVICE,
      telemetry(
        "app",
        "logs",
        "accessLogging: [{ providers: [{ name: text-log }], match: { mode: SERVER } }]",
      ),
    );
    expect(logPaths(push, webSidecar(), "inbound")).toEqual(["/var/log/text.log"]);
    expect(logPaths(push, webSidecar(), "outbound")).toEqual([]);
    const hcm = httpConnectionManager({
      push,
      proxy: webSidecar(),
      direction: "inbound",
      port: 80,
      statPrefix: "x",
      routes: { rds: "80" },
    });
    const file = fromBinary(
      FileAccessLogSchema,
      (hcm.accessLog[0]!.configType.value as { value: Uint8Array }).value,
    );
    expect(file.accessLogFormat.case).toBe("logFormat");
    const fmt = file.accessLogFormat.value as {
      format: { case: string; value: { specifier: { value: string } } };
    };
    expect(fmt.format.case).toBe("textFormatSource");
    expect(fmt.format.value.specifier.value).toBe("%REQ(:METHOD)% %RESPONSE_CODE%\n");
  });

  test("the built-in mixer provider is mixer's gRPC access log on sidecars, nothing on gateways", () => {
    const ctx = { mesh: defaultMeshConfig, features: { mixer: true } };
    expect(providerAccessLogs("mixer", { ...ctx, direction: "inbound" }).map((a) => a.name)).toEqual([
      HTTP_GRPC_ACCESS_LOG,
    ]);
    expect(providerAccessLogs("mixer", { ...ctx, direction: "gateway" })).toEqual([]);
    expect(providerAccessLogs("mixer", { ...ctx, features: { mixer: false }, direction: "inbound" })).toEqual(
      [],
    );
  });

  test("with mixer running, Telemetry disabling the defaults removes mixer's log too", () => {
    const push = pushFrom(WEB_SERVICE, telemetry("app", "off", "accessLogging: [{ disabled: true }]"));
    const ctx = { mesh: mergeMeshConfig({}), features: { mixer: true }, direction: "outbound" as const };
    expect(telemetryAccessLogs(push.telemetryFor(webSidecar()), ctx)).toEqual([]);
  });
});

describe("tracing", () => {
  test("sampling defaults to Istio's 1%; later entries override; mode picks the side", () => {
    expect(mergeTracing([{}], "CLIENT")?.randomSamplingPercentage).toBe(1);
    const entries = [{ randomSamplingPercentage: 20 }, {
      randomSamplingPercentage: 50,
      match: { mode: "SERVER" as const },
    }];
    expect(mergeTracing(entries, "CLIENT")?.randomSamplingPercentage).toBe(20);
    expect(mergeTracing(entries, "SERVER")?.randomSamplingPercentage).toBe(50);
    expect(mergeTracing([], "SERVER")).toBeUndefined();
  });

  test("the connection manager gets tracing only where a Telemetry sets it", () => {
    const base = { port: 80, statPrefix: "x", routes: { rds: "80" } } as const;
    const without = pushFrom(WEB_SERVICE);
    expect(
      httpConnectionManager({ ...base, push: without, proxy: webSidecar(), direction: "outbound" }).tracing,
    )
      .toBeUndefined();
    const push = pushFrom(
      WEB_SERVICE,
      telemetry(
        "app",
        "t",
        "tracing: [{ randomSamplingPercentage: 25, customTags: { a: { literal: { value: v } } } }]",
      ),
    );
    const tr = httpConnectionManager({ ...base, push, proxy: webSidecar(), direction: "outbound" }).tracing!;
    expect(tr.randomSampling?.value).toBe(25);
    expect(tr.customTags.map((c) => [c.tag, c.type.case])).toEqual([["a", "literal"]]);
  });
});

describe("validation refuses what meshd does not build", () => {
  function warnings(spec: string): string[] {
    const [r] = parseConfig(telemetry("app", "t", spec), "t.yaml").resources;
    return validateResource(r!).filter((d) => d.severity === "warning").map((d) =>
      `${d.field}: ${d.message}`
    );
  }

  test("metrics fields, access-log filters and Istio tags are 'not supported' at the field; tracing providers are used", () => {
    const w = warnings(
      [
        "metrics: [{ providers: [{ name: prometheus }], overrides: [{ disabled: true }] }]",
        "accessLogging: [{ filter: { expression: 'response.code >= 400' } }]",
        "tracing: [{ providers: [{ name: zipkin }], enableIstioTags: true }]",
      ].join("\n"),
    );
    expect(w.some((m) => m.startsWith("spec.metrics[0].providers[0].name: not supported"))).toBe(true);
    expect(w.some((m) => m.startsWith("spec.metrics[0].overrides[0].disabled: not supported"))).toBe(true);
    expect(w.some((m) => m.startsWith("spec.accessLogging[0].filter.expression:") && /not supported/.test(m)))
      .toBe(true);
    expect(w.some((m) => m.startsWith("spec.tracing[0].providers"))).toBe(false);
    expect(w.some((m) => m.startsWith("spec.tracing[0].enableIstioTags:") && /not supported/.test(m))).toBe(
      true,
    );
  });

  test("what translation honours is accepted without warnings", () => {
    expect(
      warnings(
        "accessLogging: [{ providers: [{ name: envoy }], match: { mode: CLIENT }, disabled: false }]\n" +
          "tracing: [{ randomSamplingPercentage: 5, customTags: { a: { header: { name: x-a } } } }]",
      ),
    ).toEqual([]);
  });
});
