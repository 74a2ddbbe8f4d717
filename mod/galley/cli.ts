/**
 * `meshd validate` and `meshd analyze`: the same parsing, validation and analysis the daemon
 * applies, on files and directories, for CI pipelines and editors.
 */
import { readFileSync, statSync } from "node:fs";
import type { Command, Invocation } from "../cli/command.ts";
import type { SettingSpec } from "../cli/setting.ts";
import { UsageError } from "../shared/errors.ts";
import { listConfigFiles } from "./dir_source.ts";
import { duplicateDiagnostics, parseConfig } from "./parse.ts";
import { type Diagnostic, formatDiagnostic, type Resource } from "../api/resource.ts";
import { validateResource } from "./validate.ts";
import type { AnalysisDiagnostic } from "./analyzers/_context.ts";

const MAX_BYTES = 8 * 1024 * 1024;

const OUTPUT: SettingSpec = {
  name: "output",
  short: "o",
  kind: { type: "enum", values: ["text", "json"] },
  default: "text",
  help: "output format",
  flagOnly: true,
};

/** What loading files produced. */
export interface LoadResult {
  readonly files: readonly string[];
  /** Resources that passed validation. */
  readonly valid: readonly Resource[];
  readonly resources: number;
  readonly diagnostics: readonly Diagnostic[];
}

/**
 * Reads, parses and validates files and directories ("-" is standard input). A path that does
 * not exist is a usage error.
 */
export async function loadConfigPaths(
  paths: readonly string[],
  readStdin: () => string,
): Promise<LoadResult> {
  const files: string[] = [];
  for (const p of paths) {
    if (p === "-") {
      files.push(p);
      continue;
    }
    let st;
    try {
      st = statSync(p);
    } catch {
      throw new UsageError(`no such file or directory: ${p}`);
    }
    if (st.isDirectory()) files.push(...await listConfigFiles(p));
    else files.push(p);
  }
  const diagnostics: Diagnostic[] = [];
  const all: Resource[] = [];
  const valid: Resource[] = [];
  for (const f of files) {
    let content: string | Uint8Array;
    if (f === "-") content = readStdin();
    else {
      const size = statSync(f).size;
      if (size > MAX_BYTES) {
        diagnostics.push({
          severity: "error",
          message: `file is ${size} bytes; the limit is ${MAX_BYTES} bytes`,
          pos: { file: f, line: 1, col: 1 },
        });
        continue;
      }
      content = readFileSync(f);
    }
    const parsed = parseConfig(content, f === "-" ? "<stdin>" : f, { maxBytes: MAX_BYTES });
    diagnostics.push(...parsed.diagnostics);
    for (const r of parsed.resources) {
      all.push(r);
      const d = validateResource(r);
      diagnostics.push(...d);
      if (!d.some((x) => x.severity === "error")) valid.push(r);
    }
  }
  const dups = duplicateDiagnostics(all).filter((d) =>
    !diagnostics.some((x) =>
      x.message === d.message && x.pos?.file === d.pos?.file && x.pos?.line === d.pos?.line
    )
  );
  diagnostics.push(...dups);
  return { files, valid, resources: all.length, diagnostics: sortDiagnostics(diagnostics) };
}

/** Orders diagnostics by file, line and column. */
export function sortDiagnostics(ds: readonly Diagnostic[]): Diagnostic[] {
  return [...ds].sort((a, b) =>
    (a.pos?.file ?? "").localeCompare(b.pos?.file ?? "") || (a.pos?.line ?? 0) - (b.pos?.line ?? 0) ||
    (a.pos?.col ?? 0) - (b.pos?.col ?? 0)
  );
}

function report(inv: Invocation, result: LoadResult, diagnostics: readonly Diagnostic[]): number {
  const errors = diagnostics.filter((d) => d.severity === "error").length;
  const warnings = diagnostics.filter((d) => d.severity === "warning").length;
  if (inv.settings.string("output") === "json") {
    inv.out(
      JSON.stringify(
        {
          files: result.files.length,
          resources: result.resources,
          errors,
          warnings,
          diagnostics: diagnostics.map((d: AnalysisDiagnostic) => ({
            severity: d.severity,
            code: d.code,
            istio: d.istio,
            file: d.pos?.file,
            line: d.pos?.line,
            col: d.pos?.col,
            resource: d.resource,
            field: d.field,
            message: d.message,
            text: formatDiagnostic(d),
          })),
        },
        null,
        2,
      ) + "\n",
    );
  } else {
    for (const d of diagnostics) inv.out(formatDiagnostic(d) + "\n");
    const plural = (n: number, w: string) => `${n} ${w}${n === 1 ? "" : "s"}`;
    inv.err(
      `${plural(result.files.length, "file")}, ${plural(result.resources, "resource")}: ${
        plural(errors, "error")
      }, ${plural(warnings, "warning")}\n`,
    );
  }
  return errors > 0 ? 1 : 0;
}

