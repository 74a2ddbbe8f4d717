/**
 * Pilot's auto-registration registry (mod/pilot/autoregister.ts), alone with a ManualClock, and
 * together with the agent's registration stream over a real ADS server.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { create } from "@bufbuild/protobuf";
import { createServer } from "node:net";
import type { AddressInfo } from "node:net";
import { NodeSchema } from "#gen/envoy/config/core/v3/base_pb.ts";
import { xdsNode } from "../../mod/agent/node.ts";
import { HEALTH_TYPE_URL as AGENT_HEALTH_TYPE, startRegistration } from "../../mod/agent/registration.ts";
import { createHealthChecker, type ProbeSpec } from "../../mod/agent/health.ts";
import { createConfigStore, type WritableConfigStore } from "../../mod/galley/store.ts";
import { createGrpcServer, type GrpcServer, type PeerCertificate } from "../../mod/grpc/server.ts";
import { Code, type ConnectError } from "@connectrpc/connect";
import { type AutoRegistry, createAutoRegistry, HEALTH_TYPE_URL } from "../../mod/pilot/autoregister.ts";
import { createPushContext } from "../../mod/pilot/model/push_context.ts";
import { createManualClock, systemClock } from "../../mod/shared/clock.ts";
import { createLogger } from "../../mod/shared/logger.ts";
import { createAdsServer } from "../../mod/xds/server.ts";
import type { XdsClient } from "../../mod/xds/provider.ts";
import { setVersion } from "../../mod/shared/content_version.ts";
import { eventually } from "../e2e/_meshd.ts";
import { ratingsGroupYaml } from "./_workload_group.ts";

const quiet = createLogger({ write: () => {} });

const GROUP = (probe = "") =>
  ratingsGroupYaml({
    labels: { tier: "backend" },
    templateLabels: { version: "v1", tier: "template" },
    extra: probe,
  });

const SERVICE = `apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata:
  name: ratings
  namespace: vms
spec:
  hosts: [ratings.vms.svc.cluster.local]
  location: MESH_INTERNAL
  resolution: STATIC
  ports:
  - number: 9080
    name: http
    protocol: HTTP
  workloadSelector:
    labels:
      app: ratings
`;

function storeWith(...docs: string[]): WritableConfigStore {
  const store = createConfigStore({ logger: quiet });
  store.sink("test").replace(docs.map((content, i) => ({ origin: `in-${i}.yaml`, content })));
  const bad = store.status().resources.filter((r) => r.state === "rejected").flatMap((r) => r.errors);
  if (bad.length > 0) throw new Error(bad.join("\n"));
  return store;
}

let seq = 0;
function client(
  ip: string,
  group = "ratings",
  labels: Record<string, string> = { version: "v2" },
  peer?: PeerCertificate,
): XdsClient {
  return {
    connectionId: `c${++seq}`,
    peer,
    node: create(NodeSchema, {
      id: `sidecar~${ip}~vm.vms~vms.svc.cluster.local`,
      metadata: {
        NAMESPACE: "vms",
        LABELS: labels,
        AUTO_REGISTER_GROUP: group,
        SERVICE_ACCOUNT: "ratings-sa",
      },
      locality: { region: "eu", zone: "eu-1" },
    }),
  };
}

function endpoints(store: WritableConfigStore, reg: AutoRegistry) {
  const push = createPushContext({ config: store.snapshot(), registries: [reg.state()] });
  const svc = push.services.find((s) => s.hostname === "ratings.vms.svc.cluster.local")!;
  return push.endpoints(svc, 9080).map((e) => ({ address: e.address, port: e.port, healthy: e.healthy }));
}

/** A certificate carrying `uri` as its one URI SAN, as the TLS layer hands it over. */
async function peerWith(uri: string, authorized = true): Promise<PeerCertificate> {
  await import("reflect-metadata");
  const x509 = await import("@peculiar/x509");
  const alg = { name: "ECDSA", namedCurve: "P-256", hash: "SHA-256" } as const;
  const keys = await crypto.subtle.generateKey(alg, true, ["sign", "verify"]);
  const cert = await x509.X509CertificateGenerator.createSelfSigned({
    name: "O=test",
    keys,
    signingAlgorithm: alg,
    notBefore: new Date(Date.now() - 60_000),
    notAfter: new Date(Date.now() + 3_600_000),
    extensions: [new x509.SubjectAlternativeNameExtension([{ type: "url", value: uri }])],
  });
  return {
    der: new Uint8Array(cert.rawData),
    authorized,
    authorizationError: authorized ? undefined : "UNABLE_TO_VERIFY_LEAF_SIGNATURE",
  };
}

