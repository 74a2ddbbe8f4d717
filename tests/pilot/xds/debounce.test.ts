/**
 * The debouncer, and pilot's pushes over it: the change sets of the snapshots a burst coalesces
 * merge into the one request the push carries, and registry changes make it full.
 */
import { describe, expect, test } from "bun:test";
import { createConfigStore } from "../../../mod/galley/store.ts";
import { createDebouncer, debouncePushes } from "../../../mod/pilot/xds/debounce.ts";
import { isRoutingOnly, type PushRequest } from "../../../mod/pilot/xds/push_request.ts";
import { createManualClock } from "../../../mod/shared/clock.ts";
import { createLogger } from "../../../mod/shared/logger.ts";

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

  test("take() returns what is pending and forgets it without firing", () => {
    const { clock, fired, d } = setup();
    d.trigger("a");
    d.trigger("b");
    expect(d.take()).toEqual(["a", "b"]);
    expect(clock.pending()).toBe(0);
    d.trigger("c");
    clock.advance(100);
    expect(fired).toEqual([{ reasons: ["c"], firstAt: 1000, at: 1100 }]);
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

const VS = (name: string, weight: number) =>
  `apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: { name: ${name}, namespace: app }
spec:
  hosts: [web]
  http:
  - route:
    - { destination: { host: web, subset: a }, weight: ${weight} }
    - { destination: { host: web, subset: b }, weight: ${100 - weight} }
`;
const DR = `apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: { name: web, namespace: app }
spec:
  host: web
  subsets: [{ name: a, labels: { v: a } }, { name: b, labels: { v: b } }]
`;

describe("debouncePushes()", () => {
  /** A registry holding nothing that says it changed when told to. */
  function registry(name: string) {
    const listeners = new Set<() => void>();
    return {
      name,
      watch(l: () => void) {
        listeners.add(l);
        return () => listeners.delete(l);
      },
      changed: () => listeners.forEach((l) => l()),
    };
  }

  function setup() {
    const clock = createManualClock(1000);
    const store = createConfigStore({ logger: createLogger({ write: () => {} }) });
    const files = new Map<string, string>();
    const write = (origin: string, content: string | undefined) => {
      if (content === undefined) files.delete(origin);
      else files.set(origin, content);
      store.sink("test").replace([...files].map(([o, c]) => ({ origin: o, content: c })));
    };
    const reg = registry("vms");
    const pushes: Array<{ request: PushRequest; firstAt: number; at: number }> = [];
    const d = debouncePushes({
      clock,
      quietMs: 100,
      maxMs: 1000,
      store,
      registries: [reg],
      push: (request, firstAt) => pushes.push({ request, firstAt, at: clock.now() }),
    });
    return { clock, write, reg, pushes, d };
  }
  const kinds = (r: PushRequest) => Object.fromEntries(r.configs);

  test("a burst of snapshots is one push whose change set is the union of theirs, with each key's kind", () => {
    const { clock, write, pushes } = setup();
    write("vs.yaml", VS("web", 90));
    clock.advance(50);
    write("dr.yaml", DR);
    clock.advance(50);
    write("vs.yaml", VS("web", 80));
    write("old.yaml", VS("old", 50));
    write("old.yaml", undefined);
    clock.advance(100);
    expect(pushes).toHaveLength(1);
    expect(pushes[0]!.firstAt).toBe(1000);
    expect(pushes[0]!.request.full).toBe(false);
    expect(pushes[0]!.request.reasons).toEqual(["config"]);
    expect(kinds(pushes[0]!.request)).toEqual({
      "networking.istio.io/VirtualService/app/web": "networking.istio.io/VirtualService",
      "networking.istio.io/DestinationRule/app/web": "networking.istio.io/DestinationRule",
      // Added and removed within the burst: named, with the kind it had.
      "networking.istio.io/VirtualService/app/old": "networking.istio.io/VirtualService",
    });
    expect(isRoutingOnly(pushes[0]!.request)).toBe(false);
  });

  test("a VirtualService changed A -> B -> A within a burst is named: routing-only, never missed", () => {
    const { clock, write, pushes } = setup();
    write("dr.yaml", DR);
    write("vs.yaml", VS("web", 90));
    clock.advance(200);
    write("vs.yaml", VS("web", 80));
    write("vs.yaml", VS("web", 90));
    clock.advance(200);
    expect(pushes).toHaveLength(2);
    expect(kinds(pushes[1]!.request)).toEqual({
      "networking.istio.io/VirtualService/app/web": "networking.istio.io/VirtualService",
    });
    expect(isRoutingOnly(pushes[1]!.request)).toBe(true);
  });

  test("a registry change makes the merged request full", () => {
    const { clock, write, reg, pushes } = setup();
    write("vs.yaml", VS("web", 90));
    reg.changed();
    clock.advance(100);
    expect(pushes).toHaveLength(1);
    expect(pushes[0]!.request.full).toBe(true);
    expect(pushes[0]!.request.reasons).toEqual(["config", "registry:vms"]);
    expect(pushes[0]!.request.configs.size).toBe(1);
    expect(isRoutingOnly(pushes[0]!.request)).toBe(false);
  });

  test("pushNow() pushes at once, full, with what was pending merged in; stop() unsubscribes", () => {
    const { clock, write, reg, pushes, d } = setup();
    write("vs.yaml", VS("web", 90));
    clock.advance(40);
    d.pushNow("config synced");
    expect(pushes).toEqual([{
      request: {
        configs: new Map([[
          "networking.istio.io/VirtualService/app/web",
          "networking.istio.io/VirtualService",
        ]]),
        full: true,
        reasons: ["config", "config synced"],
      },
      firstAt: 1040,
      at: 1040,
    }]);
    expect(clock.pending()).toBe(0);
    d.stop();
    write("vs.yaml", VS("web", 80));
    reg.changed();
    clock.advance(5000);
    expect(pushes).toHaveLength(1);
  });
});