const readStdin = () => readFileSync(0, "utf8");

/** `meshd validate`. */
export const validateCommand: Command = {
  name: "validate",
  summary: "check config files: syntax, kinds, fields and values (exit 1 if invalid)",
  usage: "meshd validate [-o text|json] FILE|DIR|- ...",
  description:
    "Directories are read recursively (*.yaml, *.yml, *.json). Exit status: 0 valid, 1 invalid, 2 usage error.",
  settings: () => [OUTPUT],
  args: { min: 1, max: Number.MAX_SAFE_INTEGER, name: "FILE|DIR" },
  async run(inv) {
    const result = await loadConfigPaths(inv.args, readStdin);
    return report(inv, result, result.diagnostics);
  },
};

/** `meshd analyze`. */
export const analyzeCommand: Command = {
  name: "analyze",
  summary: "validate config and look for problems across resources (exit 1 on errors)",
  usage: "meshd analyze [-o text|json] DIR|FILE ...",
  description: "Runs validation, then every analyzer (codes MSH0xxx) over the resources that are valid. " +
    "With -o json, a finding istioctl also reports carries istioctl's code in `istio` (IST0xxx).",
  settings: () => [OUTPUT],
  args: { min: 1, max: Number.MAX_SAFE_INTEGER, name: "DIR|FILE" },
  async run(inv) {
    const { analyze } = await import("./analyze.ts");
    const result = await loadConfigPaths(inv.args, readStdin);
    return report(inv, result, sortDiagnostics([...result.diagnostics, ...analyze(result.valid)]));
  },
};

/** `meshd config-status`: the accepted/rejected status of a running daemon's config. */
export const configStatusCommand: Command = {
  name: "config-status",
  summary: "show a running meshd's config status: each resource, accepted or rejected with the reason",
  usage: "meshd config-status [--admin-addr HOST:PORT] [-o text|json]",
  description:
    "Reads /debug/configz from the daemon's admin server. Exit status 1 when anything is rejected or a source's change was refused.",
  settings: () => [
    {
      name: "admin-addr",
      kind: { type: "addr" },
      default: "127.0.0.1:15014",
      help: "admin address of the daemon",
    },
    OUTPUT,
  ],
  args: { min: 0, max: 0, name: "" },
  async run(inv) {
    const addr = inv.settings.string("admin-addr");
    let body: {
      version: number;
      resources: Array<
        { resource: string; origin: string; state: string; errors: string[]; servingPrevious: boolean }
      >;
      origins: Array<{ origin: string; state: string; errors: string[] }>;
      sources?: Array<{ name: string; state?: string; errors?: string[]; warnings?: string[] }>;
    };
    try {
      const res = await fetch(`http://${addr}/debug/configz`, { signal: AbortSignal.timeout(10_000) });
      if (!res.ok) throw new Error(`HTTP ${res.status}`);
      body = (await res.json()) as typeof body;
    } catch (err) {
      throw new Error(`cannot read config status from ${addr}: ${(err as Error).message}`);
    }
    const sources = body.sources ?? [];
    const rejected = body.resources.filter((r) => r.state === "rejected").length +
      body.origins.filter((o) => o.state === "rejected").length +
      sources.filter((x) => x.state === "refused").length;
    if (inv.settings.string("output") === "json") {
      inv.out(JSON.stringify(body, null, 2) + "\n");
      return rejected > 0 ? 1 : 0;
    }
    const rows = [["RESOURCE", "STATE", "ORIGIN", "REASON"]];
    for (const r of body.resources) {
      const state = r.state === "rejected" && r.servingPrevious
        ? "REJECTED (previous in force)"
        : r.state.toUpperCase();
      rows.push([r.resource, state, r.origin, r.errors[0] ?? ""]);
    }
    for (const o of body.origins.filter((x) => x.state === "rejected")) {
      rows.push(["(whole file)", "REJECTED (previous in force)", o.origin, o.errors[0] ?? ""]);
    }
    for (const x of sources) {
      for (const e of x.errors ?? []) rows.push(["(whole source)", "REFUSED (previous in force)", x.name, e]);
      for (const w of x.warnings ?? []) rows.push(["(whole source)", "WARNING", x.name, w]);
    }
    const widths = rows[0]!.slice(0, 3).map((_, i) => Math.max(...rows.map((r) => r[i]!.length)));
    for (const r of rows) {
      inv.out(r.map((c, i) => (i < 3 ? c.padEnd(widths[i]!) : c)).join("  ").trimEnd() + "\n");
    }
    inv.err(`snapshot version ${body.version}: ${body.resources.length} resources, ${rejected} rejected\n`);
    return rejected > 0 ? 1 : 0;
  },
};
