/**
 * The one table of Mixer adapters and templates (mod/api/mixer) and what reads it: every adapter
 * has a factory in mixer and names only known templates, galley's validation and mixer's dispatch
 * sort templates the same way, and galley reaches none of mixer's running code (nor the
 * attribute-bag wire code a cycle with its codec).
 */
import { describe, expect, test } from "bun:test";
import { readFileSync } from "node:fs";
import { dirname, join, resolve } from "node:path";
import {
  adapterNames,
  ADAPTERS,
  templateDescriptor,
  templateNames,
  TEMPLATES,
} from "../../mod/api/mixer/mod.ts";
import { adapterFactories } from "../../mod/mixer/adapters/factories.ts";
import { createMetricPool } from "../../mod/mixer/adapters/prometheus.ts";
import { createMetricsRegistry } from "../../mod/shared/metrics.ts";
import { quiet } from "./_harness.ts";

const root = resolve(import.meta.dir, "../..");
const transpiler = new Bun.Transpiler({ loader: "ts" });

/** Every file and package the file at `start` reaches through its imports, type-only ones too. */
function importClosure(start: string): { files: Set<string>; packages: Set<string> } {
  const files = new Set<string>();
  const packages = new Set<string>();
  const pending = [resolve(root, start)];
  for (let file = pending.pop(); file !== undefined; file = pending.pop()) {
    if (files.has(file)) continue;
    files.add(file);
    const source = readFileSync(file, "utf8");
    // scanImports drops type-only imports, so also read the specifiers of `import type` lines.
    const specifiers = new Set(transpiler.scanImports(source).map((i) => i.path));
    for (const m of source.matchAll(/^(?:import|export) type [^;]*?from "([^"]+)"/gms)) specifiers.add(m[1]!);
    for (const spec of specifiers) {
      if (spec.startsWith(".")) pending.push(join(dirname(file), spec));
      else packages.add(spec);
    }
  }
  return { files: new Set([...files].map((f) => f.slice(root.length + 1))), packages };
}

describe("the adapter table", () => {
  test("lists each adapter once, in the order galley's messages list them", () => {
    expect(adapterNames).toEqual([
      "denier",
      "listchecker",
      "memquota",
      "redisquota",
      "prometheus",
      "stdio",
      "zipkin",
    ]);
    expect(new Set(adapterNames).size).toBe(ADAPTERS.length);
  });

  test("every adapter accepts only templates of the template table", () => {
    for (const a of ADAPTERS) {
      expect(a.templates.length).toBeGreaterThan(0);
      for (const name of a.templates) expect(templateDescriptor(name)?.name).toBe(name);
    }
  });

  test("mixer has exactly one factory per adapter of the table", () => {
    const pool = createMetricPool(createMetricsRegistry(), quiet);
    const factories = adapterFactories(pool);
    expect(Object.keys(factories).sort()).toEqual([...adapterNames].sort());
    for (const name of adapterNames) expect(typeof factories[name]).toBe("function");
  });
});

describe("the template table", () => {
  test("sorts templates into the check, quota and report calls", () => {
    expect(templateNames).toEqual([
      "authorization",
      "listentry",
      "checknothing",
      "quota",
      "metric",
      "logentry",
      "tracespan",
      "reportnothing",
    ]);
    const byPhase = (phase: string) => TEMPLATES.filter((t) => t.phase === phase).map((t) => t.name);
    expect(byPhase("check")).toEqual(["authorization", "listentry", "checknothing"]);
    expect(byPhase("quota")).toEqual(["quota"]);
    expect(byPhase("report")).toEqual(["metric", "logentry", "tracespan", "reportnothing"]);
  });
});

describe("layers", () => {
  test("galley's Mixer kinds and analyzer reach the table but none of mixer's code or clients", () => {
    for (const start of ["mod/api/kinds/mixer.ts", "mod/galley/analyzers/mixer_rules.ts"]) {
      const { files, packages } = importClosure(start);
      expect(files.has("mod/api/mixer/table.ts")).toBe(true);
      expect([...files].filter((f) => f.startsWith("mod/mixer/"))).toEqual([]);
      expect([...packages].filter((p) => ["ioredis", "prom-client", "@connectrpc/connect"].includes(p)))
        .toEqual(
          [],
        );
    }
  });

  test("the attribute-bag codec does not import the wire conversions that use it", () => {
    const { files } = importClosure("mod/mixer/client/bag_codec.ts");
    expect(files.has("mod/mixer/client/wire.ts")).toBe(false);
  });
});
