/**
 * /debug/simulate: the same answers as `meshd simulate`'s fresh translation, over the listeners
 * and routes pilot serves (its per-key translation, reused); and /debug/endpointz.
 */
import { describe, expect, test } from "bun:test";
import { createConfigStore } from "../../../mod/galley/store.ts";
import { endpointzHandler } from "../../../mod/pilot/endpointz.ts";
import { createPushContext } from "../../../mod/pilot/model/push_context.ts";
import { proxyOfNodeId, simulateDebugHandler } from "../../../mod/pilot/simulate/debug.ts";
import { simulate } from "../../../mod/pilot/simulate/simulate.ts";
import { createPilotProvider } from "../../../mod/pilot/xds/generator.ts";
import { createLogger } from "../../../mod/shared/logger.ts";
import { sampleOrigins } from "../../console/_fixture.ts";

const quiet = createLogger({ write: () => {} });

function provider() {
  const store = createConfigStore({ logger: quiet });
  store.sink("dir").replace(sampleOrigins());
  return createPilotProvider({ initial: createPushContext({ config: store.snapshot() }), logger: quiet });
}

async function ask(h: ReturnType<typeof simulateDebugHandler>, q: Record<string, string>) {
  const res = await h.handle(new Request(`http://x/debug/simulate?${new URLSearchParams(q)}`));
  return { status: res.status, body: (await res.json()) as Record<string, unknown> };
}

describe("/debug/simulate", () => {
  const id = "sidecar~10.0.0.9~productpage-v1.bookinfo~bookinfo.svc.cluster.local";
  const cases: Record<string, string>[] = [
    { host: "reviews", port: "9080", path: "/" },
    { host: "ratings.bookinfo.svc.cluster.local", port: "9080", path: "/ratings/1" },
    { host: "details", port: "9080", path: "/", method: "POST" },
    { host: "nothing.example", port: "1234", path: "/" },
  ];

  test("answers as a fresh translation does, for each request, from the served set", async () => {
    const p = provider();
    const h = simulateDebugHandler(p);
    for (const c of cases) {
      const { status, body } = await ask(h, { proxyID: id, ...c });
      expect(status).toBe(200);
      const fresh = simulate(p.push(), proxyOfNodeId(p.push(), id), {
        host: c.host!,
        port: Number(c.port),
        path: c.path!,
        method: c.method ?? "GET",
      });
      expect({ ...body, proxy: undefined, pushVersion: undefined }).toEqual({
        ...fresh,
        proxy: undefined,
        pushVersion: undefined,
      });
    }
    const reviews = await ask(h, { proxyID: id, ...cases[0]! });
    expect(String(reviews.body.cluster ?? JSON.stringify(reviews.body.weightedClusters))).toContain(
      "outbound|9080|",
    );
  });

  test("reuses the served translation: the set is the provider's, decoded once", async () => {
    const p = provider();
    let served = 0;
    const h = simulateDebugHandler({
      push: () => p.push(),
      servedOf: (proxy) => {
        served++;
        return p.servedOf(proxy);
      },
    });
    await ask(h, { proxyID: id, ...cases[0]! });
    await ask(h, { proxyID: id, ...cases[1]! });
    expect(served).toBe(2);
    // Both came from the one set pilot keeps for the proxy's key this push.
    const proxy = proxyOfNodeId(p.push(), id);
    expect(p.servedOf(proxy)).toBe(p.servedOf(proxyOfNodeId(p.push(), id)));
  });

  test("names the parameter that is missing or wrong", async () => {
    const h = simulateDebugHandler(provider());
    expect(await ask(h, { host: "reviews", port: "9080" })).toMatchObject({
      status: 400,
      body: { error: expect.stringContaining("proxyID") },
    });
    expect(await ask(h, { proxyID: id, host: "reviews", port: "x" })).toMatchObject({
      status: 400,
      body: { error: expect.stringContaining("port") },
    });
    expect(await ask(h, { proxyID: "nonsense", host: "reviews", port: "9080" })).toMatchObject({
      status: 400,
      body: { error: expect.stringContaining("proxyID") },
    });
  });
});

describe("/debug/endpointz", () => {
  test("lists a service's endpoints from every registry, with their source", async () => {
    const store = createConfigStore({ logger: quiet });
    store.sink("dir").replace(sampleOrigins());
    const vm = {
      key: "networking.istio.io/WorkloadEntry/bookinfo/reviews-vms-198.18.7.9",
      namespace: "bookinfo",
      spec: { address: "198.18.7.9", labels: { app: "reviews", version: "v2" } },
      healthy: false,
    };
    const push = createPushContext({
      config: store.snapshot(),
      registries: [{ services: [], endpoints: [], workloads: [vm] }],
    });
    const h = endpointzHandler(() => push);
    const res = await h.handle(
      new Request("http://x/debug/endpointz?host=reviews.bookinfo.svc.cluster.local"),
    );
    const body = (await res.json()) as {
      endpoints: Array<{ address: string; healthy: boolean; source: string }>;
    };
    expect(body.endpoints.map((e) => e.address).sort()).toEqual(
      ["192.0.2.12", "192.0.2.13", "192.0.2.14", "198.18.7.9"].sort(),
    );
    expect(body.endpoints.find((e) => e.address === "198.18.7.9")).toMatchObject({
      healthy: false,
      source: vm.key,
    });
    const missing = await h.handle(new Request("http://x/debug/endpointz?host=nope"));
    expect(missing.status).toBe(404);
  });
});
