/**
 * The Eureka registry against a protocol-faithful test server over real HTTP: the first full read,
 * deltas, a drifted copy caught by the hash code and read again, instances leaving when not UP, and
 * a failing, slow or restarting server leaving the last good view in place.
 */
import { afterEach, describe, expect, test } from "bun:test";
import { createConfigStore } from "../../mod/galley/store.ts";
import { createPushContext } from "../../mod/pilot/model/push_context.ts";
import {
  createEurekaRegistry,
  type EurekaRegistry,
  eurekaSettings,
} from "../../mod/pilot/registry/eureka.ts";
import { eurekaState } from "../../mod/pilot/registry/eureka_convert.ts";
import {
  applyDelta,
  copyFromFull,
  parseApplications,
  reconcileHashCode,
} from "../../mod/pilot/registry/eureka_json.ts";
import type { PlatformRegistry } from "../../mod/pilot/registry/platform.ts";
import { buildEndpoints } from "../../mod/pilot/translate/mod.ts";
import { systemClock } from "../../mod/shared/clock.ts";
import { createLogger } from "../../mod/shared/logger.ts";
import { sidecar } from "../pilot/_push.ts";
import { type EurekaTestServer, startEurekaServer, type TestInstance } from "./_eureka_server.ts";

const quiet = createLogger({ write: () => {} });
const cleanups: Array<() => Promise<void>> = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

async function server(opts: Parameters<typeof startEurekaServer>[0] = {}): Promise<EurekaTestServer> {
  const s = await startEurekaServer(opts);
  cleanups.push(() => s.stop());
  return s;
}

function registry(url: string): EurekaRegistry {
  const r = createEurekaRegistry({ url: new URL(url), clock: systemClock, logger: quiet });
  cleanups.push(() => r.stop());
  return r;
}

/** Waits (polling) until `pred` holds; fails naming `what` after 20 s (a loaded machine is slow, never wrong). */
async function until(pred: () => boolean, what: string): Promise<void> {
  const deadline = Date.now() + 20_000;
  while (!pred()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await Bun.sleep(10);
  }
}

const addrs = (r: PlatformRegistry, host: string) =>
  r.state().endpoints.filter((e) => e.hostname === host).map((e) => `${e.address}:${e.port}`).sort();

const ratings = (n: number, extra: Partial<TestInstance> = {}): TestInstance => ({
  app: "ratings",
  instanceId: `ratings-${n}`,
  hostName: "ratings.eureka.local",
  ipAddr: `10.1.0.${n}`,
  port: 9080,
  ...extra,
});

