import { afterEach, describe, expect, test } from "bun:test";
import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createConfigStore } from "../../mod/galley/store.ts";
import { createPushContext } from "../../mod/pilot/model/push_context.ts";
import type { PlatformRegistry } from "../../mod/pilot/registry/platform.ts";
import {
  createConsulRegistry,
  SERVICE_REQUEST_LIMIT,
  SHARED_WAIT_MS,
} from "../../mod/pilot/registry/consul.ts";
import { nextIndex, requestUrl } from "../../mod/pilot/registry/consul_client.ts";
import { formatDuration } from "../../mod/shared/duration.ts";
import { type ConsulHealthEntry, consulServiceView } from "../../mod/pilot/registry/consul_convert.ts";
import { parseConsulUrl } from "../../mod/pilot/registry/consul_url.ts";
import { createPlatformRegistries, parseRegistries } from "../../mod/pilot/registry/registries.ts";
import { buildEndpoints } from "../../mod/pilot/translate/mod.ts";
import { systemClock } from "../../mod/shared/clock.ts";
import { createLogger } from "../../mod/shared/logger.ts";
import { eventually } from "../e2e/_meshd.ts";
import { sidecar } from "../pilot/_push.ts";
import {
  type ConsulRegistration,
  type ConsulTestServer,
  DOCS_REDIS_REGISTRATION,
  startConsulServer,
} from "./_consul_server.ts";

const logLines: string[] = [];
const logger = createLogger({ level: "debug", format: "json", write: (l) => logLines.push(l) });

const open: Array<{ stop(): Promise<void> } | { close(): Promise<void> }> = [];
afterEach(async () => {
  for (const x of open.splice(0).reverse()) await ("stop" in x ? x.stop() : x.close());
});

async function server(opts: Parameters<typeof startConsulServer>[0] = {}): Promise<ConsulTestServer> {
  const s = await startConsulServer(opts);
  open.push(s);
  return s;
}

function registry(url: string): PlatformRegistry {
  const r = createConsulRegistry({ url: new URL(url), clock: systemClock, logger });
  open.push(r);
  return r;
}

const web = (node: string, address: string, extra: Partial<ConsulRegistration> = {}): ConsulRegistration => ({
  Node: node,
  Address: address,
  Service: { ID: `web-${node}`, Service: "web", Port: 8080, Tags: ["protocol=http", "version=v1"] },
  Checks: [{ CheckID: `service:web-${node}`, Status: "passing", ServiceID: `web-${node}` }],
  ...extra,
});

const addrs = (r: PlatformRegistry, host: string) =>
  r.state().endpoints.filter((e) => e.hostname === host).map((e) => `${e.address}:${e.port}`).sort();

const synced = (r: PlatformRegistry) => eventually(() => r.status().synced, 5_000);