/** A connection for group `group` with no labels, presenting a certificate whose URI SAN is `uri`. */
async function certified(
  ip: string,
  uri: string,
  opts: { group?: string; authorized?: boolean } = {},
): Promise<XdsClient> {
  return client(ip, opts.group ?? "ratings", {}, await peerWith(uri, opts.authorized));
}

describe("createAutoRegistry()", () => {
  test("registers only connections whose certificate proves an identity in the group's namespace", async () => {
    const clock = createManualClock(0);
    const store = storeWith(GROUP(), SERVICE);
    const warnings: string[] = [];
    const logger = createLogger({
      write: (line) => {
        const rec = JSON.parse(line) as { msg: string; reason?: string; level: string };
        if (rec.level === "warn") warnings.push(`${rec.msg}: ${rec.reason ?? ""}`);
      },
      format: "json",
    });
    const reg = createAutoRegistry({ store, clock, logger, graceMs: 1000 });
    // No certificate (the plaintext port): refused by default.
    reg.observer.connected!(client("10.0.0.1"));
    // Trusted, but another namespace's identity.
    reg.observer.connected!(await certified("10.0.0.2", "spiffe://cluster.local/ns/default/sa/ratings-sa"));
    // The right identity, in a certificate the TLS layer did not trust.
    reg.observer.connected!(
      await certified("10.0.0.3", "spiffe://cluster.local/ns/vms/sa/ratings-sa", { authorized: false }),
    );
    // Not a workload identity.
    reg.observer.connected!(await certified("10.0.0.4", "https://example.com/x"));
    expect(reg.registrations()).toEqual([]);
    // The refusals stay visible, one per node, with the reason and the identity proven.
    expect(reg.refusals().map((r) => [r.address, r.state, r.code, r.identity, r.connections])).toEqual([
      ["10.0.0.1", "REFUSED", "PERMISSION_DENIED", undefined, 1],
      ["10.0.0.2", "REFUSED", "PERMISSION_DENIED", "spiffe://cluster.local/ns/default/sa/ratings-sa", 1],
      ["10.0.0.3", "REFUSED", "PERMISSION_DENIED", undefined, 1],
      ["10.0.0.4", "REFUSED", "PERMISSION_DENIED", undefined, 1],
    ]);
    expect(reg.refusals()[1]).toMatchObject({
      workload: "ratings-10.0.0.2",
      group: "vms/ratings",
      nodes: ["sidecar~10.0.0.2~vm.vms~vms.svc.cluster.local"],
      reason: "identity spiffe://cluster.local/ns/default/sa/ratings-sa is not in the group's namespace vms",
      refusedAt: new Date(0).toISOString(),
    });
    expect(warnings).toEqual([
      expect.stringContaining("presented no client certificate"),
      expect.stringContaining("is not in the group's namespace vms"),
      expect.stringContaining("not trusted: UNABLE_TO_VERIFY_LEAF_SIGNATURE"),
      expect.stringContaining("is not a spiffe:// URI"),
    ]);

    // The right namespace: registered, and the certificate's service account wins over metadata.
    reg.observer.connected!(await certified("10.0.0.5", "spiffe://cluster.local/ns/vms/sa/ratings-sa"));
    expect(reg.state().workloads.map((w) => [w.spec.address, w.spec.serviceAccount])).toEqual([
      ["10.0.0.5", "ratings-sa"],
    ]);
    // In the namespace but with another service account than the template's: left out of EDS.
    reg.observer.connected!(await certified("10.0.0.6", "spiffe://cluster.local/ns/vms/sa/intruder"));
    expect(reg.registrations().map((r) => r.workload)).toEqual(["ratings-10.0.0.5", "ratings-10.0.0.6"]);
    expect(reg.state().workloads.map((w) => w.spec.address)).toEqual(["10.0.0.5"]);
    expect(warnings.at(-1)).toContain("its identity has another service account");
    expect(reg.registrations().map((r) => [r.state, r.code, r.reason])).toEqual([
      ["REGISTERED", undefined, undefined],
      [
        "REFUSED",
        "PERMISSION_DENIED",
        "identity spiffe://cluster.local/ns/vms/sa/intruder has service account intruder, " +
        "but the group's template wants ratings-sa",
      ],
    ]);
    reg.close();
  });

  test("the health subscription of a refused connection ends with the refusal; registered ones get the probe", async () => {
    const clock = createManualClock(0);
    const store = storeWith(GROUP("  probe:\n    tcpSocket:\n      port: 9080\n"), SERVICE);
    const reg = createAutoRegistry({ store, clock, logger: quiet, graceMs: 1000 });
    const refusal = (c: XdsClient) => {
      try {
        reg.provider.resources(c, HEALTH_TYPE_URL, "*");
        return undefined;
      } catch (err) {
        return err as ConnectError;
      }
    };
    const plain = client("10.0.0.1");
    reg.observer.connected!(plain);
    expect(refusal(plain)).toMatchObject({
      code: Code.PermissionDenied,
      rawMessage: expect.stringContaining(
        "auto-registration into WorkloadGroup vms/ratings refused: the connection presented no client certificate",
      ),
    });
    const intruder = await certified("10.0.0.2", "spiffe://cluster.local/ns/vms/sa/intruder");
    reg.observer.connected!(intruder);
    expect(refusal(intruder)).toMatchObject({
      code: Code.PermissionDenied,
      rawMessage: "auto-registration into WorkloadGroup vms/ratings refused: identity " +
        "spiffe://cluster.local/ns/vms/sa/intruder has service account intruder, but the group's template wants ratings-sa",
    });
    const unknown = await certified("10.0.0.3", "spiffe://cluster.local/ns/vms/sa/ratings-sa", {
      group: "nope",
    });
    reg.observer.connected!(unknown);
    expect(refusal(unknown)).toMatchObject({
      code: Code.FailedPrecondition,
      rawMessage:
        "auto-registration into WorkloadGroup vms/nope refused: there is no such WorkloadGroup in config " +
        "(identity spiffe://cluster.local/ns/vms/sa/ratings-sa); create it, or correct the agent's --workload-group",
    });
    const good = await certified("10.0.0.4", "spiffe://cluster.local/ns/vms/sa/ratings-sa");
    reg.observer.connected!(good);
    expect(refusal(good)).toBeUndefined();
    expect([...reg.provider.resources(good, HEALTH_TYPE_URL, "*").keys()]).toEqual(["vms/ratings"]);
    // Registrations refused by config become kept refusals once their grace period is over.
    for (const c of [plain, intruder, unknown]) reg.observer.disconnected!(c);
    clock.advance(1000);
    expect(reg.registrations().map((r) => [r.workload, r.state])).toEqual([[
      "ratings-10.0.0.4",
      "REGISTERED",
    ]]);
    expect(reg.refusals().map((r) => [r.workload, r.code, r.connections])).toEqual([
      ["ratings-10.0.0.1", "PERMISSION_DENIED", 0],
      ["ratings-10.0.0.2", "PERMISSION_DENIED", 0],
      ["nope-10.0.0.3", "FAILED_PRECONDITION", 0],
    ]);
    // A node that registers later is no longer listed as refused.
    reg.observer.connected!(await certified("10.0.0.2", "spiffe://cluster.local/ns/vms/sa/ratings-sa"));
    expect(reg.refusals().map((r) => r.workload)).toEqual(["ratings-10.0.0.1", "nope-10.0.0.3"]);
    reg.close();
  });

  test("registrations are PENDING while config loads, then REGISTERED; nodes name every connection", () => {
    const clock = createManualClock(0);
    const store = storeWith(GROUP(), SERVICE);
    let loaded = false;
    const reg = createAutoRegistry({
      store,
      clock,
      logger: quiet,
      graceMs: 1000,
      requireIdentity: false,
      configReady: { now: () => loaded, promise: new Promise(() => {}) },
    });
    const envoy = client("10.0.0.7");
    reg.observer.connected!(envoy);
    const agentNode = "sidecar~10.0.0.7~agent.vms~vms.svc.cluster.local";
    reg.observer.connected!({
      ...client("10.0.0.7"),
      node: create(NodeSchema, { ...envoy.node, id: agentNode }),
    });
    expect(reg.registrations()).toMatchObject([
      { state: "PENDING", reason: "pilot's config is still loading", nodes: [agentNode, envoy.node.id] },
    ]);
    loaded = true;
    expect(reg.registrations()).toMatchObject([{ state: "REGISTERED", nodes: [agentNode, envoy.node.id] }]);
    expect(reg.registrations()[0]!.reason).toBeUndefined();
    reg.close();
  });

  test("a connection with AUTO_REGISTER_GROUP becomes a workload from the group's template", () => {
    const clock = createManualClock(0);
    const store = storeWith(GROUP(), SERVICE);
    const reg = createAutoRegistry({ store, clock, logger: quiet, graceMs: 10_000, requireIdentity: false });
    let changes = 0;
    reg.watch(() => changes++);
    const c = client("10.0.0.7");
    reg.observer.connected!(c);
    expect(changes).toBe(1);
    const [w] = reg.state().workloads;
    expect(w).toEqual({
      key: "networking.istio.io/WorkloadEntry/vms/ratings-10.0.0.7",
      namespace: "vms",
      healthy: true,
      spec: {
        address: "10.0.0.7",
        serviceAccount: "ratings-sa",
        ports: { http: 9080 },
        labels: { app: "ratings", tier: "backend", version: "v2" },
        locality: "eu/eu-1",
      },
    });
    expect(reg.state()).toBe(reg.state());
    expect(endpoints(store, reg)).toEqual([{ address: "10.0.0.7", port: 9080, healthy: true }]);
    reg.close();
  });

  test("stays while any connection of the workload is open and leaves the grace period after the last closes", () => {
    const clock = createManualClock(0);
    const store = storeWith(GROUP(), SERVICE);
    const reg = createAutoRegistry({ store, clock, logger: quiet, graceMs: 10_000, requireIdentity: false });
    const envoy = client("10.0.0.7");
    const agent = client("10.0.0.7", "vms/ratings");
    reg.observer.connected!(envoy);
    reg.observer.connected!(agent);
    expect(reg.registrations()).toMatchObject([{ workload: "ratings-10.0.0.7", connections: 2 }]);
    reg.observer.disconnected!(envoy);
    clock.advance(60_000);
    expect(reg.state().workloads.length).toBe(1);
    reg.observer.disconnected!(agent);
    clock.advance(9_999);
    expect(reg.state().workloads.length).toBe(1);
    expect(reg.registrations()[0]!.disconnectedAt).toBe(new Date(60_000).toISOString());
    // A reconnection inside the grace period keeps it.
    const again = client("10.0.0.7");
    reg.observer.connected!(again);
    clock.advance(20_000);
    expect(reg.state().workloads.length).toBe(1);
    reg.observer.disconnected!(again);
    clock.advance(10_000);
    expect(reg.state().workloads.length).toBe(0);
    expect(reg.registrations()).toEqual([]);
    expect(endpoints(store, reg)).toEqual([]);
    reg.close();
  });

  test("a group missing from config registers once it appears; connections without the metadata are ignored", () => {
    const clock = createManualClock(0);
    const store = storeWith(SERVICE);
    const reg = createAutoRegistry({ store, clock, logger: quiet, graceMs: 1000, requireIdentity: false });
    reg.observer.connected!(client("10.0.0.8"));
    reg.observer.connected!({
      connectionId: "plain",
      node: create(NodeSchema, { id: "sidecar~10.0.0.9~a.vms~vms.svc.cluster.local" }),
    });
    reg.observer.connected!({ connectionId: "bad", node: create(NodeSchema, { id: "not-a-node-id" }) });
    expect(reg.state().workloads).toEqual([]);
    expect(reg.registrations()).toMatchObject([{ groupFound: false }]);
    store.sink("test").replace([{ origin: "a.yaml", content: SERVICE }, {
      origin: "b.yaml",
      content: GROUP(),
    }]);
    expect(reg.state().workloads.map((w) => w.spec.address)).toEqual(["10.0.0.8"]);
    reg.close();
  });

  test("with a probe: unhealthy until a healthy report for the current probe; NACK-style reports mark it unhealthy", () => {
    const clock = createManualClock(0);
    const store = storeWith(
      GROUP("  probe:\n    periodSeconds: 1\n    tcpSocket:\n      port: 9080\n"),
      SERVICE,
    );
    const reg = createAutoRegistry({ store, clock, logger: quiet, graceMs: 1000, requireIdentity: false });
    const c = client("10.0.0.7");
    reg.observer.connected!(c);
    expect(reg.state().workloads[0]!.healthy).toBe(false);
    const probes = reg.provider.resources(c, HEALTH_TYPE_URL, "*");
    expect([...probes.keys()]).toEqual(["vms/ratings"]);
    const version = setVersion([...probes.values()]);
    reg.observer.acked!(c, HEALTH_TYPE_URL, "some-older-version");
    expect(reg.state().workloads[0]!.healthy).toBe(false);
    reg.observer.acked!(c, HEALTH_TYPE_URL, version);
    expect(reg.state().workloads[0]!.healthy).toBe(true);
    reg.observer.nacked!(c, HEALTH_TYPE_URL, version, "TCP 127.0.0.1:9080: connect ECONNREFUSED");
    expect(reg.state().workloads[0]!.healthy).toBe(false);
    expect(reg.registrations()[0]!.message).toBe("TCP 127.0.0.1:9080: connect ECONNREFUSED");
    expect(endpoints(store, reg)).toEqual([{ address: "10.0.0.7", port: 9080, healthy: false }]);
    // Reports of other types are not health.
    reg.observer.acked!(c, "type.googleapis.com/envoy.config.cluster.v3.Cluster", version);
    expect(reg.state().workloads[0]!.healthy).toBe(false);
    // A changed probe needs a new report.
    reg.observer.acked!(c, HEALTH_TYPE_URL, version);
    store.sink("test").replace([
      { origin: "a.yaml", content: SERVICE },
      {
        origin: "b.yaml",
        content: GROUP("  probe:\n    periodSeconds: 2\n    tcpSocket:\n      port: 9080\n"),
      },
    ]);
    expect(reg.state().workloads[0]!.healthy).toBe(false);
    reg.close();
  });

  test("while config loads no probe answer is sent; once loaded, registered clients get a push", async () => {
    const clock = createManualClock(0);
    const store = storeWith(GROUP("  probe:\n    tcpSocket:\n      port: 9080\n"), SERVICE);
    let loaded = false;
    let resolve!: () => void;
    const promise = new Promise<void>((r) => (resolve = r));
    const reg = createAutoRegistry({
      store,
      clock,
      logger: quiet,
      graceMs: 1000,
      requireIdentity: false,
      configReady: { now: () => loaded, promise },
    });
    const pushed: string[] = [];
    reg.provider.watch((types, which) => {
      if (which?.(c) !== false) pushed.push(...types);
    });
    const c = client("10.0.0.7");
    reg.observer.connected!(c);
    expect(reg.provider.ready!()).toBe(false);
    loaded = true;
    resolve();
    await promise;
    await Promise.resolve();
    expect(reg.provider.ready!()).toBe(true);
    expect(pushed).toEqual([HEALTH_TYPE_URL]);
    reg.close();
  });

  test("the agent and pilot use the same health type URL", () => {
    expect(AGENT_HEALTH_TYPE).toBe(HEALTH_TYPE_URL);
  });
});

