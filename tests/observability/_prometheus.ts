/**
 * Debian's Prometheus on loopback for observability tests: scrapes one target every 200 ms and
 * evaluates rule files (copied with their group intervals shortened to 1 s, so recorded series
 * appear within a test), answering queries through the HTTP API.
 */
import { spawn } from "bun";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { basename, join } from "node:path";
import { freePort } from "../mixer/_harness.ts";

/** The answer of /api/v1/query. */
export interface QueryAnswer {
  status: "success" | "error";
  error?: string;
  errorType?: string;
  data?: { resultType: string; result: Array<{ metric: Record<string, string>; value: [number, string] }> };
}

/** A running Prometheus. */
export interface Prometheus {
  readonly url: string;
  /** Runs an instant query. */
  query(promql: string): Promise<QueryAnswer>;
  /** The values of `label` over the series `selector` matches (Grafana's label_values). */
  labelValues(selector: string, label: string): Promise<string[]>;
  stop(): Promise<void>;
}

/** A rule file's text with every group evaluated each second. */
export function fastRules(text: string): string {
  return text.replace(/^(\s*)interval:\s*\S+\s*$/gm, "$1interval: 1s");
}

/** Starts /usr/bin/prometheus scraping `target` (host:port, /metrics) with `ruleFiles` loaded. */
export async function startPrometheus(target: string, ruleFiles: readonly string[]): Promise<Prometheus> {
  const port = await freePort();
  const dir = mkdtempSync(join(tmpdir(), "meshd-obs-prom-"));
  const rules = ruleFiles.map((f) => {
    const copy = join(dir, basename(f));
    writeFileSync(copy, fastRules(readFileSync(f, "utf8")));
    return copy;
  });
  const config = join(dir, "prometheus.yml");
  writeFileSync(
    config,
    [
      "global:",
      "  scrape_interval: 1s",
      "  evaluation_interval: 1s",
      `rule_files: ${JSON.stringify(rules)}`,
      "scrape_configs:",
      "  - job_name: meshd",
      "    scrape_interval: 200ms",
      "    scrape_timeout: 150ms",
      "    static_configs:",
      `      - targets: ["${target}"]`,
      "",
    ].join("\n"),
  );
  const proc = spawn(
    [
      "/usr/bin/prometheus",
      `--config.file=${config}`,
      `--storage.tsdb.path=${join(dir, "data")}`,
      `--web.listen-address=127.0.0.1:${port}`,
    ],
    { stdout: "ignore", stderr: "pipe", stdin: "ignore", cwd: dir },
  );
  const url = `http://127.0.0.1:${port}`;
  const end = Date.now() + 30_000;
  for (;;) {
    const ready = await fetch(`${url}/-/ready`).then((r) => r.status === 200, () => false);
    if (ready) break;
    if (proc.exitCode !== null || Date.now() > end) {
      const err = await new Response(proc.stderr).text().catch(() => "");
      proc.kill("SIGKILL");
      rmSync(dir, { recursive: true, force: true });
      throw new Error(`prometheus did not become ready:\n${err.slice(-2000)}`);
    }
    await Bun.sleep(50);
  }
  return {
    url,
    async query(promql) {
      const res = await fetch(`${url}/api/v1/query?query=${encodeURIComponent(promql)}`);
      return (await res.json()) as QueryAnswer;
    },
    async labelValues(selector, label) {
      const res = await fetch(`${url}/api/v1/label/${label}/values?match[]=${encodeURIComponent(selector)}`);
      const body = (await res.json()) as { status: string; data?: string[]; error?: string };
      if (body.status !== "success") throw new Error(`label_values(${selector}, ${label}): ${body.error}`);
      return body.data ?? [];
    },
    async stop() {
      proc.kill("SIGTERM");
      await proc.exited;
      rmSync(dir, { recursive: true, force: true });
    },
  };
}
