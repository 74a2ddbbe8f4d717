/**
 * Traffic-management scenarios run against meshd's pilot with a real proxyless gRPC client,
 * shared by the grpc-js and the python3-grpcio suites. Every scenario makes a bounded number
 * of calls and states its tolerance.
 */
import { afterAll, beforeAll, beforeEach, describe, expect, test } from "bun:test";
import * as grpc from "@grpc/grpc-js";
import { type ClientKind, ECHO_HOST, share, syncz } from "./_grpc.ts";
import { type Mesh, startMesh } from "./_grpc_mesh.ts";

/** Which scenarios a client kind runs. */
export interface ScenarioOptions {
  /** Run the per-route timeout scenario. */
  readonly timeouts: boolean;
}

const dest = (subset?: string) => `{host: ${ECHO_HOST}${subset ? `, subset: ${subset}` : ""}}`;

/** The canary split's tolerance: |measured share of v2 - 10%| at most this, over CANARY_CALLS calls. */
export const CANARY_TOLERANCE = 0.03;
const CANARY_CALLS = 2000;
/** Upper bound on one scenario's run time. */
const SCENARIO_TIMEOUT = 20_000;

/** Defines the scenarios for one client kind (call inside a test file). */
export function grpcScenarios(kind: ClientKind, opts: ScenarioOptions): void {
  describe(`pilot with a ${kind} xDS client`, () => {
    let mesh: Mesh;
    beforeAll(async () => {
      mesh = await startMesh(kind);
    }, 30_000);
    afterAll(async () => {
      await mesh?.close();
    });
    beforeEach(() => mesh.resetBackends());

    test("weighted canary 90/10 splits calls within 3 percentage points", async () => {
      await mesh.route({
        http: `- route:\n  - destination: ${dest("v1")}\n    weight: 90\n  - destination: ${
          dest("v2")
        }\n    weight: 10`,
      });
      const s = await mesh.calls({ n: CANARY_CALLS, concurrency: 20 });
      console.error(`${kind} canary: v2 share ${(share(s, "echo-v2") * 100).toFixed(1)}% of ${s.ok}`);
      expect(s.errors).toEqual({});
      expect(s.ok).toBe(CANARY_CALLS);
      expect(Math.abs(share(s, "echo-v2") - 0.1)).toBeLessThanOrEqual(CANARY_TOLERANCE);
      expect((s.byBackend["echo-v1"] ?? 0) + (s.byBackend["echo-v2"] ?? 0)).toBe(CANARY_CALLS);
    }, SCENARIO_TIMEOUT);

    test("header-based routing sends an end user's calls to v2 and the rest to v1", async () => {
      await mesh.route({
        http:
          `- match:\n  - headers:\n      end-user: {exact: jason}\n  route:\n  - destination: ${
            dest("v2")
          }\n` +
          `- route:\n  - destination: ${dest("v1")}`,
      });
      const jason = await mesh.calls({ n: 50, concurrency: 10, metadata: { "end-user": "jason" } });
      const other = await mesh.calls({ n: 50, concurrency: 10, metadata: { "end-user": "alice" } });
      const none = await mesh.calls({ n: 50, concurrency: 10 });
      expect(jason.byBackend).toEqual({ "echo-v2": 50 });
      expect(other.byBackend).toEqual({ "echo-v1": 50 });
      expect(none.byBackend).toEqual({ "echo-v1": 50 });
    }, SCENARIO_TIMEOUT);

    test(
      "fault abort fails about half of the calls with the configured status, before they reach a backend",
      async () => {
        await mesh.route({
          http:
            `- fault:\n    abort:\n      grpcStatus: PERMISSION_DENIED\n      percentage: {value: 50}\n  route:\n  - destination: ${
              dest("v1")
            }`,
        });
        const n = 400;
        const s = await mesh.calls({ n, concurrency: 20 });
        const aborted = (s.errors.PERMISSION_DENIED ?? 0) / n;
        console.error(`${kind} fault abort: ${(aborted * 100).toFixed(1)}% aborted`);
        expect(Object.keys(s.errors).filter((c) => c !== "PERMISSION_DENIED")).toEqual([]);
        expect(aborted).toBeGreaterThanOrEqual(0.4);
        expect(aborted).toBeLessThanOrEqual(0.6);
        expect(mesh.v1.calls).toBe(s.ok);
      },
      SCENARIO_TIMEOUT,
    );

    test("fault delay holds about half of the calls back by the configured delay", async () => {
      await mesh.route({
        http:
          `- fault:\n    delay:\n      fixedDelay: 300ms\n      percentage: {value: 50}\n  route:\n  - destination: ${
            dest("v1")
          }`,
      });
      const n = 200;
      const s = await mesh.calls({ n, concurrency: n });
      const delayed = s.latenciesMs.filter((ms) => ms >= 290).length / n;
      console.error(`${kind} fault delay: ${(delayed * 100).toFixed(1)}% delayed`);
      expect(s.ok).toBe(n);
      expect(delayed).toBeGreaterThanOrEqual(0.35);
      expect(delayed).toBeLessThanOrEqual(0.65);
    }, SCENARIO_TIMEOUT);

    test("retries turn a failing backend's UNAVAILABLE into successes", async () => {
      mesh.v2.fail({ code: grpc.status.UNAVAILABLE });
      // No retries at all (a route without `retries` gets Istio's default of 2 attempts).
      await mesh.route({ http: `- retries:\n    attempts: 0\n  route:\n  - destination: ${dest()}` });
      const without = await mesh.calls({ n: 40 });
      expect(without.errors.UNAVAILABLE ?? 0).toBeGreaterThanOrEqual(10);
      await mesh.route({
        http: `- retries:\n    attempts: 3\n    retryOn: unavailable\n  route:\n  - destination: ${dest()}`,
      });
      const failedBefore = mesh.v2.failed;
      const n = 100;
      const s = await mesh.calls({ n });
      expect(s.errors).toEqual({});
      expect(s.byBackend).toEqual({ "echo-v1": n });
      expect(mesh.v2.failed - failedBefore).toBeGreaterThanOrEqual(10);
    }, SCENARIO_TIMEOUT);

    if (opts.timeouts) {
      test("a per-route timeout ends slow calls with DEADLINE_EXCEEDED at the route's timeout", async () => {
        mesh.v2.delay(1500);
        await mesh.route({
          http:
            `- match:\n  - headers:\n      end-user: {exact: slow}\n  timeout: 200ms\n  route:\n  - destination: ${
              dest("v2")
            }\n` +
            `- route:\n  - destination: ${dest("v2")}`,
        });
        const slow = await mesh.calls({
          n: 10,
          concurrency: 10,
          metadata: { "end-user": "slow" },
          deadlineMs: 5000,
        });
        expect(slow.errors).toEqual({ DEADLINE_EXCEEDED: 10 });
        for (const ms of slow.latenciesMs) {
          expect(ms).toBeGreaterThanOrEqual(180);
          expect(ms).toBeLessThan(1000);
        }
        // Without the route timeout the same backend answers, later.
        const patient = await mesh.calls({ n: 2, concurrency: 2, deadlineMs: 5000 });
        expect(patient.byBackend).toEqual({ "echo-v2": 2 });
      }, SCENARIO_TIMEOUT);
    }

    test("outlier detection ejects the failing endpoint", async () => {
      mesh.v2.fail({ code: grpc.status.UNAVAILABLE });
      await mesh.route({
        trafficPolicy:
          "outlierDetection:\n  consecutive5xxErrors: 3\n  interval: 500ms\n  baseEjectionTime: 30s\n  maxEjectionPercent: 100",
        // Without retries, so the failures the detector counts reach the caller too.
        http: `- retries:\n    attempts: 0\n  route:\n  - destination: ${dest()}`,
      });
      const first = await mesh.calls({ n: 20 });
      expect(first.errors.UNAVAILABLE ?? 0).toBeGreaterThan(0);
      let clean = false;
      for (let i = 0; i < 40 && !clean; i++) {
        await Bun.sleep(250);
        clean = Object.keys((await mesh.calls({ n: 20 })).errors).length === 0;
      }
      expect(clean).toBe(true);
      const v2Calls = mesh.v2.calls;
      const after = await mesh.calls({ n: 40 });
      expect(after.byBackend).toEqual({ "echo-v1": 40 });
      expect(mesh.v2.calls).toBe(v2Calls);
    }, SCENARIO_TIMEOUT);

    test("a live config edit takes effect on the same xDS stream, without a reconnect", async () => {
      await mesh.route({ http: `- route:\n  - destination: ${dest("v1")}\n  timeout: 4s` });
      expect((await mesh.calls({ n: 20, concurrency: 5 })).byBackend).toEqual({ "echo-v1": 20 });
      const before = (await syncz(mesh.meshd.adminAddr)).find((p) => p.proxy === mesh.node)!;
      await mesh.route({ http: `- route:\n  - destination: ${dest("v2")}\n  timeout: 4s` });
      expect((await mesh.calls({ n: 20, concurrency: 5 })).byBackend).toEqual({ "echo-v2": 20 });
      const after = (await syncz(mesh.meshd.adminAddr)).find((p) => p.proxy === mesh.node)!;
      expect(after.connection).toBe(before.connection);
      expect(after.connectedAt).toBe(before.connectedAt);
      const connects = mesh.meshd.logs.filter((l) =>
        l.msg === "xDS client connected" && l.node === mesh.node
      );
      expect(connects).toHaveLength(1);
    }, SCENARIO_TIMEOUT);

    test(
      "what gRPC cannot express is listed in config_dump and counted in syncz, and calls still route",
      async () => {
        await mesh.route({ http: `- route:\n  - destination: ${dest("v1")}\n  mirror: ${dest("v2")}` });
        expect((await mesh.calls({ n: 10 })).byBackend).toEqual({ "echo-v1": 10 });
        const res = await fetch(
          `http://${mesh.meshd.adminAddr}/debug/config_dump?proxyID=${encodeURIComponent(mesh.node)}`,
        );
        const dump = (await res.json()) as { grpcUnsupported?: Array<{ resource: string; field: string }> };
        expect(
          dump.grpcUnsupported?.some((g) => g.field.endsWith("mirror") && g.resource.startsWith("route")),
        ).toBe(
          true,
        );
        const sync = (await syncz(mesh.meshd.adminAddr)).find((p) => p.proxy === mesh.node)!;
        expect(sync.grpcUnsupported).toBe(dump.grpcUnsupported!.length);
        expect(
          mesh.meshd.logs.some((l) => String(l.msg).startsWith("proxyless gRPC cannot express") && l.proxy),
        )
          .toBe(true);
      },
      SCENARIO_TIMEOUT,
    );

    test(
      "a delegating VirtualService routes by the delegate's rules, merged under its own match",
      async () => {
        // The delegate lives in another namespace, exported to the root's; it has no hosts.
        const delegate = Bun.file(`${mesh.dir}/delegate.yaml`);
        await Bun.write(
          delegate,
          "apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {name: echo-team, namespace: team}\n" +
            "spec:\n  exportTo: [test]\n  http:\n" +
            `  - name: jason\n    match:\n    - headers:\n        end-user: {exact: jason}\n    route:\n    - destination: ${
              dest("v2")
            }\n` +
            `  - name: others\n    route:\n    - destination: ${dest("v1")}\n`,
        );
        try {
          await mesh.route({
            http:
              "- name: root\n  match:\n  - uri: {prefix: /}\n  delegate: {name: echo-team, namespace: team}",
          });
          const jason = await mesh.calls({ n: 20, concurrency: 5, metadata: { "end-user": "jason" } });
          const other = await mesh.calls({ n: 20, concurrency: 5, metadata: { "end-user": "alice" } });
          expect(jason.byBackend).toEqual({ "echo-v2": 20 });
          expect(other.byBackend).toEqual({ "echo-v1": 20 });
        } finally {
          await delegate.delete();
        }
      },
      SCENARIO_TIMEOUT,
    );
  });
}
