/**
 * `meshd serve`'s lifecycle: build the chosen modules, open the admin and gRPC servers, start
 * the modules, report readiness, and shut everything down in order.
 */
import type { Settings } from "../cli/flags.ts";
import { LOG_SETTINGS, type SettingSpec } from "../cli/setting.ts";
import { type AdminServer, startAdminServer } from "../admin/server.ts";
import { createGrpcServer, GRPC_SERVER } from "../grpc/server.ts";
import { registerHealthService } from "../grpc/health.ts";
import { type Clock, systemClock } from "../shared/clock.ts";
import { errorMessage } from "../shared/errors.ts";
import type { Logger } from "../shared/logger.ts";
import { createMetricsRegistry, type MetricsRegistry } from "../shared/metrics.ts";
import { ADS_SERVER, createAdsServer } from "../xds/mod.ts";
import { createLinks } from "./links.ts";
import type { DebugHandler, Module, ModuleDefinition } from "./module.ts";

/** The settings every `meshd serve` has, whatever modules run. */
export const DAEMON_SETTINGS: readonly SettingSpec[] = [
  {
    name: "grpc-addr",
    kind: { type: "addr" },
    default: "0.0.0.0:15010",
    help: "gRPC plaintext address (xDS, CA, MCP, Mixer APIs)",
  },
  {
    name: "admin-addr",
    kind: { type: "addr" },
    default: "127.0.0.1:15014",
    help: "admin HTTP address (/healthz/ready, /metrics, /debug/)",
  },
  {
    name: "data-dir",
    kind: { type: "path" },
    default: "/var/lib/meshd",
    help: "directory for persistent state (CA keys, tokens); created when first needed",
  },
  {
    name: "shutdown-grace",
    kind: { type: "duration" },
    default: 10_000,
    help: "how long SIGTERM waits for streams to finish before closing them",
  },
  ...LOG_SETTINGS,
];

/** Inputs to startDaemon. */
export interface DaemonOptions {
  settings: Settings;
  /** The modules to run, in start order. */
  modules: readonly ModuleDefinition[];
  logger: Logger;
  clock?: Clock;
  metrics?: MetricsRegistry;
}

/** A running daemon. */
export interface Daemon {
  readonly adminAddr: string;
  readonly grpcAddr: string;
  /** True when every module is ready and shutdown has not begun. */
  ready(): boolean;
  /** Shuts down once (later calls return the same promise); resolves when all is closed. */
  shutdown(): Promise<void>;
}

/**
 * Creates and starts the daemon. Rejects, after releasing whatever it had opened, when a server
 * cannot bind or a module fails to be created or started.
 */
export async function startDaemon(opts: DaemonOptions): Promise<Daemon> {
  const { settings, logger } = opts;
  const clock = opts.clock ?? systemClock;
  const metrics = opts.metrics ?? createMetricsRegistry();
  const links = createLinks();
  const grpc = createGrpcServer({ logger: logger.child({ module: "grpc" }) });
  const debugHandlers: DebugHandler[] = [settingsDebugHandler(settings)];
  const running: Array<{ name: string; module: Module }> = [];
  let stopping = false;
  let admin: AdminServer | undefined;

  /** Modules not serving yet: those not started, and those started but not ready. */
  const readiness = () => ({
    notReady: opts.modules
      .filter((def) => {
        const m = running.find((r) => r.name === def.name);
        return m === undefined || !safeReady(m.module);
      })
      .map((def) => def.name),
    stopping,
  });
  const isReady = () => {
    const r = readiness();
    return !r.stopping && r.notReady.length === 0;
  };
  registerHealthService(grpc, { ready: isReady, clock });
  const ads = createAdsServer({ logger: logger.child({ module: "xds" }), now: () => clock.now() });
  ads.register(grpc);
  links.offer(ADS_SERVER, ads);
  links.offer(GRPC_SERVER, grpc);
  debugHandlers.push({
    path: "adsz",
    description: "connected xDS streams: node, mode, and per type what was sent, ACKed and NACKed",
    handle: () => Response.json(ads.streams().map(({ node: _node, ...rest }) => rest)),
  });

  let shutdownPromise: Promise<void> | undefined;
  const shutdown = () => {
    shutdownPromise ??= (async () => {
      stopping = true;
      const grace = settings.number("shutdown-grace");
      logger.info("shutting down", { graceMs: grace });
      const deadline = AbortSignal.timeout(grace);
      await grpc.shutdown(grace);
      for (const m of [...running].reverse()) {
        try {
          await m.module.stop(deadline);
        } catch (err) {
          logger.error("module failed to stop cleanly", { module: m.name, err: errorMessage(err) });
        }
      }
      await admin?.stop();
      logger.info("stopped");
    })();
    return shutdownPromise;
  };

  try {
    const built: Array<{ name: string; module: Module }> = [];
    for (const def of opts.modules) {
      const log = logger.child({ module: def.name });
      const module = await def.create({
        settings,
        logger: log,
        metrics,
        clock,
        grpc,
        links,
        debug: (h) => {
          if (debugHandlers.some((d) => d.path === h.path)) {
            throw new Error(`debug path /debug/${h.path} registered twice`);
          }
          debugHandlers.push(h);
        },
      });
      built.push({ name: def.name, module });
    }
    admin = startAdminServer(settings.string("admin-addr"), {
      metrics,
      readiness,
      debugHandlers: () => debugHandlers,
    });
    const adminAddr = `${admin.host}:${admin.port}`;
    logger.info("admin server listening", { addr: adminAddr });
    const g = await grpc.listen(settings.string("grpc-addr"));
    const grpcAddr = `${g.host.includes(":") ? `[${g.host}]` : g.host}:${g.port}`;
    logger.info("gRPC server listening", { addr: grpcAddr });
    for (const b of built) {
      await b.module.start();
      running.push(b);
      logger.debug("module started", { module: b.name });
    }
    logger.info("modules started", { modules: built.map((b) => b.name) });
    return { adminAddr, grpcAddr, ready: isReady, shutdown };
  } catch (err) {
    await shutdown().catch(() => {});
    throw err;
  }
}

function safeReady(m: Module): boolean {
  try {
    return m.ready();
  } catch {
    return false;
  }
}

function settingsDebugHandler(settings: Settings): DebugHandler {
  return {
    path: "settings",
    description: "effective settings and where each came from (flag, env, file, default)",
    handle: () => Response.json(settings.entries()),
  };
}
