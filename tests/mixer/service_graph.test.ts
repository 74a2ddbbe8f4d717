/** The service graph's windows: per-slot totals kept over the longest window, each view adding its own. */
import { describe, expect, test } from "bun:test";
import {
  createServiceGraph,
  MAX_SAMPLES,
  SAMPLES_PER_SLOT,
  SLOT_MS,
  windowOf,
  WINDOWS,
} from "../../mod/mixer/service_graph.ts";
import type { GraphEdge } from "../../mod/mixer/mod.ts";
import { createManualClock } from "../../mod/shared/clock.ts";

const MIN = 60_000;

function send(g: ReturnType<typeof createServiceGraph>, n: number, code = 200, ms = 5): void {
  for (let i = 0; i < n; i++) {
    g.record({
      "source.workload.name": "web",
      "source.workload.namespace": "shop",
      "destination.service.host": "cart.shop.svc.cluster.local",
      "response.code": code,
      "response.duration": ms,
    });
  }
}

describe("service graph windows", () => {
  test("view(window) counts only the requests inside that window, each window its own numbers", () => {
    const clock = createManualClock(1_000_000_000);
    const g = createServiceGraph({ clock, windowMs: MIN });
    send(g, 30, 503, 900); // 12 minutes ago
    clock.advance(8 * MIN);
    send(g, 20, 200, 50); // 4 minutes ago
    clock.advance(3 * MIN + 30_000);
    send(g, 10, 200, 5); // 30 s ago
    clock.advance(30_000);
    const [one, five, fifteen] = WINDOWS.map((w) => g.view(w).edges[0]!) as [GraphEdge, GraphEdge, GraphEdge];
    expect(one).toMatchObject({ requests: 10, errors: 0, latencyP99Ms: 5 });
    expect(one.requestRate).toBeCloseTo(10 / 60);
    expect(five).toMatchObject({ requests: 30, errors: 0, latencyP50Ms: 50 });
    expect(five.requestRate).toBeCloseTo(30 / 300);
    expect(fifteen).toMatchObject({ requests: 60, errors: 30, errorRate: 0.5, latencyP99Ms: 900 });
    expect(fifteen.requestRate).toBeCloseTo(60 / 900);
    // The default window is the graph's own.
    expect(g.view()).toMatchObject({ windowMs: MIN, edges: [{ requests: 10 }] });
    expect(g.view(5 * MIN).windowMs).toBe(5 * MIN);
  });

  test("slots older than the longest window are dropped, and their edges with them", () => {
    const clock = createManualClock(0);
    const g = createServiceGraph({ clock, windowMs: MIN });
    send(g, 5);
    clock.advance(g.longestWindowMs + 2 * SLOT_MS);
    expect(g.view(g.longestWindowMs).edges).toEqual([]);
    expect(() => g.view(g.longestWindowMs + 1)).toThrow(/window/);
  });

  test("latencies kept are bounded per slot and in all", () => {
    const clock = createManualClock(0);
    const g = createServiceGraph({ clock, windowMs: MIN });
    send(g, SAMPLES_PER_SLOT * 10, 200, 7);
    const e = g.view().edges[0]!;
    expect(e.requests).toBe(SAMPLES_PER_SLOT * 10);
    expect(e.latencyP50Ms).toBe(7);
    expect(MAX_SAMPLES).toBeGreaterThan(SAMPLES_PER_SLOT);
  });

  test("windowOf() reads ?window=, names the parameter when it is wrong", () => {
    expect(windowOf(null, MIN, 15 * MIN)).toBe(MIN);
    expect(windowOf("5m", MIN, 15 * MIN)).toBe(5 * MIN);
    expect(windowOf("five", MIN, 15 * MIN)).toEqual({ error: expect.stringContaining('window: "five"') });
    expect(windowOf("1h", MIN, 15 * MIN)).toEqual({
      error: expect.stringContaining("longer than the 15m kept"),
    });
  });
});
