/**
 * The galley module: ingests config from the directory and remote sources into the store,
 * offers the store to other modules, distributes it over MCP, and serves the admission webhook.
 */
import type { SettingSpec } from "../cli/setting.ts";
import type { ModuleDefinition } from "../runtime/module.ts";
import { listenerLimits } from "../runtime/listener_settings.ts";
import { errorMessage } from "../shared/errors.ts";
import { ELECTIONS, STORE } from "../store/mod.ts";
import { ADS_SERVER } from "../xds/mod.ts";
import { createDirSource, defaultMaxFiles } from "./dir_source.ts";
import { CONFIG_READY, CONFIG_STORE, MCP_COLLECTIONS } from "./links.ts";
import { createMcpProvider } from "./mcp.ts";
import { defaultMaxBytes } from "./parse.ts";
import type { ConfigSource } from "../runtime/config_source.ts";
import { createConfigStore } from "./store.ts";
import { startWebhookServer, type WebhookServer } from "./webhook.ts";
import { createXdsSource } from "./xds_source.ts";
import { createKubeConfig, type KubeConfig } from "./kube_config.ts";
import { isKubeSourceUrl } from "./kube_source.ts";

const SETTINGS: readonly SettingSpec[] = [
  {
    name: "config-dir",
    kind: { type: "path" },
    help: "directory of Istio-style YAML/JSON config, read recursively and watched",
  },
  {
    name: "config-source",
    kind: { type: "list" },
    default: [],
    help: "remote config sources: xds://HOST:PORT takes config from another meshd's galley (MCP over xDS); " +
      "kubernetes (in a pod) or kubernetes://?kubeconfig=FILE[&context=NAME][&lease-namespace=NS] reads Istio's " +
      "custom resources from the Kubernetes API and writes their status back (one replica, by Lease)",
  },
  {
    name: "config-debounce",
    kind: { type: "duration" },
    default: 100,
    help: "quiet time after a config file change before it is read",
  },
  {
    name: "config-rescan",
    kind: { type: "duration" },
    default: 30_000,
    help: "full rescan of --config-dir, for changes the file watch missed (0 disables)",
  },
  {
    name: "config-max-file-size",
    kind: { type: "int", min: 1024 },
    default: defaultMaxBytes,
    help: "largest config file or remote resource accepted, in bytes",
  },
  {
    name: "config-max-files",
    kind: { type: "int", min: 1 },
    default: defaultMaxFiles,
    help:
      "most config files and directories one scan of --config-dir reads; a larger tree keeps the last good config",
  },
  {
    name: "config-max-resources",
    kind: { type: "int", min: 1 },
    default: 20_000,
    help: "most resources held across all config sources; a change that would pass it is refused as a whole",
  },
  {
    name: "config-max-total-size",
    kind: { type: "int", min: 1024 },
    default: 64 * 1024 * 1024,
    help:
      "most bytes of config held across all config sources; a change that would pass it is refused as a whole",
  },
  {
    name: "allow-empty-config",
    kind: { type: "bool" },
    default: false,
    help:
      "let a config source go from some resources to none at once (otherwise its last good config is kept, and reported)",
  },
  {
    name: "webhook-addr",
    kind: { type: "addr" },
    default: "0.0.0.0:15017",
    help: "HTTPS address of the admission webhook (/validate)",
  },
  {
    name: "webhook-cert",
    kind: { type: "path" },
    help: "PEM certificate for the webhook; a self-signed one is made when unset",
  },
  { name: "webhook-key", kind: { type: "path" }, help: "PEM private key for --webhook-cert" },
];

