/**
 * Reading config/grafana's dashboards and config/prometheus's rule files for tests: every panel
 * query with its dashboard and panel, the template variables, and the substitution of Grafana's
 * variables with real values so a query can run against a Prometheus.
 */
import { readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { parse } from "yaml";
import { ROOT } from "../e2e/_meshd.ts";

/** Where the dashboards live. */
export const GRAFANA_DIR = join(ROOT, "config/grafana");
/** Where the rule files and their unit tests live. */
export const PROMETHEUS_DIR = join(ROOT, "config/prometheus");

/** A Grafana panel as the dashboards write it. */
export interface Panel {
  id: number;
  type: string;
  title: string;
  datasource?: { type: string; uid: string };
  gridPos: { h: number; w: number; x: number; y: number };
  targets?: Array<{ refId: string; expr: string; datasource?: { type: string; uid: string } }>;
  panels?: Panel[];
}

/** A template variable. */
export interface Variable {
  name: string;
  type: string;
  query: string | { query: string };
}

/** A dashboard with the file it came from. */
export interface Dashboard {
  file: string;
  uid: string;
  title: string;
  schemaVersion: number;
  panels: Panel[];
  templating: { list: Variable[] };
}

/** One panel query, named by where it is. */
export interface PanelQuery {
  dashboard: string;
  panel: string;
  refId: string;
  expr: string;
}

/** Every dashboard under config/grafana, parsed. */
export function loadDashboards(): Dashboard[] {
  return readdirSync(GRAFANA_DIR)
    .filter((f) => f.endsWith(".json"))
    .sort()
    .map((f) => ({
      file: f,
      ...(JSON.parse(readFileSync(join(GRAFANA_DIR, f), "utf8")) as Omit<Dashboard, "file">),
    }));
}

/** The panels of a dashboard, rows' nested panels included. */
export function allPanels(d: Dashboard): Panel[] {
  return d.panels.flatMap((p) => [p, ...(p.panels ?? [])]);
}

/** Every panel query of every dashboard. */
export function panelQueries(dashboards: readonly Dashboard[]): PanelQuery[] {
  return dashboards.flatMap((d) =>
    allPanels(d).flatMap((p) =>
      (p.targets ?? []).map((t) => ({ dashboard: d.file, panel: p.title, refId: t.refId, expr: t.expr }))
    )
  );
}

/** The query text of a query variable. */
export function variableQuery(v: Variable): string {
  return typeof v.query === "string" ? v.query : v.query.query;
}

/** `label_values(SELECTOR, LABEL)` split into its selector and label, or undefined for other queries. */
export function labelValuesQuery(q: string): { selector: string; label: string } | undefined {
  const m = /^label_values\((.+),\s*([a-zA-Z_][a-zA-Z0-9_]*)\)$/.exec(q.trim());
  return m ? { selector: m[1]!, label: m[2]! } : undefined;
}

/** Grafana's interval variables, as a test runs them. */
const BUILTINS: Record<string, string> = {
  __rate_interval: "1m",
  __interval: "15s",
  __range: "5m",
};

/**
 * `expr` with Grafana's variables replaced: built-in intervals by fixed durations, template
 * variables by `values` (a name without a value is an error, so no variable goes unchecked).
 */
export function substitute(expr: string, values: Readonly<Record<string, string>>): string {
  return expr.replace(/\$\{?(\w+)\}?/g, (_, name: string) => {
    const v = BUILTINS[name] ?? values[name];
    if (v === undefined) throw new Error(`no value for $${name} in ${expr}`);
    return v;
  });
}

/** The names of the metrics a PromQL expression reads (identifiers followed by `{`, `[` or standing alone). */
export function metricNames(expr: string): string[] {
  const noStrings = expr.replace(/"(?:[^"\\]|\\.)*"/g, '""');
  const noLabelLists = noStrings
    .replace(/\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)/g, "")
    .replace(/\{[^}]*\}/g, "{}")
    .replace(/\[[^\]]*\]/g, "[]");
  const names = new Set<string>();
  for (const m of noLabelLists.matchAll(/(?<![\w.])([a-zA-Z_:][a-zA-Z0-9_:]*)\s*(\(?)/g)) {
    const [, name, paren] = m;
    if (paren) continue; // a function call
    if (/^(by|without|on|ignoring|and|or|unless|bool|offset|inf|nan)$/i.test(name!)) continue;
    names.add(name!);
  }
  return [...names].sort();
}

/** A rule file's groups. */
export interface RuleFile {
  groups: Array<
    { name: string; interval?: string; rules: Array<{ record?: string; alert?: string; expr: string }> }
  >;
}

/** Reads a rule file under config/prometheus. */
export function readRuleFile(name: string): RuleFile {
  return parse(readFileSync(join(PROMETHEUS_DIR, name), "utf8")) as RuleFile;
}

/** The series names rules.yaml records. */
export function recordedNames(): string[] {
  return readRuleFile("rules.yaml").groups.flatMap((g) => g.rules.flatMap((r) => r.record ?? []));
}
