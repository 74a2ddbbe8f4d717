/**
 * Helpers for mixer's tests: Mixer config as YAML, a galley store and mixer core over it, real
 * redis-server and Prometheus processes on loopback in temporary directories, and free ports.
 */
import { spawn, type Subprocess } from "bun";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createConfigStore, type WritableConfigStore } from "../../mod/galley/store.ts";
import { createMixerCore, type MixerCore } from "../../mod/mixer/core.ts";
import type { Clock } from "../../mod/shared/clock.ts";
import { systemClock } from "../../mod/shared/clock.ts";
import { createLogger, type Logger } from "../../mod/shared/logger.ts";
import { createMetricsRegistry, type MetricsRegistry } from "../../mod/shared/metrics.ts";

/** A logger that writes nothing. */
export const quiet: Logger = createLogger({ write: () => {} });

/** A logger that keeps its lines, for tests that assert what was logged. */
export function memoryLogger(): { logger: Logger; lines: Array<Record<string, unknown>> } {
  const lines: Array<Record<string, unknown>> = [];
  return { logger: createLogger({ format: "json", write: (l) => lines.push(JSON.parse(l)) }), lines };
}

/** One config.istio.io/v1alpha2 resource as YAML. */
export function mixerYaml(
  kind: "handler" | "instance" | "rule",
  name: string,
  spec: unknown,
  namespace = "istio-system",
): string {
  return `apiVersion: config.istio.io/v1alpha2\nkind: ${kind}\nmetadata:\n  name: ${name}\n  namespace: ${namespace}\nspec: ${
    JSON.stringify(spec)
  }\n`;
}

/** A MeshConfig resource as YAML. */
export function meshYaml(failOpen: boolean): string {
  return `apiVersion: config.meshd.io/v1alpha1\nkind: MeshConfig\nmetadata:\n  name: mesh\n  namespace: istio-system\nspec:\n  mixer:\n    failOpen: ${failOpen}\n`;
}

/** Joins YAML documents. */
export const docs = (...d: string[]) => d.join("---\n");

/** A galley store and a mixer core applying its snapshots, as the module wires them. */
export interface CoreHarness {
  readonly store: WritableConfigStore;
  readonly core: MixerCore;
  readonly metrics: MetricsRegistry;
  /** Replaces the whole config with one file's content. */
  load(yaml: string, file?: string): void;
  close(): Promise<void>;
}

/** Creates a store + core. */
export function coreHarness(
  opts: { clock?: Clock; logger?: Logger; validMs?: number; useCount?: number } = {},
): CoreHarness {
  const logger = opts.logger ?? quiet;
  const metrics = createMetricsRegistry();
  const store = createConfigStore({ logger });
  const core = createMixerCore({
    logger,
    clock: opts.clock ?? systemClock,
    metrics,
    defaultValidDurationMs: opts.validMs ?? 10_000,
    defaultValidUseCount: opts.useCount ?? 10_000,
    graphWindowMs: 60_000,
  });
  store.subscribe((c) => core.apply(c.snapshot));
  const sink = store.sink("test");
  return {
    store,
    core,
    metrics,
    load: (yaml, file = "mixer.yaml") => sink.replace([{ origin: file, content: yaml }]),
    close: () => core.close(),
  };
}

/** A TCP port free on 127.0.0.1 right now. */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.once("error", reject);
    s.listen(0, "127.0.0.1", () => {
      const port = (s.address() as { port: number }).port;
      s.close(() => resolve(port));
    });
  });
}

/** A running redis-server. */
export interface RedisProcess {
  readonly port: number;
  readonly url: string;
  stop(): Promise<void>;
}

async function waitFor(fn: () => Promise<boolean>, timeoutMs: number, what: string): Promise<void> {
  const end = Date.now() + timeoutMs;
  while (Date.now() < end) {
    if (await fn().catch(() => false)) return;
    await Bun.sleep(50);
  }
  throw new Error(`${what} did not come up within ${timeoutMs} ms`);
}

async function tcpAnswers(port: number, send: string, expect: string): Promise<boolean> {
  const { connect } = await import("node:net");
  return await new Promise<boolean>((resolve) => {
    const sock = connect(port, "127.0.0.1");
    const timer = setTimeout(() => (sock.destroy(), resolve(false)), 500);
    sock.on("error", () => (clearTimeout(timer), resolve(false)));
    sock.on("connect", () => sock.write(send));
    sock.on("data", (d) => {
      clearTimeout(timer);
      sock.destroy();
      resolve(d.toString().includes(expect));
    });
  });
}

/** Starts redis-server (Debian's) on a free loopback port, without persistence, in a temp dir. */
export async function startRedis(port?: number): Promise<RedisProcess> {
  const p = port ?? (await freePort());
  const dir = mkdtempSync(join(tmpdir(), "meshd-redis-"));
  const proc: Subprocess = spawn(
    [
      "/usr/bin/redis-server",
      "--port",
      String(p),
      "--bind",
      "127.0.0.1",
      "--save",
      "",
      "--appendonly",
      "no",
      "--dir",
      dir,
    ],
    { stdout: "ignore", stderr: "ignore", stdin: "ignore" },
  );
  await waitFor(() => tcpAnswers(p, "PING\r\n", "PONG"), 10_000, "redis-server");
  return {
    port: p,
    url: `127.0.0.1:${p}`,
    async stop() {
      proc.kill("SIGTERM");
      await proc.exited;
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

/** A running Prometheus. */
export interface PrometheusProcess {
  readonly url: string;
  /** Runs a PromQL instant query and returns the first sample's value, if any. */
  query(promql: string): Promise<number | undefined>;
  stop(): Promise<void>;
}

/** Starts Debian's Prometheus scraping `target` (host:port, path /metrics) every 200 ms. */
export async function startPrometheus(target: string): Promise<PrometheusProcess> {
  const port = await freePort();
  const dir = mkdtempSync(join(tmpdir(), "meshd-prom-"));
  const config = join(dir, "prometheus.yml");
  writeFileSync(
    config,
    `global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\nscrape_configs:\n  - job_name: meshd\n    scrape_interval: 200ms\n    scrape_timeout: 150ms\n    static_configs:\n      - targets: ["${target}"]\n`,
  );
  const proc = spawn(
    [
      "/usr/bin/prometheus",
      `--config.file=${config}`,
      `--storage.tsdb.path=${join(dir, "data")}`,
      `--web.listen-address=127.0.0.1:${port}`,
    ],
    { stdout: "ignore", stderr: "ignore", stdin: "ignore", cwd: dir },
  );
  const url = `http://127.0.0.1:${port}`;
  await waitFor(async () => (await fetch(`${url}/-/ready`)).status === 200, 30_000, "prometheus");
  return {
    url,
    async query(promql) {
      const res = await fetch(`${url}/api/v1/query?query=${encodeURIComponent(promql)}`);
      const body = (await res.json()) as { data?: { result?: Array<{ value: [number, string] }> } };
      const v = body.data?.result?.[0]?.value?.[1];
      return v === undefined ? undefined : Number(v);
    },
    async stop() {
      proc.kill("SIGTERM");
      await proc.exited;
      rmSync(dir, { recursive: true, force: true });
    },
  };
}
