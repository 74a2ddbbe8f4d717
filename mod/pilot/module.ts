/**
 * The pilot module: builds a PushContext from galley's config and the service registries,
 * translates it for every connected proxy, and pushes over the shared ADS server, debounced.
 */
import { toJson } from "@bufbuild/protobuf";
import { ClusterSchema } from "#gen/envoy/config/cluster/v3/cluster_pb.ts";
import { ClusterLoadAssignmentSchema } from "#gen/envoy/config/endpoint/v3/endpoint_pb.ts";
import { ListenerSchema } from "#gen/envoy/config/listener/v3/listener_pb.ts";
import { RouteConfigurationSchema } from "#gen/envoy/config/route/v3/route_pb.ts";
import { Counter, Gauge, Histogram } from "prom-client";
import type { SettingSpec } from "../cli/setting.ts";
import { CONFIG_READY, CONFIG_STORE } from "../galley/mod.ts";
import type { ModuleDefinition } from "../runtime/module.ts";
import { ELECTIONS, STORE, STORE_COMPACT_INTERVAL_SETTING } from "../store/mod.ts";
import type { Replica } from "../store/mod.ts";
import { ADS_SERVER, type XdsClient } from "../xds/mod.ts";
import {
  AUTO_REGISTER_GRACE_SETTING,
  AUTO_REGISTER_REQUIRE_IDENTITY_SETTING,
  createAutoRegistry,
} from "./autoregister.ts";
import { checkEnvoySet, configuredSecretNames, proxyKindOf } from "./check/mod.ts";
import { createPushContext } from "./model/push_context.ts";
import type { RegistryState, ServiceRegistry } from "./model/registry.ts";
import {
  createPlatformRegistries,
  createPlatformRegistrySet,
  endpointChanges,
  guardedWatchers,
  parseRegistries,
  registriesVersion,
  REGISTRY_SETTING,
} from "./registry/mod.ts";
import type { SharedRegistrations } from "./shared_registrations.ts";
import { endpointzHandler } from "./endpointz.ts";
import { simulateDebugHandler } from "./simulate/debug.ts";
import { debouncePushes } from "./xds/debounce.ts";
import { createPilotProvider, PILOT_TYPES, TYPE_SHORT } from "./xds/generator.ts";
import {
  narrowRegistryRequest,
  type PushRequest,
  type PushRequestSummary,
  summarizePushRequest,
} from "./xds/push_request.ts";
import { syncStatus } from "./xds/sync_status.ts";
import type { Violation } from "./check/mod.ts";

const SETTINGS: readonly SettingSpec[] = [
  {
    name: "push-debounce",
    kind: { type: "duration" },
    default: 100,
    help: "quiet time after a config change before pushing",
  },
  {
    name: "push-debounce-max",
    kind: { type: "duration" },
    default: 10_000,
    help: "longest a push waits while changes keep coming",
  },
  AUTO_REGISTER_GRACE_SETTING,
  AUTO_REGISTER_REQUIRE_IDENTITY_SETTING,
  STORE_COMPACT_INTERVAL_SETTING,
  REGISTRY_SETTING,
  {
    name: "registry-sync-timeout",
    kind: { type: "duration" },
    default: 30_000,
    help:
      "longest pilot waits at start for every --registry to be read once before serving proxies (and reporting ready); after it, proxies get config without the registries not yet read, and each is added as it syncs",
  },
  {
    name: "xds-self-check",
    kind: { type: "bool" },
    help:
      "check every generated xDS set against Envoy's field rules and semantic checks before sending it; a set that breaks one is not sent (default: on when NODE_ENV=test or MESHD_DEBUG is set)",
  },
];

/**
 * Whether the self-check runs when --xds-self-check is not given: in tests (`bun test` sets
 * NODE_ENV=test, and meshd processes started by tests inherit it) and debug runs (MESHD_DEBUG).
 */
export function selfCheckByDefault(env: Readonly<Record<string, string | undefined>>): boolean {
  return env.NODE_ENV === "test" ||
    (env.MESHD_DEBUG !== undefined && env.MESHD_DEBUG !== "" && env.MESHD_DEBUG !== "0");
}

