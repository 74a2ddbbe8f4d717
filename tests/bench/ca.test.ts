import { expect, test } from "bun:test";
import { runCaBench } from "../../bench/ca.ts";

test("bench/ca.ts runs its scenarios (small)", async () => {
  const r = await runCaBench(0.2, 50);
  expect(r.csrs).toBe(50);
  expect(r.rawSignPerSec).toBeGreaterThan(0);
  expect(r.issuePerSec).toBeGreaterThan(0);
  expect(r.withTokenPerSec).toBeGreaterThan(0);
  expect(r.peculiarPerSec).toBeGreaterThan(0);
  // Issuing includes one signature and one verification, so it is slower than signing alone.
  expect(r.ratio).toBeGreaterThan(0);
  expect(r.ratio).toBeLessThan(1);
});
