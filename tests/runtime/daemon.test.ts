import { afterEach, describe, expect, test } from "bun:test";
import { existsSync, mkdtempSync, rmSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Counter } from "prom-client";
import { parseCommandLine } from "../../mod/cli/flags.ts";
import { type Daemon, startDaemon } from "../../runtime/daemon.ts";
import type { ModuleDefinition } from "../../mod/runtime/module.ts";
import { serveSettings } from "../../runtime/serve_command.ts";
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

async function start(
  modules: ModuleDefinition[],
  opts: { args?: string[]; logs?: Array<Record<string, unknown>> } = {},
) {
  const { settings } = parseCommandLine(
    serveSettings(modules),
    ["--grpc-addr=127.0.0.1:0", "--admin-addr=127.0.0.1:0", "--shutdown-grace=2s", ...opts.args ?? []],
    { command: "test", env: {} },
  );
  const logger = createLogger({ format: "json", write: (l) => opts.logs?.push(JSON.parse(l)) });
  daemon = await startDaemon({ settings, modules, logger });
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
    expect(list.handlers.map((h) => h.path)).toEqual([
      "/debug/settings",
      "/debug/adsz",
      "/debug/grpcz",
      "/debug/storez",
      "/debug/alphaz",
      "/debug/leaderz",
    ]);
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

  test("removes leftover temporary files in --data-dir at start; makes the admin token only when a handler changes state", async () => {
    const data = mkdtempSync(join(tmpdir(), "meshd-daemon-data-"));
    try {
      const dead = Bun.spawnSync(["true"]).pid;
      const leftover = join(data, `.admin-token.${dead}.0a1b.tmp`);
      writeFileSync(leftover, "secret");
      const logs: Array<Record<string, unknown>> = [];
      await start([controllable("alpha").def], { args: [`--data-dir=${data}`], logs });
      expect(existsSync(leftover)).toBe(false);
      expect(logs.filter((l) => l.msg === "removed a temporary file left by an interrupted write"))
        .toMatchObject([{ level: "warn", path: leftover }]);
      expect(existsSync(join(data, "admin-token"))).toBe(false);
      await daemon!.shutdown();
      const resets: ModuleDefinition = {
        name: "gamma",
        summary: "has a handler that changes state",
        settings: [],
        create(ctx) {
          ctx.debug({
            path: "gammaz/reset",
            description: "resets",
            mutates: true,
            handle: () => Response.json({}),
          });
          return { start: () => Promise.resolve(), ready: () => true, stop: () => Promise.resolve() };
        },
      };
      await start([resets], { args: [`--data-dir=${data}`] });
      expect(statSync(join(data, "admin-token")).mode & 0o777).toBe(0o600);
    } finally {
      rmSync(data, { recursive: true, force: true });
    }
  });

  test("--admin-allowed-hosts takes host names only, and the error names the setting", async () => {
    const started = start([], { args: ["--admin-allowed-hosts=meshd.internal,evil.example:80"] });
    await expect(started).rejects.toThrow('--admin-allowed-hosts: "evil.example:80" is not a host name');
    daemon = undefined;
  });
});
