import { describe, expect, test } from "bun:test";
import { type ConfigChange, createConfigStore } from "../../mod/galley/store.ts";
import { createLogger } from "../../mod/shared/logger.ts";
import { createMetricsRegistry } from "../../mod/shared/metrics.ts";

const quiet = createLogger({ write: () => {} });

const se = (name: string, host: string, port = 9080) => `
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: { name: ${name}, namespace: bookinfo }
spec:
  hosts: [${host}]
  location: MESH_INTERNAL
  resolution: STATIC
  ports: [{ number: ${port}, name: http, protocol: HTTP }]
  endpoints: [{ address: 192.0.2.10 }]
`;

function setup() {
  const metrics = createMetricsRegistry();
  const store = createConfigStore({ logger: quiet, metrics });
  const changes: ConfigChange[] = [];
  store.subscribe((c) => changes.push(c));
  return { store, sink: store.sink("test"), changes, metrics };
}

const KEY = "networking.istio.io/ServiceEntry/bookinfo/";

describe("createConfigStore()", () => {
  test("publishes accepted resources as a new snapshot with the change set", () => {
    const { store, sink, changes } = setup();
    sink.replace([{
      origin: "a.yaml",
      content: se("reviews", "reviews.bookinfo.svc.cluster.local") + "---" +
        se("ratings", "ratings.bookinfo.svc.cluster.local"),
    }]);
    expect(store.snapshot().version).toBe(1);
    expect(changes).toHaveLength(1);
    expect([...changes[0]!.added].sort()).toEqual([KEY + "ratings", KEY + "reviews"]);
    expect(store.snapshot().list("networking.istio.io", "ServiceEntry").map((r) => r.metadata.name)).toEqual([
      "ratings",
      "reviews",
    ]);
    expect(store.snapshot().get("networking.istio.io", "ServiceEntry", "bookinfo", "reviews")?.source.line)
      .toBe(2);
  });

  test("re-reading an unchanged origin publishes nothing and keeps resource identity", () => {
    const { store, sink, changes } = setup();
    sink.replace([{ origin: "a.yaml", content: se("reviews", "reviews.example.com") }]);
    const before = store.snapshot();
    sink.update([{ origin: "a.yaml", content: se("reviews", "reviews.example.com") }]);
    expect(store.snapshot()).toBe(before);
    expect(changes).toHaveLength(1);
    sink.update([{
      origin: "a.yaml",
      content: se("reviews", "reviews.example.com", 9081) + "---" + se("x", "x.example.com"),
    }]);
    expect(changes[1]!.updated).toEqual([KEY + "reviews"]);
    expect(changes[1]!.added).toEqual([KEY + "x"]);
  });

  test("a resource that turns invalid keeps its last accepted version, and its status says why", async () => {
    const { store, sink, changes, metrics } = setup();
    sink.replace([{ origin: "a.yaml", content: se("reviews", "reviews.example.com") }]);
    sink.update([{ origin: "a.yaml", content: se("reviews", "reviews.example.com", 70000) }]);
    expect(changes).toHaveLength(1);
    const spec = store.snapshot().get<{ ports: { number: number }[] }>(
      "networking.istio.io",
      "ServiceEntry",
      "bookinfo",
      "reviews",
    )!.spec;
    expect(spec.ports[0]!.number).toBe(9080);
    const st = store.status().resources.find((r) => r.key === KEY + "reviews")!;
    expect(st.state).toBe("rejected");
    expect(st.servingPrevious).toBe(true);
    expect(st.errors[0]).toMatch(
      /^a\.yaml:9:\d+: ServiceEntry bookinfo\/reviews: spec\.ports\[0\]\.number: /,
    );
    expect(store.status().origins[0]!.state).toBe("partial");
    expect(await metrics.getSingleMetricAsString("galley_validation_failed_total")).toContain(
      'kind="ServiceEntry"} 1',
    );
  });

  test("a file that no longer parses keeps every resource it had", () => {
    const { store, sink } = setup();
    sink.replace([{
      origin: "a.yaml",
      content: se("reviews", "r.example.com") + "---" + se("ratings", "q.example.com"),
    }]);
    sink.update([{ origin: "a.yaml", content: "kind: ServiceEntry\nspec: [unclosed\n" }]);
    expect(store.snapshot().resources.size).toBe(2);
    const o = store.status().origins.find((x) => x.origin === "a.yaml")!;
    expect(o.state).toBe("rejected");
    expect(o.errors[0]).toMatch(/^a\.yaml:\d+:\d+: /);
  });

  test("an unreadable origin keeps its resources", () => {
    const { store, sink } = setup();
    sink.replace([{ origin: "a.yaml", content: se("reviews", "r.example.com") }]);
    sink.update([{ origin: "a.yaml", error: "file is 104857600 bytes; the limit is 8388608 bytes" }]);
    expect(store.snapshot().resources.size).toBe(1);
    expect(store.status().origins[0]!.errors[0]).toContain("the limit is 8388608 bytes");
  });

  test("a resource removed from a file that parses is removed; a deleted origin removes all", () => {
    const { store, sink, changes } = setup();
    sink.replace([
      { origin: "a.yaml", content: se("reviews", "r.example.com") + "---" + se("ratings", "q.example.com") },
      { origin: "b.yaml", content: se("details", "d.example.com") },
    ]);
    sink.update([{ origin: "a.yaml", content: se("reviews", "r.example.com") }]);
    expect(changes.at(-1)!.removed).toEqual([KEY + "ratings"]);
    sink.update([{ origin: "b.yaml", deleted: true }]);
    expect(changes.at(-1)!.removed).toEqual([KEY + "details"]);
    expect([...store.snapshot().resources.keys()]).toEqual([KEY + "reviews"]);
  });

  test("the same resource in two files: the first stays, the second is rejected naming both places", () => {
    const { store, sink } = setup();
    sink.replace([{ origin: "a.yaml", content: se("reviews", "r.example.com") }]);
    sink.update([{ origin: "b.yaml", content: "\n\n" + se("reviews", "other.example.com") }]);
    const r = store.snapshot().get<{ hosts: string[] }>(
      "networking.istio.io",
      "ServiceEntry",
      "bookinfo",
      "reviews",
    )!;
    expect(r.spec.hosts).toEqual(["r.example.com"]);
    const st = store.status().resources.filter((x) => x.key === KEY + "reviews");
    const loser = st.find((x) => x.origin === "b.yaml")!;
    expect(loser.state).toBe("rejected");
    expect(loser.errors[0]).toBe("ServiceEntry bookinfo/reviews is already defined at a.yaml:2:1");
    // Once the first goes away, the second takes over.
    sink.update([{ origin: "a.yaml", deleted: true }]);
    expect(
      store.snapshot().get<{ hosts: string[] }>("networking.istio.io", "ServiceEntry", "bookinfo", "reviews")!
        .spec.hosts,
    )
      .toEqual(["other.example.com"]);
  });

  test("replace drops origins the source no longer lists", () => {
    const { store, sink } = setup();
    sink.replace([{ origin: "a.yaml", content: se("reviews", "r.example.com") }]);
    store.sink("other").replace([{ origin: "c.yaml", content: se("c", "c.example.com") }]);
    sink.replace([]);
    expect([...store.snapshot().resources.keys()]).toEqual([KEY + "c"]);
  });
});

