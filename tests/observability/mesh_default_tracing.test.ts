/**
 * Tracing from the mesh's defaults (MeshConfig `defaultConfig.tracing`, Istio's ProxyConfig
 * tracing) in pilot's Envoy translation: where no Telemetry names a provider, connection managers
 * report to the mesh's Zipkin address, through a registry service's cluster or through the
 * `zipkin` cluster pilot builds for the address; Telemetry's tracing overrides. A golden case
 * (tests/observability/tracing/mesh_default_tracing, refreshed with UPDATE_GOLDEN=1) holds the
 * whole output for one sidecar.
 */
import { describe, expect, test } from "bun:test";
import { existsSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { parse } from "yaml";
import { createRegistry, type JsonObject, toJson } from "@bufbuild/protobuf";
import { anyUnpack } from "@bufbuild/protobuf/wkt";
import {
  type Cluster,
  Cluster_DiscoveryType,
  ClusterSchema,
} from "#gen/envoy/config/cluster/v3/cluster_pb.ts";
import { ListenerSchema } from "#gen/envoy/config/listener/v3/listener_pb.ts";
import { type ZipkinConfig, ZipkinConfigSchema } from "#gen/envoy/config/trace/v3/zipkin_pb.ts";
import {
  type HttpConnectionManager,
  HttpConnectionManagerSchema,
} from "#gen/envoy/extensions/filters/network/http_connection_manager/v3/http_connection_manager_pb.ts";
import { type Proxy, proxyFromNode } from "../../mod/pilot/model/proxy.ts";
import type { PushContext } from "../../mod/pilot/model/push_context.ts";
import { buildClusters, buildEndpoints, buildListeners, buildRoutes } from "../../mod/pilot/translate/mod.ts";
import { checkEnvoySet } from "../../mod/pilot/check/mod.ts";
import { mergeMeshConfig } from "../../mod/api/kinds/mesh_config.ts";
import {
  mergeTracing,
  meshTracingBase,
  meshZipkinTarget,
  ZIPKIN_CLUSTER,
  ZIPKIN_TRACER,
} from "../../mod/pilot/translate/telemetry.ts";
import { TRANSLATE_REGISTRY } from "../../mod/pilot/translate/type_registry.ts";
import { pushFrom, sidecar } from "../pilot/_push.ts";

const DIR = join(import.meta.dir, "tracing");
const CASE = "mesh_default_tracing";
/** The translation's registry, with Zipkin's config for as long as it does not hold it. */
const REGISTRY = TRANSLATE_REGISTRY.getMessage(ZipkinConfigSchema.typeName)
  ? TRANSLATE_REGISTRY
  : createRegistry(TRANSLATE_REGISTRY, ZipkinConfigSchema);

/** The golden case's config and its test proxy. */
function readCase(): { push: PushContext; proxy: Proxy } {
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

/** A MeshConfig whose spec is `spec` (YAML indented by two spaces). */
const meshConfig = (spec: string) => `
apiVersion: config.meshd.io/v1alpha1
kind: MeshConfig
metadata: { name: mesh, namespace: istio-system }
spec:
${spec}`;

/** A Telemetry in `namespace` (mesh-wide in istio-system) with the given tracing entries (YAML). */
const telemetry = (namespace: string, tracing: string) => `
apiVersion: telemetry.istio.io/v1
kind: Telemetry
metadata: { name: tracing, namespace: ${namespace} }
spec:
  tracing:
${tracing}`;

/** A STATIC mesh service with one HTTP port. */
const service = (name: string, namespace: string, port: number, address: string) => `
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: { name: ${name}, namespace: ${namespace} }
spec:
  hosts: [${name}.${namespace}.svc.cluster.local]
  location: MESH_INTERNAL
  resolution: STATIC
  ports:
    - { number: ${port}, name: http, protocol: HTTP }
  endpoints:
    - { address: ${address}, serviceAccount: ${name} }
`;

const APP = service("app", "shop", 80, "10.90.0.1");
const appSidecar = () => sidecar("10.90.0.1", "shop", { app: "app" });

/** Every connection manager of `proxy`'s listeners, by listener and filter chain. */
function connectionManagers(
  push: PushContext,
  proxy: Proxy,
): Array<{ where: string; hcm: HttpConnectionManager }> {
  return buildListeners(push, proxy).flatMap((l) =>
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

/** Per connection manager: where it is, its random sampling and the collector cluster (if any). */
function tracingSummary(push: PushContext, proxy: Proxy) {
  return connectionManagers(push, proxy).map(({ where, hcm }) => ({
    where,
    sampling: hcm.tracing?.randomSampling?.value,
    collector: zipkinOf(hcm)?.collectorCluster,
  }));
}

function envoySet(push: PushContext, proxy: Proxy) {
  return {
    clusters: buildClusters(push, proxy),
    endpoints: buildEndpoints(push, proxy),
    listeners: buildListeners(push, proxy),
    routes: buildRoutes(push, proxy),
  };
}

const zipkinCluster = (clusters: readonly Cluster[]) => clusters.find((c) => c.name === ZIPKIN_CLUSTER);

describe("tracing from MeshConfig defaultConfig.tracing", () => {
  test("golden: mesh_default_tracing (the mesh's Zipkin address outside the registry, sampling 5%)", () => {
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

  test("Envoy's field rules and semantic checks accept the tracer and the zipkin cluster", () => {
    const c = readCase();
    expect(checkEnvoySet(envoySet(c.push, c.proxy), { proxyKind: "sidecar" })).toEqual([]);
  });

  test("every connection manager reports to the zipkin cluster; Telemetry's sampling overrides inbound", () => {
    const c = readCase();
    const summary = tracingSummary(c.push, c.proxy);
    expect(summary.length).toBeGreaterThan(1);
    for (const s of summary) {
      const inbound = s.where.startsWith("virtualInbound");
      expect(s).toEqual({ where: s.where, sampling: inbound ? 50 : 5, collector: ZIPKIN_CLUSTER });
    }
    expect(summary.some((s) => s.where.startsWith("virtualInbound"))).toBe(true);
    const hcm = connectionManagers(c.push, c.proxy)[0]!.hcm;
    expect(zipkinOf(hcm)).toMatchObject({
      collectorEndpoint: "/api/v2/spans",
      collectorHostname: "zipkin.observability.example",
      traceId128bit: true,
    });
    const cluster = zipkinCluster(buildClusters(c.push, c.proxy));
    expect(cluster?.clusterDiscoveryType).toEqual({ case: "type", value: Cluster_DiscoveryType.STRICT_DNS });
    const address = cluster?.loadAssignment?.endpoints[0]?.lbEndpoints[0]?.hostIdentifier;
    expect(address?.case === "endpoint" ? address.value.address?.address : undefined).toMatchObject({
      case: "socketAddress",
      value: { address: "zipkin.observability.example", portSpecifier: { case: "portValue", value: 9411 } },
    });
  });

  test("an address that is a registry service's host and port reports to its outbound cluster", () => {
    const push = pushFrom(
      meshConfig(`  defaultConfig:
    tracing:
      zipkin: { address: "zipkin.istio-system.svc.cluster.local:9411" }`),
      APP,
      service("zipkin", "istio-system", 9411, "10.90.0.9"),
    );
    const proxy = appSidecar();
    const clusters = buildClusters(push, proxy);
    expect(zipkinCluster(clusters)).toBeUndefined();
    const summary = tracingSummary(push, proxy);
    expect(summary.length).toBeGreaterThan(1);
    for (const s of summary) {
      expect(s).toEqual({
        where: s.where,
        sampling: 1, // Istio's default
        collector: "outbound|9411||zipkin.istio-system.svc.cluster.local",
      });
    }
    expect(clusters.some((cl) => cl.name === "outbound|9411||zipkin.istio-system.svc.cluster.local")).toBe(
      true,
    );
    expect(checkEnvoySet(envoySet(push, proxy), { proxyKind: "sidecar" })).toEqual([]);
  });

  test("an IP address gets a STATIC zipkin cluster (IPv4 and bracketed IPv6)", () => {
    for (const [address, host] of [["192.0.2.7:9411", "192.0.2.7"], ["[2001:db8::7]:9411", "2001:db8::7"]]) {
      const push = pushFrom(
        meshConfig(`  defaultConfig:\n    tracing:\n      zipkin: { address: "${address}" }`),
        APP,
      );
      const proxy = appSidecar();
      const cluster = zipkinCluster(buildClusters(push, proxy));
      expect(cluster?.clusterDiscoveryType).toEqual({ case: "type", value: Cluster_DiscoveryType.STATIC });
      const id = cluster?.loadAssignment?.endpoints[0]?.lbEndpoints[0]?.hostIdentifier;
      expect(id?.case === "endpoint" ? id.value.address?.address : undefined).toMatchObject({
        case: "socketAddress",
        value: { address: host, portSpecifier: { case: "portValue", value: 9411 } },
      });
      expect(checkEnvoySet(envoySet(push, proxy), { proxyKind: "sidecar" })).toEqual([]);
    }
  });

  test("a provider a Telemetry names overrides the mesh's address; disableSpanReporting removes the tracer", () => {
    const mesh = meshConfig(`  defaultConfig:
    tracing:
      zipkin: { address: "zipkin.example:9411" }
      sampling: 2
  extensionProviders:
    - name: zk
      zipkin: { service: istio-system/zk.istio-system.svc.cluster.local, port: 9411 }`);
    const zk = service("zk", "istio-system", 9411, "10.90.0.8");
    const proxy = appSidecar();
    const named = pushFrom(mesh, APP, zk, telemetry("istio-system", "    - providers: [{ name: zk }]"));
    for (const s of tracingSummary(named, proxy)) {
      expect(s).toEqual({
        where: s.where,
        sampling: 2,
        collector: "outbound|9411||zk.istio-system.svc.cluster.local",
      });
    }
    const off = pushFrom(mesh, APP, zk, telemetry("shop", "    - disableSpanReporting: true"));
    const summary = tracingSummary(off, proxy);
    expect(summary.length).toBeGreaterThan(1);
    for (const s of summary) expect(s).toEqual({ where: s.where, sampling: 2, collector: undefined });
  });

  test("without defaultConfig.tracing or Telemetry tracing, no connection manager traces and no zipkin cluster", () => {
    const push = pushFrom(meshConfig(`  defaultConfig:\n    discoveryAddress: meshd.example:15012`), APP);
    const proxy = appSidecar();
    expect(zipkinCluster(buildClusters(push, proxy))).toBeUndefined();
    const hcms = connectionManagers(push, proxy);
    expect(hcms.length).toBeGreaterThan(0);
    for (const { hcm } of hcms) expect(hcm.tracing).toBeUndefined();
  });

  test("a gateway's connection managers report to the mesh's collector too", () => {
    const push = pushFrom(
      meshConfig(
        `  defaultConfig:\n    tracing:\n      zipkin: { address: "zipkin.example:9411" }\n      sampling: 100`,
      ),
      APP,
      `
apiVersion: networking.istio.io/v1
kind: Gateway
metadata: { name: public, namespace: edge }
spec:
  selector: { istio: ingressgateway }
  servers:
    - port: { number: 80, name: http, protocol: HTTP }
      hosts: ["*"]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: { name: shop, namespace: edge }
spec:
  hosts: ["*"]
  gateways: [public]
  http:
    - route: [{ destination: { host: app.shop.svc.cluster.local, port: { number: 80 } } }]
`,
    );
    const proxy = proxyFromNode({
      id: "router~10.91.0.1~ingress-1.edge~edge.svc.cluster.local",
      metadata: { NAMESPACE: "edge", LABELS: { istio: "ingressgateway" } },
    });
    const summary = tracingSummary(push, proxy);
    expect(summary.length).toBeGreaterThan(0);
    for (const s of summary) expect(s).toEqual({ where: s.where, sampling: 100, collector: ZIPKIN_CLUSTER });
    expect(zipkinCluster(buildClusters(push, proxy))).toBeDefined();
    expect(checkEnvoySet(envoySet(push, proxy), { proxyKind: "router" })).toEqual([]);
  });

  test("mergeTracing() starts from the mesh's base: sampling and no provider until an entry names one", () => {
    const mesh = mergeMeshConfig({
      defaultConfig: { tracing: { zipkin: { address: "zk.example:9411" }, sampling: 7 } },
    });
    const base = meshTracingBase(mesh);
    expect(base).toEqual({ randomSamplingPercentage: 7, customTags: {}, disableSpanReporting: false });
    expect(mergeTracing([], "CLIENT", base)).toEqual(base);
    expect(mergeTracing([{ providers: [{ name: "p" }] }], "CLIENT", base)).toMatchObject({
      randomSamplingPercentage: 7,
      provider: "p",
    });
    expect(mergeTracing([{ randomSamplingPercentage: 0 }], "SERVER", base)?.randomSamplingPercentage).toBe(0);
    expect(meshTracingBase(mergeMeshConfig({}))).toBeUndefined();
    expect(mergeTracing([], "CLIENT", undefined)).toBeUndefined();
  });

  test("meshZipkinTarget() dials the address when the lookup finds no service, and is absent without one", () => {
    const mesh = mergeMeshConfig({ defaultConfig: { tracing: { zipkin: { address: "zk.example:9411" } } } });
    const notFound = () => ({ reason: "not in the registry" });
    expect(meshZipkinTarget(mesh, notFound)).toEqual({
      collector: {
        cluster: ZIPKIN_CLUSTER,
        hostname: "zk.example",
        path: "/api/v2/spans",
        traceId128bit: true,
      },
      direct: { host: "zk.example", port: 9411 },
    });
    const found = (host: string, port: number) => ({ hostname: host, cluster: `outbound|${port}||${host}` });
    expect(meshZipkinTarget(mesh, found)).toEqual({
      collector: {
        cluster: "outbound|9411||zk.example",
        hostname: "zk.example",
        path: "/api/v2/spans",
        traceId128bit: true,
      },
    });
    expect(meshZipkinTarget(mergeMeshConfig({ defaultConfig: { tracing: { sampling: 3 } } }), found))
      .toBeUndefined();
  });
});
