/**
 * Pilot's rate-limit actions against mixer's rate-limit service: the descriptors Envoy would
 * build from the actions pilot generates for a sidecar's inbound route are sent to a running
 * meshd's ShouldRateLimit over gRPC, where a memquota rule that reads the destination, the
 * request and the source must see them.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { createClient } from "@connectrpc/connect";
import { createGrpcTransport } from "@connectrpc/connect-node";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { anyUnpack } from "@bufbuild/protobuf/wkt";
import type { RateLimit } from "#gen/envoy/config/route/v3/route_components_pb.ts";
import type { RouteConfiguration } from "#gen/envoy/config/route/v3/route_pb.ts";
import { HttpConnectionManagerSchema } from "#gen/envoy/extensions/filters/network/http_connection_manager/v3/http_connection_manager_pb.ts";
import { RateLimitResponse_Code, RateLimitService } from "#gen/envoy/service/ratelimit/v3/rls_pb.ts";
import { createConfigStore } from "../../mod/galley/store.ts";
import { createPushContext } from "../../mod/pilot/model/push_context.ts";
import { proxyFromNode } from "../../mod/pilot/model/proxy.ts";
import { buildListeners } from "../../mod/pilot/translate/mod.ts";
import { createLogger } from "../../mod/shared/logger.ts";
import { eventually, type MeshdProcess, startMeshd } from "../e2e/_meshd.ts";
import { docs, mixerYaml } from "./_harness.ts";

const SERVICES = `
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: { name: web, namespace: app }
spec:
  hosts: [web.app.svc.cluster.local]
  location: MESH_INTERNAL
  resolution: STATIC
  ports: [{ number: 80, name: http, protocol: HTTP }]
  endpoints: [{ address: 10.0.0.1, labels: { app: web }, serviceAccount: web }]
`;

const WEB = proxyFromNode({
  id: "sidecar~10.0.0.1~web-1.app~app.svc.cluster.local",
  metadata: { NAMESPACE: "app", SERVICE_ACCOUNT: "web", LABELS: { app: "web", version: "v1" } },
});

/** The inline route configuration of the sidecar's inbound HTTP chains, with mixer on. */
function inboundRoutes(): RouteConfiguration {
  const store = createConfigStore({ logger: createLogger({ write: () => {} }) });
  store.sink("test").replace([{ origin: "services.yaml", content: SERVICES }]);
  const push = createPushContext({ config: store.snapshot(), features: { mixer: true } });
  const inbound = buildListeners(push, WEB).find((l) => l.name === "virtualInbound")!;
  const hcm = inbound.filterChains.flatMap((c) => c.filters).find((f) =>
    f.name.endsWith("http_connection_manager")
  )!;
  const config = anyUnpack(
    (hcm.configType as { value: Parameters<typeof anyUnpack>[0] }).value,
    HttpConnectionManagerSchema,
  )!;
  if (config.routeSpecifier.case !== "routeConfig") throw new Error("inbound routes are not inline");
  return config.routeSpecifier.value;
}

/** A request as the inbound sidecar sees it. */
interface SampleRequest {
  /** Request headers, lower case, pseudo-headers included. */
  readonly headers: Readonly<Record<string, string>>;
  /** The trusted client address. */
  readonly remoteAddress: string;
  /** Envoy's own service cluster (--service-cluster, the bootstrap's node.cluster). */
  readonly localServiceCluster: string;
}

type Descriptor = { entries: { key: string; value: string }[] };

/**
 * The descriptors Envoy's rate-limit filter sends for a request routed to `routedCluster`,
 * following the documented semantics of RateLimit.actions: each RateLimit yields one
 * descriptor whose entries are its actions' in order; an action that cannot add its entry (a
 * missing header without skip_if_absent) drops that RateLimit's descriptor.
 */
function envoyDescriptors(
  limits: readonly RateLimit[],
  routedCluster: string,
  req: SampleRequest,
): Descriptor[] {
  const out: Descriptor[] = [];
  for (const limit of limits) {
    const entries: Descriptor["entries"] = [];
    let produced = true;
    for (const { actionSpecifier: a } of limit.actions) {
      switch (a.case) {
        case "sourceCluster":
          entries.push({ key: "source_cluster", value: req.localServiceCluster });
          break;
        case "destinationCluster":
          entries.push({ key: "destination_cluster", value: routedCluster });
          break;
        case "requestHeaders": {
          const value = req.headers[a.value.headerName.toLowerCase()];
          if (value !== undefined) entries.push({ key: a.value.descriptorKey, value });
          else if (!a.value.skipIfAbsent) produced = false;
          break;
        }
        case "remoteAddress":
          entries.push({ key: "remote_address", value: req.remoteAddress });
          break;
        case "genericKey":
          entries.push({ key: a.value.descriptorKey || "generic_key", value: a.value.descriptorValue });
          break;
        default:
          throw new Error(`the test does not model rate-limit action ${a.case}`);
      }
      if (!produced) break;
    }
    if (produced) out.push({ entries });
  }
  return out;
}

