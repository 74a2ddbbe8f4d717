import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { createHash } from "node:crypto";
import { Redis } from "ioredis";
import { defaultMeshConfig, type MeshConfig } from "../../mod/api/kinds/mesh_config.ts";
import type { AdapterEnv, Handler, InstanceValue, QuotaOutcome } from "../../mod/mixer/adapters/adapter.ts";
import { createRedisQuota, FIXED_WINDOW_SCRIPT } from "../../mod/mixer/adapters/redisquota.ts";
import { systemClock } from "../../mod/shared/clock.ts";
import { createMetricsRegistry } from "../../mod/shared/metrics.ts";
import { quiet, type RedisProcess, startRedis } from "./_harness.ts";

let redis: RedisProcess;
let mesh: MeshConfig = defaultMeshConfig;
const handlers: Handler[] = [];

beforeAll(async () => {
  redis = await startRedis();
});
afterAll(async () => {
  for (const h of handlers) await h.close();
  await redis?.stop();
});

function handler(quota: Record<string, unknown>, name = "rq"): Handler {
  const env: AdapterEnv = {
    handler: `${name}.istio-system`,
    namespace: "istio-system",
    logger: quiet,
    clock: systemClock,
    metrics: createMetricsRegistry(),
    mesh: () => mesh,
  };
  const h = createRedisQuota(
    { redisServerUrl: redis.url, quotas: [{ name: "requestcount", ...quota }] },
    env,
  );
  handlers.push(h);
  return h;
}

const inst = (source: string): InstanceValue => ({
  name: "requestcount.istio-system",
  template: "quota",
  fields: { dimensions: { source } },
});
const take = async (h: Handler, source: string, amount = 1, bestEffort = false): Promise<QuotaOutcome> =>
  await h.quota!(inst(source), { amount, bestEffort });

describe("redisquota against a real redis-server", () => {
  test("FIXED_WINDOW admits exactly maxAmount across two replicas under concurrency", async () => {
    const replicaA = handler({ maxAmount: 50, validDuration: "30s" }, "shared");
    const replicaB = handler({ maxAmount: 50, validDuration: "30s" }, "shared");
    const results = await Promise.all(
      Array.from({ length: 200 }, (_, i) => take(i % 2 === 0 ? replicaA : replicaB, "fixed-shared")),
    );
    expect(results.reduce((n, r) => n + r.granted, 0)).toBe(50);
    const granted = results.find((r) => r.granted === 1)!;
    expect(granted.validDurationMs).toBeGreaterThan(25_000);
    expect(granted.limit).toEqual({ maxAmount: 50, windowMs: 30_000 });
    const denied = results.find((r) => r.granted === 0)!;
    expect(denied.status.code).toBe(0);
    expect(denied.remaining).toBe(0);
    expect(denied.resetInMs).toBeGreaterThan(25_000);
  });

  test("FIXED_WINDOW resets when the window ends; best effort takes what is left", async () => {
    const h = handler({ maxAmount: 3, validDuration: "400ms" });
    expect((await take(h, "fixed-reset", 2)).granted).toBe(2);
    expect((await take(h, "fixed-reset", 2)).granted).toBe(0);
    expect((await take(h, "fixed-reset", 2, true)).granted).toBe(1);
    await Bun.sleep(450);
    expect((await take(h, "fixed-reset", 3)).granted).toBe(3);
  });

  test("ROLLING_WINDOW gives units back bucket by bucket", async () => {
    const h = handler({
      maxAmount: 4,
      validDuration: "600ms",
      bucketDuration: "100ms",
      rateLimitAlgorithm: "ROLLING_WINDOW",
    });
    const got = async (n: number) => {
      let sum = 0;
      for (let i = 0; i < n; i++) sum += (await take(h, "rolling")).granted;
      return sum;
    };
    expect(await got(2)).toBe(2);
    await Bun.sleep(300);
    expect(await got(4)).toBe(2); // 4 per 600 ms: the first two are still in the window
    await Bun.sleep(400); // the first bucket (t=0) is out of the window, the second (t=300) is not
    expect(await got(4)).toBe(2);
    const concurrent = await Promise.all(Array.from({ length: 20 }, () => take(h, "rolling-c")));
    expect(concurrent.reduce((n, r) => n + r.granted, 0)).toBe(4);
  });

  test("the script is run by SHA and re-sent when Redis lost it (SCRIPT FLUSH)", async () => {
    const h = handler({ maxAmount: 10, validDuration: "30s" });
    expect((await take(h, "flush")).granted).toBe(1);
    const admin = new Redis({ host: "127.0.0.1", port: redis.port, lazyConnect: true });
    await admin.connect();
    const sha = createHash("sha1").update(FIXED_WINDOW_SCRIPT).digest("hex");
    expect(await admin.script("EXISTS", sha)).toEqual([1]);
    await admin.script("FLUSH");
    expect(await admin.script("EXISTS", sha)).toEqual([0]);
    expect((await take(h, "flush")).granted).toBe(1); // EVALSHA answered NOSCRIPT; EVAL ran and cached it
    expect(await admin.script("EXISTS", sha)).toEqual([1]);
    await admin.quit();
  });

  test("with Redis down, the mesh's failOpen decides: grant, or UNAVAILABLE", async () => {
    const other = await startRedis();
    const env = (name: string): AdapterEnv => ({
      handler: `${name}.istio-system`,
      namespace: "istio-system",
      logger: quiet,
      clock: systemClock,
      metrics: createMetricsRegistry(),
      mesh: () => mesh,
    });
    const h = createRedisQuota({
      redisServerUrl: other.url,
      quotas: [{ name: "requestcount", maxAmount: 1, validDuration: "30s" }],
    }, env("down"));
    handlers.push(h);
    expect((await take(h, "down")).granted).toBe(1);
    await other.stop();
    mesh = { ...defaultMeshConfig, mixer: { failOpen: true } };
    const open = await take(h, "down");
    expect(open).toMatchObject({ granted: 1, status: { code: 0 }, validDurationMs: 0 });
    mesh = { ...defaultMeshConfig, mixer: { failOpen: false } };
    const closed = await take(h, "down");
    expect(closed.granted).toBe(0);
    expect(closed.status.code).toBe(14);
    expect(closed.status.message).toContain("quota store unavailable");
    mesh = defaultMeshConfig;
  });
});
