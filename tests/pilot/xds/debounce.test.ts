import { describe, expect, test } from "bun:test";
import { createDebouncer } from "../../../mod/pilot/xds/debounce.ts";
import { createManualClock } from "../../../mod/shared/clock.ts";

describe("createDebouncer()", () => {
  function setup() {
    const clock = createManualClock(1000);
    const fired: Array<{ reasons: string[]; firstAt: number; at: number }> = [];
    const d = createDebouncer<string>({
      clock,
      quietMs: 100,
      maxMs: 1000,
      fire: (reasons, firstAt) => fired.push({ reasons, firstAt, at: clock.now() }),
    });
    return { clock, fired, d };
  }

  test("fires once after a quiet period, with every reason gathered", () => {
    const { clock, fired, d } = setup();
    d.trigger("a");
    clock.advance(50);
    d.trigger("b");
    clock.advance(99);
    expect(fired).toHaveLength(0);
    clock.advance(1);
    expect(fired).toEqual([{ reasons: ["a", "b"], firstAt: 1000, at: 1150 }]);
  });

  test("never waits longer than the maximum while changes keep coming", () => {
    const { clock, fired, d } = setup();
    for (let i = 0; i < 30; i++) {
      d.trigger(String(i));
      clock.advance(60);
    }
    expect(fired[0]!.at).toBe(2000);
    expect(fired[0]!.reasons).toHaveLength(17);
  });

  test("stop() drops what is pending", () => {
    const { clock, fired, d } = setup();
    d.trigger("a");
    d.stop();
    clock.advance(5000);
    expect(fired).toHaveLength(0);
    expect(clock.pending()).toBe(0);
  });
});
