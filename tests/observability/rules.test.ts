/**
 * config/prometheus: the rule files pass `promtool check rules`, their unit tests pass
 * `promtool test rules` (Debian's promtool), and every rule file has a unit test file.
 */
import { describe, expect, test } from "bun:test";
import { readdirSync } from "node:fs";
import { join } from "node:path";
import { PROMETHEUS_DIR, readRuleFile } from "./_dashboards.ts";

const PROMTOOL = "/usr/bin/promtool";

function promtool(...args: string[]): { code: number; out: string } {
  const r = Bun.spawnSync([PROMTOOL, ...args], { cwd: PROMETHEUS_DIR, stdout: "pipe", stderr: "pipe" });
  return { code: r.exitCode, out: r.stdout.toString() + r.stderr.toString() };
}

const files = readdirSync(PROMETHEUS_DIR).sort();
const ruleFiles = files.filter((f) => f.endsWith(".yaml") && !f.endsWith("_test.yaml"));
const testFiles = files.filter((f) => f.endsWith("_test.yaml"));

describe("config/prometheus", () => {
  test("holds the recording rules and the alerts, each with a unit test file", () => {
    expect(ruleFiles).toEqual(["alerts.yaml", "rules.yaml"]);
    expect(testFiles).toEqual(ruleFiles.map((f) => f.replace(/\.yaml$/, "_test.yaml")));
  });

  test("promtool check rules accepts every rule file", () => {
    const r = promtool("check", "rules", ...ruleFiles);
    expect(r.out).not.toContain("FAILED");
    expect(r.code).toBe(0);
    for (const f of ruleFiles) expect(r.out).toContain(`Checking ${f}`);
  });

  test("promtool test rules passes every unit test file", () => {
    const r = promtool("test", "rules", ...testFiles);
    expect(r.out).not.toContain("FAILED");
    expect(r.code).toBe(0);
  });

  test("promtool test rules fails when an alert's expected output is wrong (the tests can fail)", () => {
    const r = promtool("test", "rules", join(import.meta.dir, "fixtures/alerts_wrong_test.yaml"));
    expect(r.code).not.toBe(0);
    expect(r.out).toContain("MeshdXdsRejects");
  });

  test("every alert names its severity and has a summary and a description", () => {
    for (const g of readRuleFile("alerts.yaml").groups) {
      for (const r of g.rules) {
        const rule = r as {
          alert?: string;
          labels?: { severity?: string };
          annotations?: Record<string, string>;
        };
        expect(rule.alert).toBeString();
        expect(["warning", "critical"]).toContain(rule.labels?.severity ?? "");
        expect(rule.annotations?.summary).toBeString();
        expect(rule.annotations?.description).toBeString();
      }
    }
  });

  test("the control-plane alerts cover rejects, push latency, CA errors, expiring certificates and config errors", () => {
    const alerts = readRuleFile("alerts.yaml").groups.flatMap((g) => g.rules.map((r) => r.alert));
    for (
      const a of [
        "MeshdXdsRejects",
        "MeshdPushLatencyHigh",
        "MeshdCARefusals",
        "MeshdRootCertificateNearExpiry",
        "MeshdWorkloadCertificateNearExpiry",
        "MeshdConfigErrors",
      ]
    ) expect(alerts).toContain(a);
  });
});