describe("the agent's registration stream against pilot's registry over a real ADS server", () => {
  let grpc: GrpcServer;
  let addr: string;
  let store: WritableConfigStore;
  let reg: AutoRegistry;
  let appPort: number;
  const app = createServer((s) => s.end());

  beforeAll(async () => {
    await new Promise<void>((r) => app.listen(0, "127.0.0.1", () => r()));
    appPort = (app.address() as AddressInfo).port;
    store = storeWith(
      GROUP(`  probe:\n    periodSeconds: 1\n    tcpSocket:\n      port: ${appPort}\n`),
      SERVICE,
    );
    grpc = createGrpcServer({ logger: quiet });
    const ads = createAdsServer({ logger: quiet });
    reg = createAutoRegistry({
      store,
      ads,
      clock: systemClock,
      logger: quiet,
      graceMs: 300,
      requireIdentity: false,
    });
    ads.register(grpc);
    const a = await grpc.listen("127.0.0.1:0");
    addr = `127.0.0.1:${a.port}`;
  });
  afterAll(async () => {
    reg.close();
    await grpc.shutdown(500);
    app.close();
  });

  test("registers, receives the probe, reports health both ways, and is removed after the grace period", async () => {
    const workload = {
      ip: "10.0.0.7",
      name: "vm",
      namespace: "vms",
      serviceAccount: "ratings-sa",
      trustDomain: "cluster.local",
      labels: { version: "v3" },
      workloadGroup: "ratings",
    };
    const probes: Array<ProbeSpec | undefined> = [];
    let checker: ReturnType<typeof createHealthChecker> | undefined;
    const r = startRegistration({
      discoveryAddr: addr,
      tls: () => undefined,
      node: xdsNode(workload),
      clock: systemClock,
      logger: quiet,
      backoff: { initialMs: 50, maxMs: 200 },
      onProbe(p) {
        probes.push(p);
        if (p && !checker) {
          checker = createHealthChecker({
            probe: p,
            clock: systemClock,
            onChange: (h) => r.report(h),
          });
        }
      },
    });
    try {
      expect(await eventually(() => r.connected(), 5000)).toBe(true);
      expect(probes[0]).toEqual({ periodSeconds: 1, tcpSocket: { port: appPort } });
      expect(await eventually(() => reg.state().workloads[0]?.healthy === true, 5000)).toBe(true);
      expect(reg.state().workloads[0]!.spec.labels).toEqual({
        app: "ratings",
        tier: "backend",
        version: "v3",
      });
      // The application stops listening: the next probe fails and the workload turns unhealthy.
      await new Promise<void>((res) => app.close(() => res()));
      expect(await eventually(() => reg.state().workloads[0]?.healthy === false, 5000)).toBe(true);
      expect(reg.registrations()[0]!.message).toContain(`TCP 127.0.0.1:${appPort}`);
    } finally {
      checker?.stop();
      await r.stop();
    }
    expect(await eventually(() => reg.state().workloads.length === 0, 5000)).toBe(true);
  });
});

