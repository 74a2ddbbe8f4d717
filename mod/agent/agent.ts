/**
 * The node agent, assembled: identity (key, CSR, CA), files in the output and data
 * directories, SDS, bootstraps, the registration stream with health checks, and the agent's
 * admin server. `startAgent` runs it until `stop()`.
 *
 * @module
 */
import { readFileSync } from "node:fs";
import { Counter, Gauge } from "prom-client";
import { type AdminServer, startAdminServer, startMetricsServer } from "../admin/mod.ts";
import type { DebugHandler } from "../runtime/module.ts";
import type { Clock, Timer } from "../shared/clock.ts";
import { errorMessage } from "../shared/errors.ts";
import type { Logger } from "../shared/logger.ts";
import type { MetricsRegistry } from "../shared/metrics.ts";
import { removeLeftoverTempFiles } from "../shared/state_files.ts";
import { writeBootstraps } from "./bootstrap.ts";
import { type CaTls, createCertificate, type CreateCertificateOptions } from "./ca_client.ts";
import { createCertManager, type IssueVia } from "./cert_manager.ts";
import { bundleFromIssued, type CertBundle, createCsr, spiffeId, splitPem } from "./certs.ts";
import { createEndpoints, type Endpoints, parseAddrList } from "./endpoints.ts";
import { type CallSite, failsOver, judgeFailure, SettingError } from "./failure.ts";
import { ensureDir, readBundle, writeBundle } from "./files.ts";
import { createHealthChecker, type HealthChecker, type ProbeResult, type ProbeSpec } from "./health.ts";
import { xdsNode } from "./node.ts";
import { type Registration, startRegistration } from "./registration.ts";
import type { NodeProxy, NodeProxySettings } from "./node_proxy/node_proxy.ts";
import { startSdsServer } from "./sds_server.ts";
import type { AgentConfig, MergedSetting } from "./settings.ts";

/** How often the credential directory of --credential-dir is read again. */
const CREDENTIAL_REFRESH_MS = 15_000;

/** What startAgent needs besides the config. */
export interface AgentDeps {
  readonly clock: Clock;
  readonly logger: Logger;
  readonly metrics: MetricsRegistry;
  /** Uniform random numbers in [0, 1) (jitter). */
  readonly random?: () => number;
  /** Effective settings and their sources, for /debug/settings. */
  readonly settings?: readonly MergedSetting[];
  /** Deadline of each CA call (default 10 s). */
  readonly requestTimeoutMs?: number;
  /** Retry delays (default 1 s doubling to 60 s). */
  readonly backoff?: { readonly initialMs: number; readonly maxMs: number };
  /** Retry delays of the registration stream after pilot refused it (default 30 s doubling to 2 min). */
  readonly refusedBackoff?: { readonly initialMs: number; readonly maxMs: number };
}

/** A running agent. */
export interface Agent {
  /** The admin server's bound address. */
  readonly adminAddr: string;
  /** The metrics listener's bound address (--metrics-addr); undefined when it is off. */
  readonly metricsAddr?: string;
  readonly sdsSocket: string;
  /** The certificate in service, if any. */
  certificate(): CertBundle | undefined;
  /** Valid certificate, SDS listening, registration not refused, not stopping. */
  ready(): boolean;
  /** The workload's health as last probed (undefined: no probe, or not known yet). */
  health(): ProbeResult | undefined;
  /** Whether the registration stream is open (false without --workload-group). */
  registered(): boolean;
  /** Pilot's reason for refusing the registration, while it stands. */
  registrationRefusal(): string | undefined;
  /**
   * Resolves when the agent cannot go on until a setting changes (no certificate and the token
   * refused, TLS spoken to a plaintext port, ...): its work has stopped, the caller should stop()
   * and exit with the error's exitCode. Never resolves otherwise.
   */
  readonly fatal: Promise<SettingError>;
  /** Stops everything; resolves when closed. Idempotent. */
  stop(): Promise<void>;
}

function readText(path: string, what: string): string {
  try {
    return readFileSync(path, "utf8");
  } catch (err) {
    throw new Error(`cannot read ${what} ${path}: ${(err as Error).message}`);
  }
}

