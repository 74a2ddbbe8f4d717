/**
 * The layers hold: no import runs up the layers, no import cycle, no import into another module
 * other than its mod.ts (or its lazy.ts, dynamically), and the import scanner of scripts/layers.ts
 * finds what it should.
 */
import { describe, expect, test } from "bun:test";
import { join } from "node:path";
import {
  analyseLayers,
  type Edge,
  findBypasses,
  findCycles,
  findUpward,
  layerOf,
  LAYERS,
  scanImports,
} from "../scripts/layers.ts";

const root = join(import.meta.dir, "..");
const tree = analyseLayers(root);

/** Edges from `from -> to` shorthand, for the graph checks. */
function edges(...pairs: string[]): Edge[] {
  return pairs.map((p) => {
    const [from, to] = p.split(" -> ") as [string, string];
    return { from, to, kind: "static" as const, line: 1 };
  });
}

describe("the tree", () => {
  test("covers main.ts, runtime/ and mod/", () => {
    expect(tree.files).toContain("main.ts");
    expect(tree.files).toContain("runtime/daemon.ts");
    expect(tree.files).toContain("mod/runtime/module.ts");
    expect(tree.edges.length).toBeGreaterThan(500);
  });

  test("every import names a file that exists", () => {
    expect(tree.unresolved.map((e) => `${e.from}:${e.line} -> ${e.to}`)).toEqual([]);
  });

  test("no import runs up the layers", () => {
    const lines = tree.upward.map((e) =>
      `${e.from}:${e.line} -> ${e.to} (${LAYERS[layerOf(e.from)]?.name} -> ${
        LAYERS[layerOf(e.to)]?.name ?? "tests"
      })`
    );
    expect(lines).toEqual([]);
  });

  test("no import cycle", () => {
    expect(tree.cycles.map((c) => c.join(" "))).toEqual([]);
  });

  test("no import into another module other than its mod.ts (or lazy.ts, dynamically)", () => {
    expect(tree.bypasses.map((e) => `${e.from}:${e.line} -> ${e.to} (${e.kind})`)).toEqual([]);
  });
});

describe("scanImports", () => {
  test("finds static, type-only, re-exported, side-effect and dynamic imports", () => {
    const src = [
      `import { a, type B } from "./a.ts";`,
      `import type { C } from "../c.ts";`,
      `import * as d from './d.ts';`,
      `import e, { f as g } from "./e.ts";`,
      `import "./side.ts";`,
      `export { h } from "./h.ts";`,
      `export * from "./star.ts";`,
      `export type { I } from "./i.ts";`,
      `import {`,
      `  j,`,
      `  k,`,
      `} from "./multi.ts";`,
      `const m = await import("./lazy.ts");`,
      `type N = typeof import("./typed.ts");`,
      `const url = import.meta.url;`,
    ].join("\n");
    expect(scanImports(src).map((r) => [r.specifier, r.kind, r.line])).toEqual([
      ["./a.ts", "static", 1],
      ["../c.ts", "type", 2],
      ["./d.ts", "static", 3],
      ["./e.ts", "static", 4],
      ["./side.ts", "static", 5],
      ["./h.ts", "static", 6],
      ["./star.ts", "static", 7],
      ["./i.ts", "type", 8],
      ["./multi.ts", "static", 12],
      ["./lazy.ts", "dynamic", 13],
      ["./typed.ts", "type", 14],
    ]);
  });

  test("ignores imports written in comments, strings, templates and regular expressions", () => {
    const src = [
      `// import { x } from "./line_comment.ts";`,
      `/* import { y } from "./block_comment.ts"; */`,
      `/**`,
      ` * export { z } from "./doc_comment.ts";`,
      ` */`,
      `const s = "import { q } from './string.ts'";`,
      'const t = `import { r } from "./template.ts" ${`nested ${1}`} export * from "./t2.ts"`;',
      `const re = /import { w } from "\\.\\/regex.ts"/;`,
      `const half = 10 / 2; import { real } from "./real.ts";`,
      `const obj = { import: 1 }; obj.import;`,
    ].join("\n");
    expect(scanImports(src).map((r) => [r.specifier, r.line])).toEqual([["./real.ts", 9]]);
  });

  test("keeps package, node: and #gen/ imports (the graph leaves them out)", () => {
    const src = `import { x } from "node:fs";\nimport { y } from "#gen/a_pb.ts";\nimport { z } from "yaml";`;
    expect(scanImports(src).map((r) => r.specifier)).toEqual(["node:fs", "#gen/a_pb.ts", "yaml"]);
  });
});

