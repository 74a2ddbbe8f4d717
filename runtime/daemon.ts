/**
 * `meshd serve`'s lifecycle: build the chosen modules, open the admin and gRPC servers, start
 * the modules, report readiness, and shut everything down in order.
 */
import type { Settings } from "../mod/cli/flags.ts";
import { LOG_SETTINGS, type SettingSpec } from "../mod/cli/setting.ts";
import { parseAllowedHosts } from "../mod/admin/guard.ts";
import { splitHostPort } from "../mod/cli/setting.ts";
import { type Console, createConsole, daemonConsoleSource, isLoopbackHost } from "../mod/console/mod.ts";
import { CONFIG_STORE } from "../mod/galley/mod.ts";
import { analyze } from "../mod/galley/analyze.ts";
import { type AdminServer, startAdminServer } from "../mod/admin/server.ts";
import { loadOrCreateAdminToken } from "../mod/admin/token.ts";
import { type MetricsServer, startMetricsServer } from "../mod/admin/mod.ts";
import { createGrpcServer, GRPC_SERVER } from "../mod/grpc/server.ts";
import { registerHealthService } from "../mod/grpc/health.ts";
import { type Clock, systemClock } from "../mod/shared/clock.ts";
import { errorMessage } from "../mod/shared/errors.ts";
import type { Logger } from "../mod/shared/logger.ts";
import { createMetricsRegistry, type MetricsRegistry } from "../mod/shared/metrics.ts";
import { removeLeftoverTempFiles } from "../mod/shared/state_files.ts";
import {
  createElectionBoard,
  ELECTIONS,
  leaderzHandler,
  STORE,
  type Store,
  STORE_SETTINGS,
  storeDebugHandler,
  storeRequested,
} from "../mod/store/mod.ts";
import { ADS_SERVER, createAdsServer } from "../mod/xds/mod.ts";
import { createLinks } from "../mod/runtime/links.ts";
import { LISTENER_SETTINGS, listenerLimits } from "../mod/runtime/listener_settings.ts";
import type { DebugHandler, Module, ModuleDefinition } from "../mod/runtime/module.ts";
import { checkFileLimit } from "./file_limit.ts";

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
    name: "metrics-addr",
    kind: { type: "addr" },
    help:
      "read-only HTTP address for scrapers (GET /metrics, /healthz/ready, /healthz/live; nothing else), e.g. 0.0.0.0:15020; unset: off",
  },
  {
    name: "admin-allowed-hosts",
    kind: { type: "list" },
    default: [],
    help:
      "names the admin server answers to in the Host header besides localhost and IP addresses (others get 403)",
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
  ...LISTENER_SETTINGS,
  {
    name: "xds-response-warn-size",
    kind: { type: "int", min: 1 },
    default: 4 * 1024 * 1024,
    help:
      "xDS responses larger than this many bytes (gRPC clients' default receive limit) are warned about and flagged in /debug/syncz",
  },
  ...LOG_SETTINGS,
  ...STORE_SETTINGS,
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
  /** The metrics listener's address (--metrics-addr); undefined when it is off. */
  readonly metricsAddr?: string;
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
  const elections = createElectionBoard();
  links.offer(ELECTIONS, elections);
  const limits = listenerLimits(settings);
  const grpc = createGrpcServer({ logger: logger.child({ module: "grpc" }), limits, metrics });
  const debugHandlers: DebugHandler[] = [settingsDebugHandler(settings)];
  const running: Array<{ name: string; module: Module }> = [];
  let stopping = false;
  let admin: AdminServer | undefined;
  let metricsServer: MetricsServer | undefined;
  let store: Store | undefined;
  let ui: Console | undefined;

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
  const ads = createAdsServer({
    logger: logger.child({ module: "xds" }),
    now: () => clock.now(),
    responseWarnBytes: settings.number("xds-response-warn-size"),
    metrics,
  });
  ads.register(grpc);
  links.offer(ADS_SERVER, ads);
  links.offer(GRPC_SERVER, grpc);
  debugHandlers.push({
    path: "adsz",
    description: "connected xDS streams: node, mode, and per type what was sent, ACKed and NACKed",
    handle: () => Response.json(ads.streams().map(({ node: _node, ...rest }) => rest)),
  });
  debugHandlers.push({
    path: "grpcz",
    description: "the gRPC methods served, by path",
    handle: () => Response.json({ methods: grpc.methods() }),
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
      store?.close();
      ui?.close();
      await metricsServer?.stop();
      await admin?.stop();
      logger.info("stopped");
    })();
    return shutdownPromise;
  };

  try {
    const allowedHosts = parseAllowedHosts(settings.list("admin-allowed-hosts"));
    const dataDir = settings.string("data-dir");
    removeLeftoverTempFiles(dataDir, { logger });
    if (storeRequested(settings)) {
      const { openStore } = await import("../mod/store/open_store.ts");
      store = openStore(settings, { logger: logger.child({ module: "store" }), clock, metrics });
      if (store !== undefined) links.offer(STORE, store);
    }
    debugHandlers.push(storeDebugHandler(store));
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
    // Galley's status Lease is an election too, also without --store.
    if (!debugHandlers.some((h) => h.path === "leaderz")) debugHandlers.push(leaderzHandler(elections));
    // The token guards the handlers that change state; without any, nothing needs it.
    const adminToken = debugHandlers.some((h) => h.mutates)
      ? loadOrCreateAdminToken(dataDir, (msg) => logger.warn(msg))
      : undefined;
    // The console at /ui/: beyond loopback it wants the admin token too.
    const adminHost = splitHostPort(settings.string("admin-addr"))?.host ?? "";
    ui = createConsole({
      source: daemonConsoleSource({
        debugHandlers: () => debugHandlers,
        readiness,
        modules: opts.modules.map((m) => m.name),
        config: links.find(CONFIG_STORE),
        analyze,
        metrics,
        now: () => clock.now(),
      }),
      token: isLoopbackHost(adminHost) ? undefined : adminToken ?? loadOrCreateAdminToken(dataDir),
    });
    // gRPC, gRPC over TLS, admin, webhook and the metrics listener each hold up to --max-connections.
    const metricsAddrSetting = settings.optionalString("metrics-addr");
    checkFileLimit(limits, metricsAddrSetting === undefined ? 4 : 5, logger);
    admin = await startAdminServer(settings.string("admin-addr"), {
      metrics,
      readiness,
      debugHandlers: () => debugHandlers,
      adminToken,
      allowedHosts,
      logger: logger.child({ module: "admin" }),
      mounts: [ui.app],
    }, { limits });
    const adminAddr = `${admin.host}:${admin.port}`;
    logger.info("admin server listening", { addr: adminAddr });
    let metricsAddr: string | undefined;
    if (metricsAddrSetting !== undefined) {
      metricsServer = await startMetricsServer(metricsAddrSetting, {
        metrics,
        readiness,
        logger: logger.child({ module: "metrics" }),
      }, { limits });
      metricsAddr = hostPort(metricsServer);
      logger.info("metrics server listening", { addr: metricsAddr });
    }
    const g = await grpc.listen(settings.string("grpc-addr"));
    const grpcAddr = `${g.host.includes(":") ? `[${g.host}]` : g.host}:${g.port}`;
    logger.info("gRPC server listening", { addr: grpcAddr });
    for (const b of built) {
      await b.module.start();
      running.push(b);
      logger.debug("module started", { module: b.name });
    }
    logger.info("modules started", { modules: built.map((b) => b.name) });
    return { adminAddr, grpcAddr, ...(metricsAddr ? { metricsAddr } : {}), ready: isReady, shutdown };
  } catch (err) {
    await shutdown().catch(() => {});
    throw err;
  }
}

/** HOST:PORT of a listener, with an IPv6 host in brackets. */
function hostPort(l: { readonly host: string; readonly port: number }): string {
  return `${l.host.includes(":") ? `[${l.host}]` : l.host}:${l.port}`;
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
