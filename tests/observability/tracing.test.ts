/**
 * Tracing from MeshConfig and Telemetry in pilot's Envoy translation: the connection managers
 * get Envoy's Zipkin tracer reporting to the collector's outbound cluster, with the sampling the
 * Telemetry sets; a golden case (tests/observability/tracing/, refreshed with UPDATE_GOLDEN=1)
 * holds the whole output for one sidecar.
 */
import { describe, expect, test } from "bun:test";
import { existsSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { parse } from "yaml";
import { createRegistry, type JsonObject, toJson } from "@bufbuild/protobuf";
import { anyUnpack } from "@bufbuild/protobuf/wkt";
import { ClusterSchema } from "#gen/envoy/config/cluster/v3/cluster_pb.ts";
import { ListenerSchema } from "#gen/envoy/config/listener/v3/listener_pb.ts";
import { type ZipkinConfig, ZipkinConfigSchema } from "#gen/envoy/config/trace/v3/zipkin_pb.ts";
import {
  type HttpConnectionManager,
  HttpConnectionManagerSchema,
} from "#gen/envoy/extensions/filters/network/http_connection_manager/v3/http_connection_manager_pb.ts";
import { mergeMeshConfig } from "../../mod/api/kinds/mesh_config.ts";
import { type Proxy, proxyFromNode } from "../../mod/pilot/model/proxy.ts";
import { buildClusters, buildEndpoints, buildListeners, buildRoutes } from "../../mod/pilot/translate/mod.ts";
import { checkEnvoySet } from "../../mod/pilot/check/mod.ts";
import {
  mergeTracing,
  ZIPKIN_DEFAULT_PATH,
  ZIPKIN_TRACER,
  zipkinCollector,
} from "../../mod/pilot/translate/telemetry.ts";
import { TRANSLATE_REGISTRY } from "../../mod/pilot/translate/type_registry.ts";
import { pushFrom } from "../pilot/_push.ts";

const DIR = join(import.meta.dir, "tracing");
const CASE = "mesh_tracing";
/** The translation's registry, with Zipkin's config for as long as it does not hold it. */
const REGISTRY = TRANSLATE_REGISTRY.getMessage(ZipkinConfigSchema.typeName)
  ? TRANSLATE_REGISTRY
  : createRegistry(TRANSLATE_REGISTRY, ZipkinConfigSchema);

function readCase(): { push: ReturnType<typeof pushFrom>; proxy: Proxy } {
  const docs = readFileSync(join(DIR, `${CASE}.input.yaml`), "utf8").split(/^---[ \t]*$/m);
  const config: string[] = [];
  let proxy: Proxy | undefined;
  for (const doc of docs) {
    const parsed = parse(doc) as { kind?: string; spec?: { id: string; metadata: JsonObject } } | null;
    if (parsed?.kind === "TestProxy") proxy = proxyFromNode(parsed.spec!);
    else if (parsed) config.push(doc);
  }
  return { push: pushFrom(config.join("\n---\n")), proxy: proxy! };
}

/** Every connection manager of `proxy`'s listeners, by listener and filter chain. */
function connectionManagers(
  c: ReturnType<typeof readCase>,
): Array<{ where: string; hcm: HttpConnectionManager }> {
  return buildListeners(c.push, c.proxy).flatMap((l) =>
    l.filterChains.flatMap((fc, i) =>
      fc.filters.flatMap((f) => {
        if (f.configType.case !== "typedConfig") return [];
        const hcm = anyUnpack(f.configType.value, HttpConnectionManagerSchema);
        return hcm ? [{ where: `${l.name}#${fc.name || i}`, hcm }] : [];
      })
    )
  );
}

function zipkinOf(hcm: HttpConnectionManager): ZipkinConfig | undefined {
  const p = hcm.tracing?.provider;
  if (!p || p.configType.case !== "typedConfig") return undefined;
  expect(p.name).toBe(ZIPKIN_TRACER);
  return anyUnpack(p.configType.value, ZipkinConfigSchema);
}

describe("tracing from MeshConfig extensionProviders and Telemetry", () => {
  test("golden: mesh_tracing (a sidecar with a Zipkin provider, span reporting off inbound)", () => {
    const c = readCase();
    const opts = { registry: REGISTRY };
    const got = {
      clusters: buildClusters(c.push, c.proxy).map((m) => toJson(ClusterSchema, m, opts)),
      listeners: buildListeners(c.push, c.proxy).map((m) => toJson(ListenerSchema, m, opts)),
    };
    const file = join(DIR, `${CASE}.golden.json`);
    if (process.env.UPDATE_GOLDEN === "1") {
      writeFileSync(file, JSON.stringify(got, null, 2) + "\n");
    }
    expect(existsSync(file)).toBe(true);
    expect(got).toEqual(JSON.parse(readFileSync(file, "utf8")));
  });

  test("Envoy's field rules and semantic checks accept the tracer (through its typed_config)", () => {
    const c = readCase();
    const set = {
      clusters: buildClusters(c.push, c.proxy),
      endpoints: buildEndpoints(c.push, c.proxy),
      listeners: buildListeners(c.push, c.proxy),
      routes: buildRoutes(c.push, c.proxy),
    };
    expect(checkEnvoySet(set, { proxyKind: "sidecar" })).toEqual([]);
  });

  test("outbound connection managers report to the collector's cluster; inbound ones report nothing", () => {
    const c = readCase();
    const clusters = new Set(buildClusters(c.push, c.proxy).map((cl) => cl.name));
    const hcms = connectionManagers(c);
    const outbound = hcms.filter((h) => !h.where.startsWith("virtualInbound"));
    const inbound = hcms.filter((h) => h.where.startsWith("virtualInbound"));
    expect(outbound.length).toBeGreaterThan(0);
    expect(inbound.length).toBeGreaterThan(0);
    for (const { where, hcm } of outbound) {
      const z = zipkinOf(hcm);
      expect({ where, z: z && { ...z, $typeName: undefined } }).toEqual({
        where,
        z: {
          $typeName: undefined,
          collectorCluster: "outbound|9411||zipkin.istio-system.svc.cluster.local",
          collectorEndpoint: "/api/v2/spans",
          collectorEndpointVersion: 1, // HTTP_JSON
          collectorHostname: "zipkin.istio-system.svc.cluster.local",
          traceId128bit: true,
          sharedSpanContext: false,
          splitSpansForRequest: false,
        } as never,
      });
      expect(hcm.tracing?.randomSampling?.value).toBe(10);
      expect(clusters.has(zipkinOf(hcm)!.collectorCluster)).toBe(true);
    }
    for (const { where, hcm } of inbound) {
      expect({ where, provider: hcm.tracing?.provider }).toEqual({ where, provider: undefined });
      expect(hcm.tracing?.randomSampling?.value).toBe(10);
    }
  });

  test("mergeTracing() takes the first provider of the last entry naming providers, per side", () => {
    const entries = [
      { providers: [{ name: "a" }, { name: "b" }], randomSamplingPercentage: 5 },
      { providers: [{ name: "c" }], match: { mode: "SERVER" as const } },
      { disableSpanReporting: true, match: { mode: "CLIENT" as const } },
    ];
    expect(mergeTracing(entries, "SERVER")).toEqual({
      randomSamplingPercentage: 5,
      customTags: {},
      provider: "c",
      disableSpanReporting: false,
    });
    expect(mergeTracing(entries, "CLIENT")).toMatchObject({ provider: "a", disableSpanReporting: true });
    expect(mergeTracing([{ randomSamplingPercentage: 3 }], "CLIENT")?.provider).toBeUndefined();
  });

  test("zipkinCollector() resolves a zipkin provider, and says why another cannot be used", () => {
    const mesh = mergeMeshConfig({
      extensionProviders: [
        {
          name: "zk",
          zipkin: {
            service: "zk.obs.svc.cluster.local",
            port: 9411,
            path: "/spans",
            enable64bitTraceId: true,
          },
        },
        { name: "plain", zipkin: { service: "zk.obs.svc.cluster.local", port: 9411 } },
        { name: "authz", envoyExtAuthzGrpc: { service: "authz.obs.svc.cluster.local", port: 9000 } },
      ],
    });
    const lookup = (service: string, port: number) =>
      service === "zk.obs.svc.cluster.local"
        ? { hostname: service, cluster: `outbound|${port}||${service}` }
        : { reason: `service ${service} not found` };
    expect(zipkinCollector(mesh, "zk", lookup)).toEqual({
      cluster: "outbound|9411||zk.obs.svc.cluster.local",
      hostname: "zk.obs.svc.cluster.local",
      path: "/spans",
      traceId128bit: false,
    });
    expect(zipkinCollector(mesh, "plain", lookup)).toMatchObject({
      path: ZIPKIN_DEFAULT_PATH,
      traceId128bit: true,
    });
    expect(zipkinCollector(mesh, "authz", lookup)).toEqual({
      reason: 'tracing provider "authz" is not a zipkin provider',
    });
    expect(zipkinCollector(mesh, "missing", lookup)).toEqual({
      reason: 'tracing provider "missing" is not in MeshConfig extensionProviders',
    });
  });

  test("a provider whose collector service is not in the registry configures no tracer", () => {
    const c = readCase();
    const push = pushFrom(
      readFileSync(join(DIR, `${CASE}.input.yaml`), "utf8")
        .split(/^---[ \t]*$/m)
        .filter((d) => !/kind: (TestProxy|ServiceEntry)\n/.test(d) || /name: app,/.test(d))
        .join("\n---\n"),
    );
    const hcms = connectionManagers({ push, proxy: c.proxy });
    expect(hcms.length).toBeGreaterThan(0);
    for (const { hcm } of hcms) {
      expect(hcm.tracing?.provider).toBeUndefined();
      expect(hcm.tracing?.randomSampling?.value).toBe(10);
    }
  });
});
