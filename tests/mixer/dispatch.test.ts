import { afterEach, describe, expect, test } from "bun:test";
import { create, fromBinary, toBinary } from "@bufbuild/protobuf";
import { NodeSchema } from "#gen/envoy/config/core/v3/base_pb.ts";
import {
  AccessLogType,
  HTTPAccessLogEntrySchema,
  TCPAccessLogEntrySchema,
} from "#gen/envoy/data/accesslog/v3/accesslog_pb.ts";
import { RateLimitDescriptorSchema } from "#gen/envoy/extensions/common/ratelimit/v3/ratelimit_pb.ts";
import { CheckRequestSchema } from "#gen/envoy/service/auth/v3/external_auth_pb.ts";
import { AttributesSchema, AttributeValueSchema } from "#gen/meshd/mixer/v1/mixer_pb.ts";
import {
  bagFromDescriptor,
  bagFromExtAuthz,
  bagFromHttpLog,
  bagFromTcpLog,
  checkBagLimits,
} from "../../mod/mixer/attributes.ts";
import { refsSignature, refValueKey } from "../../mod/mixer/client/referenced.ts";
import { BadBagError, decodeBag, encodeBag } from "../../mod/mixer/client/wire.ts";
import { compileInstance, refsOf } from "../../mod/mixer/compile.ts";
import { compileExpression } from "../../mod/api/cel.ts";
import { type CoreHarness, coreHarness, docs, memoryLogger, mixerYaml } from "./_harness.ts";

const listHandler = (overrides: string[]) =>
  mixerYaml("handler", "users", {
    compiledAdapter: "listchecker",
    params: { overrides, cachingInterval: "5s", cachingUseCount: 100 },
  });
const userEntry = mixerYaml("instance", "user", {
  compiledTemplate: "listentry",
  params: { value: 'request.headers["x-user"]' },
});
const userRule = (match = "") =>
  mixerYaml("rule", "check-users", {
    ...(match ? { match } : {}),
    actions: [{ handler: "users", instances: ["user"] }],
  });

const harnesses: CoreHarness[] = [];
afterEach(async () => {
  for (const h of harnesses.splice(0)) await h.close();
});
const harness = (opts?: Parameters<typeof coreHarness>[0]) => {
  const h = coreHarness(opts);
  harnesses.push(h);
  return h;
};

