import { describe, expect, test } from "bun:test";
import { createRefusalLog, type RefusedRegistration } from "../../mod/pilot/refusal_log.ts";
import { createManualClock } from "../../mod/shared/clock.ts";

const refusal = (n: number, reason = "identity is not in the group's namespace"): RefusedRegistration => ({
  node: `sidecar~10.0.0.${n}~vm.vms~vms.svc.cluster.local`,
  group: "vms/ratings",
  workload: `ratings-10.0.0.${n}`,
  address: `10.0.0.${n}`,
  code: "PERMISSION_DENIED",
  reason,
});

describe("createRefusalLog()", () => {
  test("keeps one entry per node, the last refusal, with its time and open connections", () => {
    const clock = createManualClock(1000);
    const log = createRefusalLog({ now: () => clock.now() });
    log.record(refusal(1), "c1");
    clock.advance(500);
    log.record(refusal(1, "no such WorkloadGroup"), "c2");
    expect(log.list()).toEqual([{ ...refusal(1, "no such WorkloadGroup"), at: 1500, openConnections: 2 }]);
    log.closed("c1");
    log.closed("c2");
    log.closed("unknown");
    expect(log.list()[0]!.openConnections).toBe(0);
  });

  test("an entry leaves keepMs after its last connection closed, never while one is open", () => {
    const clock = createManualClock(0);
    const log = createRefusalLog({ now: () => clock.now(), keepMs: 1000 });
    log.record(refusal(1), "c1");
    log.record(refusal(2));
    clock.advance(5000);
    expect(log.list().map((e) => e.address)).toEqual(["10.0.0.1"]);
    log.closed("c1");
    clock.advance(1000);
    expect(log.list().map((e) => e.address)).toEqual(["10.0.0.1"]);
    clock.advance(1);
    expect(log.list()).toEqual([]);
  });

  test("holds at most max entries, dropping the least recently refused", () => {
    const clock = createManualClock(0);
    const log = createRefusalLog({ now: () => clock.now(), max: 3 });
    for (let n = 1; n <= 4; n++) {
      log.record(refusal(n));
      clock.advance(1);
    }
    expect(log.list().map((e) => e.address)).toEqual(["10.0.0.2", "10.0.0.3", "10.0.0.4"]);
    // Refused again: it becomes the most recent, so the next one pushes out another.
    log.record(refusal(2));
    log.record(refusal(5));
    expect(log.list().map((e) => e.address)).toEqual(["10.0.0.2", "10.0.0.4", "10.0.0.5"]);
    for (let n = 10; n < 1010; n++) log.record(refusal(n));
    expect(log.list().length).toBe(3);
  });

  test("forget() removes a node that registered", () => {
    const clock = createManualClock(0);
    const log = createRefusalLog({ now: () => clock.now() });
    log.record(refusal(1), "c1");
    log.forget(refusal(1).node);
    log.closed("c1");
    expect(log.list()).toEqual([]);
  });
});
