/**
 * Mixer end to end: real meshd processes, a grpc-js app under mixer's interceptors, Envoy-shaped
 * ext_authz and rate-limit calls from a Connect client, a real redis-server shared by two meshd
 * replicas, and a real Prometheus scraping meshd.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { type Client, createClient } from "@connectrpc/connect";
import { createGrpcTransport } from "@connectrpc/connect-node";
import { mkdtempSync, renameSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { AccessLogService } from "#gen/envoy/service/accesslog/v3/als_pb.ts";
import { Authorization } from "#gen/envoy/service/auth/v3/external_auth_pb.ts";
import { RateLimitResponse_Code, RateLimitService } from "#gen/envoy/service/ratelimit/v3/rls_pb.ts";
import { Mixer } from "#gen/meshd/mixer/v1/mixer_pb.ts";
import { createMixerClient, type MixerClient, mixerClientInterceptor } from "../../mod/mixer/client/mod.ts";
import { encodeBag } from "../../mod/mixer/client/wire.ts";
import { eventually, type MeshdProcess, startMeshd } from "../e2e/_meshd.ts";
import { startEchoApp } from "./_echo.ts";
import { docs, meshYaml, mixerYaml, type RedisProcess, startPrometheus, startRedis } from "./_harness.ts";

const ECHO = { host: "echo.test.svc.cluster.local", name: "echo", namespace: "test" };

const policy = (users: string[], match = 'request.path.startsWith("/test.Echo/")') =>
  docs(
    mixerYaml("handler", "users", {
      compiledAdapter: "listchecker",
      params: { overrides: users, cachingInterval: "200ms", cachingUseCount: 100 },
    }),
    mixerYaml("instance", "user", {
      compiledTemplate: "listentry",
      params: { value: 'request.headers["x-user"]' },
    }),
    mixerYaml("rule", "users", { match, actions: [{ handler: "users", instances: ["user"] }] }),
  );

const telemetry = docs(
  mixerYaml("handler", "prom", { compiledAdapter: "prometheus" }),
  mixerYaml("instance", "requestmetric", { compiledTemplate: "metric", params: { value: "1" } }),
  mixerYaml("rule", "telemetry", { actions: [{ handler: "prom", instances: ["requestmetric"] }] }),
);

const quota = (adapter: "memquota" | "redisquota", max: number, redisUrl = "") =>
  docs(
    mixerYaml("handler", "rate", {
      compiledAdapter: adapter,
      params: adapter === "memquota"
        ? { quotas: [{ name: "requestcount", maxAmount: max, validDuration: "1m" }] }
        : {
          redisServerUrl: redisUrl,
          quotas: [{ name: "requestcount", maxAmount: max, validDuration: "1m" }],
        },
    }),
    mixerYaml("instance", "requestcount", {
      compiledTemplate: "quota",
      params: {
        dimensions: { destination: 'has(destination.service.host) ? destination.service.host : "unknown"' },
      },
    }),
    mixerYaml("rule", "quota", { actions: [{ handler: "rate", instances: ["requestcount"] }] }),
  );

const mixerClient = (m: MeshdProcess): Client<typeof Mixer> =>
  createClient(Mixer, createGrpcTransport({ baseUrl: `http://${m.grpcAddr}` }));

/** Checks with `quotas`, `n` callers at once; returns how many were granted. */
async function concurrentGrants(
  clients: Client<typeof Mixer>[],
  n: number,
  destination: string,
): Promise<number> {
  const results = await Promise.all(
    Array.from({ length: n }, (_, i) =>
      clients[i % clients.length]!.check({
        attributes: encodeBag({ "destination.service.host": destination, "request.path": "/x" }),
        quotas: { requestcount: { amount: 1n, bestEffort: false } },
      })),
  );
  return results.reduce((sum, r) => sum + Number(r.quotas.requestcount?.grantedAmount ?? 0n), 0);
}

