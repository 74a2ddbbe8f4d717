import { describe, expect, test } from "bun:test";
import { create } from "@bufbuild/protobuf";
import { connectNodeAdapter } from "@connectrpc/connect-node";
import http2 from "node:http2";
import { createServer } from "node:net";
import type { AddressInfo } from "node:net";
import {
  Health,
  HealthCheckResponse_ServingStatus,
  HealthCheckResponseSchema,
} from "#gen/grpc/health/v1/health_pb.ts";
import { createHealthChecker, createProber, type ProbeResult } from "../../mod/agent/health.ts";
import { createManualClock } from "../../mod/shared/clock.ts";

const flush = async () => {
  for (let i = 0; i < 10; i++) await Promise.resolve();
};

describe("probers", () => {
  test("httpGet: 2xx and 3xx are healthy, other statuses and refused connections are not", async () => {
    const srv = Bun.serve({
      hostname: "127.0.0.1",
      port: 0,
      fetch(req) {
        const p = new URL(req.url).pathname;
        if (p === "/ready") {
          return new Response("ok", { status: req.headers.get("x-probe") === "yes" ? 200 : 403 });
        }
        if (p === "/moved") return new Response(null, { status: 302, headers: { location: "/elsewhere" } });
        return new Response("no", { status: 503 });
      },
    });
    try {
      const port = srv.port!;
      expect(
        await createProber({
          httpGet: { port, path: "/ready", httpHeaders: [{ name: "x-probe", value: "yes" }] },
        })(1000),
      )
        .toEqual({ healthy: true });
      expect(await createProber({ httpGet: { port, path: "/moved" } })(1000)).toEqual({ healthy: true });
      expect(await createProber({ httpGet: { port, path: "/ready" } })(1000)).toEqual({
        healthy: false,
        message: `HTTP GET http://127.0.0.1:${port}/ready: status 403`,
      });
      expect(await createProber({ httpGet: { port } })(1000)).toMatchObject({
        healthy: false,
        message: expect.stringContaining("503"),
      });
    } finally {
      srv.stop(true);
    }
    const dead = await createProber({ httpGet: { port: srv.port!, path: "/ready" } })(1000);
    expect(dead.healthy).toBe(false);
  });

  test("tcpSocket: a connection is healthy, a refused one is not", async () => {
    const srv = createServer((s) => s.end());
    await new Promise<void>((r) => srv.listen(0, "127.0.0.1", () => r()));
    const port = (srv.address() as AddressInfo).port;
    expect(await createProber({ tcpSocket: { port } })(1000)).toEqual({ healthy: true });
    await new Promise<void>((r) => srv.close(() => r()));
    expect(await createProber({ tcpSocket: { port } })(1000)).toMatchObject({
      healthy: false,
      message: expect.stringContaining(`TCP 127.0.0.1:${port}:`),
    });
  });

  test("exec: exit 0 is healthy; a failure reports the status and stderr; a hang times out", async () => {
    expect(await createProber({ exec: { command: ["true"] } })(2000)).toEqual({ healthy: true });
    expect(await createProber({ exec: { command: ["sh", "-c", "echo broken >&2; exit 3"] } })(2000)).toEqual({
      healthy: false,
      message: "exec sh: exit status 3: broken",
    });
    expect(await createProber({ exec: { command: ["sleep", "5"] } })(200)).toEqual({
      healthy: false,
      message: "exec sleep: no exit within 200 ms",
    });
    expect((await createProber({ exec: { command: ["/nonexistent/probe"] } })(1000)).healthy).toBe(false);
  });

  test("grpc: SERVING is healthy, NOT_SERVING and unreachable are not", async () => {
    let status = HealthCheckResponse_ServingStatus.SERVING;
    const srv = http2.createServer(
      connectNodeAdapter({
        grpc: true,
        connect: false,
        grpcWeb: false,
        routes: (r) => r.service(Health, { check: () => create(HealthCheckResponseSchema, { status }) }),
      }),
    );
    await new Promise<void>((r) => srv.listen(0, "127.0.0.1", () => r()));
    const port = (srv.address() as AddressInfo).port;
    try {
      expect(await createProber({ grpc: { port } })(2000)).toEqual({ healthy: true });
      status = HealthCheckResponse_ServingStatus.NOT_SERVING;
      expect(await createProber({ grpc: { port, service: "app" } })(2000)).toEqual({
        healthy: false,
        message: `gRPC health http://127.0.0.1:${port} "app": NOT_SERVING`,
      });
    } finally {
      srv.close();
    }
    expect((await createProber({ grpc: { port: 1 } })(1000)).healthy).toBe(false);
  });

  test("a probe without a method is refused", () => {
    expect(() => createProber({ periodSeconds: 1 })).toThrow(
      "probe: want one of httpGet, tcpSocket, exec, grpc",
    );
  });
});

describe("createHealthChecker()", () => {
  function scripted(results: boolean[]) {
    let i = 0;
    const timeouts: number[] = [];
    return {
      timeouts,
      prober: (timeoutMs: number): Promise<ProbeResult> => {
        timeouts.push(timeoutMs);
        const ok = results[Math.min(i++, results.length - 1)]!;
        return Promise.resolve(ok ? { healthy: true } : { healthy: false, message: `fail ${i}` });
      },
    };
  }

  test("probes after the initial delay, then every period, reporting only changes past the thresholds", async () => {
    const clock = createManualClock(0);
    const s = scripted([true, false, true, true, false, false, false, true, true]);
    const events: ProbeResult[] = [];
    const c = createHealthChecker({
      clock,
      probe: {
        initialDelaySeconds: 5,
        periodSeconds: 2,
        timeoutSeconds: 3,
        successThreshold: 2,
        failureThreshold: 3,
        tcpSocket: { port: 1 },
      },
      prober: s.prober,
      onChange: (r) => events.push(r),
    });
    clock.advance(4999);
    await flush();
    expect(s.timeouts).toEqual([]);
    const step = async (ms: number) => {
      clock.advance(ms);
      await flush();
    };
    await step(1); // t=5: true (1 success)
    expect(s.timeouts).toEqual([3000]);
    expect(c.state()).toBeUndefined();
    await step(2000); // false
    await step(2000); // true
    await step(2000); // true -> 2 successes: healthy
    expect(events).toEqual([{ healthy: true }]);
    await step(2000); // false
    await step(2000); // false
    expect(events.length).toBe(1);
    await step(2000); // false -> 3 failures: unhealthy
    expect(events).toEqual([{ healthy: true }, { healthy: false, message: "fail 7" }]);
    await step(2000); // true
    await step(2000); // true -> healthy again
    expect(events.length).toBe(3);
    expect(c.state()).toEqual({ healthy: true });
    c.stop();
    expect(clock.pending()).toBe(0);
  });

  test("Istio's defaults: 10 s period, thresholds of one; failing from the start reports unhealthy once", async () => {
    const clock = createManualClock(0);
    const s = scripted([false]);
    const events: ProbeResult[] = [];
    const c = createHealthChecker({
      clock,
      probe: { tcpSocket: { port: 1 } },
      prober: s.prober,
      onChange: (r) => events.push(r),
    });
    clock.advance(0);
    await flush();
    expect(s.timeouts).toEqual([1000]);
    expect(events).toEqual([{ healthy: false, message: "fail 1" }]);
    clock.advance(9_999);
    await flush();
    expect(s.timeouts.length).toBe(1);
    clock.advance(1);
    await flush();
    expect(s.timeouts.length).toBe(2);
    expect(events.length).toBe(1);
    c.stop();
  });
});
