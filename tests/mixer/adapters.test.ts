import { afterEach, describe, expect, test } from "bun:test";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { pathToFileURL } from "node:url";
import { defaultMeshConfig } from "../../mod/api/kinds/mesh_config.ts";
import type { AdapterEnv, Handler, InstanceValue } from "../../mod/mixer/adapters/adapter.ts";
import { createDenier } from "../../mod/mixer/adapters/denier.ts";
import { compileList, createListChecker, parseProviderList } from "../../mod/mixer/adapters/listchecker.ts";
import { createMemQuota } from "../../mod/mixer/adapters/memquota.ts";
import { createMetricPool, prometheusFactory } from "../../mod/mixer/adapters/prometheus.ts";
import { createStdio } from "../../mod/mixer/adapters/stdio.ts";
import { createZipkin, sampled, toZipkinSpan } from "../../mod/mixer/adapters/zipkin.ts";
import { createManualClock, type ManualClock } from "../../mod/shared/clock.ts";
import { createMetricsRegistry } from "../../mod/shared/metrics.ts";
import { memoryLogger, quiet } from "./_harness.ts";

function env(clock: ManualClock, extra: Partial<AdapterEnv> = {}): AdapterEnv {
  return {
    handler: "h.istio-system",
    namespace: "istio-system",
    logger: quiet,
    clock,
    metrics: createMetricsRegistry(),
    mesh: () => defaultMeshConfig,
    ...extra,
  };
}

const quotaInst = (dims: Record<string, string> = {}): InstanceValue => ({
  name: "requestcount.istio-system",
  template: "quota",
  fields: { dimensions: dims },
});

const handlers: Handler[] = [];
afterEach(async () => {
  for (const h of handlers.splice(0)) await h.close();
});
const keep = (h: Handler) => (handlers.push(h), h);

describe("memquota", () => {
  test("a fixed window grants maxAmount, then nothing until the window ends", () => {
    const clock = createManualClock(1_000_000);
    const h = keep(
      createMemQuota({ quotas: [{ name: "requestcount", maxAmount: 3, validDuration: "1s" }] }, env(clock)),
    );
    const grants = Array.from(
      { length: 5 },
      () => (h.quota!(quotaInst(), { amount: 1, bestEffort: false }) as { granted: number }).granted,
    );
    expect(grants).toEqual([1, 1, 1, 0, 0]);
    clock.advance(999);
    expect((h.quota!(quotaInst(), { amount: 1, bestEffort: false }) as { granted: number }).granted).toBe(0);
    clock.advance(1);
    expect((h.quota!(quotaInst(), { amount: 1, bestEffort: false }) as { granted: number }).granted).toBe(1);
  });

  test("a rolling window gives units back as their slots age out", () => {
    const clock = createManualClock(0);
    const h = keep(
      createMemQuota({
        quotas: [{ name: "requestcount", maxAmount: 4, validDuration: "1s", rollingWindow: true }],
      }, env(clock)),
    );
    const take = () =>
      (h.quota!(quotaInst(), { amount: 1, bestEffort: false }) as { granted: number }).granted;
    expect(take() + take()).toBe(2);
    clock.advance(500);
    expect(take() + take() + take()).toBe(2);
    clock.advance(500); // the first two units are now older than a second
    expect(take() + take() + take()).toBe(2);
    clock.advance(500);
    expect(take()).toBe(1);
  });

  test("dimensions count separately and overrides change the limit", () => {
    const clock = createManualClock(0);
    const h = keep(createMemQuota({
      quotas: [{
        name: "requestcount.quota.istio-system",
        maxAmount: 1,
        validDuration: "10s",
        overrides: [{ dimensions: { source: "vip" }, maxAmount: 3 }],
      }],
    }, env(clock)));
    const take = (source: string) =>
      (h.quota!(quotaInst({ source }), { amount: 1, bestEffort: false }) as { granted: number }).granted;
    expect([take("a"), take("a"), take("b")]).toEqual([1, 0, 1]);
    expect([take("vip"), take("vip"), take("vip"), take("vip")]).toEqual([1, 1, 1, 0]);
  });

  test("best effort grants what is left; all-or-nothing grants nothing", () => {
    const clock = createManualClock(0);
    const h = keep(
      createMemQuota({ quotas: [{ name: "requestcount", maxAmount: 5, validDuration: "1s" }] }, env(clock)),
    );
    expect((h.quota!(quotaInst(), { amount: 3, bestEffort: false }) as { granted: number }).granted).toBe(3);
    expect((h.quota!(quotaInst(), { amount: 3, bestEffort: false }) as { granted: number }).granted).toBe(0);
    expect((h.quota!(quotaInst(), { amount: 3, bestEffort: true }) as { granted: number }).granted).toBe(2);
  });

  test("a retry with the same deduplication id gets the first answer", () => {
    const clock = createManualClock(0);
    const h = keep(
      createMemQuota({ quotas: [{ name: "requestcount", maxAmount: 2, validDuration: "10s" }] }, env(clock)),
    );
    const take = (id: string) =>
      (h.quota!(quotaInst(), { amount: 1, bestEffort: false, deduplicationId: id }) as { granted: number })
        .granted;
    expect([take("x"), take("x"), take("x"), take("y"), take("z")]).toEqual([1, 1, 1, 1, 0]);
  });

  test("concurrent callers are never granted more than the limit", async () => {
    const clock = createManualClock(0);
    const h = keep(
      createMemQuota({ quotas: [{ name: "requestcount", maxAmount: 100, validDuration: "1m" }] }, env(clock)),
    );
    // 1000 callers interleaved through the event loop, as concurrent gRPC handlers are.
    const results = await Promise.all(
      Array.from({ length: 1000 }, async (_, i) => {
        await Bun.sleep(i % 7);
        const r = await Promise.resolve(h.quota!(quotaInst(), { amount: 1, bestEffort: false }));
        return r.granted;
      }),
    );
    expect(results.reduce((a, b) => a + b, 0)).toBe(100);
  });

  test("a quota not configured in the handler is an error, not a grant", () => {
    const h = keep(createMemQuota({ quotas: [] }, env(createManualClock(0))));
    const r = h.quota!(quotaInst(), { amount: 1, bestEffort: false }) as {
      granted: number;
      status: { code: number };
    };
    expect(r.granted).toBe(0);
    expect(r.status.code).toBe(13);
  });
});

