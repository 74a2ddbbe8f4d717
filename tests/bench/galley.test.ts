import { expect, test } from "bun:test";
import { runGalleyBench } from "../../bench/galley.ts";

test("bench/galley.ts runs its scenarios (small)", async () => {
  const r = await runGalleyBench(200, 20);
  expect(r.resources).toBe(200);
  expect(r.parseValidatePerSec).toBeGreaterThan(0);
  expect(r.storeUpdateMs).toBeGreaterThan(0);
  expect(r.dirUpdateMs).toBeGreaterThan(0);
});
