/**
 * One contract, every ConfigSource: initial state, create, modify, delete, and silence after stop.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import type { ConfigSource } from "../../mod/runtime/config_source.ts";
import { type ConfigStore, createConfigStore } from "../../mod/galley/store.ts";
import { eventually } from "../e2e/_meshd.ts";
import { dirHarness, quiet, type SourceHarness, xdsHarness } from "./_harness.ts";
import { etcdHarness } from "../store/_source_harness.ts";

const vs = (name: string, host: string, timeout = "5s") =>
  `apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: { name: ${name}, namespace: bookinfo }
spec:
  hosts: [${host}]
  http:
  - timeout: ${timeout}
    route:
    - destination: { host: ${host} }
`;

const harnesses: Array<[string, () => Promise<SourceHarness> | SourceHarness]> = [
  ["directory", dirHarness],
  ["xds", xdsHarness],
  ["etcd", etcdHarness],
];

for (const [name, make] of harnesses) {
  describe(`ConfigSource contract: ${name}`, () => {
    let h: SourceHarness;
    let source: ConfigSource;
    let store: ConfigStore;
    const names = () => [...store.snapshot().resources.values()].map((r) => r.metadata.name).sort();
    const timeoutOf = (n: string) =>
      store.snapshot().get<{ http: { timeout: string }[] }>(
        "networking.istio.io",
        "VirtualService",
        "bookinfo",
        n,
      )?.spec.http[0]
        ?.timeout;

    beforeAll(async () => {
      h = await make();
      await h.put("first.yaml", vs("first", "first.example.com"));
      const s = createConfigStore({ logger: quiet });
      store = s;
      source = h.source();
      await source.start(s.sink(source.name));
    });
    afterAll(async () => {
      await source.stop();
      await h.close();
    });

    test("delivers the initial state and reports synced", async () => {
      expect(await eventually(() => source.synced())).toBe(true);
      expect(names()).toEqual(["first"]);
    });

    test("sees a new resource", async () => {
      await h.put("sub/second.yaml", vs("second", "second.example.com"));
      expect(await eventually(() => names().includes("second"))).toBe(true);
    });

    test("sees a modified resource", async () => {
      await h.put("first.yaml", vs("first", "first.example.com", "7s"));
      expect(await eventually(() => timeoutOf("first") === "7s")).toBe(true);
    });

    test("sees a removed resource", async () => {
      await h.remove("sub/second.yaml");
      expect(await eventually(() => !names().includes("second"))).toBe(true);
      expect(names()).toEqual(["first"]);
    });

    test("delivers nothing after stop", async () => {
      await source.stop();
      const version = store.snapshot().version;
      await h.put("third.yaml", vs("third", "third.example.com"));
      await Bun.sleep(300);
      expect(store.snapshot().version).toBe(version);
    });
  });
}

for (const [name, make] of harnesses) {
  describe(`ConfigSource contract after a refused change: ${name}`, () => {
    test("the change after a refused one is a full listing, so nothing kept by the refusal lingers", async () => {
      const h = await make();
      const store = createConfigStore({ logger: quiet, refuseEmpty: true });
      const source = h.source();
      const names = () => [...store.snapshot().resources.values()].map((r) => r.metadata.name).sort();
      try {
        await h.put("a.yaml", vs("a", "a.example.com"));
        await h.put("b.yaml", vs("b", "b.example.com"));
        await source.start(store.sink(source.name));
        expect(await eventually(() => names().join() === "a,b")).toBe(true);
        await h.remove("a.yaml");
        await h.remove("b.yaml");
        expect(await eventually(() => store.status().sources[0]?.state === "refused")).toBe(true);
        expect(store.status().sources[0]!.errors[0]).toStartWith("emptied: kept ");
        expect(names().length).toBeGreaterThan(0);
        await h.put("c.yaml", vs("c", "c.example.com"));
        expect(await eventually(() => names().join() === "c")).toBe(true);
        expect(store.status().sources[0]!.state).toBe("ok");
      } finally {
        await source.stop();
        await h.close();
      }
    });
  });
}