describe("consul registry against the test Consul", () => {
  test("createConsulRegistry() reads the documentation's redis example into a service and its endpoint", async () => {
    const s = await server();
    s.register(DOCS_REDIS_REGISTRATION);
    const r = registry(s.url);
    expect(r.state().services).toEqual([]);
    expect(await synced(r)).toBe(true);
    const st = r.state();
    expect(st.services).toEqual([{
      hostname: "redis.service.consul",
      namespace: "default",
      ports: [{ name: "tcp-8000", number: 8000, protocol: "TCP" }],
      addresses: [],
      resolution: "STATIC",
      location: "MESH_INTERNAL",
      exportTo: ["*"],
      subjectAltNames: [],
      source: "consul:redis",
    }]);
    expect(st.endpoints).toEqual([{
      hostname: "redis.service.consul",
      namespace: "default",
      servicePort: { name: "tcp-8000", number: 8000, protocol: "TCP" },
      address: "10.1.10.12",
      port: 8000,
      labels: { primary: "", redis_version: "4.0" },
      locality: "dc1",
      weight: 10,
      healthy: true,
      tlsMode: "disabled",
      source: "consul:redis/foobar/redis",
    }]);
    expect(st.workloads).toEqual([]);
    const status = r.status();
    expect(status).toMatchObject({ kind: "consul", synced: true, stale: false, services: 1, endpoints: 1 });
    expect(status.address).toBe(`127.0.0.1:${s.port}`);
    expect(r.state()).toBe(st);
  });

  test("a registration is seen through the blocking query, and idle watchers send almost no requests", async () => {
    const s = await server();
    s.register(web("n1", "127.0.0.11"));
    const r = registry(s.url);
    expect(await synced(r)).toBe(true);
    let notified = 0;
    r.watch(() => notified++);
    // Default wait (5m): without blocking queries this change would not be seen for minutes.
    s.register(web("n2", "127.0.0.12"));
    expect(await eventually(() => addrs(r, "web.service.consul").length === 2, 3_000)).toBe(true);
    expect(addrs(r, "web.service.consul")).toEqual(["127.0.0.11:8080", "127.0.0.12:8080"]);
    expect(notified).toBeGreaterThan(0);
    // A new service starts its own watcher.
    s.register({
      Node: "n3",
      Address: "127.0.0.13",
      Service: { Service: "api", Port: 9090, Meta: { protocol: "grpc" } },
    });
    expect(await eventually(() => addrs(r, "api.service.consul").length === 1, 3_000)).toBe(true);
    expect(r.state().services.find((x) => x.hostname === "api.service.consul")?.ports).toEqual([
      { name: "grpc-9090", number: 9090, protocol: "GRPC" },
    ]);
    await Bun.sleep(1_200); // past the pause that follows an answer whose index did not move
    const before = s.requests.length;
    await Bun.sleep(2_000);
    expect(s.requests.length - before).toBeLessThanOrEqual(3);
  });

  test("an instance failing its check leaves, a failing node takes its instances, the service keeps its port", async () => {
    const s = await server();
    s.register(web("n1", "127.0.0.11"));
    s.register(web("n2", "127.0.0.12"));
    const r = registry(s.url);
    expect(await synced(r)).toBe(true);
    expect(addrs(r, "web.service.consul")).toEqual(["127.0.0.11:8080", "127.0.0.12:8080"]);
    s.setCheck("n1", "service:web-n1", "critical");
    expect(await eventually(() => addrs(r, "web.service.consul").length === 1, 3_000)).toBe(true);
    expect(addrs(r, "web.service.consul")).toEqual(["127.0.0.12:8080"]);
    // warning is not passing either (Consul's ?passing filter)
    s.setCheck("n2", "service:web-n2", "warning");
    expect(await eventually(() => addrs(r, "web.service.consul").length === 0, 3_000)).toBe(true);
    s.setCheck("n2", "service:web-n2", "passing");
    expect(await eventually(() => addrs(r, "web.service.consul").length === 1, 3_000)).toBe(true);
    // the node's own check (serfHealth) failing takes every instance on it
    s.setCheck("n2", "serfHealth", "critical");
    expect(await eventually(() => addrs(r, "web.service.consul").length === 0, 3_000)).toBe(true);
    expect(r.state().services.map((x) => x.hostname)).toEqual(["web.service.consul"]);
    expect(r.state().endpoints.some((e) => !e.healthy)).toBe(false);
    s.setCheck("n1", "service:web-n1", "passing");
    expect(await eventually(() => addrs(r, "web.service.consul").length === 1, 3_000)).toBe(true);
  });

  test("a service leaving the catalog leaves the view and its watcher stops", async () => {
    const s = await server();
    s.register(web("n1", "127.0.0.11"));
    s.register({ Node: "n1", Address: "127.0.0.11", Service: { Service: "db", Port: 5432 } });
    const r = registry(s.url);
    expect(await synced(r)).toBe(true);
    expect(r.state().services.map((x) => x.hostname)).toEqual(["db.service.consul", "web.service.consul"]);
    s.deregister("n1", "db");
    expect(await eventually(() => r.state().services.length === 1, 3_000)).toBe(true);
    await Bun.sleep(300);
    const before = s.requests.filter((q) => q.path === "/v1/health/service/db").length;
    s.register(web("n2", "127.0.0.12"));
    await eventually(() => addrs(r, "web.service.consul").length === 2, 3_000);
    expect(s.requests.filter((q) => q.path === "/v1/health/service/db").length).toBe(before);
  });

  test("more services than the request limit are all read, each blocking query then waiting briefly", async () => {
    const s = await server();
    const n = SERVICE_REQUEST_LIMIT + 6;
    for (let i = 0; i < n; i++) {
      s.register({ Node: "n1", Address: "127.0.0.11", Service: { Service: `svc-${i}`, Port: 7000 + i } });
    }
    const r = registry(s.url);
    expect(await eventually(() => r.status().synced && r.state().services.length === n, 10_000)).toBe(true);
    expect(r.state().endpoints.length).toBe(n);
    await eventually(() =>
      s.requests.filter((q) => q.path.startsWith("/v1/health/") && q.query.wait).length > 0
    );
    const waits = new Set(
      s.requests.filter((q) => q.path.startsWith("/v1/health/") && q.query.wait).map((q) => q.query.wait),
    );
    expect([...waits]).toEqual([formatDuration(SHARED_WAIT_MS)]);
  });

  test("answers of 500 keep the last good view, say stale with the error, then recover", async () => {
    const s = await server();
    s.register(web("n1", "127.0.0.11"));
    const r = registry(s.url);
    expect(await synced(r)).toBe(true);
    s.fail(500, "No cluster leader");
    expect(await eventually(() => r.status().stale, 3_000)).toBe(true);
    expect(r.status().lastError).toContain("500 No cluster leader");
    expect(r.status().lastErrorMs).toBeGreaterThan(0);
    expect(addrs(r, "web.service.consul")).toEqual(["127.0.0.11:8080"]);
    s.fail(undefined);
    s.register(web("n2", "127.0.0.12"));
    expect(await eventually(() => addrs(r, "web.service.consul").length === 2, 5_000)).toBe(true);
    expect(await eventually(() => !r.status().stale, 5_000)).toBe(true);
    expect(r.status().lastError).toBeUndefined();
  });

  test("a server that stops answering in time keeps the last good view and is reported stale", async () => {
    const s = await server();
    s.register(web("n1", "127.0.0.11"));
    const r = registry(`${s.url}?wait=1s&timeout=300ms`);
    expect(await synced(r)).toBe(true);
    s.slow(10_000);
    expect(await eventually(() => r.status().stale, 6_000)).toBe(true);
    expect(r.status().lastError).toMatch(/no answer within/);
    expect(addrs(r, "web.service.consul")).toEqual(["127.0.0.11:8080"]);
    s.slow(0);
    expect(await eventually(() => !r.status().stale, 6_000)).toBe(true);
  });

  test("a server down for a while keeps the last good view, says stale, and is read again when back", async () => {
    const s = await server({ index: 100 });
    s.register(web("n1", "127.0.0.11"));
    const r = registry(s.url);
    expect(await synced(r)).toBe(true);
    const restarted = s.restart({ index: 1, downMs: 1_500 });
    expect(await eventually(() => r.status().stale, 3_000)).toBe(true);
    expect(r.status().lastError).toMatch(/GET \/v1\//);
    expect(addrs(r, "web.service.consul")).toEqual(["127.0.0.11:8080"]);
    await restarted;
    s.register(web("n2", "127.0.0.12"));
    expect(await eventually(() => addrs(r, "web.service.consul").length === 2, 8_000)).toBe(true);
    expect(await eventually(() => !r.status().stale, 3_000)).toBe(true);
  });

  test("a server restarted with a lower index without a failed request is caught up once the wait ends", async () => {
    // The HTTP client may resend a request cut by the restart on a new connection, so the
    // watcher sees no failure; the index going backwards in the next answer resets it.
    const s = await server({ index: 100 });
    s.register(web("n1", "127.0.0.11"));
    const r = registry(`${s.url}?wait=1s`);
    expect(await synced(r)).toBe(true);
    await s.restart({ index: 1 });
    s.register(web("n2", "127.0.0.12"));
    expect(await eventually(() => addrs(r, "web.service.consul").length === 2, 6_000)).toBe(true);
    expect(addrs(r, "web.service.consul")).toEqual(["127.0.0.11:8080", "127.0.0.12:8080"]);
  });

  test("an index going backwards (snapshot restore) starts over from 0 so later changes are seen", async () => {
    const s = await server({ index: 500 });
    s.register(web("n1", "127.0.0.11"));
    const r = registry(s.url);
    expect(await synced(r)).toBe(true);
    s.restore(3);
    await Bun.sleep(1_500); // the watchers see index 3 < 501 and start over
    s.register(web("n2", "127.0.0.12")); // index 4: a client still blocking on 501 would not wake
    expect(await eventually(() => addrs(r, "web.service.consul").length === 2, 3_000)).toBe(true);
    const blocking = s.requests.filter((q) => q.query.index !== undefined).map((q) => Number(q.query.index));
    expect(blocking.some((i) => i < 10)).toBe(true);
  });

  test("the token from token-file is sent in X-Consul-Token and never logged", async () => {
    const dir = mkdtempSync(join(tmpdir(), "consul-token-"));
    const file = join(dir, "token");
    writeFileSync(file, "s3cr3t-consul-token\n");
    const s = await server({ tokens: ["s3cr3t-consul-token"] });
    s.register(web("n1", "127.0.0.11"));
    logLines.length = 0;
    const r = registry(`${s.url}?token-file=${file}&dc=dc1`);
    expect(await synced(r)).toBe(true);
    expect(addrs(r, "web.service.consul")).toEqual(["127.0.0.11:8080"]);
    expect(s.requests.length).toBeGreaterThan(0);
    expect(s.requests.every((q) => q.token === "s3cr3t-consul-token" && q.query.dc === "dc1")).toBe(true);

    // A token Consul does not know: 403 "ACL not found", reported.
    const bad = join(dir, "bad");
    writeFileSync(bad, "unknown");
    const denied = registry(`${s.url}?token-file=${bad}`);
    expect(await eventually(() => denied.status().stale, 3_000)).toBe(true);
    expect(denied.status().lastError).toContain("403 ACL not found");
    expect(denied.status().synced).toBe(false);
    expect(denied.state().services).toEqual([]);

    // Another datacenter than the agent knows.
    const elsewhere = registry(`${s.url}?token-file=${file}&dc=dc9`);
    expect(await eventually(() => elsewhere.status().stale, 3_000)).toBe(true);
    expect(elsewhere.status().lastError).toContain("No path to datacenter");
    expect(logLines.join("\n")).not.toContain("s3cr3t");
  });

  test("bad --registry values are refused with the flag value named", async () => {
    const refused = async (value: string) => {
      try {
        await createPlatformRegistries(parseRegistries([value]), { clock: systemClock, logger });
      } catch (e) {
        return (e as Error).message;
      }
      return "accepted";
    };
    expect(await refused("consul://127.0.0.1:1?dcc=dc1")).toBe(
      '--registry "consul://127.0.0.1:1?dcc=dc1": unknown parameter "dcc" (did you mean dc?); a consul registry takes dc, token-file, wait, timeout',
    );
    expect(await refused("consul://127.0.0.1:1?token-file=/nonexistent/token")).toMatch(
      /^--registry "consul:\/\/127\.0\.0\.1:1\?token-file=\/nonexistent\/token": token-file \/nonexistent\/token: .*(ENOENT|no such file)/i,
    );
    expect(await refused("consul://127.0.0.1:1?wait=forever")).toContain("wait=forever is not a duration");
    expect(await refused("consul://127.0.0.1:1?wait=11m")).toContain(
      '--registry "consul://127.0.0.1:1?wait=11m"',
    );
  });
});

describe("consul registry pieces", () => {
  test("parseConsulUrl() fills Consul's defaults", () => {
    expect(parseConsulUrl(new URL("consul://consul.local"))).toEqual({
      base: "http://consul.local:8500",
      address: "consul.local:8500",
      waitMs: 300_000,
      timeoutMs: 10_000,
    });
    expect(parseConsulUrl(new URL("consul://[::1]:8501?dc=eu&wait=30s"))).toMatchObject({
      base: "http://[::1]:8501",
      dc: "eu",
      waitMs: 30_000,
    });
    expect(() => parseConsulUrl(new URL("consul://h/v1"))).toThrow("has no path");
    expect(() => parseConsulUrl(new URL("consul://h?dc=a&dc=b"))).toThrow("dc given twice");
  });

  test("nextIndex() follows Consul's blocking query rules", () => {
    expect(nextIndex(0, 7)).toEqual({ index: 7, changed: true });
    expect(nextIndex(7, 7)).toEqual({ index: 7, changed: false });
    expect(nextIndex(7, 9)).toEqual({ index: 9, changed: true });
    expect(nextIndex(9, 3)).toEqual({ index: 0, changed: true });
    expect(nextIndex(0, 0)).toEqual({ index: 1, changed: true });
    expect(requestUrl({ base: "http://h:1", path: "/v1/catalog/services", index: 0, waitMs: 1000 })).toBe(
      "http://h:1/v1/catalog/services",
    );
    expect(requestUrl({ base: "http://h:1", path: "/v1/x", dc: "d", index: 5, waitMs: 300_000 })).toBe(
      "http://h:1/v1/x?dc=d&index=5&wait=5m0s",
    );
  });

  test("consulServiceView() reads protocols, labels, tlsMode and skips what is not an IP", () => {
    const entry = (
      id: string,
      address: string,
      port: number,
      svc: Partial<ConsulHealthEntry["Service"]> = {},
      status = "passing",
    ): ConsulHealthEntry => ({
      Node: { Node: `node-${id}`, Address: address, Meta: { protocol: "http" } },
      Service: { ID: id, Service: "shop", Port: port, ...svc },
      Checks: [{ CheckID: "serfHealth", Status: "passing" }, { CheckID: `service:${id}`, Status: status }],
    });
    const view = consulServiceView("Shop", [
      entry("a", "10.0.0.1", 80, {
        Tags: ["protocol|grpc", "v2"],
        Meta: { "security.istio.io/tlsMode": "istio" },
      }),
      entry("b", "10.0.0.2", 81),
      entry("c", "shop.example.com", 80),
      entry("d", "10.0.0.4", 82, {}, "warning"),
    ], "dc2");
    expect(view.service?.hostname).toBe("shop.service.consul");
    expect(view.service?.ports).toEqual([
      { name: "grpc-80", number: 80, protocol: "GRPC" },
      { name: "http-81", number: 81, protocol: "HTTP" },
      { name: "http-82", number: 82, protocol: "HTTP" },
    ]);
    expect(view.endpoints.map((e) => [e.address, e.port, e.tlsMode, e.locality, e.labels])).toEqual([
      ["10.0.0.1", 80, "istio", "dc2", { protocol: "grpc", v2: "", "security.istio.io/tlsMode": "istio" }],
      ["10.0.0.2", 81, "disabled", "dc2", {}],
    ]);
    expect(view.skipped).toEqual(["node-c/c (shop.example.com)"]);
  });

  test("a consul registry's view is served as EDS for its host", async () => {
    const s = await server();
    s.register(DOCS_REDIS_REGISTRATION);
    s.register({
      ...DOCS_REDIS_REGISTRATION,
      Node: "baz",
      Address: "10.1.10.13",
      Service: { ...DOCS_REDIS_REGISTRATION.Service!, Address: "" },
    });
    const r = registry(s.url);
    expect(await synced(r)).toBe(true);
    const store = createConfigStore({ logger });
    const push = createPushContext({ config: store.snapshot(), registries: [r.state()] });
    const cla = buildEndpoints(push, sidecar("10.9.9.9", "app")).find((c) =>
      c.clusterName === "outbound|8000||redis.service.consul"
    );
    expect(cla).toBeDefined();
    const got = cla!.endpoints.flatMap((g) =>
      g.lbEndpoints.map((e) =>
        e.hostIdentifier.case === "endpoint" &&
          e.hostIdentifier.value.address?.address.case === "socketAddress"
          ? e.hostIdentifier.value.address.address.value.address
          : "?"
      )
    ).sort();
    expect(got).toEqual(["10.1.10.12", "10.1.10.13"]);
    expect(cla!.endpoints.map((g) => g.locality?.region)).toEqual(["dc1"]);
  });
});