describe("check", () => {
  test("a listchecker rule denies names not on the list and reports what it read, key by key", async () => {
    const h = harness();
    h.load(docs(listHandler(["alice"]), userEntry, userRule('request.path.startsWith("/api")')));
    const allowed = await h.core.check("test", {
      "request.path": "/api/x",
      "request.headers": { "x-user": "alice", "x-request-id": "1" },
    });
    expect(allowed.status.code).toBe(0);
    expect(allowed.validDurationMs).toBe(5000);
    expect(allowed.validUseCount).toBe(100);
    expect(refsSignature(allowed.refs).refs).toEqual([
      { name: "request.headers", mapKey: "x-user" },
      { name: "request.path" },
    ]);
    const denied = await h.core.check("test", {
      "request.path": "/api/x",
      "request.headers": { "x-user": "mallory" },
    });
    expect(denied.status).toEqual({ code: 5, message: "mallory is not whitelisted" });
    // The rule does not match here: nothing is checked, and only the match was read.
    const other = await h.core.check("test", {
      "request.path": "/public",
      "request.headers": { "x-user": "mallory" },
    });
    expect(other.status.code).toBe(0);
    expect(refsSignature(other.refs).refs).toEqual([{ name: "request.path" }]);
  });

  test("an instance that cannot be evaluated denies with INVALID_ARGUMENT naming it", async () => {
    const h = harness();
    h.load(docs(listHandler(["alice"]), userEntry, userRule()));
    const d = await h.core.check("test", { "request.headers": {} });
    expect(d.status.code).toBe(3);
    expect(d.status.message).toContain("instance user.istio-system: params.value:");
  });

  test("rules outside the root namespace apply only to their namespace's destinations", async () => {
    const h = harness();
    h.load(docs(
      mixerYaml("handler", "deny", {
        compiledAdapter: "denier",
        params: { status: { code: 7, message: "no" } },
      }, "shop"),
      mixerYaml("instance", "nothing", { compiledTemplate: "checknothing" }, "shop"),
      mixerYaml("rule", "deny-all", { actions: [{ handler: "deny", instances: ["nothing"] }] }, "shop"),
    ));
    expect((await h.core.check("test", { "destination.service.namespace": "shop" })).status.code).toBe(7);
    expect((await h.core.check("test", { "destination.service.namespace": "books" })).status.code).toBe(0);
  });

  test("config hot-reloads; a rule with bad CEL is rejected with file and line and the previous one keeps working", async () => {
    const h = harness();
    h.load(
      docs(listHandler(["alice"]), userEntry, userRule('request.path == "/a"')),
      "/etc/meshd/policy.yaml",
    );
    const check = async (user: string) =>
      (await h.core.check("test", { "request.path": "/a", "request.headers": { "x-user": user } })).status
        .code;
    expect(await check("bob")).toBe(5);
    h.load(
      docs(listHandler(["alice", "bob"]), userEntry, userRule('request.path == "/a"')),
      "/etc/meshd/policy.yaml",
    );
    expect(await check("bob")).toBe(0);
    h.load(
      docs(listHandler(["alice", "bob"]), userEntry, userRule('request.path == "/a" &&')),
      "/etc/meshd/policy.yaml",
    );
    const status = h.store.status().resources.find((r) => r.key.endsWith("rule/istio-system/check-users"))!;
    expect(status.state).toBe("rejected");
    expect(status.servingPrevious).toBe(true);
    expect(status.errors[0]).toMatch(
      /^\/etc\/meshd\/policy\.yaml:\d+:\d+: rule istio-system\/check-users: spec\.match: invalid CEL expression/,
    );
    expect(await check("bob")).toBe(0);
    expect(await check("carol")).toBe(5);
  });

  test("an action whose handler is missing is left out and the table says why", async () => {
    const { logger, lines } = memoryLogger();
    const h = harness({ logger });
    h.load(docs(userEntry, userRule()));
    expect(h.core.table().problems).toEqual([
      {
        resource: "rule istio-system/check-users",
        message: "actions[0]: handler istio-system/users not found",
      },
    ]);
    expect(lines.some((l) => l.msg === "mixer rule action dropped")).toBe(true);
    expect((await h.core.check("test", {})).status.code).toBe(0);
  });

  test("header operations of matching rules are returned with an allowed decision", async () => {
    const h = harness();
    h.load(mixerYaml("rule", "tag", {
      match: "true",
      requestHeaderOperations: [{ name: "X-Workload", values: ["source.workload.name"] }, {
        name: "x-secret",
        operation: "REMOVE",
      }],
    }));
    const d = await h.core.check("test", { "source.workload.name": "productpage" });
    expect(d.requestHeaders).toEqual([
      { name: "x-workload", operation: "REPLACE", value: "productpage" },
      { name: "x-secret", operation: "REMOVE", value: "" },
    ]);
  });
});

describe("quota", () => {
  const quotaConfig = (max: number) =>
    docs(
      mixerYaml("handler", "mq", {
        compiledAdapter: "memquota",
        params: {
          quotas: [{ name: "requestcount.quota.istio-system", maxAmount: max, validDuration: "1m" }],
        },
      }),
      mixerYaml("instance", "requestcount", {
        compiledTemplate: "quota",
        params: { dimensions: { source: "source.workload.name" } },
      }),
      mixerYaml("rule", "quota", { actions: [{ handler: "mq", instances: ["requestcount"] }] }),
    );

  test("a named quota is allocated per dimension; an unknown one is granted as asked", async () => {
    const h = harness();
    h.load(quotaConfig(2));
    const take = async (source: string, name = "requestcount") =>
      (await h.core.quota({ "source.workload.name": source }, name, { amount: 1, bestEffort: false }))
        .granted;
    expect([await take("a"), await take("a"), await take("a"), await take("b")]).toEqual([1, 1, 0, 1]);
    expect(await take("a", "requestcount.instance.istio-system")).toBe(0);
    expect(await take("a", "other")).toBe(1);
    const q = await h.core.quota({ "source.workload.name": "c" }, "requestcount", {
      amount: 1,
      bestEffort: false,
    });
    expect(refsSignature(q.refs).refs).toEqual([{ name: "source.workload.name" }]);
  });

  test("counters survive a config change that leaves their handler alone", async () => {
    const h = harness();
    h.load(quotaConfig(2));
    const take = async () =>
      (await h.core.quota({ "source.workload.name": "a" }, "requestcount", { amount: 1, bestEffort: false }))
        .granted;
    expect(await take()).toBe(1);
    h.load(docs(quotaConfig(2), listHandler(["x"])));
    expect(await take()).toBe(1);
    expect(await take()).toBe(0);
    h.load(quotaConfig(3)); // a changed handler starts afresh
    expect(await take()).toBe(1);
  });
});

