/**
 * The read-only metrics listener (`--metrics-addr`): it serves the admin server's /metrics and
 * /healthz/ routes and nothing else (404), refuses every method but GET and HEAD (405), and leaves
 * the admin server as it was. Checked against a real `meshd serve` process and, for readiness,
 * start-up failures and the default (off), against the daemon started in-process.
 */
import { afterAll, afterEach, beforeAll, describe, expect, test } from "bun:test";
import { Counter } from "prom-client";
import { readAdminToken } from "../../mod/admin/mod.ts";
import { parseCommandLine } from "../../mod/cli/flags.ts";
import type { ModuleDefinition } from "../../mod/runtime/module.ts";
import { createLogger } from "../../mod/shared/logger.ts";
import { type Daemon, startDaemon } from "../../runtime/daemon.ts";
import { serveSettings } from "../../runtime/serve_command.ts";
import { adminPost, eventually, type MeshdProcess, startMeshd } from "../e2e/_meshd.ts";

/** The metric names a Prometheus text exposition declares (`# TYPE name kind`). */
function metricNames(exposition: string): Set<string> {
  return new Set([...exposition.matchAll(/^# TYPE (\S+) /gm)].map((m) => m[1]!));
}

describe("meshd serve --metrics-addr (process)", () => {
  let meshd: MeshdProcess;
  let metricsAddr: string;
  beforeAll(async () => {
    meshd = await startMeshd({ args: ["--metrics-addr=127.0.0.1:0", "--shutdown-grace=2s"] });
    metricsAddr = await meshd.addrOf("metrics server listening");
  });
  afterAll(async () => {
    if (meshd.proc.exitCode === null) await meshd.stop();
  });

  test("GET /metrics answers with the admin server's registry and content type", async () => {
    const fromAdmin = await fetch(`http://${meshd.adminAddr}/metrics`);
    const adminBody = await fromAdmin.text();
    const res = await fetch(`http://${metricsAddr}/metrics`);
    expect(res.status).toBe(200);
    expect(res.headers.get("content-type")).toBe(fromAdmin.headers.get("content-type"));
    const body = await res.text();
    // The admin guard's counter lives in the daemon's registry: the same registry is served.
    expect(body).toContain("# TYPE meshd_admin_requests_refused_total counter");
    const names = metricNames(body);
    expect(names.size).toBeGreaterThan(10);
    for (const name of metricNames(adminBody)) expect(names.has(name), name).toBe(true);
  });

  test("health routes answer; HEAD /metrics has no body", async () => {
    expect(
      await eventually(async () => (await fetch(`http://${metricsAddr}/healthz/ready`)).status === 200),
    ).toBe(true);
    const live = await fetch(`http://${metricsAddr}/healthz/live`);
    expect(live.status).toBe(200);
    expect(await live.text()).toBe("alive\n");
    const head = await fetch(`http://${metricsAddr}/metrics`, { method: "HEAD" });
    expect(head.status).toBe(200);
    expect(await head.text()).toBe("");
  });

  test("debug handlers, the console and everything else are 404", async () => {
    for (const path of ["/", "/debug", "/debug/", "/debug/settings", "/debug/configz", "/ui/", "/version"]) {
      const res = await fetch(`http://${metricsAddr}${path}`, { redirect: "manual" });
      expect(res.status, path).toBe(404);
      expect(((await res.json()) as { error: string }).error).toContain("--metrics-addr");
    }
  });

  test("every method but GET and HEAD is 405, with or without the admin token", async () => {
    for (const method of ["POST", "PUT", "DELETE", "PATCH", "OPTIONS"]) {
      const res = await fetch(`http://${metricsAddr}/metrics`, { method });
      expect(res.status, method).toBe(405);
      expect(res.headers.get("allow")).toBe("GET, HEAD");
    }
    // A state-changing debug path the admin server takes with the token is refused here anyway.
    const token = readAdminToken(meshd.dataDir);
    const res = await fetch(`http://${metricsAddr}/debug/ca/rotate`, {
      method: "POST",
      headers: { authorization: `Bearer ${token}` },
    });
    expect(res.status).toBe(405);
  });

  test("the admin server still serves /debug/, the console and its writes", async () => {
    const settings = await fetch(`http://${meshd.adminAddr}/debug/settings`);
    expect(settings.status).toBe(200);
    const entries = (await settings.json()) as Array<{ name: string; value: unknown; source: string }>;
    expect(entries.find((e) => e.name === "metrics-addr")).toMatchObject({
      value: "127.0.0.1:0",
      source: "flag",
    });
    expect((await fetch(`http://${meshd.adminAddr}/ui/`)).status).toBe(200);
    // A write the admin server takes (with the token) is routed there: not 404 or 405.
    const write = await adminPost(meshd, "/debug/ca/rotate");
    expect(write.status).toBe(200);
  });
});

/** A module whose readiness the test sets, with one counter in the daemon's registry. */
function controllable(name: string) {
  const state = { ready: false };
  const def: ModuleDefinition = {
    name,
    summary: "test module",
    settings: [],
    create(ctx) {
      new Counter({ name: `${name}_things_total`, help: "things done", registers: [ctx.metrics] }).inc(3);
      return {
        start: () => Promise.resolve(),
        ready: () => state.ready,
        stop: () => Promise.resolve(),
      };
    },
  };
  return { def, state };
}

describe("startDaemon() with --metrics-addr", () => {
  let daemon: Daemon | undefined;
  afterEach(async () => {
    await daemon?.shutdown();
    daemon = undefined;
  });

  async function start(
    modules: ModuleDefinition[],
    args: string[],
    logs: Array<Record<string, unknown>> = [],
  ) {
    const { settings } = parseCommandLine(
      serveSettings(modules),
      ["--grpc-addr=127.0.0.1:0", "--admin-addr=127.0.0.1:0", "--shutdown-grace=1s", ...args],
      { command: "test", env: {} },
    );
    const logger = createLogger({ format: "json", write: (l) => logs.push(JSON.parse(l)) });
    daemon = await startDaemon({ settings, modules, logger });
    return daemon;
  }

  test("readiness follows the modules, as on the admin server, and module metrics are served", async () => {
    const a = controllable("alpha");
    const d = await start([a.def], ["--metrics-addr=127.0.0.1:0"]);
    expect(d.metricsAddr).toMatch(/^127\.0\.0\.1:\d+$/);
    const ready = await fetch(`http://${d.metricsAddr}/healthz/ready`);
    expect(ready.status).toBe(503);
    expect(await ready.text()).toBe("not ready: alpha\n");
    a.state.ready = true;
    expect((await fetch(`http://${d.metricsAddr}/healthz/ready`)).status).toBe(200);
    expect(await (await fetch(`http://${d.metricsAddr}/metrics`)).text()).toContain("alpha_things_total 3");
  });

  test("off unless set: no listener, no log line", async () => {
    const logs: Array<Record<string, unknown>> = [];
    const d = await start([controllable("beta").def], [], logs);
    expect(d.metricsAddr).toBeUndefined();
    expect(logs.some((l) => l.msg === "metrics server listening")).toBe(false);
    expect(logs.some((l) => l.msg === "admin server listening")).toBe(true);
  });

  test("an address that cannot be bound fails start-up, naming --metrics-addr", async () => {
    const first = await start([controllable("gamma").def], []);
    const { settings } = parseCommandLine(
      serveSettings([]),
      ["--grpc-addr=127.0.0.1:0", "--admin-addr=127.0.0.1:0", `--metrics-addr=${first.adminAddr}`],
      { command: "test", env: {} },
    );
    const err = await startDaemon({ settings, modules: [], logger: createLogger({ write: () => {} }) })
      .then(() => undefined, (e: Error) => e);
    expect(err?.message).toContain(`--metrics-addr ${first.adminAddr}`);
  });
});