/** Loads a stored bundle from the data dir (then the output dir); a bad one is logged and skipped. */
function loadStored(cfg: AgentConfig, identity: string, log: Logger, now: number): CertBundle | undefined {
  for (const [dir, what] of [[cfg.dataDir, "--data-dir"], [cfg.outputDir, "--output-dir"]] as const) {
    try {
      const b = readBundle(dir, identity, { now, warn: (msg, fields) => log.warn(msg, fields) });
      if (b) {
        log.info("loaded the stored certificate", {
          dir,
          notAfter: new Date(b.notAfter).toISOString(),
          receivedAt: b.receivedAt === undefined ? null : new Date(b.receivedAt).toISOString(),
        });
        return b;
      }
    } catch (err) {
      log.warn(`ignoring the certificate in ${what}`, { err: errorMessage(err) });
    }
  }
  return undefined;
}

/**
 * Starts the agent. Rejects, naming the setting, when a directory, socket or port cannot be used,
 * and with a SettingError when there is neither a valid stored certificate nor a --token-file.
 */
export async function startAgent(cfg: AgentConfig, deps: AgentDeps): Promise<Agent> {
  const log = deps.logger;
  const clock = deps.clock;
  const w = cfg.workload;
  const identity = spiffeId(w.trustDomain, w.namespace, w.serviceAccount);
  ensureDir(cfg.outputDir, 0o750, "--output-dir");
  ensureDir(cfg.dataDir, 0o700, "--data-dir");
  for (const dir of new Set([cfg.outputDir, cfg.dataDir])) removeLeftoverTempFiles(dir, { logger: log });
  const stored = loadStored(cfg, identity, log, clock.now());
  if (!cfg.tokenFile && !(stored && clock.now() < stored.notAfter)) {
    throw new SettingError(noTokenMessage(cfg));
  }
  const configuredRoots = cfg.rootCertFile ? readText(cfg.rootCertFile, "--root-cert") : undefined;
  if (configuredRoots !== undefined && splitPem(configuredRoots).length === 0) {
    throw new Error(`--root-cert ${cfg.rootCertFile}: no PEM certificate in it`);
  }
  const timeoutMs = deps.requestTimeoutMs ?? 10_000;
  let stopping = false;
  let fail!: (err: SettingError) => void;
  const fatal = new Promise<SettingError>((resolve) => (fail = resolve));
  const cleanups: Array<() => Promise<void> | void> = [];

  const m = deps.metrics;
  const renewals = new Counter({
    name: "meshd_agent_certificate_requests_total",
    help: "Certificate requests to the CA, by authentication (token, mtls) and result (success, failure)",
    labelNames: ["via", "result"],
    registers: [m],
  });
  let manager: ReturnType<typeof createCertManager> | undefined;
  new Gauge({
    name: "meshd_agent_certificate_expiry_seconds",
    help: "Expiry of the workload certificate in service (Unix seconds; 0 when there is none)",
    registers: [m],
    collect() {
      this.set((manager?.current()?.notAfter ?? 0) / 1000);
    },
  });
  new Gauge({
    name: "meshd_agent_certificate_valid",
    help: "1 while a certificate that has not expired is in service",
    registers: [m],
    collect() {
      this.set(manager?.valid() ? 1 : 0);
    },
  });

  try {
    const sds = await startSdsServer({
      path: cfg.sdsSocket,
      logger: log.child({ component: "sds" }),
      initial: stored,
      ...(cfg.credentialDir === undefined ? {} : { credentialDir: cfg.credentialDir }),
      now: () => clock.now(),
    });
    cleanups.push(() => sds.close());
    if (cfg.credentialDir !== undefined) {
      // Renewed gateway certificates reach Envoy without a restart.
      let refresher: Timer | undefined;
      const refresh = () => {
        sds.refresh();
        refresher = clock.setTimer(CREDENTIAL_REFRESH_MS, refresh);
      };
      refresher = clock.setTimer(CREDENTIAL_REFRESH_MS, refresh);
      cleanups.push(() => refresher?.cancel());
    }

    if (cfg.discoveryAddr) {
      const paths = writeBootstraps(cfg.outputDir, {
        workload: w,
        discoveryAddr: cfg.discoveryAddr,
        controlPlaneAuth: cfg.controlPlaneAuth,
        certDir: cfg.outputDir,
        sdsSocket: cfg.sdsSocket,
        discoveryServerName: cfg.serverName,
        certTtlMs: cfg.certTtlMs,
      });
      log.info("bootstraps written", paths);
    } else {
      log.info("no --discovery-addr: certificates only, no bootstraps");
    }

    const store = (b: CertBundle) => {
      writeBundle(cfg.outputDir, b);
      writeBundle(cfg.dataDir, b);
    };
    if (stored && clock.now() < stored.notAfter) store(stored);

    const readToken = (): string => {
      if (!cfg.tokenFile) throw new SettingError(noTokenMessage(cfg));
      let t: string;
      try {
        t = readText(cfg.tokenFile, "--token-file (TOKEN_FILE)").trim();
      } catch (err) {
        throw new SettingError(errorMessage(err));
      }
      if (t === "") throw new SettingError(`--token-file (TOKEN_FILE) ${cfg.tokenFile} is empty`);
      return t;
    };
    const trustedRoots = () => configuredRoots ?? manager?.current()?.rootPem ?? stored?.rootPem;
    const tokenSetting = `--token-file (TOKEN_FILE) ${cfg.tokenFile}`;
    const caTlsSetting = cfg.caTlsAddr === cfg.discoveryAddr && cfg.discoveryAddr !== undefined
      ? "--ca-tls-addr (CA_ADDR), which defaults to --discovery-addr (PILOT_ADDRESS),"
      : "--ca-tls-addr (CA_ADDR)";
    const caTlsSite = (roots: string, token?: string): CallSite => ({
      service: "ca",
      addr: cfg.caTlsAddr,
      addrSetting: caTlsSetting,
      roots,
      ...(token ? { token } : {}),
    });
    /** One CA call; a failure that needs a change of a setting becomes a SettingError. */
    const call = async (site: CallSite, opts: CreateCertificateOptions): Promise<string[]> => {
      try {
        return await createCertificate(opts);
      } catch (err) {
        const verdict = judgeFailure(err, site);
        if (verdict.kind === "setting") throw verdict.error;
        throw err;
      }
    };
    const caTlsEndpoints = createEndpoints(parseAddrList(cfg.caTlsAddr, caTlsSetting));
    const caPlainSetting = "--ca-addr (MESHD_CA_ADDR)";
    const caPlainEndpoints = cfg.caAddr === undefined
      ? undefined
      : createEndpoints(parseAddrList(cfg.caAddr, caPlainSetting));
    /**
     * One CA call to the replicas of `endpoints` (--ca-tls-addr or --ca-addr): a network-class
     * failure moves on to the next replica at once; after a whole round failed, the error goes to
     * the cert manager's backoff.
     */
    const callReplicas = async (
      endpoints: Endpoints,
      site: CallSite,
      opts: Omit<CreateCertificateOptions, "addr">,
    ): Promise<string[]> => {
      for (;;) {
        let addr = site.addr;
        try {
          const ep = await endpoints.current();
          addr = ep.addr;
          const serverName = opts.tls?.serverName ?? ep.serverName;
          const chain = await call({ ...site, addr }, {
            ...opts,
            addr: ep.dialAddr,
            ...(opts.tls ? { tls: { ...opts.tls, ...(serverName ? { serverName } : {}) } } : {}),
          });
          endpoints.succeeded();
          return chain;
        } catch (err) {
          if (err instanceof SettingError || !failsOver(err) || endpoints.failed()) throw err;
          log.warn("CA replica unreachable; trying the next", { addr, err: errorMessage(err) });
        }
      }
    };
    const callTls = (site: CallSite, opts: Omit<CreateCertificateOptions, "addr">) =>
      callReplicas(caTlsEndpoints, site, opts);

    const issue = async (via: IssueVia): Promise<CertBundle> => {
      const pending = await createCsr(identity);
      let chain: string[];
      let fallbackRootPem: string | undefined;
      if (via.kind === "mtls") {
        fallbackRootPem = via.current.rootPem;
        chain = await callTls(
          caTlsSite(`the mesh root stored with the certificate in --data-dir ${cfg.dataDir}`),
          {
            tls: {
              ca: via.current.rootPem,
              cert: via.current.chainPem,
              key: via.current.keyPem,
              serverName: cfg.serverName,
            },
            csrPem: pending.csrPem,
            ttlMs: cfg.certTtlMs,
            timeoutMs,
          },
        );
      } else {
        const token = readToken();
        fallbackRootPem = trustedRoots();
        if (fallbackRootPem !== undefined) {
          const roots = configuredRoots !== undefined
            ? `--root-cert (CA_ROOT_CA) ${cfg.rootCertFile}`
            : `the mesh root stored in --data-dir ${cfg.dataDir}`;
          chain = await callTls(caTlsSite(roots, tokenSetting), {
            tls: { ca: fallbackRootPem, serverName: cfg.serverName },
            token,
            csrPem: pending.csrPem,
            ttlMs: cfg.certTtlMs,
            timeoutMs,
          });
        } else if (cfg.caAddr !== undefined && caPlainEndpoints !== undefined) {
          chain = await callReplicas(caPlainEndpoints, {
            service: "ca",
            addr: cfg.caAddr,
            addrSetting: caPlainSetting,
            token: tokenSetting,
          }, {
            token,
            csrPem: pending.csrPem,
            ttlMs: cfg.certTtlMs,
            timeoutMs,
          });
        } else {
          throw new SettingError(
            "no root certificate to verify the CA with: set --root-cert (CA_ROOT_CA), or --ca-addr (MESHD_CA_ADDR) " +
              "to bootstrap over plaintext",
          );
        }
      }
      return bundleFromIssued(chain, pending.keyPem, { expectedIdentity: identity, fallbackRootPem });
    };

    /** Work waiting for the first valid certificate (registration over mutual TLS, the node proxy). */
    let afterFirstCert: Array<() => void> = [];
    let nodeProxy: NodeProxy | undefined;
    manager = createCertManager({
      clock,
      logger: log.child({ component: "certs" }),
      issue,
      initial: stored,
      random: deps.random,
      backoff: deps.backoff,
      onAttempt: (via, ok) => renewals.inc({ via, result: ok ? "success" : "failure" }),
      onFatal: (err) => fail(err),
      onCert(b) {
        sds.update(b);
        store(b);
        nodeProxy?.certificateChanged();
        const next = afterFirstCert;
        afterFirstCert = [];
        for (const fn of next) fn();
      },
    });
    manager.start();
    cleanups.push(() => manager!.stop());
    const certs = manager;

    let registration: Registration | undefined;
    let checker: HealthChecker | undefined;
    let probeJson: string | undefined;
    const probeState = () => checker?.state();
    const register = (discoveryAddr: string) => {
      const tls = (): CaTls | undefined => {
        if (cfg.controlPlaneAuth === "NONE") return undefined;
        const b = certs.current();
        if (!b || !certs.valid()) throw new Error("no valid certificate yet for mutual TLS to pilot");
        return { ca: b.rootPem, cert: b.chainPem, key: b.keyPem, serverName: cfg.serverName };
      };
      const reg = startRegistration({
        discoveryAddr,
        tls,
        node: xdsNode(w, "sidecar"),
        clock,
        logger: log.child({ component: "registration" }),
        random: deps.random,
        backoff: deps.backoff,
        refusedBackoff: deps.refusedBackoff,
        site: {
          service: "pilot",
          addr: discoveryAddr,
          addrSetting: "--discovery-addr (PILOT_ADDRESS)",
          roots: `the mesh root the CA gave (in --data-dir ${cfg.dataDir})`,
        },
        onFatal: (err) => fail(err),
        onProbe(probe: ProbeSpec | undefined) {
          const json = probe === undefined ? undefined : JSON.stringify(probe);
          if (json === probeJson) return;
          probeJson = json;
          checker?.stop();
          checker = undefined;
          reg.report(undefined);
          if (probe === undefined) {
            log.info("the workload group has no probe; the workload counts as healthy");
            return;
          }
          log.info("running the workload group's probe", { probe });
          try {
            checker = createHealthChecker({
              probe,
              clock,
              onChange(r) {
                log.info(
                  r.healthy ? "workload healthy" : "workload unhealthy",
                  r.healthy ? {} : { reason: r.message },
                );
                reg.report(r);
              },
            });
          } catch (err) {
            log.warn("cannot run the workload group's probe", { err: errorMessage(err) });
          }
        },
      });
      registration = reg;
    };
    if (w.workloadGroup && cfg.discoveryAddr) {
      const addr = cfg.discoveryAddr;
      if (cfg.controlPlaneAuth === "NONE" || certs.valid()) register(addr);
      else afterFirstCert.push(() => register(addr));
      cleanups.push(() => {
        afterFirstCert = [];
        checker?.stop();
        return registration?.stop();
      });
    }

    if (cfg.nodeProxy) {
      const settings = cfg.nodeProxy;
      let starting: Promise<void> | undefined;
      const start = () => {
        starting ??= startAgentNodeProxy(cfg, settings, {
          certs,
          logger: log.child({ component: "node-proxy" }),
          metrics: m,
          clock,
          ...(deps.random ? { random: deps.random } : {}),
        }).then((p) => {
          if (stopping) return p.stop();
          nodeProxy = p;
        }, (err) => {
          // A port in use or capture rules that cannot be installed: only a setting (or the
          // machine) fixes that, and running without the proxy would leave traffic unprotected.
          fail(new SettingError(`--node-proxy could not start: ${errorMessage(err)}`));
        });
      };
      if (certs.valid()) start();
      else afterFirstCert.push(start);
      // Cleanups run in reverse: the node proxy stops before the certificate manager and SDS.
      cleanups.push(async () => {
        await starting;
        await nodeProxy?.stop();
      });
    }

    const debugHandlers: DebugHandler[] = [
      {
        path: "certz",
        description: "the workload certificate: identity, validity, next renewal",
        handle() {
          const b = certs.current();
          const next = certs.nextAttemptAt();
          return Response.json({
            identity,
            valid: certs.valid(),
            notBefore: b ? new Date(b.notBefore).toISOString() : null,
            notAfter: b ? new Date(b.notAfter).toISOString() : null,
            nextAttempt: next !== undefined ? new Date(next).toISOString() : null,
            roots: b ? splitPem(b.rootPem).length : 0,
          });
        },
      },
      {
        path: "sdsz",
        description: "open SDS streams and what each was sent and ACKed",
        handle: () => Response.json(sds.streams().map(({ node: _n, ...rest }) => rest)),
      },
      {
        path: "registrationz",
        description: "workload group registration: connected to pilot, probe, health",
        handle: () =>
          Response.json({
            workloadGroup: w.workloadGroup ?? null,
            connected: registration?.connected() ?? false,
            refused: registration?.refusal() ?? null,
            probe: probeJson ? JSON.parse(probeJson) : null,
            health: probeState() ?? null,
          }),
      },
      {
        path: "nodeproxyz",
        description: "the node proxy: addresses and the view from pilot (services, clusters, inbound rules)",
        handle: () =>
          Response.json(
            nodeProxy
              ? describeNodeProxy(nodeProxy)
              : { enabled: cfg.nodeProxy !== undefined, running: false },
          ),
      },
      {
        path: "settings",
        description: "effective settings and where each came from (flag, env, file, cluster-env, default)",
        handle: () => Response.json(deps.settings ?? []),
      },
    ];
    const notReady = () => {
      const refused = registration?.refusal();
      return [
        ...(certs.valid() ? [] : ["certificate"]),
        ...(refused !== undefined ? [`registration refused: ${refused}`] : []),
      ];
    };
    const ready = () => !stopping && notReady().length === 0;
    const admin: AdminServer = await startAdminServer(cfg.adminAddr, {
      metrics: m,
      readiness: () => ({ notReady: notReady(), stopping }),
      debugHandlers: () => debugHandlers,
      logger: log.child({ component: "admin" }),
    });
    cleanups.push(() => admin.stop());
    const adminAddr = `${admin.host}:${admin.port}`;
    log.info("agent admin server listening", { addr: adminAddr });
    let metricsAddr: string | undefined;
    if (cfg.metricsAddr !== undefined) {
      const scrape = await startMetricsServer(cfg.metricsAddr, {
        metrics: m,
        readiness: () => ({ notReady: notReady(), stopping }),
        logger: log.child({ component: "metrics" }),
      });
      cleanups.push(() => scrape.stop());
      metricsAddr = `${scrape.host}:${scrape.port}`;
      log.info("agent metrics server listening", { addr: metricsAddr });
    }

    let stopPromise: Promise<void> | undefined;
    return {
      adminAddr,
      ...(metricsAddr === undefined ? {} : { metricsAddr }),
      sdsSocket: sds.path,
      certificate: () => certs.current(),
      ready,
      health: probeState,
      registered: () => registration?.connected() ?? false,
      registrationRefusal: () => registration?.refusal(),
      fatal,
      stop() {
        stopping = true;
        stopPromise ??= runCleanups(cleanups, log);
        return stopPromise;
      },
    };
  } catch (err) {
    await runCleanups(cleanups, log);
    throw err;
  }
}

