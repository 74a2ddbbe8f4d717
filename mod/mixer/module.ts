/**
 * The mixer module: policy checks, quotas and telemetry for the mesh. It reads the Mixer-model
 * config (`handler`, `instance`, `rule` under config.istio.io/v1alpha2, and MeshConfig) from
 * galley, rebuilds its dispatch table on every snapshot, and serves Envoy's ext_authz,
 * rate-limit and access-log APIs and meshd's Mixer Check/Report API on the shared gRPC port.
 */
import type { SettingSpec } from "../cli/setting.ts";
import { CONFIG_READY, CONFIG_STORE } from "../galley/mod.ts";
import type { ModuleDefinition } from "../runtime/module.ts";
import { methodPath, unaryBytesHandler } from "../grpc/raw.ts";
import { AccessLogService } from "#gen/envoy/service/accesslog/v3/als_pb.ts";
import { Authorization } from "#gen/envoy/service/auth/v3/external_auth_pb.ts";
import { RateLimitService } from "#gen/envoy/service/ratelimit/v3/rls_pb.ts";
import { Mixer } from "#gen/meshd/mixer/v1/mixer_pb.ts";
import { accessLogService } from "./access_log.ts";
import { DEFAULT_BAG_LIMITS } from "./client/wire.ts";
import { createMixerCore } from "./core.ts";
import { authorizationService } from "./ext_authz.ts";
import { mixerMethods } from "./mixer_service.ts";
import { rateLimitService } from "./rate_limit.ts";
import { windowOf } from "./service_graph.ts";

const SETTINGS: readonly SettingSpec[] = [
  {
    name: "mixer-default-valid-duration",
    kind: { type: "duration" },
    default: 10_000,
    help: "how long clients may reuse a check decision that no adapter limited (0 disables reuse)",
  },
  {
    name: "mixer-default-valid-use-count",
    kind: { type: "int", min: 0 },
    default: 10_000,
    help: "how many times clients may reuse a check decision that no adapter limited",
  },
  {
    name: "mixer-max-report-batch",
    kind: { type: "int", min: 1 },
    default: 10_000,
    help: "most telemetry entries in one Report or access-log message; larger ones are refused",
  },
  {
    name: "mixer-servicegraph-window",
    kind: { type: "duration", min: 1_000 },
    default: 60_000,
    help: "sliding window of the service graph at /debug/servicegraph",
  },
];

/** The mixer module definition. */
export const mixerModule: ModuleDefinition = {
  name: "mixer",
  summary: "policy checks, quotas and telemetry (ext_authz, rate limit, access logs, Mixer Check/Report)",
  requires: ["galley"],
  settings: SETTINGS,
  create(ctx) {
    const store = ctx.links.find(CONFIG_STORE);
    const configReady = ctx.links.find(CONFIG_READY);
    if (!store || !configReady) throw new Error("mixer needs galley in the same process");
    const s = ctx.settings;
    const graphWindowMs = s.number("mixer-servicegraph-window");
    const core = createMixerCore({
      logger: ctx.logger,
      clock: ctx.clock,
      metrics: ctx.metrics,
      defaultValidDurationMs: s.number("mixer-default-valid-duration"),
      defaultValidUseCount: s.number("mixer-default-valid-use-count"),
      graphWindowMs,
    });
    const maxBatch = s.number("mixer-max-report-batch");
    // The per-request decisions skip Connect's per-call machinery (see mod/grpc/raw.ts).
    ctx.grpc.service(Authorization, authorizationService(core), { direct: ["check"] });
    ctx.grpc.service(RateLimitService, rateLimitService(core), { direct: ["shouldRateLimit"] });
    ctx.grpc.service(AccessLogService, accessLogService(core, { maxBatch }));
    // meshd's own Check and Report work on wire bytes, straight from the stream.
    const mixer = mixerMethods(core, { maxBatch, limits: DEFAULT_BAG_LIMITS });
    ctx.grpc.stream(methodPath(Mixer.method.check), unaryBytesHandler(mixer.check));
    ctx.grpc.stream(methodPath(Mixer.method.report), unaryBytesHandler(mixer.report));

    let applied = false;
    const unsubscribe = store.subscribe((change) => {
      if (configReady.now()) {
        core.apply(change.snapshot);
        applied = true;
      }
    });
    configReady.promise.then(() => {
      core.apply(store.snapshot());
      applied = true;
    });

    ctx.debug({
      path: "servicegraph",
      description:
        "service graph from reported telemetry: source workload -> destination service, rates, latency; ?window=1m|5m|15m",
      handle(req) {
        const g = core.graph;
        const w = windowOf(new URL(req.url).searchParams.get("window"), graphWindowMs, g.longestWindowMs);
        return typeof w === "number" ? Response.json(g.view(w)) : Response.json(w, { status: 400 });
      },
    });
    ctx.debug({
      path: "mixerz",
      description:
        "mixer's dispatch table: config version, handlers, rule counts, and config it had to leave out",
      handle() {
        const t = core.table();
        return Response.json({
          version: t.version,
          failOpen: core.mesh().mixer.failOpen,
          rules: t.counts,
          handlers: [...t.handlers.values()].map((h) => ({
            name: h.name,
            adapter: h.adapter,
            error: h.error,
          })),
          problems: t.problems,
        });
      },
    });

    return {
      start: () => Promise.resolve(),
      ready: () => applied,
      async stop() {
        unsubscribe();
        await core.close();
      },
    };
  },
};