test("reports feed report rules (Istio's standard metrics) and the service graph", async () => {
  const h = harness();
  h.load(docs(
    mixerYaml("handler", "prom", { compiledAdapter: "prometheus" }),
    mixerYaml("instance", "requestcount", { compiledTemplate: "metric", params: { value: "1" } }),
    mixerYaml("rule", "telemetry", {
      match: 'context.protocol != "tcp"',
      actions: [{ handler: "prom", instances: ["requestcount"] }],
    }),
  ));
  const bag = (code: number, ms: number) => ({
    "context.protocol": "grpc",
    "source.workload.name": "productpage",
    "source.workload.namespace": "default",
    "destination.service.host": "reviews.default.svc.cluster.local",
    "response.code": code,
    "response.duration": ms,
  });
  await h.core.report("test", [bag(200, 5), bag(200, 7), bag(503, 100)]);
  expect(await h.metrics.metrics()).toMatch(/istio_requests_total\{[^}]*response_code="200"[^}]*\} 2/);
  const graph = h.core.graph.view();
  expect(graph.edges).toHaveLength(1);
  expect(graph.edges[0]).toMatchObject({
    source: "productpage.default",
    destination: "reviews.default.svc.cluster.local",
    requests: 3,
    errors: 1,
    latencyP50Ms: 7,
    latencyP99Ms: 100,
  });
});