describe("createConfigStore() bounds", () => {
  const many = (prefix: string, n: number) =>
    Array.from({ length: n }, (_, i) => se(`${prefix}-${i}`, `${prefix}-${i}.example.com`)).join("---");

  test("a change that would pass maxResources is refused whole; the last good snapshot and status say why", async () => {
    const metrics = createMetricsRegistry();
    const store = createConfigStore({ logger: quiet, metrics, maxResources: 10 });
    const sink = store.sink("dir");
    expect(sink.replace([{ origin: "a.yaml", content: many("a", 6) }])).toEqual({ applied: true });
    const before = store.snapshot();
    const verdict = sink.update([
      { origin: "a.yaml", content: many("a", 7) },
      { origin: "b.yaml", content: many("b", 4) },
    ]);
    expect(verdict.applied).toBe(false);
    expect(store.snapshot()).toBe(before);
    const st = store.status().sources.find((x) => x.source === "dir")!;
    expect(st.state).toBe("refused");
    expect(st.resources).toBe(6);
    expect(st.errors).toEqual([
      "this change would hold 11 resources across all sources, 1 over the limit of 10 (--config-max-resources); " +
      "keeping the last good config",
    ]);
    expect(await metrics.getSingleMetricAsString("galley_config_changes_refused_total")).toContain(
      'bound="resources"} 1',
    );
    // Nothing of the refused change was applied: not a.yaml's seventh resource, not b.yaml.
    expect(store.status().origins.map((o) => [o.origin, o.resources])).toEqual([["a.yaml", 6]]);
    // The next change that fits is applied, and the refusal is over.
    expect(
      sink.replace([{ origin: "a.yaml", content: many("a", 4) }, {
        origin: "b.yaml",
        content: many("b", 5),
      }]),
    )
      .toEqual({ applied: true });
    expect(store.snapshot().resources.size).toBe(9);
    expect(store.status().sources[0]!.state).toBe("ok");
  });

  test("the resource bound counts every source, and parsing stops once it is passed", () => {
    const store = createConfigStore({ logger: quiet, maxResources: 10 });
    store.sink("one").replace([{ origin: "a.yaml", content: many("a", 8) }]);
    const verdict = store.sink("two").replace([
      { origin: "b.yaml", content: many("b", 50) },
      { origin: "c.yaml", content: many("c", 50) },
    ]);
    expect(verdict).toEqual({
      applied: false,
      reason: "this change would hold at least 11 resources across all sources, 1 over the limit of 10 " +
        "(--config-max-resources); keeping the last good config",
    });
    expect(store.snapshot().resources.size).toBe(8);
  });

  test("a change that would pass maxTotalBytes is refused before it is parsed", () => {
    const store = createConfigStore({ logger: quiet, maxTotalBytes: 4096 });
    const sink = store.sink("dir");
    sink.replace([{ origin: "a.yaml", content: many("a", 2) }]);
    // Not YAML at all: had it been parsed, the origin would show a syntax error.
    const junk = "{".repeat(5000);
    const verdict = sink.update([{ origin: "b.yaml", content: junk }]);
    expect(verdict.applied).toBe(false);
    expect(!verdict.applied && verdict.reason).toMatch(
      /^this change would bring the config across all sources to 5\.\d KiB \(\d+ bytes\), 1\.\d KiB over the limit of 4 KiB \(--config-max-total-size\); keeping the last good config$/,
    );
    expect(store.status().origins.map((o) => o.origin)).toEqual(["a.yaml"]);
  });

  test("refuseEmpty keeps a source's last good config when all of it would go at once", () => {
    const store = createConfigStore({ logger: quiet, refuseEmpty: true });
    const sink = store.sink("dir");
    sink.replace([{ origin: "a.yaml", content: many("a", 2) }, { origin: "b.yaml", content: many("b", 1) }]);
    // One of two files going is fine.
    expect(sink.update([{ origin: "b.yaml", deleted: true }]).applied).toBe(true);
    const before = store.snapshot();
    expect(sink.update([{ origin: "a.yaml", deleted: true }])).toEqual({
      applied: false,
      reason: "emptied: kept 2 resources; pass --allow-empty-config to allow",
    });
    expect(sink.update([{ origin: "a.yaml", content: "" }]).applied).toBe(false);
    expect(sink.replace([]).applied).toBe(false);
    expect(store.snapshot()).toBe(before);
    expect(store.status().sources[0]!.errors).toEqual([
      "emptied: kept 2 resources; pass --allow-empty-config to allow",
    ]);
    // Other sources do not count: this one alone going empty is what is refused.
    store.sink("other").replace([{ origin: "o.yaml", content: many("o", 1) }]);
    expect(sink.replace([]).applied).toBe(false);
    // Without refuseEmpty, emptying is a change like any other.
    const open = createConfigStore({ logger: quiet });
    open.sink("dir").replace([{ origin: "a.yaml", content: many("a", 2) }]);
    expect(open.sink("dir").replace([]).applied).toBe(true);
    expect(open.snapshot().resources.size).toBe(0);
  });

  test("a source's reported problems show in its status until the next report", () => {
    const store = createConfigStore({ logger: quiet });
    const sink = store.sink("dir");
    sink.replace([{ origin: "a.yaml", content: many("a", 1) }]);
    sink.report({ withheld: "more than 10 files", warnings: ["skipped /x/loop"] });
    expect(store.status().sources).toEqual([{
      source: "dir",
      state: "refused",
      errors: ["more than 10 files"],
      warnings: ["skipped /x/loop"],
      resources: 1,
      bytes: Buffer.byteLength(many("a", 1)),
    }]);
    sink.report({ warnings: [] });
    expect(store.status().sources[0]!.state).toBe("ok");
  });
});