const N = 3;

const quotaConfig = docs(
  mixerYaml("handler", "rate", {
    compiledAdapter: "memquota",
    params: { quotas: [{ name: "requestcount", maxAmount: N, validDuration: "1m" }] },
  }),
  mixerYaml("instance", "requestcount", {
    compiledTemplate: "quota",
    params: {
      dimensions: {
        path: "request.url_path",
        destination: "destination.service.host",
        app: 'destination.labels["app"]',
        source: "source.ip",
      },
    },
  }),
  mixerYaml("rule", "quota", {
    match: [
      'request.method == "GET"',
      'request.host == "web.app.svc.cluster.local"',
      'request.url_path.startsWith("/ratings/")',
      'destination.service.name == "web"',
      'destination.service.namespace == "app"',
      'destination.namespace == "app"',
      'destination.principal == "spiffe://cluster.local/ns/app/sa/web"',
      'destination.labels["version"] == "v1"',
      "destination.port == 80",
      'source.ip == ip("10.0.0.9")',
    ].join(" && "),
    actions: [{ handler: "rate", instances: ["requestcount"] }],
  }),
);

describe("pilot's inbound rate-limit actions against mixer's ShouldRateLimit", () => {
  const dir = mkdtempSync(join(tmpdir(), "meshd-rls-actions-"));
  let meshd: MeshdProcess;

  beforeAll(async () => {
    writeFileSync(join(dir, "quota.yaml"), quotaConfig);
    meshd = await startMeshd({ args: ["--modules=mixer", `--config-dir=${dir}`] });
    expect(
      await eventually(async () => (await fetch(`http://${meshd.adminAddr}/healthz/ready`)).status === 200),
    ).toBe(true);
  });
  afterAll(async () => {
    await meshd?.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  test(
    `a memquota rule of ${N} over the descriptors Envoy would send: ${N} OK, then OVER_LIMIT`,
    async () => {
      const routes = inboundRoutes();
      const [vhost] = routes.virtualHosts;
      expect(vhost?.rateLimits.length).toBe(1);
      const route = vhost!.routes[0]!;
      expect(route.match?.pathSpecifier).toEqual({ case: "prefix", value: "/" });
      const action = route.action.case === "route" ? route.action.value : undefined;
      const routedCluster = action?.clusterSpecifier.case === "cluster" ? action.clusterSpecifier.value : "";
      expect(routedCluster).toBe("inbound|80||");

      const request = (
        path: string,
        o: { method?: string; remoteAddress?: string } = {},
      ): SampleRequest => ({
        headers: {
          ":method": o.method ?? "GET",
          ":path": path,
          ":authority": "web.app.svc.cluster.local",
          ":scheme": "http",
          "user-agent": "curl/8",
        },
        remoteAddress: o.remoteAddress ?? "10.0.0.9",
        localServiceCluster: "web.app",
      });
      const rls = createClient(
        RateLimitService,
        createGrpcTransport({ baseUrl: `http://${meshd.grpcAddr}` }),
      );
      const call = async (req: SampleRequest) => {
        const descriptors = envoyDescriptors(vhost!.rateLimits, routedCluster, req);
        expect(descriptors).toHaveLength(1);
        return await rls.shouldRateLimit({ domain: "meshd", descriptors }, { timeoutMs: 5000 });
      };
      const { OK, OVER_LIMIT } = RateLimitResponse_Code;

      const codes: RateLimitResponse_Code[] = [];
      for (let i = 0; i <= N; i++) codes.push((await call(request(`/ratings/1?page=${i}`))).overallCode);
      expect(codes).toEqual([...Array<RateLimitResponse_Code>(N).fill(OK), OVER_LIMIT]);
      // The quota counted against the url path (query string stripped): the same path is still over.
      const over = await call(request("/ratings/1"));
      expect(over.overallCode).toBe(OVER_LIMIT);
      expect(over.statuses[0]).toMatchObject({ code: OVER_LIMIT, currentLimit: { requestsPerUnit: N } });
      // Another path is another bucket.
      expect((await call(request("/ratings/2"))).overallCode).toBe(OK);
      // Requests the rule does not match (method, source address) are never limited.
      expect((await call(request("/ratings/1", { method: "POST" }))).overallCode).toBe(OK);
      expect((await call(request("/ratings/1", { remoteAddress: "10.0.0.8" }))).overallCode).toBe(OK);
      // Without the :authority header the descriptor is still sent; the rule no longer matches.
      const { ":authority": _, ...noAuthority } = request("/ratings/1").headers;
      expect((await call({ ...request("/ratings/1"), headers: noAuthority })).overallCode).toBe(OK);
    },
    30_000,
  );
});