describe("mixer in a running meshd", () => {
  const dir = mkdtempSync(join(tmpdir(), "meshd-mixer-e2e-"));
  let meshd: MeshdProcess;
  const clients: MixerClient[] = [];
  const mixer = () => {
    const c = createMixerClient({ address: meshd.grpcAddr, quotaPrefetch: 1 });
    clients.push(c);
    return c;
  };
  const write = (name: string, yaml: string) => {
    writeFileSync(join(dir, name + ".tmp"), yaml);
    renameSync(join(dir, name + ".tmp"), join(dir, name));
  };

  beforeAll(async () => {
    write("policy.yaml", policy(["alice"]));
    write("telemetry.yaml", telemetry);
    write("quota.yaml", quota("memquota", 20));
    meshd = await startMeshd({ args: ["--modules=mixer", `--config-dir=${dir}`, "--config-debounce=20ms"] });
    expect(
      await eventually(async () => (await fetch(`http://${meshd.adminAddr}/healthz/ready`)).status === 200),
    ).toBe(true);
  });
  afterAll(async () => {
    for (const c of clients) await c.close();
    if (process.env.MIXER_E2E_LOGS) {
      console.error(meshd?.logs.map((l) => JSON.stringify(l)).join("\n"), "exit code:", meshd?.proc.exitCode);
    }
    await meshd?.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  test(
    "a grpc-js app is denied by a listchecker rule, and allowed once the list in the config file changes",
    async () => {
      const app = await startEchoApp({
        client: mixer(),
        service: ECHO,
        workload: { name: "echo-v1", namespace: "test" },
      });
      try {
        expect(await app.call({ "x-user": "alice" })).toBe(0);
        expect(await app.call({ "x-user": "bob" })).toBe(5); // NOT_FOUND: bob is not whitelisted
        write("policy.yaml", policy(["alice", "bob"]));
        expect(await eventually(async () => (await app.call({ "x-user": "bob" })) === 0, 10_000)).toBe(true);
        expect(await app.call({ "x-user": "carol" })).toBe(5);
      } finally {
        await app.close();
      }
    },
    30_000,
  );

  test(
    "bad CEL in a rule is rejected by galley with file and line, and the previous rule keeps working",
    async () => {
      const app = await startEchoApp({ client: mixer(), service: ECHO });
      try {
        write("policy.yaml", policy(["alice"], 'request.path.startsWith("/test.Echo/") &&'));
        let status: { state: string; errors: string[]; servingPrevious: boolean } | undefined;
        expect(
          await eventually(async () => {
            const c = (await (await fetch(`http://${meshd.adminAddr}/debug/configz`)).json()) as {
              resources: Array<{ key: string; state: string; errors: string[]; servingPrevious: boolean }>;
            };
            status = c.resources.find((r) => r.key === "config.istio.io/rule/istio-system/users");
            return status?.state === "rejected";
          }),
        ).toBe(true);
        expect(status!.servingPrevious).toBe(true);
        expect(status!.errors[0]).toMatch(
          new RegExp(
            `^${
              join(dir, "policy.yaml").replaceAll(".", "\\.")
            }:\\d+:\\d+: .*spec\\.match: invalid CEL expression`,
          ),
        );
        // The listchecker handler itself did change (bob left the list); the old rule still sends to it.
        expect(await eventually(async () => (await app.call({ "x-user": "bob" })) === 5)).toBe(true);
        expect(await app.call({ "x-user": "alice" })).toBe(0);
      } finally {
        write("policy.yaml", policy(["alice"]));
        await app.close();
      }
    },
    30_000,
  );

  test("a memquota of N per window admits exactly N under concurrent callers", async () => {
    const granted = await concurrentGrants(
      [mixerClient(meshd), mixerClient(meshd)],
      100,
      "cart.shop.svc.cluster.local",
    );
    expect(granted).toBe(20);
  }, 30_000);

  test(
    "the client interceptor takes quota with prefetch and reports; Prometheus scrapes the request count",
    async () => {
      const prometheus = await startPrometheus(meshd.adminAddr);
      const app = await startEchoApp({
        client: mixer(),
        service: { host: "metrics.test.svc.cluster.local" },
        check: false,
      });
      const caller = createMixerClient({
        address: meshd.grpcAddr,
        quotaPrefetch: 5,
        report: { maxDelayMs: 50 },
      });
      clients.push(caller);
      try {
        const client = app.client([
          mixerClientInterceptor({
            client: caller,
            service: { host: "quota.test.svc.cluster.local" },
            quotas: { requestcount: 1 },
          }),
        ]);
        const codes = [];
        for (let i = 0; i < 26; i++) codes.push(await app.call({ "x-user": "alice" }, client));
        expect(codes.filter((c) => c === 0)).toHaveLength(20);
        expect(codes.slice(20)).toEqual([8, 8, 8, 8, 8, 8]); // RESOURCE_EXHAUSTED
        // The server side reported every call that reached it: 20.
        const query =
          'sum(istio_requests_total{reporter="destination",destination_service="metrics.test.svc.cluster.local"})';
        let value: number | undefined;
        expect(
          await eventually(
            async () => {
              value = await prometheus.query(query);
              return value === 20;
            },
            20_000,
            200,
          ),
        ).toBe(true);
        expect(value).toBe(20);
        const graph = (await (await fetch(`http://${meshd.adminAddr}/debug/servicegraph`)).json()) as {
          edges: Array<{ destination: string; requests: number }>;
        };
        expect(graph.edges.find((e) => e.destination === "quota.test.svc.cluster.local")?.requests).toBe(26);
      } finally {
        await app.close();
        await prometheus.stop();
      }
    },
    60_000,
  );

  test("ext_authz Check from a Connect client with an Envoy-shaped request", async () => {
    const authz = createClient(Authorization, createGrpcTransport({ baseUrl: `http://${meshd.grpcAddr}` }));
    const req = (user: string) => ({
      attributes: {
        source: {
          address: {
            address: {
              case: "socketAddress" as const,
              value: { address: "10.0.0.9", portSpecifier: { case: "portValue" as const, value: 40123 } },
            },
          },
          principal: "spiffe://cluster.local/ns/shop/sa/frontend",
        },
        destination: {
          address: {
            address: {
              case: "socketAddress" as const,
              value: { address: "10.0.0.1", portSpecifier: { case: "portValue" as const, value: 9000 } },
            },
          },
        },
        request: {
          http: {
            method: "POST",
            path: "/test.Echo/Say",
            host: "echo.test.svc.cluster.local:9000",
            scheme: "http",
            protocol: "HTTP/2",
            headers: { "x-user": user, "content-type": "application/grpc" },
          },
        },
      },
    });
    const ok = await authz.check(req("alice"));
    expect(ok.status?.code).toBe(0);
    expect(ok.httpResponse.case).toBe("okResponse");
    const denied = await authz.check(req("mallory"));
    expect(denied.status).toMatchObject({ code: 5, message: "mallory is not whitelisted" });
    expect(denied.httpResponse.case).toBe("deniedResponse");
    if (denied.httpResponse.case === "deniedResponse") {
      expect(denied.httpResponse.value.status?.code).toBe(404);
      expect(denied.httpResponse.value.body).toBe("mallory is not whitelisted");
    }
    // Hostile input is refused, not crashed on.
    const huge = { ...req("alice") };
    huge.attributes.request.http.headers = Object.fromEntries(
      Array.from({ length: 400 }, (_, i) => [`h${i}`, "v"]),
    ) as never;
    const refused = await authz.check(huge, { timeoutMs: 5000 }).then(
      () => "accepted",
      (e: Error) => e.message,
    );
    expect(refused).toContain("too many entries");
    expect(await authz.check(req("alice"))).toMatchObject({ status: { code: 0 } });
  }, 30_000);

  test("RLS ShouldRateLimit from a Connect client with Envoy descriptors", async () => {
    const rls = createClient(RateLimitService, createGrpcTransport({ baseUrl: `http://${meshd.grpcAddr}` }));
    const call = () =>
      rls.shouldRateLimit({
        domain: "meshd",
        descriptors: [{
          entries: [{ key: "destination_cluster", value: "outbound|9080||ratings.books.svc.cluster.local" }],
        }],
      });
    const codes: RateLimitResponse_Code[] = [];
    for (let i = 0; i < 22; i++) codes.push((await call()).overallCode);
    expect(codes.filter((c) => c === RateLimitResponse_Code.OK)).toHaveLength(20);
    expect(codes.slice(20)).toEqual([RateLimitResponse_Code.OVER_LIMIT, RateLimitResponse_Code.OVER_LIMIT]);
    const last = await call();
    expect(last.statuses[0]).toMatchObject({
      code: RateLimitResponse_Code.OVER_LIMIT,
      limitRemaining: 0,
      currentLimit: { requestsPerUnit: 20 },
    });
    const refused = await rls
      .shouldRateLimit(
        { domain: "meshd", descriptors: Array.from({ length: 100 }, () => ({ entries: [] })) },
        { timeoutMs: 5000 },
      )
      .then(() => "accepted", (e: Error) => e.message);
    expect(refused).toContain("100 descriptors");
  }, 30_000);
  test("ALS StreamAccessLogs from a Connect client feeds the service graph and Istio's metrics", async () => {
    const als = createClient(AccessLogService, createGrpcTransport({ baseUrl: `http://${meshd.grpcAddr}` }));
    const entry = (code: number, ms: number) => ({
      commonProperties: {
        upstreamCluster: "inbound|9080||",
        duration: { seconds: 0n, nanos: ms * 1_000_000 },
        tlsProperties: {
          peerCertificateProperties: {
            subjectAltName: [{
              san: { case: "uri" as const, value: "spiffe://cluster.local/ns/shop/sa/frontend" },
            }],
          },
        },
        metadata: {
          filterMetadata: {
            "meshd.attributes": {
              "source.workload.name": "frontend",
              "source.workload.namespace": "shop",
              "destination.service.host": "ratings.books.svc.cluster.local",
            },
          },
        },
      },
      request: { requestMethod: 1, path: "/ratings/1", authority: "ratings.books:9080" },
      response: { responseCode: code },
    });
    async function* messages() {
      yield {
        identifier: {
          node: {
            id: "sidecar~10.0.0.7~ratings-v1-x.books~books.svc.cluster.local",
            metadata: {
              NAMESPACE: "books",
              WORKLOAD_NAME: "ratings-v1",
              LABELS: { app: "ratings", version: "v1" },
            },
          },
          logName: "meshd-mixer",
        },
        logEntries: {
          case: "httpLogs" as const,
          value: { logEntry: [entry(200, 4), entry(200, 6), entry(500, 50)] },
        },
      };
      yield { logEntries: { case: "httpLogs" as const, value: { logEntry: [entry(200, 5)] } } };
    }
    await als.streamAccessLogs(messages());
    const graph = (await (await fetch(`http://${meshd.adminAddr}/debug/servicegraph`)).json()) as {
      edges: Array<
        { source: string; destination: string; requests: number; errors: number; latencyP99Ms: number }
      >;
    };
    expect(graph.edges.find((e) => e.destination === "ratings.books.svc.cluster.local")).toMatchObject({
      source: "frontend.shop",
      requests: 4,
      errors: 1,
      latencyP99Ms: 50,
    });
    const metrics = await (await fetch(`http://${meshd.adminAddr}/metrics`)).text();
    expect(metrics).toMatch(
      /istio_requests_total\{reporter="destination",source_workload="frontend",source_workload_namespace="shop",source_principal="spiffe:\/\/cluster.local\/ns\/shop\/sa\/frontend",[^}]*destination_workload="ratings-v1",destination_workload_namespace="books",[^}]*destination_app="ratings",destination_version="v1",destination_service="ratings.books.svc.cluster.local",[^}]*response_code="200",[^}]*connection_security_policy="mutual_tls"\} 3/,
    );
  }, 30_000);
});