describe("Eureka documents", () => {
  // Follows the JSON a Eureka 1.x server (Jackson codec) answers to GET /eureka/v2/apps, with the
  // fields the "Eureka REST operations" wiki page lists for an instance and an AmazonInfo
  // dataCenterInfo as Eureka writes it on AWS.
  const JACKSON = {
    applications: {
      versions__delta: "1",
      apps__hashcode: "DOWN_1_UP_2_",
      application: [{
        name: "REVIEWS",
        instance: [
          {
            instanceId: "i-0a1",
            hostName: "reviews.eureka.local",
            app: "REVIEWS",
            ipAddr: "10.0.0.1",
            status: "UP",
            overriddenstatus: "UNKNOWN",
            port: { $: 9080, "@enabled": "true" },
            securePort: { $: 443, "@enabled": "false" },
            countryId: 1,
            dataCenterInfo: {
              "@class": "com.netflix.appinfo.AmazonInfo",
              name: "Amazon",
              metadata: { "availability-zone": "us-east-1c", "instance-id": "i-0a1" },
            },
            metadata: { version: "v1", "istio.protocol": "http2", "security.istio.io/tlsMode": "istio" },
            vipAddress: "reviews",
            actionType: "ADDED",
          },
          {
            instanceId: "i-0a2",
            hostName: "reviews.eureka.local",
            app: "REVIEWS",
            ipAddr: "10.0.0.2",
            status: "DOWN",
            port: { $: 9080, "@enabled": "true" },
            securePort: { $: 443, "@enabled": "false" },
            dataCenterInfo: {
              "@class": "com.netflix.appinfo.InstanceInfo$DefaultDataCenterInfo",
              name: "MyOwn",
            },
            metadata: { "@class": "java.util.Collections$EmptyMap" },
          },
          {
            instanceId: "i-0a3",
            hostName: "reviews.eureka.local",
            app: "REVIEWS",
            ipAddr: "10.0.0.3",
            status: "UP",
            port: { $: 9080, "@enabled": "false" },
            securePort: { $: 9443, "@enabled": "true" },
            dataCenterInfo: {
              "@class": "com.netflix.appinfo.InstanceInfo$DefaultDataCenterInfo",
              name: "MyOwn",
            },
            metadata: { version: "v2" },
          },
        ],
      }],
    },
  };

  // The same registry in the Jersey/Jettison dialect of Eureka 1.1 servers: one-element lists
  // written as the element, numbers as strings.
  const JETTISON = {
    applications: {
      versions__delta: "1",
      apps__hashcode: "UP_1_",
      application: {
        name: "DETAILS",
        instance: {
          hostName: "details.eureka.local",
          app: "DETAILS",
          ipAddr: "10.0.0.9",
          status: "UP",
          port: { "@enabled": "true", $: "9080" },
          securePort: { "@enabled": "false", $: "443" },
          dataCenterInfo: {
            "@class": "com.netflix.appinfo.InstanceInfo$DefaultDataCenterInfo",
            name: "MyOwn",
          },
          metadata: { "@class": "java.util.Collections$EmptyMap" },
        },
      },
    },
  };

  const opts = { namespace: "default", hostMode: "hostName" as const, domain: "eureka" };

  test("a Jackson-codec apps body becomes one service with the UP instances' ports and endpoints", () => {
    const doc = parseApplications(JACKSON, "test");
    expect(reconcileHashCode(doc.instances)).toBe("DOWN_1_UP_2_");
    const { state, problems } = eurekaState(copyFromFull(doc), opts);
    expect(problems).toEqual([]);
    expect(state.services).toEqual([{
      hostname: "reviews.eureka.local",
      namespace: "default",
      ports: [{ name: "9080", number: 9080, protocol: "HTTP2" }, {
        name: "9443",
        number: 9443,
        protocol: "HTTPS",
      }],
      addresses: [],
      resolution: "STATIC",
      location: "MESH_INTERNAL",
      exportTo: ["*"],
      subjectAltNames: [],
      source: "eureka:reviews.eureka.local",
    }]);
    expect(state.endpoints.map((e) => [e.address, e.port, e.tlsMode, e.locality, e.labels, e.source]))
      .toEqual([
        ["10.0.0.1", 9080, "istio", "us-east-1/us-east-1c", {
          version: "v1",
          "security.istio.io/tlsMode": "istio",
        }, "eureka:REVIEWS/i-0a1"],
        ["10.0.0.3", 9443, "disabled", undefined, { version: "v2" }, "eureka:REVIEWS/i-0a3"],
      ]);
  });

  test("the Jettison dialect (single objects, string numbers, no instanceId) reads the same way", () => {
    const doc = parseApplications(JETTISON, "test");
    expect(doc.instances.map((i) => [i.app, i.id, i.port, i.securePort])).toEqual([
      ["DETAILS", "details.eureka.local", 9080, undefined],
    ]);
    expect(reconcileHashCode(doc.instances)).toBe(doc.hashCode!);
  });

  test("Istio's Eureka test data with no applications reads as an empty registry", () => {
    // pilot/platform/eureka/testdata/eureka-no-apps.json in istio/istio (Istio 0.2).
    const doc = parseApplications(
      { applications: { versions__delta: "1", apps__hashcode: "UP_28_", application: [] } },
      "test",
    );
    expect(doc.instances).toEqual([]);
    expect(reconcileHashCode(doc.instances)).toBe("");
  });

  test("a delta adds, modifies and deletes; a malformed instance is reported and still counted", () => {
    const base = copyFromFull(parseApplications(JACKSON, "test"));
    const delta = parseApplications({
      applications: {
        apps__hashcode: "UP_3_",
        application: [{
          name: "REVIEWS",
          instance: [
            { ...JACKSON.applications.application[0]!.instance[1], status: "UP", actionType: "MODIFIED" },
            { ...JACKSON.applications.application[0]!.instance[2], actionType: "DELETED" },
            { instanceId: "i-0a4", hostName: "reviews.eureka.local", status: "UP", actionType: "ADDED" },
          ],
        }],
      },
    }, "test");
    const next = applyDelta(base, delta);
    expect(reconcileHashCode(next.values())).toBe("UP_3_");
    const { state, problems } = eurekaState(next, opts);
    expect(state.endpoints.map((e) => e.address)).toEqual(["10.0.0.1", "10.0.0.2"]);
    expect(problems).toEqual([
      // The first instance declared 9080 as HTTP2 through istio.protocol; the first one wins.
      "REVIEWS/i-0a2: port 9080 of reviews.eureka.local is HTTP here but HTTP2 on an earlier instance; using HTTP2",
      "REVIEWS/i-0a4: applications.application[0].instance[2].ipAddr: want an address",
    ]);
  });

  test("a body that is not an applications document is refused naming where it came from", () => {
    expect(() => parseApplications({ application: [] }, "GET http://x/apps")).toThrow(
      'GET http://x/apps: want a JSON object with an "applications" object',
    );
  });

  test("URL settings: path kept, https, options checked", () => {
    const s = eurekaSettings(new URL("eurekas://eureka.example:8443/eureka/v2/?interval=5s&host=app"));
    expect(s.base).toBe("https://eureka.example:8443/eureka/v2");
    expect(s.name).toBe("eurekas://eureka.example:8443/eureka/v2/?interval=5s&host=app");
    expect(s.timeoutMs).toBe(10_000);
    expect(s.namespace).toBe("default");
    expect(s.intervalMs).toBe(5000);
    expect(s.hostMode).toBe("app");
    expect(() => eurekaSettings(new URL("eureka://h:1/eureka?interval=soon"))).toThrow(
      'interval: want a positive duration such as 5s, got "soon"',
    );
    expect(() => eurekaSettings(new URL("eureka://h:1/eureka?dc=x"))).toThrow('unknown option "dc"');
  });
});

