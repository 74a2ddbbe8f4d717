import { expect, test } from "bun:test";
import { formatMixerResults, runMixerBench } from "../../bench/mixer.ts";

test("bench/mixer.ts runs its scenarios (small)", async () => {
  const r = await runMixerBench({ seconds: 0.3, concurrency: [1, 4], rate: 300, reportBatch: 20 });
  // The independent load generator ran every load against meshd and the floor; all calls got OK.
  expect(r.server.map((s) => s.inflight ?? `rate ${s.rate}`)).toEqual([1, 4, "rate 300"]);
  for (const s of r.server) {
    for (const run of [s.meshd, s.floor]) {
      expect(run.failed).toBe(0);
      expect(run.ok).toBeGreaterThan(0);
      expect(run.latencyUs.fromSent.p50).toBeGreaterThan(0);
    }
  }
  expect(r.closedLoop.map((c) => c.concurrency)).toEqual([1, 4]);
  for (const c of r.closedLoop) expect(c.checksPerSec).toBeGreaterThan(0);
  expect(r.paced.checksPerSec).toBeGreaterThan(0);
  expect(r.cacheHitUs).toBeGreaterThan(0);
  expect(r.reportEntriesPerSec).toBeGreaterThan(0);
  expect(r.memquotaPerSec).toBeGreaterThan(0);
  expect(r.redisquotaPerSec).toBeGreaterThan(0);
  expect(formatMixerResults(r)).toContain("| client cache hit");
  expect(formatMixerResults(r)).toContain("| paced at 300/s");
}, 60_000);
