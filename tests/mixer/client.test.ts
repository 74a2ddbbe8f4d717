import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { createGrpcServer, type GrpcServer } from "../../mod/grpc/server.ts";
import { Mixer } from "#gen/meshd/mixer/v1/mixer_pb.ts";
import { createCheckCache } from "../../mod/mixer/client/check_cache.ts";
import { createMixerClient, type MixerClient } from "../../mod/mixer/client/mixer_client.ts";
import { createQuotaPool } from "../../mod/mixer/client/quota_pool.ts";
import { createReportBatcher } from "../../mod/mixer/client/report_batcher.ts";
import { DEFAULT_BAG_LIMITS } from "../../mod/mixer/client/wire.ts";
import { mixerService } from "../../mod/mixer/mixer_service.ts";
import { type CoreHarness, coreHarness, docs, freePort, mixerYaml, quiet } from "./_harness.ts";

describe("check cache", () => {
  test("a decision is reused for bags equal in the referenced places, within its duration and use count", () => {
    let now = 0;
    const cache = createCheckCache({ now: () => now });
    const refs = [{ name: "request.headers", mapKey: "x-user" }, { name: "source.ip" }];
    cache.store(
      { "request.headers": { "x-user": "alice", "x-request-id": "1" } },
      refs,
      { code: 0, message: "" },
      1000,
      3,
    );
    const bag = (user: string, id: string) => ({ "request.headers": { "x-user": user, "x-request-id": id } });
    expect(cache.lookup(bag("alice", "2"))).toEqual({ code: 0, message: "" });
    expect(cache.lookup(bag("bob", "2"))).toBeUndefined();
    expect(cache.lookup(bag("alice", "3"))).toEqual({ code: 0, message: "" });
    expect(cache.lookup(bag("alice", "4"))).toBeUndefined(); // three uses: the first was the request itself
    cache.store(bag("alice", "5"), refs, { code: 7, message: "no" }, 1000, 100);
    expect(cache.lookup(bag("alice", "6"))).toEqual({ code: 7, message: "no" });
    now = 1000;
    expect(cache.lookup(bag("alice", "7"))).toBeUndefined();
    cache.store(bag("alice", "8"), refs, { code: 0, message: "" }, 0, 100);
    expect(cache.size()).toBe(0);
  });

  test("a cache hit costs at most 10 µs", () => {
    const cache = createCheckCache();
    const refs = [
      { name: "request.path" },
      { name: "request.headers", mapKey: "x-user" },
      { name: "source.workload.name" },
      { name: "destination.service.host" },
      { name: "source.ip" },
    ];
    const bag = {
      "request.path": "/shop.Cart/Add",
      "request.headers": { "x-user": "alice", "user-agent": "grpc-node-js/1.14", "x-request-id": "abc" },
      "source.workload.name": "frontend",
      "destination.service.host": "cart.shop.svc.cluster.local",
      "source.ip": new Uint8Array([10, 0, 0, 1]),
      "request.time": new Date(),
    };
    cache.store(bag, refs, { code: 0, message: "" }, 60_000, 1_000_000_000);
    for (let i = 0; i < 20_000; i++) cache.lookup(bag);
    const n = 200_000;
    const t0 = performance.now();
    for (let i = 0; i < n; i++) if (!cache.lookup(bag)) throw new Error("miss");
    const us = ((performance.now() - t0) * 1000) / n;
    expect(us).toBeLessThanOrEqual(10);
  });
});

test("the quota pool spends prefetched units per dimension until they run out or expire", () => {
  let now = 0;
  const pool = createQuotaPool({ now: () => now });
  const a = { "source.workload.name": "a" };
  pool.put("rq", a, [{ name: "source.workload.name" }], 2, 1000);
  expect([
    pool.take("rq", a, 1),
    pool.take("rq", { "source.workload.name": "b" }, 1),
    pool.take("rq", a, 1),
    pool.take("rq", a, 1),
  ]).toEqual([
    true,
    false,
    true,
    false,
  ]);
  pool.put("rq", a, [{ name: "source.workload.name" }], 5, 1000);
  now = 1000;
  expect(pool.take("rq", a, 1)).toBe(false);
});

test("the report batcher sends full batches at once and the rest after its delay, and drops beyond its bound", async () => {
  const batches: number[] = [];
  const b = createReportBatcher({
    maxEntries: 10,
    maxDelayMs: 50,
    maxPending: 20,
    send: (entries) => {
      batches.push(entries.length);
      return Promise.resolve();
    },
  });
  for (let i = 0; i < 25; i++) b.add({ i });
  expect(batches).toEqual([10, 10]);
  await Bun.sleep(120);
  expect(batches).toEqual([10, 10, 5]);
  const failing = createReportBatcher({
    maxEntries: 2,
    maxPending: 2,
    send: () => Promise.reject(new Error("down")),
  });
  for (let i = 0; i < 5; i++) failing.add({ i });
  await failing.flush();
  expect(failing.stats()).toMatchObject({ sent: 0, dropped: 5 });
});