describe("createEurekaRegistry() against the test server", () => {
  test("first read, then deltas: registrations and cancellations arrive without another full read", async () => {
    const s = await server();
    await s.register(ratings(1));
    await s.register(ratings(2, { metadata: { version: "v2" } }));
    const r = registry(s.registryUrl("interval=50ms"));
    expect(r.state().services).toEqual([]);
    await until(() => r.status().synced, "first sync");
    expect(addrs(r, "ratings.eureka.local")).toEqual(["10.1.0.1:9080", "10.1.0.2:9080"]);
    expect(r.state().endpoints.find((e) => e.address === "10.1.0.2")!.labels).toEqual({ version: "v2" });

    let changes = 0;
    r.watch(() => changes++);
    await s.register(ratings(3));
    await until(() => addrs(r, "ratings.eureka.local").length === 3, "the ADDED delta");
    await s.cancel("ratings", "ratings-1");
    await until(() => addrs(r, "ratings.eureka.local").length === 2, "the DELETED delta");
    expect(addrs(r, "ratings.eureka.local")).toEqual(["10.1.0.2:9080", "10.1.0.3:9080"]);
    expect(changes).toBe(2);
    expect(s.reads.apps).toBe(1);
    expect(r.status().fullReads).toBe(1);
    expect(r.status().deltaReads).toBeGreaterThan(1);
  });

  test("a delta answered again unchanged is not applied again; the next change still arrives", async () => {
    const s = await server();
    await s.register(ratings(1));
    const r = registry(s.registryUrl("interval=20ms"));
    await until(() => r.status().synced, "first sync");
    let changes = 0;
    r.watch(() => changes++);
    await s.register(ratings(2));
    await until(() => addrs(r, "ratings.eureka.local").length === 2, "the ADDED delta");
    const seen = r.state();
    // The server keeps answering the same recent change; polls go on without a new view.
    await until(() => r.status().deltaRepeats >= 3, "repeated deltas");
    expect(r.state()).toBe(seen);
    expect(changes).toBe(1);
    await s.register(ratings(3));
    await until(() => addrs(r, "ratings.eureka.local").length === 3, "the next delta");
    expect(changes).toBe(2);
    expect(r.status().fullReads).toBe(1);
  });

  test("a lost delta makes the hash codes differ and the whole registry is read again", async () => {
    const s = await server();
    await s.register(ratings(1));
    const r = registry(s.registryUrl("interval=50ms"));
    await until(() => r.status().synced, "first sync");
    s.loseNextChange();
    await s.register(ratings(2));
    await until(() => addrs(r, "ratings.eureka.local").length === 2, "the refetch");
    expect(s.reads.apps).toBe(2);
    expect(r.status().fullReads).toBe(2);
    expect(addrs(r, "ratings.eureka.local")).toEqual(["10.1.0.1:9080", "10.1.0.2:9080"]);
  });

  test("an instance that goes DOWN or OUT_OF_SERVICE leaves; back UP it returns", async () => {
    const s = await server();
    await s.register(ratings(1));
    await s.register(ratings(2));
    const r = registry(s.registryUrl("interval=50ms"));
    await until(() => addrs(r, "ratings.eureka.local").length === 2, "first sync");
    await s.setStatus("ratings", "ratings-1", "DOWN");
    await until(() => addrs(r, "ratings.eureka.local").length === 1, "DOWN to leave");
    expect(addrs(r, "ratings.eureka.local")).toEqual(["10.1.0.2:9080"]);
    await s.setStatus("ratings", "ratings-2", "OUT_OF_SERVICE");
    await until(() => r.state().services.length === 0, "the service to go with its last instance");
    await s.setStatus("ratings", "ratings-1", "UP");
    await until(() => addrs(r, "ratings.eureka.local").length === 1, "UP to return");
    expect(r.status().fullReads).toBe(1);
  });

  test("a server answering 500 keeps the last good view, reported stale, until it recovers", async () => {
    const s = await server();
    await s.register(ratings(1));
    const r = registry(s.registryUrl("interval=50ms"));
    await until(() => r.status().synced, "first sync");
    const before = r.state();
    s.fail(500);
    await until(() => r.status().stale, "stale status");
    expect(r.status().lastError).toContain("HTTP 500");
    expect(r.state()).toBe(before);
    expect(r.status().synced).toBe(true);
    await s.register(ratings(2)); // writes still work; reads fail
    s.fail(null);
    await until(() => !r.status().stale && addrs(r, "ratings.eureka.local").length === 2, "recovery");
    expect(r.status().lastError).toBeUndefined();
  });

  test("a server slower than the timeout keeps the last good view", async () => {
    const s = await server();
    await s.register(ratings(1));
    const r = registry(s.registryUrl("interval=50ms&timeout=100ms"));
    await until(() => r.status().synced, "first sync");
    s.slow(400);
    await until(() => r.status().stale, "stale status");
    expect(r.status().lastError).toContain("no answer within 100 ms");
    expect(addrs(r, "ratings.eureka.local")).toEqual(["10.1.0.1:9080"]);
    s.slow(0);
    await until(() => !r.status().stale, "recovery");
  });

  test("a server restarted with an empty registry: the view is kept while it is down and follows it after", async () => {
    const s = await server();
    await s.register(ratings(1));
    await s.register(ratings(2));
    const r = registry(s.registryUrl("interval=50ms"));
    await until(() => addrs(r, "ratings.eureka.local").length === 2, "first sync");
    const before = r.state();
    await s.down();
    await until(() => r.status().stale, "stale status");
    expect(r.status().lastError).toContain("GET http://127.0.0.1:");
    expect(r.state()).toBe(before);
    await s.up({ keepRegistry: false });
    // Clients register again after a restart; only one of the two came back.
    await s.register(ratings(2));
    await until(() => addrs(r, "ratings.eureka.local").length === 1, "the view after restart");
    expect(addrs(r, "ratings.eureka.local")).toEqual(["10.1.0.2:9080"]);
    expect(r.status().fullReads).toBeGreaterThanOrEqual(2);
  });

  test("a server that is down from the start: not synced, stale, empty; synced once it answers", async () => {
    const s = await server();
    await s.register(ratings(1));
    s.fail(503);
    const r = registry(s.registryUrl("interval=50ms"));
    await until(() => r.status().stale, "stale status");
    expect(r.status().synced).toBe(false);
    expect(r.state().endpoints).toEqual([]);
    s.fail(null);
    await until(() => r.status().synced, "first sync");
    expect(addrs(r, "ratings.eureka.local")).toEqual(["10.1.0.1:9080"]);
  });

  test("the Jettison dialect over the wire, under Spring Cloud's /eureka prefix, with host=app", async () => {
    const s = await server({ prefix: "/eureka", legacyJson: true });
    await s.register(ratings(1, { hostName: "ip-10-1-0-1.ec2.internal", availabilityZone: "eu-west-1a" }));
    const r = registry(s.registryUrl("interval=50ms&host=app"));
    await until(() => r.status().synced, "first sync");
    expect(addrs(r, "ratings.eureka")).toEqual(["10.1.0.1:9080"]);
    expect(r.state().endpoints[0]!.locality).toBe("eu-west-1/eu-west-1a");
    await s.register(ratings(2, { hostName: "ip-10-1-0-2.ec2.internal" }));
    await until(() => addrs(r, "ratings.eureka").length === 2, "the delta");
    expect(r.status().fullReads).toBe(1);
  });

  test("a replayed body that is not an applications document is an error, not an empty registry", async () => {
    const s = await server();
    await s.register(ratings(1));
    const r = registry(s.registryUrl("interval=50ms"));
    await until(() => r.status().synced, "first sync");
    s.loseNextChange();
    await s.register(ratings(2)); // forces a full read, which gets the bad body
    s.replayApps({ unexpected: true });
    await until(() => r.status().stale, "stale status");
    expect(r.status().lastError).toContain('want a JSON object with an "applications" object');
    expect(addrs(r, "ratings.eureka.local")).toEqual(["10.1.0.1:9080"]);
  });

  test("pilot's EDS for a sidecar holds the UP Eureka instances and drops one that goes DOWN", async () => {
    const s = await server();
    await s.register(ratings(1));
    await s.register(ratings(2));
    const r = registry(s.registryUrl("interval=50ms"));
    await until(() => addrs(r, "ratings.eureka.local").length === 2, "first sync");
    const store = createConfigStore({ logger: quiet });
    const client = sidecar("10.9.9.9", "default");
    const eds = () =>
      buildEndpoints(createPushContext({ config: store.snapshot(), registries: [r.state()] }), client)
        .filter((c) => c.clusterName === "outbound|9080||ratings.eureka.local")
        .flatMap((c) => c.endpoints.flatMap((g) => g.lbEndpoints))
        .map((e) =>
          e.hostIdentifier.case === "endpoint" &&
            e.hostIdentifier.value.address?.address.case === "socketAddress"
            ? e.hostIdentifier.value.address.address.value.address
            : "?"
        )
        .sort();
    expect(eds()).toEqual(["10.1.0.1", "10.1.0.2"]);
    await s.setStatus("ratings", "ratings-1", "DOWN");
    await until(() => addrs(r, "ratings.eureka.local").length === 1, "DOWN to leave");
    expect(eds()).toEqual(["10.1.0.2"]);
  });
});