describe("attributes", () => {
  test("bagFromExtAuthz() reads Envoy's peer addresses, principals, HTTP request and context extensions", () => {
    const req = create(CheckRequestSchema, {
      attributes: {
        source: {
          address: {
            address: {
              case: "socketAddress",
              value: { address: "10.1.2.3", portSpecifier: { case: "portValue", value: 51234 } },
            },
          },
          principal: "spiffe://cluster.local/ns/shop/sa/frontend",
        },
        destination: {
          address: {
            address: {
              case: "socketAddress",
              value: { address: "10.9.9.9", portSpecifier: { case: "portValue", value: 8080 } },
            },
          },
          principal: "spiffe://cluster.local/ns/books/sa/reviews",
        },
        request: {
          time: { seconds: 1_700_000_000n, nanos: 0 },
          http: {
            method: "GET",
            path: "/reviews/1?verbose=1",
            host: "reviews.books:8080",
            scheme: "http",
            size: 0n,
            protocol: "HTTP/1.1",
            headers: { "x-user": "alice", "user-agent": "curl/8" },
          },
        },
        contextExtensions: {
          "source.labels.app": "frontend",
          "destination.service.host": "reviews.books.svc.cluster.local",
        },
      },
    });
    const bag = bagFromExtAuthz(req);
    expect(bag).toMatchObject({
      "source.ip": new Uint8Array([10, 1, 2, 3]),
      "source.port": 51234,
      "destination.port": 8080,
      "source.principal": "spiffe://cluster.local/ns/shop/sa/frontend",
      "source.namespace": "shop",
      "destination.namespace": "books",
      "connection.mtls": true,
      "request.method": "GET",
      "request.path": "/reviews/1?verbose=1",
      "request.url_path": "/reviews/1",
      "request.query_params": { verbose: "1" },
      "request.host": "reviews.books:8080",
      "request.useragent": "curl/8",
      "request.time": new Date(1_700_000_000_000),
      "source.labels": { app: "frontend" },
      "destination.service.host": "reviews.books.svc.cluster.local",
      "context.protocol": "http",
    });
  });

  test("bagFromDescriptor() maps attribute-named entries and Envoy's built-in keys", () => {
    const d = create(RateLimitDescriptorSchema, {
      entries: [
        { key: "destination_cluster", value: "outbound|9080||reviews.books.svc.cluster.local" },
        { key: "remote_address", value: "10.0.0.7" },
        { key: "source.labels.app", value: "frontend" },
        { key: "request.size", value: "12" },
        { key: "request.size", value: "twelve" },
        { key: "generic_key", value: "x" },
      ],
    });
    const { bag, unused } = bagFromDescriptor(d);
    expect(bag).toMatchObject({
      "destination.service.host": "reviews.books.svc.cluster.local",
      "destination.service.name": "reviews",
      "destination.service.namespace": "books",
      "destination.port": 9080,
      "source.ip": new Uint8Array([10, 0, 0, 7]),
      "source.labels": { app: "frontend" },
      "request.size": 12,
    });
    expect(unused).toEqual(["request.size", "generic_key"]);
  });

  test("bagFromDescriptor() reads the entries of the inbound actions pilot generates", () => {
    const d = create(RateLimitDescriptorSchema, {
      entries: [
        { key: "destination.service.host", value: "web.app.svc.cluster.local" },
        { key: "destination.service.name", value: "web" },
        { key: "destination.labels.version", value: "v1" },
        { key: "destination_cluster", value: "inbound|8080||" },
        { key: "request.path", value: "/ratings/1?page=2&page=3" },
        { key: "request.method", value: "GET" },
        { key: "request.host", value: "web.app:8080" },
        { key: "remote_address", value: "10.0.0.9" },
      ],
    });
    const { bag, unused } = bagFromDescriptor(d);
    expect(bag).toEqual({
      "context.reporter.kind": "inbound",
      "destination.service.host": "web.app.svc.cluster.local",
      "destination.service.name": "web",
      "destination.labels": { version: "v1" },
      "destination.port": 8080,
      "request.path": "/ratings/1?page=2&page=3",
      "request.url_path": "/ratings/1",
      "request.query_params": { page: "2" },
      "request.method": "GET",
      "request.host": "web.app:8080",
      "source.ip": new Uint8Array([10, 0, 0, 9]),
    });
    expect(unused).toEqual([]);
  });

  test("bagFromHttpLog() and bagFromTcpLog() read the entry and the reporting node's workload", () => {
    const node = create(
      NodeSchema,
      {
        id: "sidecar~10.0.0.5~reviews-v1-abc.books~books.svc.cluster.local",
        metadata: {
          NAMESPACE: "books",
          WORKLOAD_NAME: "reviews-v1",
          LABELS: { app: "reviews", version: "v1" },
        },
      },
    );
    const http = create(HTTPAccessLogEntrySchema, {
      commonProperties: {
        upstreamCluster: "inbound|9080||",
        downstreamRemoteAddress: {
          address: {
            case: "socketAddress",
            value: { address: "10.0.0.9", portSpecifier: { case: "portValue", value: 40000 } },
          },
        },
        duration: { seconds: 0n, nanos: 25_000_000 },
        responseFlags: { upstreamConnectionFailure: true, upstreamRetryLimitExceeded: true },
        tlsProperties: {
          peerCertificateProperties: {
            subjectAltName: [{ san: { case: "uri", value: "spiffe://cluster.local/ns/shop/sa/frontend" } }],
          },
        },
      },
      request: {
        requestMethod: 1,
        path: "/r",
        requestHeaders: { "content-type": "application/grpc" },
        requestBodyBytes: 10n,
        requestHeadersBytes: 90n,
      },
      response: { responseCode: 200, responseBodyBytes: 5n, responseTrailers: { "grpc-status": "14" } },
    });
    expect(bagFromHttpLog(http, node)).toMatchObject({
      "context.reporter.kind": "inbound",
      "destination.workload.name": "reviews-v1",
      "destination.workload.namespace": "books",
      "destination.labels": { app: "reviews", version: "v1" },
      "source.principal": "spiffe://cluster.local/ns/shop/sa/frontend",
      "source.namespace": "shop",
      "source.ip": new Uint8Array([10, 0, 0, 9]),
      "connection.mtls": true,
      "request.method": "GET",
      "request.size": 10,
      "request.total_size": 100,
      "response.code": 200,
      "response.grpc_status": "14",
      "response.duration": 25,
      "context.protocol": "grpc",
      "context.proxy_error_code": "UF,URX",
    });
    const tcp = create(TCPAccessLogEntrySchema, {
      commonProperties: {
        upstreamCluster: "outbound|5432||db.data.svc.cluster.local",
        accessLogType: AccessLogType.TcpConnectionEnd,
      },
      connectionProperties: { receivedBytes: 100n, sentBytes: 2000n },
    });
    expect(bagFromTcpLog(tcp, node)).toMatchObject({
      "context.reporter.kind": "outbound",
      "source.workload.name": "reviews-v1",
      "destination.service.host": "db.data.svc.cluster.local",
      "connection.event": "close",
      "connection.received.bytes": 100,
      "connection.sent.bytes": 2000,
      "context.protocol": "tcp",
    });
  });

  test("hostile bags are refused with the attribute named", () => {
    const wire = (attributes: Record<string, unknown>) =>
      create(AttributesSchema, { attributes: attributes as never });
    // A map key "__proto__" arrives from the wire as an own property; it is refused, not assigned.
    const proto = create(AttributesSchema);
    Object.defineProperty(proto.attributes, "__proto__", {
      value: create(AttributeValueSchema, { value: { case: "stringValue", value: "x" } }),
      enumerable: true,
    });
    const decoded = fromBinary(AttributesSchema, toBinary(AttributesSchema, proto));
    expect(() => decodeBag(decoded)).toThrow(BadBagError);
    expect(() => decodeBag(wire({ "9lives": { value: { case: "boolValue", value: true } } }))).toThrow(
      'malformed attribute name "9lives"',
    );
    expect(() => decodeBag(wire({ "request.size": { value: { case: "stringValue", value: "big" } } })))
      .toThrow(
        "attribute request.size must be of type int, got string",
      );
    expect(() =>
      decodeBag(wire({ "request.path": { value: { case: "stringValue", value: "x".repeat(20_000) } } }))
    ).toThrow(
      "attribute request.path is too long",
    );
    const many = Object.fromEntries(
      Array.from({ length: 300 }, (_, i) => [`a${i}`, { value: { case: "boolValue", value: true } }]),
    );
    expect(() => decodeBag(wire(many))).toThrow("more than 256 attributes");
    expect(() =>
      checkBagLimits({
        "request.headers": Object.fromEntries(Array.from({ length: 300 }, (_, i) => [`h${i}`, "v"])),
      })
    ).toThrow(
      "attribute request.headers has too many entries",
    );
    const bag = {
      "request.size": 12,
      "response.duration": 1.5,
      "source.ip": new Uint8Array([1, 2, 3, 4]),
      "request.time": new Date(5),
      "source.labels": { a: "b" },
    };
    expect(decodeBag(encodeBag(bag))).toEqual(bag);
  });
});