describe("mixer client against a Mixer server on loopback", () => {
  let server: GrpcServer;
  let h: CoreHarness;
  let addr: string;
  const clients: MixerClient[] = [];
  const client = (opts: Partial<Parameters<typeof createMixerClient>[0]> = {}) => {
    const c = createMixerClient({ address: addr, ...opts });
    clients.push(c);
    return c;
  };

  beforeAll(async () => {
    h = coreHarness({ validMs: 60_000, useCount: 1000 });
    h.load(docs(
      mixerYaml("handler", "users", {
        compiledAdapter: "listchecker",
        params: { overrides: ["alice"], cachingInterval: "1m", cachingUseCount: 1000 },
      }),
      mixerYaml("instance", "user", {
        compiledTemplate: "listentry",
        params: { value: 'request.headers["x-user"]' },
      }),
      mixerYaml("rule", "users", { actions: [{ handler: "users", instances: ["user"] }] }),
      mixerYaml("handler", "mq", {
        compiledAdapter: "memquota",
        params: { quotas: [{ name: "requestcount", maxAmount: 25, validDuration: "1m" }] },
      }),
      mixerYaml("instance", "requestcount", {
        compiledTemplate: "quota",
        params: { dimensions: { user: 'request.headers["x-user"]' } },
      }),
      mixerYaml("rule", "quota", { actions: [{ handler: "mq", instances: ["requestcount"] }] }),
    ));
    server = createGrpcServer({ logger: quiet });
    server.service(Mixer, mixerService(h.core, { maxBatch: 1000, limits: DEFAULT_BAG_LIMITS }));
    const a = await server.listen("127.0.0.1:0");
    addr = `127.0.0.1:${a.port}`;
  });
  afterAll(async () => {
    for (const c of clients) await c.close();
    await server.shutdown(100);
    await h.close();
  });

  const bag = (user: string, id: string) => ({
    "request.path": "/x",
    "request.headers": { "x-user": user, "x-request-id": id },
  });

  test("checks are decided by meshd once and then answered from the cache", async () => {
    const c = client();
    expect(await c.check(bag("alice", "1"))).toMatchObject({ allowed: true, cached: false });
    expect(await c.check(bag("alice", "2"))).toMatchObject({ allowed: true, cached: true });
    expect(await c.check(bag("bob", "3"))).toMatchObject({
      allowed: false,
      code: 5,
      message: "bob is not whitelisted",
      cached: false,
    });
    expect(c.tryCached(bag("bob", "4"))).toMatchObject({ allowed: false, cached: true });
  });

  test("quota prefetch admits exactly the limit under concurrent callers, asking meshd a few times only", async () => {
    const c = client({ quotaPrefetch: 10 });
    const verdicts = await Promise.all(
      Array.from({ length: 60 }, (_, i) => c.check(bag("alice", `q${i}`), { requestcount: 1 })),
    );
    expect(verdicts.filter((v) => v.allowed)).toHaveLength(25);
    expect(verdicts.find((v) => !v.allowed)).toMatchObject({
      code: 8,
      message: "quota requestcount exhausted",
    });
    expect(verdicts.filter((v) => v.allowed && !v.cached).length).toBeLessThanOrEqual(6);
  });

  test("an unreachable meshd fails open or closed as configured", async () => {
    const dead = `127.0.0.1:${await freePort()}`;
    const open = createMixerClient({ address: dead, failOpen: true, checkTimeoutMs: 500 });
    const closed = createMixerClient({ address: dead, failOpen: false, checkTimeoutMs: 500 });
    clients.push(open, closed);
    expect(await open.check(bag("bob", "1"))).toMatchObject({ allowed: true, failedOpen: true });
    expect(await closed.check(bag("alice", "1"))).toMatchObject({ allowed: false, code: 14 });
  });

  test("reports are batched into meshd's report pipeline", async () => {
    const c = client({ report: { maxEntries: 5, maxDelayMs: 20 } });
    for (let i = 0; i < 12; i++) {
      c.report({
        "destination.service.host": "cart.shop.svc.cluster.local",
        "source.workload.name": "web",
        "response.code": 200,
      });
    }
    await c.flush();
    expect(c.stats()).toMatchObject({ reportsSent: 12, reportsDropped: 0 });
    const edge = h.core.graph.view().edges.find((e) => e.destination === "cart.shop.svc.cluster.local");
    expect(edge?.requests).toBe(12);
  });
});
