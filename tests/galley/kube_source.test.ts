/**
 * Istio's custom resources from the Kubernetes API as galley's config, against the test API
 * server (tests/registry/_kube_server.ts): objects arrive, updates and deletes are seen, an
 * invalid object is rejected alone and named, statuses are written back in Istio's shape by the
 * leader only and not rewritten when unchanged, a 410 Gone leads to a relist, and a server that
 * goes away leaves the last good config in force.
 */
import { afterAll, beforeAll, describe, expect, setDefaultTimeout, test } from "bun:test";
import { createKubeConfig, type KubeConfig } from "../../mod/galley/kube_config.ts";
import { createConfigStore, type WritableConfigStore } from "../../mod/galley/store.ts";
import { systemClock } from "../../mod/shared/clock.ts";
import { eventually } from "../e2e/_meshd.ts";
import { type KubeServer, startKubeServer } from "../registry/_kube_server.ts";
import { quiet } from "./_harness.ts";

setDefaultTimeout(30_000);

const VS = "/apis/networking.istio.io/v1/namespaces/bookinfo/virtualservices";
const SE = "/apis/networking.istio.io/v1/namespaces/bookinfo/serviceentries";

/** A VirtualService routing `host` to itself (the bookinfo sample's shape). */
function virtualService(name: string, host: string, timeout = "5s"): Parameters<KubeServer["put"]>[1] {
  return {
    apiVersion: "networking.istio.io/v1",
    kind: "VirtualService",
    metadata: { name, namespace: "bookinfo" },
    spec: { hosts: [host], http: [{ timeout, route: [{ destination: { host } }] }] },
  };
}

function serviceEntry(name: string, host: string): Parameters<KubeServer["put"]>[1] {
  return {
    apiVersion: "networking.istio.io/v1",
    kind: "ServiceEntry",
    metadata: { name, namespace: "bookinfo" },
    spec: {
      hosts: [host],
      location: "MESH_INTERNAL",
      resolution: "STATIC",
      ports: [{ number: 9080, name: "http", protocol: "HTTP" }],
      endpoints: [{ address: "10.0.0.1" }],
    },
  };
}

