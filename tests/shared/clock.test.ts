/** sleep(): wakes when the clock reaches the time, or at once when its signal aborts. */
import { expect, test } from "bun:test";
import { createManualClock, sleep } from "../../mod/shared/clock.ts";

test("sleep() resolves when the clock passes the time, or when the signal aborts first", async () => {
  const clock = createManualClock();
  let woke = false;
  const p = sleep(clock, 1_000).then(() => (woke = true));
  clock.advance(999);
  await Promise.resolve();
  expect(woke).toBe(false);
  clock.advance(1);
  await p;
  expect(woke).toBe(true);

  const stop = new AbortController();
  const q = sleep(clock, 60_000, stop.signal);
  stop.abort();
  await q; // would hang without the abort
  await sleep(clock, 60_000, stop.signal); // already aborted: at once
});
