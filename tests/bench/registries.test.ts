import { expect, test } from "bun:test";
import { runRegistriesBench } from "../../bench/registries.ts";

test("bench/registries.ts runs (small): registry changes reach the sidecars' EDS", async () => {
  const r = await runRegistriesBench({ instances: 200, sidecars: 2, changes: 4 });
  expect(r.instances).toBe(200);
  expect(r.services).toBeGreaterThan(0);
  expect(r.changeMs).toHaveLength(4);
  for (const ms of r.changeMs) expect(ms).toBeGreaterThan(0);
  expect(r.ratio).toBe(r.maxMs / 1000);
}, 120_000);
