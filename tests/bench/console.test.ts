import { expect, test } from "bun:test";
import { formatConsoleBench, runConsoleBench } from "../../bench/console.ts";

test("bench/console.ts runs its scenarios (small)", async () => {
  const r = await runConsoleBench({ services: 30, proxies: 200, watchers: 2, seconds: 1.5, runs: 1 });
  expect(r.firstLoadBytes).toBeGreaterThan(1000);
  expect(r.pages.map((p) => p.path)).toContain("/ui/graph");
  expect(r.pages.every((p) => p.bytes > 0 && p.medianMs > 0)).toBe(true);
  expect(r.edges).toBeGreaterThan(30);
  expect(r.liveUpdates).toBeGreaterThan(0);
  expect(formatConsoleBench(r)).toContain("first load");
}, 30_000);