test("refsOf() references string maps key by key only when every use is a literal key", () => {
  const refs = (expr: string) => {
    const c = compileExpression(expr, "any");
    if (!c.ok) throw new Error(c.message);
    return refsOf(c.program);
  };
  expect(refs('request.headers["x-a"] == "1" && request.headers.x_b == "2"')).toEqual([
    { name: "request.headers", mapKey: "x-a" },
    { name: "request.headers", mapKey: "x_b" },
  ]);
  expect(refs('"x-a" in request.headers')).toEqual([{ name: "request.headers" }]);
  expect(refs("request.headers.size() > 2")).toEqual([{ name: "request.headers" }]);
  const key = (bag: Record<string, unknown>) =>
    refValueKey(bag, [{ name: "request.headers", mapKey: "x-a" }, { name: "source.ip" }]);
  expect(key({ "request.headers": { "x-a": "1", "x-other": "2" } })).toBe(
    key({ "request.headers": { "x-a": "1" } }),
  );
  expect(key({ "request.headers": { "x-a": "1" } })).not.toBe(key({ "request.headers": { "x-a": "2" } }));
  expect(key({ "request.headers": {} })).not.toBe(key({ "request.headers": { "x-a": "" } }));
});

test("compileInstance() compiles each field once per resource object", async () => {
  const { createConfigStore } = await import("../../mod/galley/store.ts");
  const { quiet } = await import("./_harness.ts");
  const store = createConfigStore({ logger: quiet });
  store.sink("t").replace([{ origin: "i.yaml", content: userEntry }]);
  const r = store.snapshot().list("config.istio.io", "instance")[0]!;
  expect(compileInstance(r as never)).toBe(compileInstance(r as never));
});