describe("Kubernetes config source", () => {
  let server: KubeServer;
  let store: WritableConfigStore;
  let replicas: KubeConfig[] = [];
  const names = () =>
    [...store.snapshot().resources.values()].map((r) => `${r.kind}/${r.metadata.name}`).sort();
  const timeoutOf = (name: string) =>
    store.snapshot().get<{ http: { timeout: string }[] }>(
      "networking.istio.io",
      "VirtualService",
      "bookinfo",
      name,
    )
      ?.spec.http[0]?.timeout;
  const statusOf = (path: string) =>
    server.get(path)?.status as
      | {
        observedGeneration?: number;
        validationMessages?: { type: { code: string; name: string }; level: string; description: string }[];
      }
      | undefined;
  const statusWrites = (name: string) =>
    server.requests.filter((r) => r.method === "PATCH" && r.path === `${VS}/${name}/status`).length;

  /** A replica reading into `into` (its own galley store). */
  const replica = (into: WritableConfigStore) => {
    const r = createKubeConfig({
      url: "kubernetes://?lease-namespace=meshd",
      store: into,
      logger: quiet,
      clock: systemClock,
      connection: { server: server.url, token: server.token, origin: "test" },
      lease: { durationMs: 1_500, renewDeadlineMs: 1_000, retryPeriodMs: 100 },
      status: { debounceMs: 20, resyncMs: 150 },
    });
    replicas.push(r);
    return r;
  };

  beforeAll(async () => {
    server = await startKubeServer({ bookmarkIntervalMs: 500 });
    server.put(SE, serviceEntry("reviews", "reviews.bookinfo.svc.cluster.local"));
    server.put(VS, virtualService("reviews", "reviews.bookinfo.svc.cluster.local"));
    // Routes to a host nothing declares: valid, but analysis finds it (IST0101).
    server.put(VS, virtualService("ratings", "ratings.bookinfo.svc.cluster.local"));
    // Invalid: a timeout that is not a duration.
    server.put(VS, virtualService("broken", "reviews.bookinfo.svc.cluster.local", "soon"));
    store = createConfigStore({ logger: quiet });
    const first = replica(store);
    await first.start(store.sink(first.name));
  });
  afterAll(async () => {
    await Promise.all(replicas.map((r) => r.stop()));
    await server.close();
  });

  test("lists every object at the preferred version; an invalid one is rejected alone, named", async () => {
    expect(await eventually(() => replicas[0]!.synced())).toBe(true);
    expect(names()).toEqual(["ServiceEntry/reviews", "VirtualService/ratings", "VirtualService/reviews"]);
    const broken = store.status().resources.find((r) => r.resource === "VirtualService bookinfo/broken");
    expect(broken?.state).toBe("rejected");
    expect(broken?.origin).toBe(`${VS}/broken`);
    expect(broken?.errors.join("\n")).toContain("VirtualService bookinfo/broken");
    expect(broken?.errors.join("\n")).toContain("timeout");
    // Every Istio kind is watched, at the first version meshd accepts.
    const kinds = replicas[0]!.status().kinds;
    expect(kinds.find((k) => k.kind === "VirtualService")?.version).toBe("v1");
    expect(kinds.find((k) => k.kind === "handler")?.version).toBe("v1alpha2");
    expect(kinds.every((k) => k.state === "watching" && k.synced)).toBe(true);
  });

  test("writes validationMessages and observedGeneration in Istio's shape; a clean object gets none", async () => {
    expect(await eventually(() => statusOf(`${VS}/broken`)?.validationMessages !== undefined)).toBe(true);
    const broken = statusOf(`${VS}/broken`)!;
    expect(broken.observedGeneration).toBe(1);
    expect(broken.validationMessages![0]!.type).toEqual({ code: "IST0106", name: "SchemaValidationError" });
    expect(broken.validationMessages![0]!.level).toBe("ERROR");
    expect(broken.validationMessages![0]!.description).toContain("timeout");
    expect(await eventually(() => statusOf(`${VS}/ratings`)?.validationMessages !== undefined)).toBe(true);
    const ratings = statusOf(`${VS}/ratings`)!.validationMessages!;
    expect(ratings.map((m) => [m.type.code, m.type.name, m.level])).toContainEqual([
      "IST0101",
      "ReferencedResourceNotFound",
      "ERROR",
    ]);
    expect(ratings.find((m) => m.type.code === "IST0101")!.description).toContain(
      "ratings.bookinfo.svc.cluster.local",
    );
    expect(statusOf(`${VS}/reviews`)).toBeUndefined();
    expect(statusWrites("reviews")).toBe(0);
  });

  test("does not write a status again while it is unchanged", async () => {
    const before = statusWrites("broken") + statusWrites("ratings");
    expect(before).toBeGreaterThan(0);
    // Several resync passes (150 ms apart) and debounced passes from bookmarks.
    await Bun.sleep(1_000);
    expect(statusWrites("broken") + statusWrites("ratings")).toBe(before);
  });

  /** Changes a VirtualService's timeout as `kubectl patch` would (its status stays). */
  const setTimeout_ = (name: string, timeout: string) =>
    server.patch(`${VS}/${name}`, virtualService(name, `${name}.bookinfo.svc.cluster.local`, timeout));

  test("an update and a delete are seen; fixing an object clears its messages", async () => {
    setTimeout_("reviews", "7s");
    expect(await eventually(() => timeoutOf("reviews") === "7s")).toBe(true);
    server.remove(`${VS}/ratings`);
    expect(await eventually(() => !names().includes("VirtualService/ratings"))).toBe(true);
    // Fixed: a valid timeout, under a host of its own so no other VirtualService claims it.
    server.patch(`${VS}/broken`, {
      spec: {
        hosts: ["broken.bookinfo.svc.cluster.local"],
        http: [{ timeout: "2s", route: [{ destination: { host: "reviews.bookinfo.svc.cluster.local" } }] }],
      },
    });
    expect(await eventually(() => timeoutOf("broken") === "2s")).toBe(true);
    expect(await eventually(() => statusOf(`${VS}/broken`)?.validationMessages === undefined)).toBe(true);
    expect(statusOf(`${VS}/broken`)?.observedGeneration).toBe(2);
  });

  test("a second replica reads the same config but only the Lease holder writes status", async () => {
    const own = createConfigStore({ logger: quiet });
    const second = replica(own);
    await second.start(own.sink(second.name));
    expect(await eventually(() => second.synced())).toBe(true);
    expect([...own.snapshot().resources.keys()].sort()).toEqual(
      [...store.snapshot().resources.keys()].sort(),
    );
    server.put(VS, virtualService("details", "details.bookinfo.svc.cluster.local"));
    expect(await eventually(() => statusOf(`${VS}/details`)?.validationMessages !== undefined)).toBe(true);
    const [a, b] = [replicas[0]!, second];
    expect([a.election.leading(), b.election.leading()].filter(Boolean).length).toBe(1);
    const follower = a.election.leading() ? b : a;
    expect(follower.writer()!.status().writes).toBe(0);
    // The leader leaves: the other takes the Lease and writes from then on.
    const leader = a.election.leading() ? a : b;
    await leader.stop();
    replicas = replicas.filter((r) => r !== leader);
    if (leader === a) store = own;
    expect(await eventually(() => follower.election.leading(), 5_000)).toBe(true);
    server.put(VS, virtualService("stars", "stars.bookinfo.svc.cluster.local"));
    expect(await eventually(() => statusOf(`${VS}/stars`)?.validationMessages !== undefined)).toBe(true);
    expect(follower.writer()!.status().writes).toBeGreaterThan(0);
  });

  test("a watch answered 410 Gone lists again and catches up on what it missed", async () => {
    const src = replicas[0]!;
    const lists = () => src.status().kinds.find((k) => k.kind === "VirtualService")!.lists;
    const before = lists();
    await server.down();
    // Changed while the watch was away, then the history it would resume from is compacted.
    setTimeout_("reviews", "9s");
    server.remove(`${VS}/details`);
    server.compact();
    await server.up();
    expect(await eventually(() => timeoutOf("reviews") === "9s")).toBe(true);
    expect(names()).not.toContain("VirtualService/details");
    expect(lists()).toBeGreaterThan(before);
  });

  test("while the API server is down or failing, the last good config stays and the outage is reported", async () => {
    const src = replicas[0]!;
    const version = store.snapshot().version;
    const held = names();
    await server.down();
    expect(await eventually(() => src.status().kinds.some((k) => k.stale), 5_000)).toBe(true);
    expect(names()).toEqual(held);
    expect(store.snapshot().version).toBe(version);
    const warnings = store.status().sources.find((s) => s.source === src.name)?.warnings ?? [];
    expect(warnings.join("\n")).toContain("serving the last config read");
    await server.up();
    server.fail(5, 500);
    setTimeout_("reviews", "11s");
    expect(await eventually(() => timeoutOf("reviews") === "11s", 15_000)).toBe(true);
    expect(names()).toEqual(held);
  });
});