/** What the node proxy needs from the running agent. */
interface NodeProxyDeps {
  readonly certs: { current(): CertBundle | undefined; valid(): boolean };
  readonly logger: Logger;
  readonly metrics: MetricsRegistry;
  readonly clock: Clock;
  readonly random?: () => number;
}

/**
 * Starts the node proxy (loaded only with --node-proxy): its view from pilot over xDS (the
 * subscription adds GENERATOR to the node), over mutual TLS with the workload certificate unless
 * --control-plane-auth NONE, to --discovery-addr (each replica in turn). Without --discovery-addr
 * it runs with an empty view (everything passes through) and says so.
 */
async function startAgentNodeProxy(
  cfg: AgentConfig,
  settings: NodeProxySettings,
  d: NodeProxyDeps,
): Promise<NodeProxy> {
  const { startNodeProxy } = await import("./node_proxy/node_proxy.ts");
  const { EMPTY_VIEW } = await import("./node_proxy/view.ts");
  const w = cfg.workload;
  if (!cfg.discoveryAddr) {
    d.logger.warn("--node-proxy without --discovery-addr: no mesh config, every connection passes through");
  }
  const tls = cfg.controlPlaneAuth === "NONE" ? undefined : {
    ca: () => d.certs.current()!.rootPem,
    cert: () => {
      const b = d.certs.current()!;
      return { certChain: b.chainPem, key: b.keyPem };
    },
    ...(cfg.serverName ? { serverName: cfg.serverName } : {}),
  };
  return await startNodeProxy({
    settings,
    certs: () => d.certs.current(),
    view: cfg.discoveryAddr
      ? {
        kind: "xds",
        discoveryAddr: cfg.discoveryAddr,
        ...(tls ? { tls } : {}),
        node: xdsNode(w, "sidecar"),
      }
      : { kind: "static", view: () => EMPTY_VIEW },
    workload: { name: w.name, namespace: w.namespace },
    localAddresses: [w.ip],
    logger: d.logger,
    metrics: d.metrics,
    clock: d.clock,
    ...(d.random ? { random: d.random } : {}),
  });
}

/** The node proxy for /debug/nodeproxyz. */
function describeNodeProxy(p: NodeProxy): unknown {
  const v = p.view();
  return {
    enabled: true,
    running: true,
    addrs: p.addrs,
    version: v.version,
    services: v.services,
    clusters: [...v.clusters.values()],
    inbound: [...v.inbound.values()].map(({ rbac, ...rest }) => ({ ...rest, rbacConfigs: rbac.length })),
  };
}

/** Why the agent cannot get a first certificate without a token. */
function noTokenMessage(cfg: AgentConfig): string {
  return `no valid certificate in --data-dir ${cfg.dataDir} and no --token-file (TOKEN_FILE) to request one ` +
    "with: set --token-file to a bootstrap token (meshd token create, or the one in meshd vm bundle)";
}

async function runCleanups(cleanups: Array<() => Promise<void> | void>, log: Logger): Promise<void> {
  for (const c of [...cleanups].reverse()) {
    try {
      await c();
    } catch (err) {
      log.warn("cleanup failed", { err: errorMessage(err) });
    }
  }
}
