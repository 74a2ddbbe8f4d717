import { describe, expect, test } from "bun:test";
import { createRateLimiter } from "../../mod/shared/rate_limit.ts";
import { createManualClock } from "../../mod/shared/clock.ts";

describe("createRateLimiter()", () => {
  test("allows a burst, then refills at the rate, per key", () => {
    const clock = createManualClock(0);
    const rl = createRateLimiter({ perMinute: 10, now: clock.now });
    for (let i = 0; i < 10; i++) expect(rl.take("a")).toBe(true);
    expect(rl.take("a")).toBe(false);
    expect(rl.take("b")).toBe(true);
    clock.advance(5_999);
    expect(rl.take("a")).toBe(false);
    clock.advance(1);
    expect(rl.take("a")).toBe(true);
    expect(rl.take("a")).toBe(false);
    clock.advance(3600_000);
    for (let i = 0; i < 10; i++) expect(rl.take("a")).toBe(true);
    expect(rl.take("a")).toBe(false);
  });

  test("an explicit burst differs from the rate, and 0 per minute disables limiting", () => {
    const clock = createManualClock(0);
    const rl = createRateLimiter({ perMinute: 60, burst: 2, now: clock.now });
    expect([rl.take("a"), rl.take("a"), rl.take("a")]).toEqual([true, true, false]);
    const off = createRateLimiter({ perMinute: 0, now: clock.now });
    for (let i = 0; i < 1000; i++) expect(off.take("a")).toBe(true);
  });

  test("keeps at most maxKeys buckets, dropping full ones first", () => {
    const clock = createManualClock(0);
    const rl = createRateLimiter({ perMinute: 10, now: clock.now, maxKeys: 100 });
    for (let i = 0; i < 1000; i++) rl.take(`id-${i}`);
    expect(rl.size()).toBeLessThanOrEqual(100);
    clock.advance(60_000);
    for (let i = 0; i < 1000; i++) rl.take(`other-${i}`);
    expect(rl.size()).toBeLessThanOrEqual(100);
  });
});