/** The pilot module definition. */
export const pilotModule: ModuleDefinition = {
  name: "pilot",
  summary: "service discovery and xDS for Envoy sidecars and proxyless gRPC",
  requires: ["galley"],
  settings: SETTINGS,
  async create(ctx) {
    const store = ctx.links.find(CONFIG_STORE);
    const configReady = ctx.links.find(CONFIG_READY);
    const ads = ctx.links.find(ADS_SERVER);
    if (!store || !configReady || !ads) {
      throw new Error("pilot needs galley and the ADS server in the same process");
    }
    const m = ctx.metrics;
    const pushes = new Counter({
      name: "pilot_xds_pushes",
      help: "xDS responses sent, by type",
      labelNames: ["type"],
      registers: [m],
    });
    const rejects = new Counter({
      name: "pilot_total_xds_rejects",
      help: "xDS responses rejected (NACKed) by proxies, by type",
      labelNames: ["type"],
      registers: [m],
    });
    const connected = new Gauge({
      name: "pilot_xds_connected",
      help: "Connected xDS streams of pilot's types",
      registers: [m],
    });
    const pushTime = new Histogram({
      name: "pilot_xds_push_time",
      help:
        "Seconds from the start of a push (debounce fired) until a response of that push was sent, by type",
      labelNames: ["type"],
      buckets: [0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1, 3, 5, 10],
      registers: [m],
    });
    const convergence = new Histogram({
      name: "pilot_proxy_convergence_time",
      help: "Seconds from the first config change of a push until a proxy ACKed the resulting config",
      buckets: [0.01, 0.1, 0.5, 1, 3, 5, 10, 20, 30],
      registers: [m],
    });
    const inconsistent = new Counter({
      name: "pilot_xds_inconsistent_total",
      help: "Generated configurations that failed the consistency check (kept the last good one)",
      registers: [m],
    });
    const contextTime = new Histogram({
      name: "pilot_push_context_seconds",
      help: "Seconds to build a PushContext",
      buckets: [0.001, 0.01, 0.05, 0.1, 0.5, 1, 5],
      registers: [m],
    });

    /**
     * Service registries beyond config (VM auto-registration, platform adapters). Each one's
     * changes trigger a debounced push like config changes do.
     */
    const graceMs = ctx.settings.number("auto-register-grace");
    const etcd = ctx.links.find(STORE);
    let replica: Replica | undefined;
    let shared: SharedRegistrations | undefined;
    if (etcd !== undefined) {
      // Loaded only with --store: these load etcd's protobuf descriptors.
      const [{ createReplica }, { createSharedRegistrations }] = await Promise.all([
        import("../store/lazy.ts"),
        import("./shared_registrations.ts"),
      ]);
      const log = ctx.logger.child({ component: "replica" });
      // One lease per replica; its TTL is the grace, so a dead replica's workloads go after it.
      replica = createReplica(etcd, {
        ttlSeconds: Math.max(3, graceMs / 1000),
        compactIntervalMs: ctx.settings.number("store-compact-interval"),
        board: ctx.links.find(ELECTIONS),
        logger: log,
        clock: ctx.clock,
        metrics: m,
      });
      shared = createSharedRegistrations({
        store: etcd,
        keeper: replica.keeper,
        replica: replica.id,
        logger: ctx.logger.child({ component: "autoregister" }),
        clock: ctx.clock,
        onWatchLag: replica.watchLag,
      });
      const sharedStatus = shared;
      etcd.addStatus("registrations", () => sharedStatus.status());
      ctx.debug(replica.leaderz);
    }
    const autoRegistry = createAutoRegistry({
      store,
      shared,
      replica: replica?.id,
      ads,
      clock: ctx.clock,
      logger: ctx.logger.child({ component: "autoregister" }),
      graceMs,
      requireIdentity: ctx.settings.bool("auto-register-require-identity"),
      debug: (h) => ctx.debug(h),
      configReady,
    });
    const registries: ServiceRegistry[] = [autoRegistry];
    /** Platform registries (--registry), after the collision rule; see registry/registries.ts. */
    const platform = createPlatformRegistrySet(
      await createPlatformRegistries(parseRegistries(ctx.settings.list("registry")), {
        clock: ctx.clock,
        logger: ctx.logger.child({ component: "registry" }),
      }),
      { logger: ctx.logger.child({ component: "registry" }), clock: ctx.clock },
    );
    ctx.debug({
      path: "registryz",
      description:
        "each --registry: synced, stale (last good view kept), last sync and error, sizes, hosts shadowed by config or an earlier registry",
      handle: () => Response.json(platform.statuses()),
    });
    /** Mixer runs in this process when `--modules` names it (commands without the flag: off). */
    const features = {
      mixer: ctx.settings.entries().some((e) => e.name === "modules") &&
        ctx.settings.list("modules").includes("mixer"),
    };
    /** The registries' states the newest push was built from. */
    let builtStates: RegistryState[] = [];
    /**
     * Whether a push built once every platform registry had been read (or after
     * --registry-sync-timeout) has been installed: until then proxies are served nothing, so a
     * restarted pilot never hands them a mesh without the registries' services.
     */
    let registriesServed = false;
    const syncDeadline = ctx.clock.now() + ctx.settings.number("registry-sync-timeout");
    const unsynced = () => platform.statuses().filter((s) => !s.synced).map((s) => s.name);
    const buildPush = () => {
      const config = store.snapshot();
      registriesServed ||= unsynced().length === 0 || ctx.clock.now() >= syncDeadline;
      const states = [...registries.map((r) => r.state()), ...platform.states(config)];
      builtStates = states;
      return createPushContext({
        config,
        registries: states,
        registryVersion: registriesVersion(states),
        features,
      });
    };

    const selfChecked = new Counter({
      name: "pilot_xds_self_check_refused_total",
      help:
        "Generated configurations that broke Envoy's rules under --xds-self-check (kept the last good one)",
      registers: [m],
    });
    const selfCheck = ctx.settings.source("xds-self-check") === undefined
      ? selfCheckByDefault(process.env)
      : ctx.settings.bool("xds-self-check");
    /** Secret names per config snapshot (a push's config), computed once per snapshot. */
    const secretsOf = new WeakMap<object, ReadonlySet<string>>();
    const secretNames = (config: ReturnType<typeof store.snapshot>) => {
      let names = secretsOf.get(config);
      if (!names) secretsOf.set(config, names = configuredSecretNames(config));
      return names;
    };
    const provider = createPilotProvider({
      initial: buildPush(),
      logger: ctx.logger,
      onInconsistent: () => inconsistent.inc(),
      ...(selfCheck
        ? {
          selfCheck: (proxy, set, partial) =>
            checkEnvoySet(set, {
              proxyKind: proxyKindOf(proxy),
              secretNames: secretNames(provider.push().config),
              partial,
            }),
          onViolations: () => selfChecked.inc(),
        }
        : {}),
    });
    const servable = () => configReady.now() && registriesServed;
    const readyProvider = Object.assign(provider, { ready: servable });
    ads.addProvider(readyProvider);

    /** Each type's labelled metrics, resolved once (they are updated per stream and push). */
    const metricsByType = new Map(
      Object.entries(TYPE_SHORT).map(([typeUrl, short]) => {
        const type = short.toLowerCase();
        return [typeUrl, { pushes: pushes.labels({ type }), pushTime: pushTime.labels({ type }) }];
      }),
    );

    /** When the push now being sent started, and its first change. */
    let pushStartedAt = ctx.clock.now();
    let changeAt = pushStartedAt;
    const awaitingAck = new WeakMap<XdsClient, Map<string, number>>();
    const isPilotStream = (c: XdsClient) => c.node.metadata?.GENERATOR !== "mcp";
    ads.addObserver({
      connected: (c) => isPilotStream(c) && connected.inc(),
      disconnected: (c) => isPilotStream(c) && connected.dec(),
      pushed(c, typeUrl) {
        const byType = metricsByType.get(typeUrl);
        if (!byType) return;
        byType.pushes.inc();
        byType.pushTime.observe((ctx.clock.now() - pushStartedAt) / 1000);
        let m = awaitingAck.get(c);
        if (!m) awaitingAck.set(c, m = new Map());
        if (!m.has(typeUrl)) m.set(typeUrl, changeAt);
      },
      acked(c, typeUrl) {
        const at = awaitingAck.get(c)?.get(typeUrl);
        if (at === undefined) return;
        awaitingAck.get(c)!.delete(typeUrl);
        convergence.observe((ctx.clock.now() - at) / 1000);
      },
      nacked(c, typeUrl) {
        const short = TYPE_SHORT[typeUrl];
        if (short) rejects.inc({ type: short.toLowerCase() });
        awaitingAck.get(c)?.delete(typeUrl);
      },
    });

    /** Why the push now being served happened, for /debug/push_status. */
    let lastPush: ({ at: string; version: string } & PushRequestSummary) | undefined;
    const rebuild = (request: PushRequest, firstAt: number) => {
      const t0 = performance.now();
      const before = builtStates;
      const push = buildPush();
      contextTime.observe((performance.now() - t0) / 1000);
      pushStartedAt = ctx.clock.now();
      changeAt = firstAt;
      // A registry change that moved only endpoints becomes an EDS-only push of those hosts.
      request = narrowRegistryRequest(request, endpointChanges(before, builtStates));
      provider.update(push, request);
      lastPush = {
        at: new Date(pushStartedAt).toISOString(),
        version: push.version,
        ...summarizePushRequest(request),
      };
      ctx.logger.debug("push", {
        version: push.version,
        services: push.services.length,
        full: lastPush.full,
        routingOnly: lastPush.routingOnly,
        reasons: lastPush.reasons,
        configs: lastPush.configs,
      });
    };
    const pushTriggers = debouncePushes({
      clock: ctx.clock,
      quietMs: ctx.settings.number("push-debounce"),
      maxMs: ctx.settings.number("push-debounce-max"),
      store,
      registries: [...registries, ...guardedWatchers(platform.registries, ctx.logger)],
      push: rebuild,
    });
    configReady.promise.then(() => pushTriggers.pushNow("config synced"));
    const syncTimer = ctx.clock.setTimer(ctx.settings.number("registry-sync-timeout"), () => {
      const waiting = unsynced();
      if (waiting.length === 0) return;
      ctx.logger.warn("serving proxies without registries not read yet (--registry-sync-timeout)", {
        registries: waiting,
      });
      pushTriggers.pushNow("registry sync timeout");
    });

    const pilotStreams = () =>
      ads.streams().filter((s) => s.types.some((t) => TYPE_SHORT[t.typeUrl] !== undefined));
    ctx.debug({
      path: "syncz",
      description:
        "per proxy and type (CDS, LDS, EDS, RDS): sent, ACKed and NACKed versions, NACK messages; for proxyless gRPC, how many settings it cannot express; under --xds-self-check, the rules a refused config broke (selfCheck)",
      handle: () =>
        Response.json(
          syncStatus(
            ads.streams(),
            (s) => {
              try {
                return provider.unsupportedOf(
                  provider.proxyOf({ connectionId: s.connectionId, node: s.node }),
                )
                  .length;
              } catch {
                return 0; // a node id pilot refuses has no config to compare
              }
            },
          ).map((p) => {
            // Under --xds-self-check: the rules the newest config broke, so it was not sent.
            const s = ads.streams().find((x) => x.connectionId === p.connection);
            let violations: readonly Violation[] = [];
            try {
              if (s) {
                violations = provider.violationsOf(
                  provider.proxyOf({ connectionId: s.connectionId, node: s.node }),
                );
              }
            } catch {
              // a node id pilot refuses has no config to check
            }
            return violations.length === 0 ? p : {
              ...p,
              selfCheck: {
                refused: violations.length,
                rules: [...new Set(violations.map((v) => v.rule))].sort(),
              },
            };
          }),
        ),
    });
    ctx.debug({
      path: "config_dump",
      description: "the configuration pilot serves a connected proxy, as Envoy JSON; ?proxyID=NODE_ID",
      async handle(req) {
        const id = new URL(req.url).searchParams.get("proxyID");
        const streams = pilotStreams();
        const s = streams.find((x) => x.nodeId === id || x.connectionId === id);
        if (!s) {
          return Response.json({
            error: `no connected proxy ${id ?? "(give ?proxyID=)"}`,
            proxies: streams.map((x) => x.nodeId),
          }, {
            status: 404,
          });
        }
        const { TRANSLATE_REGISTRY: envoyRegistry } = await import("./translate/type_registry.ts");
        const proxy = provider.proxyOf({ connectionId: s.connectionId, node: s.node });
        const cfg = provider.configOf(proxy);
        const opts = { registry: envoyRegistry };
        return Response.json({
          proxy: s.nodeId,
          pushVersion: provider.push().version,
          clusters: cfg.clusters.map((c) => toJson(ClusterSchema, c, opts)),
          listeners: cfg.listeners.map((l) => toJson(ListenerSchema, l, opts)),
          routes: cfg.routes.map((r) => toJson(RouteConfigurationSchema, r, opts)),
          endpoints: cfg.endpoints.map((e) => toJson(ClusterLoadAssignmentSchema, e, opts)),
          ...(proxy.generator === "grpc" ? { grpcUnsupported: provider.unsupportedOf(proxy) } : {}),
          ...(proxy.generator === "node-proxy"
            ? { nodeProxyUnsupported: provider.unsupportedOf(proxy) }
            : {}),
          ...(provider.violationsOf(proxy).length > 0 ? { selfCheck: provider.violationsOf(proxy) } : {}),
        });
      },
    });
    ctx.debug(endpointzHandler(() => provider.push()));
    ctx.debug(simulateDebugHandler(provider, (id) => {
      const s = pilotStreams().find((x) => x.nodeId === id);
      return s && provider.proxyOf({ connectionId: s.connectionId, node: s.node });
    }));
    ctx.debug({
      path: "push_status",
      description: "the current push: version, services, connected proxies, and why it happened",
      handle: () =>
        Response.json({
          version: provider.push().version,
          services: provider.push().services.map((s) => ({
            host: s.hostname,
            namespace: s.namespace,
            ports: s.ports,
          })),
          proxies: pilotStreams().length,
          types: Object.values(PILOT_TYPES),
          lastPush,
        }),
    });

    return {
      start: () => Promise.resolve(),
      ready: servable,
      async stop() {
        syncTimer.cancel();
        pushTriggers.stop();
        autoRegistry.close();
        await platform.stop();
        shared?.close();
        await replica?.close();
      },
    };
  },
};
