import { afterEach, describe, expect, test } from "bun:test";
import { Counter } from "prom-client";
import { parseCommandLine } from "../../mod/cli/flags.ts";
import { type Daemon, startDaemon } from "../../mod/runtime/daemon.ts";
import type { ModuleDefinition } from "../../mod/runtime/module.ts";
import { serveSettings } from "../../mod/runtime/serve_command.ts";
import { createLogger } from "../../mod/shared/logger.ts";

/** A module whose readiness the test controls, counting its lifecycle calls. */
function controllable(name: string) {
  const state = { ready: false, started: 0, stopped: 0 };
  const def: ModuleDefinition = {
    name,
    summary: "test module",
    settings: [],
    create(ctx) {
      const c = new Counter({ name: `${name}_things_total`, help: "things done", registers: [ctx.metrics] });
      c.inc(3);
      ctx.debug({ path: `${name}z`, description: `${name} state`, handle: () => Response.json(state) });
      return {
        start: () => {
          state.started++;
          return Promise.resolve();
        },
        ready: () => state.ready,
        stop: () => {
          state.stopped++;
          return Promise.resolve();
        },
      };
    },
  };
  return { def, state };
}

let daemon: Daemon | undefined;
afterEach(async () => {
  await daemon?.shutdown();
  daemon = undefined;
});

async function start(modules: ModuleDefinition[]) {
  const { settings } = parseCommandLine(
    serveSettings(modules),
    ["--grpc-addr", "127.0.0.1:0", "--admin-addr", "127.0.0.1:0", "--shutdown-grace", "2s"],
    { command: "test", env: {} },
  );
  daemon = await startDaemon({ settings, modules, logger: createLogger({ write: () => {} }) });
  return daemon;
}

describe("startDaemon()", () => {
  test("/healthz/ready answers 503 until every module is ready, then 200, and 503 once stopping", async () => {
    const a = controllable("alpha");
    const b = controllable("beta");
    const d = await start([a.def, b.def]);
    const ready = () => fetch(`http://${d.adminAddr}/healthz/ready`);
    let res = await ready();
    expect(res.status).toBe(503);
    expect(await res.text()).toBe("not ready: alpha, beta\n");
    a.state.ready = true;
    res = await ready();
    expect(res.status).toBe(503);
    expect(await res.text()).toBe("not ready: beta\n");
    b.state.ready = true;
    res = await ready();
    expect(res.status).toBe(200);
    expect(d.ready()).toBe(true);
    expect(a.state.started).toBe(1);
    const stopping = d.shutdown();
    expect(d.ready()).toBe(false);
    await stopping;
    expect([a.state.stopped, b.state.stopped]).toEqual([1, 1]);
  });

  test("/metrics exposes process metrics and what modules registered, in Prometheus text format", async () => {
    const a = controllable("alpha");
    const d = await start([a.def]);
    const res = await fetch(`http://${d.adminAddr}/metrics`);
    expect(res.status).toBe(200);
    expect(res.headers.get("content-type")).toContain("text/plain");
    const body = await res.text();
    expect(body).toContain("# TYPE alpha_things_total counter");
    expect(body).toContain("alpha_things_total 3");
    expect(body).toMatch(/^process_resident_memory_bytes \d+/m);
    expect(body).toMatch(/^process_cpu_user_seconds_total [\d.]+/m);
  });

  test("/debug/ lists registered handlers and routes to them", async () => {
    const a = controllable("alpha");
    a.state.ready = true;
    const d = await start([a.def]);
    const list = await (await fetch(`http://${d.adminAddr}/debug/`)).json() as {
      handlers: { path: string }[];
    };
    expect(list.handlers.map((h) => h.path)).toEqual(["/debug/settings", "/debug/adsz", "/debug/alphaz"]);
    const state = await (await fetch(`http://${d.adminAddr}/debug/alphaz`)).json() as { started: number };
    expect(state.started).toBe(1);
    const settings = await (await fetch(`http://${d.adminAddr}/debug/settings`)).json() as Array<
      { name: string; source: string }
    >;
    expect(settings.find((s) => s.name === "grpc-addr")?.source).toBe("flag");
    expect((await fetch(`http://${d.adminAddr}/debug/nope`)).status).toBe(404);
    const version = await (await fetch(`http://${d.adminAddr}/version`)).json() as { version: string };
    expect(version.version).toMatch(/^\d+\.\d+\.\d+/);
  });

  test("a module that fails to start releases the ports and rejects", async () => {
    const bad: ModuleDefinition = {
      name: "bad",
      summary: "fails",
      settings: [],
      create: () => ({
        start: () => Promise.reject(new Error("no disk")),
        ready: () => false,
        stop: () => Promise.resolve(),
      }),
    };
    await expect(start([bad])).rejects.toThrow("no disk");
    daemon = undefined;
  });
});
