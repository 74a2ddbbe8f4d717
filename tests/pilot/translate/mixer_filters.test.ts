import { describe, expect, test } from "bun:test";
import { toJson } from "@bufbuild/protobuf";
import { anyUnpack } from "@bufbuild/protobuf/wkt";
import type { Listener } from "#gen/envoy/config/listener/v3/listener_pb.ts";
import { RateLimitSchema } from "#gen/envoy/config/route/v3/route_components_pb.ts";
import {
  type HttpConnectionManager,
  HttpConnectionManagerSchema,
} from "#gen/envoy/extensions/filters/network/http_connection_manager/v3/http_connection_manager_pb.ts";
import { XDS_CLUSTER } from "../../../mod/agent/bootstrap.ts";
import { createConfigStore } from "../../../mod/galley/store.ts";
import { MIXER_CLUSTER } from "../../../mod/api/mixer/filter_settings.ts";
import {
  createPushContext,
  type PilotFeatures,
  type PushContext,
} from "../../../mod/pilot/model/push_context.ts";
import { buildHttpFilters, HTTP_FILTER_CONFIGURERS } from "../../../mod/pilot/translate/http_filters.ts";
import { proxyFromNode } from "../../../mod/pilot/model/proxy.ts";
import { buildClusters, buildListeners, buildRoutes } from "../../../mod/pilot/translate/mod.ts";
import { TRANSLATE_REGISTRY } from "../../../mod/pilot/translate/type_registry.ts";
import { createLogger } from "../../../mod/shared/logger.ts";
import { sidecar, WEB_SERVICE, webSidecar } from "../_push.ts";

const POLICY = `
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: { name: deny-admin, namespace: app }
spec:
  action: DENY
  rules: [{ to: [{ operation: { paths: ["/admin"] } }] }]
`;

const meshConfig = (failOpen: boolean) => `
apiVersion: config.meshd.io/v1alpha1
kind: MeshConfig
metadata: { name: mesh, namespace: istio-system }
spec:
  mixer: { failOpen: ${failOpen} }
`;

function push(features: PilotFeatures | undefined, ...yaml: string[]): PushContext {
  const store = createConfigStore({ logger: createLogger({ write: () => {} }) });
  store.sink("test").replace(yaml.map((content, i) => ({ origin: `input-${i}.yaml`, content })));
  const bad = store.status().resources.flatMap((r) => r.state === "rejected" ? r.errors : []);
  if (bad.length > 0) throw new Error(`test config rejected:\n${bad.join("\n")}`);
  return createPushContext({ config: store.snapshot(), ...(features ? { features } : {}) });
}

const web = webSidecar();
const client = sidecar("10.0.0.9", "app", { app: "client" });
const ON: PilotFeatures = { mixer: true };

/** Every HTTP connection manager of a listener's filter chains. */
function hcms(l: Listener): HttpConnectionManager[] {
  return l.filterChains.flatMap((c) =>
    c.filters.flatMap((f) =>
      f.configType.case === "typedConfig" && f.configType.value.typeUrl.endsWith("HttpConnectionManager")
        ? [anyUnpack(f.configType.value, HttpConnectionManagerSchema)!]
        : []
    )
  );
}

/** The inbound connection managers of `web` (port 80, each mTLS variant). */
function inboundHcms(p: PushContext): HttpConnectionManager[] {
  const l = buildListeners(p, web).find((x) => x.name === "virtualInbound")!;
  return hcms(l);
}

/** The outbound connection managers of `client` (the 0.0.0.0_80 listener). */
function outboundHcms(p: PushContext): HttpConnectionManager[] {
  return buildListeners(p, client).filter((x) => x.name !== "virtualInbound").flatMap(hcms);
}

type Json = Record<string, unknown>;
const filterJson = (hcm: HttpConnectionManager, name: string) => {
  const f = hcm.httpFilters.find((h) => h.name === name);
  return f
    ? toJson(HttpConnectionManagerSchema, { ...hcm, httpFilters: [f] } as HttpConnectionManager, {
      registry: TRANSLATE_REGISTRY,
    }) as { httpFilters: [{ typedConfig: Json }] }
    : undefined;
};
const logsJson = (hcm: HttpConnectionManager) =>
  ((toJson(HttpConnectionManagerSchema, hcm, { registry: TRANSLATE_REGISTRY }) as Json).accessLog ?? []) as {
    name: string;
    typedConfig: Json;
  }[];