describe("listchecker", () => {
  const entry = (value: unknown): InstanceValue => ({
    name: "src.istio-system",
    template: "listentry",
    fields: { value },
  });

  test("compileList() matches strings, case-insensitive strings, CIDRs and RE2 patterns", () => {
    expect(compileList(["a", "B"], "STRINGS").contains("b")).toBe(false);
    expect(compileList(["a", "B"], "CASE_INSENSITIVE_STRINGS").contains("b")).toBe(true);
    const ips = compileList(["10.0.0.0/8", "192.168.1.7", "2001:db8::/32"], "IP_ADDRESSES");
    expect(ips.contains("10.20.30.40")).toBe(true);
    expect(ips.contains(new Uint8Array([192, 168, 1, 7]))).toBe(true);
    expect(ips.contains("192.168.1.8")).toBe(false);
    expect(ips.contains("::ffff:10.1.1.1")).toBe(true);
    expect(ips.contains("2001:db8::1")).toBe(true);
    expect(ips.contains("not-an-ip")).toBe("not-an-ip is not a valid IP address");
    const re = compileList(["^/admin(/.*)?$", "secret"], "REGEX");
    expect(re.contains("/admin/users")).toBe(true);
    expect(re.contains("/top-secret")).toBe(true);
    expect(re.contains("/public")).toBe(false);
    // RE2 runs in linear time: a pattern that makes backtracking engines explode is harmless.
    const evil = compileList(["^(a+)+$"], "REGEX");
    const t0 = performance.now();
    expect(evil.contains("a".repeat(5000) + "!")).toBe(false);
    expect(performance.now() - t0).toBeLessThan(2000);
    expect(() => compileList(["10.0.0.0/33"], "IP_ADDRESSES")).toThrow(/bad prefix length/);
  });

  test("a whitelist answers NOT_FOUND, a blacklist PERMISSION_DENIED, with the caching params", () => {
    const clock = createManualClock(0);
    const white = keep(
      createListChecker({ overrides: ["alice"], cachingInterval: "2s", cachingUseCount: 5 }, env(clock)),
    );
    expect(white.check!([entry("alice")])).toMatchObject({
      status: { code: 0 },
      validDurationMs: 2000,
      validUseCount: 5,
    });
    expect(white.check!([entry("bob")])).toMatchObject({
      status: { code: 5, message: "bob is not whitelisted" },
    });
    const black = keep(createListChecker({ overrides: ["bob"], blacklist: true }, env(clock)));
    expect(black.check!([entry("bob")])).toMatchObject({
      status: { code: 7, message: "bob is blacklisted" },
      validDurationMs: 300_000,
    });
    expect(black.check!([entry("alice")])).toMatchObject({ status: { code: 0 } });
  });

  test("parseProviderList() reads YAML sequences and one-entry-a-line lists", () => {
    expect(parseProviderList("- a\n- b\n")).toEqual(["a", "b"]);
    expect(parseProviderList("# blocked\n10.0.0.1\n\n10.0.0.2 # late\n")).toEqual(["10.0.0.1", "10.0.0.2"]);
    expect(() => parseProviderList("- {a: 1}")).toThrow(/not a scalar/);
  });

  test("a provider list is fetched, refreshed, and dropped when it cannot be refreshed within its ttl", async () => {
    let body = "- alice\n";
    let up = true;
    const server = Bun.serve({
      port: 0,
      hostname: "127.0.0.1",
      fetch: () => (up ? new Response(body) : new Response("down", { status: 503 })),
    });
    try {
      const clock = createManualClock(0);
      const h = keep(createListChecker({
        providerUrl: `http://127.0.0.1:${server.port}/list`,
        refreshInterval: "1s",
        ttl: "3s",
      }, env(clock)));
      // Before the first fetch completes, the handler says it has no list.
      expect((h.check!([entry("alice")]) as { status: { code: number } }).status.code).toBe(14);
      const code = (v: string) => (h.check!([entry(v)]) as { status: { code: number } }).status.code;
      for (let i = 0; i < 100 && code("alice") !== 0; i++) await Bun.sleep(10);
      expect([code("alice"), code("bob")]).toEqual([0, 5]);
      body = "- bob\n";
      clock.advance(1000);
      for (let i = 0; i < 100 && code("bob") !== 0; i++) await Bun.sleep(10);
      expect([code("alice"), code("bob")]).toEqual([5, 0]);
      up = false;
      for (let s = 0; s < 3; s++) {
        clock.advance(1000);
        await Bun.sleep(30);
      }
      expect(code("bob")).toBe(14);
    } finally {
      server.stop(true);
    }
  });

  test("a file:/// provider list is read at start, re-read every refreshInterval, and kept when the file goes bad", async () => {
    const dir = mkdtempSync(join(tmpdir(), "meshd-listchecker-"));
    const path = join(dir, "allowed list.txt");
    try {
      writeFileSync(path, "- alice\n");
      const clock = createManualClock(0);
      const { logger, lines } = memoryLogger();
      const h = keep(createListChecker({
        providerUrl: pathToFileURL(path).href,
        refreshInterval: "1s",
        ttl: "5s",
      }, env(clock, { logger })));
      const code = (v: string) => (h.check!([entry(v)]) as { status: { code: number } }).status.code;
      const warnings = () => lines.filter((l) => l.msg === "listchecker: could not read the list");
      const until = async (done: () => boolean) => {
        for (let i = 0; i < 200 && !done(); i++) await Bun.sleep(5);
      };
      await until(() => code("alice") === 0);
      expect([code("alice"), code("bob")]).toEqual([0, 5]);

      // Rewritten (one entry a line this time): the change shows only after the refresh interval.
      writeFileSync(path, "bob # the new one\ncarol\n");
      await Bun.sleep(20);
      expect([code("alice"), code("bob")]).toEqual([0, 5]);
      clock.advance(1000);
      await until(() => code("bob") === 0);
      expect([code("alice"), code("bob"), code("carol")]).toEqual([5, 0, 0]);

      // A garbled file is logged and the last good list stays.
      writeFileSync(path, "- {a: 1}\n");
      clock.advance(1000);
      await until(() => warnings().length === 1);
      expect(warnings()[0]).toMatchObject({ level: "warn", keptEntries: 2 });
      expect(String(warnings()[0]!.error)).toContain("not a scalar");
      expect([code("alice"), code("bob")]).toEqual([5, 0]);

      // So does a missing one.
      rmSync(path);
      clock.advance(1000);
      await until(() => warnings().length === 2);
      expect(String(warnings()[1]!.error)).toContain("ENOENT");
      expect([code("alice"), code("bob")]).toEqual([5, 0]);

      // Back before the ttl ran out: the new list is taken.
      writeFileSync(path, "- alice\n");
      clock.advance(1000);
      await until(() => code("alice") === 0);
      expect([code("alice"), code("bob")]).toEqual([0, 5]);
      expect(warnings()).toHaveLength(2);

      // Missing for longer than the ttl: dropped, as a URL list is.
      rmSync(path);
      for (let s = 0; s < 5 && code("alice") !== 14; s++) {
        clock.advance(1000);
        const seen = warnings().length;
        await until(() => warnings().length > seen);
      }
      expect(code("alice")).toBe(14);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

test("denier answers its configured status, FAILED_PRECONDITION by default", () => {
  expect(createDenier(undefined, env(createManualClock(0))).check!([])).toMatchObject({
    status: { code: 9 },
    validDurationMs: 5000,
    validUseCount: 1000,
  });
  expect(
    createDenier({ status: { code: 7, message: "nope" }, validDuration: "1s" }, env(createManualClock(0)))
      .check!([]),
  ).toMatchObject({ status: { code: 7, message: "nope" }, validDurationMs: 1000 });
});

describe("prometheus", () => {
  const bag = {
    "destination.service.host": "reviews.default.svc.cluster.local",
    "destination.service.name": "reviews",
    "destination.service.namespace": "default",
    "source.workload.name": "productpage-v1",
    "source.labels": { app: "productpage", version: "v1" },
    "response.code": 200,
    "response.duration": 12,
    "context.protocol": "http",
  };
  const metric = (b = bag): InstanceValue => ({
    name: "requestcount.istio-system",
    template: "metric",
    fields: { value: 1 },
    bag: b,
  });

  test("a handler without metrics records Istio's standard metrics once per report", async () => {
    const clock = createManualClock(0);
    const registry = createMetricsRegistry();
    const pool = createMetricPool(registry, quiet);
    const h = keep(prometheusFactory(pool)({}, env(clock, { metrics: registry })));
    await h.report!([metric(), metric()]); // two instances of the same report
    await h.report!([metric({ ...bag, "response.code": 503 })]);
    const text = await registry.metrics();
    expect(text).toMatch(
      /istio_requests_total\{reporter="destination",source_workload="productpage-v1",.*source_app="productpage",source_version="v1",.*destination_service="reviews.default.svc.cluster.local",destination_service_name="reviews",destination_service_namespace="default",request_protocol="http",response_code="200",.*\} 1/,
    );
    expect(text).toMatch(/istio_requests_total\{.*response_code="503".*\} 1/);
    expect(text).toMatch(/istio_request_duration_milliseconds_bucket\{le="25",.*response_code="200".*\} 1/);
  });

  test("configured metrics keep counting across a rebuild with the same definition and leave when unused", async () => {
    const clock = createManualClock(0);
    const registry = createMetricsRegistry();
    const pool = createMetricPool(registry, quiet);
    const params = {
      metrics: [{ name: "hits_total", instanceName: "requestcount", kind: "COUNTER", labelNames: ["path"] }],
    };
    const inst: InstanceValue = {
      name: "requestcount.istio-system",
      template: "metric",
      fields: { value: 2, dimensions: { path: "/a" } },
    };
    const first = prometheusFactory(pool)(params, env(clock, { metrics: registry }));
    await first.report!([inst]);
    pool.retiring([first.owner!]);
    const second = prometheusFactory(pool)(params, env(clock, { metrics: registry }));
    first.close();
    pool.sweep();
    await second.report!([inst]);
    expect(await registry.metrics()).toContain('istio_hits_total{path="/a"} 4');
    second.close();
    pool.sweep();
    expect(await registry.metrics()).not.toContain("istio_hits_total");
  });

  test("a conflicting definition of a live metric is refused with the reason", () => {
    const registry = createMetricsRegistry();
    const pool = createMetricPool(registry, quiet);
    pool.acquire({ name: "x_total", help: "x", kind: "COUNTER", labelNames: ["a"] }, {});
    expect(() => pool.acquire({ name: "x_total", help: "x", kind: "COUNTER", labelNames: ["b"] }, {}))
      .toThrow(
        /already defined by another handler/,
      );
  });

  test("series expire after metricsExpiryDuration", async () => {
    const clock = createManualClock(0);
    const registry = createMetricsRegistry();
    const h = keep(
      prometheusFactory(createMetricPool(registry, quiet))({
        metrics: [{ name: "g", instanceName: "requestcount", kind: "GAUGE", labelNames: ["k"] }],
        metricsExpirationPolicy: { metricsExpiryDuration: "2s", expiryCheckIntervalDuration: "1s" },
      }, env(clock, { metrics: registry })),
    );
    await h.report!([{
      name: "requestcount.istio-system",
      template: "metric",
      fields: { value: 5, dimensions: { k: "v" } },
    }]);
    expect(await registry.metrics()).toContain('istio_g{k="v"} 5');
    clock.advance(3000);
    expect(await registry.metrics()).not.toContain('istio_g{k="v"}');
  });
});

test("stdio writes logentry instances as JSON lines to a file, at their mapped severity", async () => {
  const dir = mkdtempSync(join(tmpdir(), "meshd-stdio-"));
  try {
    const path = join(dir, "access.log");
    const h = createStdio({
      logStream: "FILE",
      outputPath: path,
      severityLevels: { warn: "WARNING" },
      outputLevel: "INFO",
    }, env(createManualClock(0)));
    await h.report!([
      {
        name: "accesslog.istio-system",
        template: "logentry",
        fields: {
          severity: "warn",
          timestamp: new Date(0),
          variables: { path: "/x", ip: new Uint8Array([10, 0, 0, 1]), code: 200 },
        },
      },
    ]);
    await h.close();
    const line = JSON.parse(readFileSync(path, "utf8").trim());
    expect(line).toEqual({
      level: "warning",
      time: "1970-01-01T00:00:00.000Z",
      instance: "accesslog.istio-system",
      path: "/x",
      ip: "10.0.0.1",
      code: 200,
    });
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test("stdio ROTATED_FILE rotates by size into PATH.1", async () => {
  const dir = mkdtempSync(join(tmpdir(), "meshd-stdio-"));
  try {
    const path = join(dir, "a.log");
    const h = createStdio({
      logStream: "ROTATED_FILE",
      outputPath: path,
      maxMegabytesBeforeRotation: 1,
      maxRotatedFiles: 2,
    }, env(createManualClock(0)));
    const big = "x".repeat(600 * 1024);
    for (let i = 0; i < 3; i++) {
      await h.report!([{ name: "l.istio-system", template: "logentry", fields: { variables: { big } } }]);
    }
    await h.close();
    expect(readFileSync(`${path}.1`, "utf8").split("\n").filter(Boolean).length).toBeGreaterThan(0);
    expect(readFileSync(path, "utf8").split("\n").filter(Boolean).length).toBe(1);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

describe("zipkin", () => {
  const span = (over: Record<string, unknown> = {}): InstanceValue => ({
    name: "span.istio-system",
    template: "tracespan",
    fields: {
      traceId: "463ac35c9f6413ad48485a3953bb6124",
      spanId: "a2fb4a1d1a96d312",
      parentSpanId: "0020000000000001",
      spanName: "GET /reviews",
      startTime: new Date(1_000),
      endTime: new Date(1_012),
      clientSpan: false,
      sourceName: "productpage",
      destinationName: "reviews",
      destinationIp: new Uint8Array([10, 0, 0, 2]),
      httpStatusCode: 200,
      spanTags: { "http.method": "GET" },
      ...over,
    },
  });

  test("toZipkinSpan() builds a v2 span and refuses malformed ids", () => {
    expect(toZipkinSpan(span())).toEqual({
      traceId: "463ac35c9f6413ad48485a3953bb6124",
      id: "a2fb4a1d1a96d312",
      parentId: "0020000000000001",
      name: "GET /reviews",
      kind: "SERVER",
      timestamp: 1_000_000,
      duration: 12_000,
      localEndpoint: { serviceName: "reviews", ipv4: "10.0.0.2" },
      remoteEndpoint: { serviceName: "productpage" },
      tags: { "http.method": "GET", "http.status_code": "200" },
    });
    expect(toZipkinSpan(span({ traceId: "<script>" }))).toMatch(/not a Zipkin trace id/);
    expect(sampled("463ac35c9f6413ad48485a3953bb6124", 0)).toBe(false);
  });

  test("spans are POSTed to the collector in batches", async () => {
    const received: unknown[][] = [];
    const server = Bun.serve({
      port: 0,
      hostname: "127.0.0.1",
      async fetch(req) {
        received.push((await req.json()) as unknown[]);
        return new Response(null, { status: 202 });
      },
    });
    try {
      const clock = createManualClock(0);
      const h = createZipkin({ url: `http://127.0.0.1:${server.port}/api/v2/spans` }, env(clock));
      await h.report!(
        Array.from({ length: 150 }, (_, i) => span({ spanId: (0x1000 + i).toString(16).padStart(16, "0") })),
      );
      await h.close();
      expect(received.map((b) => b.length)).toEqual([100, 50]);
    } finally {
      server.stop(true);
    }
  });
});