describe("findCycles", () => {
  test("reports each strongly connected component with more than one file, and self-imports", () => {
    const g = edges(
      "mod/a/x.ts -> mod/a/y.ts",
      "mod/a/y.ts -> mod/a/z.ts",
      "mod/a/z.ts -> mod/a/x.ts",
      "mod/a/z.ts -> mod/b/leaf.ts",
      "mod/b/p.ts -> mod/b/q.ts",
      "mod/b/q.ts -> mod/b/p.ts",
      "mod/c/self.ts -> mod/c/self.ts",
      "mod/c/top.ts -> mod/a/x.ts",
    );
    expect(findCycles(g)).toEqual([
      ["mod/a/x.ts", "mod/a/y.ts", "mod/a/z.ts"],
      ["mod/b/p.ts", "mod/b/q.ts"],
      ["mod/c/self.ts"],
    ]);
  });

  test("finds none in a graph without cycles", () => {
    expect(findCycles(edges("a.ts -> b.ts", "b.ts -> c.ts", "a.ts -> c.ts"))).toEqual([]);
  });
});

describe("findBypasses and findUpward", () => {
  test("an import into another module counts unless it is that module's mod.ts or an open directory", () => {
    const g = edges(
      "mod/pilot/a.ts -> mod/galley/mod.ts",
      "mod/pilot/a.ts -> mod/galley/kinds/networking.ts",
      "mod/pilot/a.ts -> mod/pilot/model/service.ts",
      "mod/pilot/a.ts -> mod/shared/logger.ts",
      "mod/pilot/a.ts -> mod/api/hosts.ts",
      "mod/pilot/a.ts -> mod/runtime/module.ts",
      "runtime/daemon.ts -> mod/admin/server.ts",
    );
    expect(findBypasses(g).map((e) => e.to)).toEqual(["mod/galley/kinds/networking.ts"]);
    // lazy.ts is the second way in, for code loaded on demand: by a dynamic import only.
    const lazy = (kind: Edge["kind"]): Edge => ({
      from: "mod/pilot/a.ts",
      to: "mod/store/lazy.ts",
      kind,
      line: 1,
    });
    expect(findBypasses([lazy("dynamic")])).toEqual([]);
    expect(findBypasses([lazy("static"), lazy("type")]).map((e) => e.kind)).toEqual(["static", "type"]);
  });

  test("imports may point down or sideways, never up", () => {
    const g = edges(
      "main.ts -> runtime/serve_command.ts",
      "runtime/daemon.ts -> mod/xds/mod.ts",
      "mod/pilot/a.ts -> mod/galley/mod.ts",
      "mod/pilot/a.ts -> mod/runtime/module.ts",
      "mod/runtime/module.ts -> mod/shared/clock.ts",
      "mod/galley/module.ts -> runtime/daemon.ts",
      "mod/runtime/catalogue.ts -> mod/pilot/mod.ts",
      "mod/shared/x.ts -> mod/api/y.ts",
      "mod/api/y.ts -> mod/galley/schema.ts",
      "mod/pilot/a.ts -> tests/helpers.ts",
    );
    expect(findUpward(g).map((e) => `${e.from} -> ${e.to}`)).toEqual([
      "mod/galley/module.ts -> runtime/daemon.ts",
      "mod/runtime/catalogue.ts -> mod/pilot/mod.ts",
      "mod/api/y.ts -> mod/galley/schema.ts",
      "mod/pilot/a.ts -> tests/helpers.ts",
    ]);
  });
});