describe("mixer filters (features.mixer)", () => {
  test("off by default: no features given means mixer off and the filter list unchanged", () => {
    const p = push(undefined, WEB_SERVICE, POLICY);
    expect(p.features).toEqual({ mixer: false });
    for (const hcm of [...inboundHcms(p), ...outboundHcms(p)]) {
      expect(hcm.httpFilters.map((f) => f.name)).not.toContain("envoy.filters.http.ext_authz");
      expect(hcm.httpFilters.map((f) => f.name)).not.toContain("envoy.filters.http.ratelimit");
      expect(hcm.accessLog).toEqual([]);
    }
    const ctx = { push: p, proxy: web, direction: "inbound" as const, port: 80 };
    expect(buildHttpFilters(ctx)).toEqual(buildHttpFilters(ctx, HTTP_FILTER_CONFIGURERS));
  });

  test("off: output is identical to a push built without features", () => {
    const off = push({ mixer: false }, WEB_SERVICE, POLICY);
    const none = push(undefined, WEB_SERVICE, POLICY);
    for (const proxy of [web, client]) {
      expect(buildListeners(off, proxy)).toEqual(buildListeners(none, proxy));
      expect(buildClusters(off, proxy)).toEqual(buildClusters(none, proxy));
    }
  });

  test("on: inbound filters are RBAC, ext_authz, ratelimit, fault, CORS, router", () => {
    const list = inboundHcms(push(ON, WEB_SERVICE, POLICY));
    expect(list.length).toBeGreaterThan(0);
    for (const hcm of list) {
      expect(hcm.httpFilters.map((f) => f.name)).toEqual([
        "envoy.filters.http.rbac",
        "envoy.filters.http.ext_authz",
        "envoy.filters.http.ratelimit",
        "envoy.filters.http.fault",
        "envoy.filters.http.cors",
        "envoy.filters.http.router",
      ]);
    }
  });

  test("on without an AuthorizationPolicy: ext_authz and ratelimit come first", () => {
    for (const hcm of inboundHcms(push(ON, WEB_SERVICE))) {
      expect(hcm.httpFilters.map((f) => f.name)).toEqual([
        "envoy.filters.http.ext_authz",
        "envoy.filters.http.ratelimit",
        "envoy.filters.http.fault",
        "envoy.filters.http.cors",
        "envoy.filters.http.router",
      ]);
    }
  });

  for (const failOpen of [true, false]) {
    test(`on, mixer.failOpen ${failOpen}: failure modes follow the mesh`, () => {
      const [hcm] = inboundHcms(push(ON, WEB_SERVICE, meshConfig(failOpen)));
      const authz = filterJson(hcm!, "envoy.filters.http.ext_authz")!.httpFilters[0].typedConfig;
      expect(authz).toEqual({
        "@type": "type.googleapis.com/envoy.extensions.filters.http.ext_authz.v3.ExtAuthz",
        grpcService: { envoyGrpc: { clusterName: MIXER_CLUSTER }, timeout: "0.200s" },
        transportApiVersion: "V3",
        includePeerCertificate: true,
        ...(failOpen ? { failureModeAllow: true } : {}),
      });
      const rl = filterJson(hcm!, "envoy.filters.http.ratelimit")!.httpFilters[0].typedConfig;
      expect(rl).toEqual({
        "@type": "type.googleapis.com/envoy.extensions.filters.http.ratelimit.v3.RateLimit",
        domain: "meshd",
        timeout: "0.100s",
        rateLimitService: {
          grpcService: { envoyGrpc: { clusterName: MIXER_CLUSTER } },
          transportApiVersion: "V3",
        },
        ...(failOpen ? {} : { failureModeDeny: true }),
      });
    });
  }

  test("on: inbound and outbound connection managers log to mixer over gRPC", () => {
    const p = push(ON, WEB_SERVICE);
    const all = [...inboundHcms(p), ...outboundHcms(p)];
    expect(outboundHcms(p).length).toBeGreaterThan(0);
    for (const hcm of all) {
      expect(logsJson(hcm)).toEqual([{
        name: "envoy.access_loggers.http_grpc",
        typedConfig: {
          "@type": "type.googleapis.com/envoy.extensions.access_loggers.grpc.v3.HttpGrpcAccessLogConfig",
          commonConfig: {
            logName: "meshd-mixer",
            grpcService: { envoyGrpc: { clusterName: MIXER_CLUSTER } },
            transportApiVersion: "V3",
            bufferFlushInterval: "1s",
          },
          additionalRequestHeadersToLog: [
            "x-request-id",
            "x-b3-traceid",
            "x-b3-spanid",
            "x-b3-parentspanid",
            "x-b3-sampled",
            "x-b3-flags",
            "b3",
            "traceparent",
            "tracestate",
          ],
        },
      }]);
    }
  });

  test("on: outbound connection managers get no ext_authz or ratelimit", () => {
    for (const hcm of outboundHcms(push(ON, WEB_SERVICE, POLICY))) {
      const names = hcm.httpFilters.map((f) => f.name);
      expect(names).not.toContain("envoy.filters.http.ext_authz");
      expect(names).not.toContain("envoy.filters.http.ratelimit");
      expect(names.at(-1)).toBe("envoy.filters.http.router");
    }
  });

  test("on: the mesh's file access log stays first", () => {
    const p = push(
      ON,
      WEB_SERVICE,
      `
apiVersion: config.meshd.io/v1alpha1
kind: MeshConfig
metadata: { name: mesh, namespace: istio-system }
spec:
  accessLogFile: /dev/stdout
`,
    );
    for (const hcm of inboundHcms(p)) {
      expect(logsJson(hcm).map((l) => l.name)).toEqual([
        "envoy.access_loggers.file",
        "envoy.access_loggers.http_grpc",
      ]);
    }
  });

  test("on: each inbound HTTP virtual host carries one rate limit describing the destination and the request", () => {
    const labelled = proxyFromNode({
      id: "sidecar~10.0.0.1~web-1.app~app.svc.cluster.local",
      metadata: {
        NAMESPACE: "app",
        SERVICE_ACCOUNT: "web",
        LABELS: { app: "web", version: "v2", "app.kubernetes.io/name": "web", empty: "" },
      },
    });
    const p = push(ON, WEB_SERVICE);
    const l = buildListeners(p, labelled).find((x) => x.name === "virtualInbound")!;
    const list = hcms(l);
    expect(list.length).toBeGreaterThan(0);
    for (const hcm of list) {
      const routes = hcm.routeSpecifier.case === "routeConfig" ? hcm.routeSpecifier.value : undefined;
      expect(routes?.virtualHosts.map((vh) => vh.name)).toEqual(["inbound|http|80"]);
      const limits = routes!.virtualHosts[0]!.rateLimits.map((r) => toJson(RateLimitSchema, r));
      const key = (k: string, v: string) => ({ genericKey: { descriptorKey: k, descriptorValue: v } });
      expect(limits).toEqual([{
        actions: [
          key("destination.service.host", "web.app.svc.cluster.local"),
          key("destination.service.name", "web"),
          key("destination.service.namespace", "app"),
          key("destination.namespace", "app"),
          key("destination.principal", "spiffe://cluster.local/ns/app/sa/web"),
          key("destination.labels.app", "web"),
          key("destination.labels.version", "v2"),
          { destinationCluster: {} },
          { requestHeaders: { headerName: ":path", descriptorKey: "request.path", skipIfAbsent: true } },
          { requestHeaders: { headerName: ":method", descriptorKey: "request.method", skipIfAbsent: true } },
          { requestHeaders: { headerName: ":authority", descriptorKey: "request.host", skipIfAbsent: true } },
          { remoteAddress: {} },
        ],
      }]);
    }
  });

  test("rate limits only where the ratelimit filter is: inbound with mixer on, never outbound or with mixer off", () => {
    const vhostLimits = (p: PushContext) => ({
      inbound: inboundHcms(p).flatMap((hcm) =>
        hcm.routeSpecifier.case === "routeConfig"
          ? hcm.routeSpecifier.value.virtualHosts.flatMap((vh) => vh.rateLimits)
          : []
      ),
      outbound: buildRoutes(p, client).flatMap((rc) => rc.virtualHosts.flatMap((vh) => vh.rateLimits)),
    });
    const on = vhostLimits(push(ON, WEB_SERVICE));
    expect(on.inbound.length).toBe(inboundHcms(push(ON, WEB_SERVICE)).length);
    expect(on.outbound).toEqual([]);
    expect(buildRoutes(push(ON, WEB_SERVICE), client).length).toBeGreaterThan(0);
    for (const features of [undefined, { mixer: false }]) {
      expect(vhostLimits(push(features, WEB_SERVICE))).toEqual({ inbound: [], outbound: [] });
    }
  });

  test("on: the filters' cluster is the bootstrap's static xds-grpc, so CDS does not emit it", () => {
    expect(MIXER_CLUSTER).toBe(XDS_CLUSTER);
    const p = push(ON, WEB_SERVICE);
    for (const proxy of [web, client]) {
      expect(buildClusters(p, proxy).map((c) => c.name)).not.toContain(MIXER_CLUSTER);
      expect(buildClusters(p, proxy)).toEqual(buildClusters(push(undefined, WEB_SERVICE), proxy));
    }
  });
});