describe("pilot's refusals reach the agent's registration stream over a real ADS server", () => {
  /** A real ADS server with the registry on 127.0.0.1, over `docs`. */
  async function startPilot(requireIdentity: boolean, ...docs: string[]) {
    const store = storeWith(...docs);
    const grpc = createGrpcServer({ logger: quiet });
    const ads = createAdsServer({ logger: quiet });
    const reg = createAutoRegistry({
      store,
      ads,
      clock: systemClock,
      logger: quiet,
      graceMs: 60_000,
      requireIdentity,
    });
    ads.register(grpc);
    const a = await grpc.listen("127.0.0.1:0");
    return {
      addr: `127.0.0.1:${a.port}`,
      store,
      reg,
      async close() {
        reg.close();
        await grpc.shutdown(500);
      },
    };
  }

  /** The agent's registration stream for `group`, logging JSON lines into `logs`. */
  function agentStream(
    addr: string,
    group: string,
    logs: Array<Record<string, unknown>>,
    backoff = { initialMs: 50, maxMs: 200 },
  ) {
    return startRegistration({
      discoveryAddr: addr,
      tls: () => undefined,
      node: xdsNode({
        ip: "10.0.0.9",
        name: "vm",
        namespace: "vms",
        serviceAccount: "ratings-sa",
        trustDomain: "cluster.local",
        labels: {},
        workloadGroup: group,
      }),
      clock: systemClock,
      logger: createLogger({
        level: "debug",
        format: "json",
        write: (l) => logs.push(JSON.parse(l) as Record<string, unknown>),
      }),
      backoff,
      refusedBackoff: { initialMs: 100, maxMs: 200 },
      onProbe() {},
    });
  }

  const refusedLines = (logs: Array<Record<string, unknown>>, level: string) =>
    logs.filter((l) => l.msg === "registration refused by pilot; retrying slowly" && l.level === level);

  test("a connection without a certificate is refused with PERMISSION_DENIED; the agent logs it once and retries", async () => {
    const pilot = await startPilot(true, GROUP(), SERVICE);
    const logs: Array<Record<string, unknown>> = [];
    const r = agentStream(pilot.addr, "ratings", logs);
    try {
      // Two refused attempts at least: one error line, then debug lines for the same reason.
      expect(await eventually(() => refusedLines(logs, "debug").length >= 1, 5000)).toBe(true);
      expect(refusedLines(logs, "error")).toEqual([
        expect.objectContaining({
          code: "PermissionDenied",
          reason: expect.stringContaining(
            "auto-registration into WorkloadGroup vms/ratings refused: the connection presented no client certificate",
          ),
        }),
      ]);
      expect(r.refusal()).toContain("the connection presented no client certificate");
      expect(r.connected()).toBe(false);
      expect(logs.some((l) => l.msg === "registered with pilot")).toBe(false);
      expect(logs.some((l) => l.level === "warn")).toBe(false);
      expect(pilot.reg.refusals()).toMatchObject([
        { workload: "ratings-10.0.0.9", state: "REFUSED", code: "PERMISSION_DENIED" },
      ]);
    } finally {
      await r.stop();
      await pilot.close();
    }
  });

  test("an unknown group is refused with FAILED_PRECONDITION until it is in config; its removal ends the stream", async () => {
    const pilot = await startPilot(false, GROUP(), SERVICE);
    const logs: Array<Record<string, unknown>> = [];
    const r = agentStream(pilot.addr, "later", logs);
    try {
      expect(await eventually(() => r.refusal() !== undefined, 5000)).toBe(true);
      expect(r.refusal()).toBe(
        "auto-registration into WorkloadGroup vms/later refused: there is no such WorkloadGroup in config; " +
          "create it, or correct the agent's --workload-group",
      );
      expect(refusedLines(logs, "error")[0]).toMatchObject({ code: "FailedPrecondition" });
      // The group arrives: the next (slow) attempt registers and the refusal is over.
      const later = GROUP().replace("name: ratings", "name: later");
      pilot.store.sink("test").replace([
        { origin: "a.yaml", content: GROUP() },
        { origin: "b.yaml", content: SERVICE },
        { origin: "c.yaml", content: later },
      ]);
      expect(await eventually(() => r.connected(), 5000)).toBe(true);
      expect(r.refusal()).toBeUndefined();
      expect(pilot.reg.registrations().find((x) => x.workload === "later-10.0.0.9")).toMatchObject({
        state: "REGISTERED",
        connections: 1,
      });
      // The group is deleted while the agent is registered: pilot ends its open stream.
      const before = refusedLines(logs, "error").length;
      pilot.store.sink("test").replace([
        { origin: "a.yaml", content: GROUP() },
        { origin: "b.yaml", content: SERVICE },
      ]);
      expect(await eventually(() => refusedLines(logs, "error").length > before, 5000)).toBe(true);
      expect(r.refusal()).toContain(
        "WorkloadGroup vms/later refused: there is no such WorkloadGroup in config",
      );
    } finally {
      await r.stop();
      await pilot.close();
    }
  });

  test("a stream pilot ends with OK on shutdown is logged at info; only the failed reconnections warn", async () => {
    const pilot = await startPilot(false, GROUP(), SERVICE);
    const logs: Array<Record<string, unknown>> = [];
    const r = agentStream(pilot.addr, "ratings", logs);
    try {
      expect(await eventually(() => r.connected(), 5000)).toBe(true);
      await pilot.close();
      expect(await eventually(() => logs.some((l) => l.level === "warn"), 5000)).toBe(true);
      const ended = logs.find((l) => l.msg === "registration stream ended by pilot; reconnecting");
      expect(ended?.level).toBe("info");
      const warnings = logs.filter((l) => l.level === "warn");
      expect(warnings.every((l) => String(l.err).includes("ECONNREFUSED"))).toBe(true);
      expect(logs.some((l) => l.level === "error")).toBe(false);
    } finally {
      await r.stop();
    }
  });

  test(
    "with several pilots listed, the stream skips a dead one and moves to the next at once when its pilot goes",
    async () => {
      const dead = createServer();
      await new Promise<void>((r) => dead.listen(0, "127.0.0.1", () => r()));
      const deadAddr = `127.0.0.1:${(dead.address() as AddressInfo).port}`;
      await new Promise<void>((r) => dead.close(() => r()));
      const first = await startPilot(false, GROUP(), SERVICE);
      const second = await startPilot(false, GROUP(), SERVICE);
      const logs: Array<Record<string, unknown>> = [];
      // A backoff longer than the test's deadlines: only an immediate failover reconnects in time.
      const r = agentStream(`${deadAddr},${first.addr},${second.addr}`, "ratings", logs, {
        initialMs: 120_000,
        maxMs: 120_000,
      });
      try {
        expect(await eventually(() => first.reg.state().workloads.length === 1, 10_000)).toBe(true);
        expect(second.reg.state().workloads).toHaveLength(0);
        await first.close();
        expect(await eventually(() => second.reg.state().workloads.length === 1, 10_000)).toBe(true);
        expect(await eventually(() => r.connected(), 10_000)).toBe(true);
        const registered = logs.filter((l) => l.msg === "registered with pilot").map((l) => l.addr);
        expect(registered).toEqual([first.addr, second.addr]);
        expect(logs.find((l) => l.msg === "registration stream failed; retrying")).toMatchObject({
          addr: deadAddr,
          retryInMs: 100,
        });
      } finally {
        await r.stop();
        await second.close();
      }
    },
    30_000,
  );
});