/** The galley module definition. */
export const galleyModule: ModuleDefinition = {
  name: "galley",
  summary: "ingests, validates, analyses and distributes mesh config",
  settings: SETTINGS,
  async create(ctx) {
    const s = ctx.settings;
    const maxBytes = s.number("config-max-file-size");
    const maxTotalBytes = s.number("config-max-total-size");
    const store = createConfigStore({
      logger: ctx.logger,
      metrics: ctx.metrics,
      maxBytes,
      maxResources: s.number("config-max-resources"),
      maxTotalBytes,
      refuseEmpty: !s.bool("allow-empty-config"),
    });
    ctx.links.offer(CONFIG_STORE, store);
    const sources: ConfigSource[] = [];
    const etcd = ctx.links.find(STORE);
    if (etcd !== undefined) {
      const { createEtcdSource } = await import("../store/lazy.ts");
      const src = createEtcdSource({
        client: etcd.client,
        prefix: etcd.prefix,
        logger: ctx.logger,
        maxBytes,
      });
      etcd.addStatus("config", () => src.status());
      sources.push(src);
    }
    const dir = s.optionalString("config-dir");
    if (dir !== undefined) {
      sources.push(createDirSource({
        dir,
        logger: ctx.logger,
        clock: ctx.clock,
        debounceMs: s.number("config-debounce"),
        rescanMs: s.number("config-rescan"),
        maxBytes,
        maxFiles: s.number("config-max-files"),
        maxTotalBytes,
      }));
    }
    const kubeSources: KubeConfig[] = [];
    for (const url of s.list("config-source")) {
      if (isKubeSourceUrl(url)) {
        const src = createKubeConfig({
          url,
          store,
          logger: ctx.logger,
          clock: ctx.clock,
          maxBytes,
          elections: ctx.links.find(ELECTIONS),
        });
        kubeSources.push(src);
        sources.push(src);
        continue;
      }
      sources.push(
        createXdsSource({
          url,
          collections: MCP_COLLECTIONS,
          logger: ctx.logger,
          clock: ctx.clock,
          maxResponseBytes: maxTotalBytes,
        }),
      );
    }
    const synced = new Set<string>();
    let allSynced!: () => void;
    const syncedPromise = new Promise<void>((resolve) => (allSynced = resolve));
    const markSynced = (name: string) => {
      synced.add(name);
      if (synced.size === sources.length) allSynced();
    };
    if (sources.length === 0) allSynced();
    const readiness = { now: () => synced.size === sources.length, promise: syncedPromise };
    ctx.links.offer(CONFIG_READY, readiness);
    const ads = ctx.links.find(ADS_SERVER);
    ads?.addProvider(createMcpProvider(store, MCP_COLLECTIONS, { ready: readiness }));
    ctx.debug({
      path: "configz",
      description:
        "config status: every resource and file, accepted or rejected with the reason; ?key= shows one resource",
      handle(req) {
        const key = new URL(req.url).searchParams.get("key");
        const snap = store.snapshot();
        if (key !== null) {
          const r = snap.resources.get(key);
          if (!r) return Response.json({ error: `no accepted resource ${key}` }, { status: 404 });
          return Response.json({ key, source: r.source, metadata: r.metadata, spec: r.spec });
        }
        const status = store.status();
        const kube = new Map(kubeSources.map((k) => [k.name, k]));
        const bySource = new Map(status.sources.map((x) => [x.source, x]));
        return Response.json({
          version: snap.version,
          resources: status.resources,
          origins: status.origins,
          sources: sources.map((x) => {
            const st = bySource.get(x.name);
            return {
              name: x.name,
              synced: x.synced(),
              state: st?.state ?? "ok",
              errors: st?.errors ?? [],
              warnings: st?.warnings ?? [],
              resources: st?.resources ?? 0,
              bytes: st?.bytes ?? 0,
              ...(kube.has(x.name) ? { kubernetes: kube.get(x.name)!.status() } : {}),
            };
          }),
        });
      },
    });
    if (sources.length === 0) {
      ctx.logger.warn("no config sources (--config-dir, --config-source, --store); serving an empty config");
    }
    let webhook: WebhookServer | undefined;
    return {
      async start() {
        for (const src of sources) {
          try {
            const sink = store.sink(src.name);
            await src.start({
              replace(origins, revision) {
                const verdict = sink.replace(origins, revision);
                if (verdict.applied) markSynced(src.name);
                return verdict;
              },
              update: (changes, revision) => sink.update(changes, revision),
              report: (problems) => sink.report(problems),
            });
          } catch (err) {
            throw new Error(`galley: ${errorMessage(err)}`);
          }
        }
        webhook = await startWebhookServer({
          addr: s.string("webhook-addr"),
          certFile: s.optionalString("webhook-cert"),
          keyFile: s.optionalString("webhook-key"),
          logger: ctx.logger,
          maxBytes,
          limits: listenerLimits(s),
          metrics: ctx.metrics,
        });
        ctx.logger.info("admission webhook listening", { addr: webhook.addr });
      },
      ready: () => sources.every((x) => x.synced()),
      async stop() {
        await Promise.all(sources.map((x) => x.stop()));
        await webhook?.stop();
      },
    };
  },
};