describe("redisquota shared by two meshd replicas", () => {
  const dir = mkdtempSync(join(tmpdir(), "meshd-mixer-redis-"));
  let redis: RedisProcess;
  let a: MeshdProcess;
  let b: MeshdProcess;
  beforeAll(async () => {
    redis = await startRedis();
    writeFileSync(join(dir, "quota.yaml"), quota("redisquota", 30, redis.url));
    [a, b] = await Promise.all([
      startMeshd({ args: ["--modules=mixer", `--config-dir=${dir}`] }),
      startMeshd({ args: ["--modules=mixer", `--config-dir=${dir}`] }),
    ]);
    for (const m of [a, b]) {
      expect(
        await eventually(async () => (await fetch(`http://${m.adminAddr}/healthz/ready`)).status === 200),
      ).toBe(true);
    }
  });
  afterAll(async () => {
    await Promise.all([a?.stop(), b?.stop()]);
    await redis?.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  test("concurrent callers spread over both replicas are granted exactly N in total", async () => {
    const granted = await concurrentGrants(
      [mixerClient(a), mixerClient(b)],
      120,
      "orders.shop.svc.cluster.local",
    );
    expect(granted).toBe(30);
  }, 30_000);
});

describe("meshd stopping mid-traffic", () => {
  const run = async (failOpen: boolean) => {
    const dir = mkdtempSync(join(tmpdir(), "meshd-mixer-stop-"));
    writeFileSync(join(dir, "policy.yaml"), docs(policy(["alice"]), meshYaml(failOpen)));
    const meshd = await startMeshd({
      args: [
        "--modules=mixer",
        `--config-dir=${dir}`,
        "--mixer-default-valid-duration=0",
        "--shutdown-grace=200ms",
      ],
    });
    expect(
      await eventually(async () => (await fetch(`http://${meshd.adminAddr}/healthz/ready`)).status === 200),
    ).toBe(true);
    // The mesh's failOpen is the client's default here; clients are told it by their operator.
    const client = createMixerClient({
      address: meshd.grpcAddr,
      failOpen,
      cacheEntries: 0,
      checkTimeoutMs: 300,
    });
    const app = await startEchoApp({ client, service: ECHO });
    const before: number[] = [];
    const after: number[] = [];
    try {
      for (let i = 0; i < 10; i++) before.push(await app.call({ "x-user": "alice" }));
      await meshd.stop();
      for (let i = 0; i < 10; i++) after.push(await app.call({ "x-user": "alice" }));
      return { before, after, failedOpen: client.stats().failedOpen };
    } finally {
      await app.close();
      await client.close();
      rmSync(dir, { recursive: true, force: true });
    }
  };

  test("fail-open keeps calls flowing", async () => {
    const r = await run(true);
    expect(r.before).toEqual(Array(10).fill(0));
    expect(r.after).toEqual(Array(10).fill(0));
    expect(r.failedOpen).toBe(10);
  }, 30_000);

  test("fail-closed refuses them with UNAVAILABLE", async () => {
    const r = await run(false);
    expect(r.before).toEqual(Array(10).fill(0));
    expect(r.after).toEqual(Array(10).fill(14));
  }, 30_000);
});
