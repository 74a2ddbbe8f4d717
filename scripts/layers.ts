/**
 * The import graph of main.ts, runtime/ and mod/, checked against the layers: import cycles
 * between files, imports that reach past another module's `mod.ts`, and imports that point up
 * the layers. `tests/architecture.test.ts` asserts on the same findings.
 *
 * A module is a directory directly under mod/; another module reaches it only through its
 * `mod.ts`, or through its `lazy.ts` by a dynamic `import()` (code loaded on demand). The test
 * asserts there is none of each finding; this script prints them and exits 1 when there is any.
 *
 * Usage: bun scripts/layers.ts [--list]
 *   --list    print every bypass too (cycles, upward and unresolved imports are always printed)
 */
import { existsSync, readdirSync, readFileSync, statSync } from "node:fs";
import { dirname, join, relative, resolve } from "node:path";

/** One import found in a source file. */
export interface ImportRef {
  /** The specifier as written. */
  readonly specifier: string;
  /** `static` (`import ... from`, `export ... from`, `import "x"`), `type` (`import type`,
   * `export type`, `typeof import("x")`) or `dynamic` (`await import("x")`). */
  readonly kind: "static" | "type" | "dynamic";
  /** 1-based line of the specifier. */
  readonly line: number;
}

/** An import between two files of the scanned tree, paths relative to the repository root. */
export interface Edge {
  readonly from: string;
  readonly to: string;
  readonly kind: ImportRef["kind"];
  readonly line: number;
}

/**
 * The layers from the bottom up; a file may import its own layer and the layers below.
 * `mod/cli` (settings) and `mod/grpc` (the gRPC server toolkit) sit with the runtime contracts
 * because the `Module` interface is written in their types.
 */
export const LAYERS: ReadonlyArray<{ readonly name: string; readonly paths: readonly string[] }> = [
  { name: "base", paths: ["mod/shared/", "mod/api/"] },
  { name: "contracts", paths: ["mod/runtime/", "mod/cli/", "mod/grpc/"] },
  { name: "modules", paths: ["mod/"] },
  { name: "assembly", paths: ["runtime/"] },
  { name: "main", paths: ["main.ts"] },
];

/** Directories under mod/ anyone may import file by file: those of the base and contracts layers. */
export const OPEN_DIRECTORIES: readonly string[] = LAYERS.slice(0, 2).flatMap((l) =>
  l.paths.map((p) => p.replace(/^mod\/|\/$/g, ""))
);

/** The index of the layer `path` belongs to (the first whose prefix matches), or -1. */
export function layerOf(path: string): number {
  return LAYERS.findIndex((l) => l.paths.some((p) => path === p || path.startsWith(p)));
}

/** The module directory (`galley` for `mod/galley/x/y.ts`) of a path, or undefined outside mod/. */
export function moduleOf(path: string): string | undefined {
  const m = /^mod\/([^/]+)\//.exec(path);
  return m?.[1];
}

// ---- scanning ------------------------------------------------------------------------------

type Token = { readonly t: "id" | "str" | "punct"; readonly v: string; readonly line: number };

const ID_START = /[A-Za-z_$]/;
const ID_PART = /[A-Za-z0-9_$]/;
/** Tokens after which a `/` starts a regular expression rather than a division. */
const REGEX_AFTER_PUNCT = new Set([
  "(",
  ",",
  "=",
  ":",
  "[",
  "!",
  "&",
  "|",
  "?",
  "{",
  "}",
  ";",
  "+",
  "-",
  "*",
  "%",
  "<",
  ">",
  "~",
  "^",
]);
const REGEX_AFTER_WORD = new Set([
  "return",
  "typeof",
  "case",
  "do",
  "else",
  "in",
  "of",
  "new",
  "delete",
  "void",
  "throw",
  "yield",
  "await",
]);

/** Splits TypeScript source into identifiers, string literals and punctuation, skipping comments,
 * template text and regular expressions (the expressions inside `${}` are kept). */
export function tokenize(src: string): Token[] {
  const out: Token[] = [];
  const braces: Array<"code" | "template"> = [];
  let i = 0;
  let line = 1;
  const n = src.length;

  const skipTemplate = () => {
    // at the character after ` or after the } closing a ${...}
    while (i < n) {
      const c = src[i]!;
      if (c === "\\") {
        i += 2;
        continue;
      }
      if (c === "\n") line++;
      if (c === "`") {
        i++;
        return;
      }
      if (c === "$" && src[i + 1] === "{") {
        i += 2;
        braces.push("template");
        return;
      }
      i++;
    }
  };

  const regexAllowed = () => {
    const prev = out[out.length - 1];
    if (!prev) return true;
    if (prev.t === "punct") return REGEX_AFTER_PUNCT.has(prev.v);
    if (prev.t === "id") return REGEX_AFTER_WORD.has(prev.v);
    return false;
  };

  while (i < n) {
    const c = src[i]!;
    if (c === "\n") {
      line++;
      i++;
    } else if (c === " " || c === "\t" || c === "\r") {
      i++;
    } else if (c === "/" && src[i + 1] === "/") {
      while (i < n && src[i] !== "\n") i++;
    } else if (c === "/" && src[i + 1] === "*") {
      const end = src.indexOf("*/", i + 2);
      const stop = end < 0 ? n : end + 2;
      for (let k = i; k < stop; k++) if (src[k] === "\n") line++;
      i = stop;
    } else if (c === '"' || c === "'") {
      const start = line;
      let v = "";
      i++;
      while (i < n && src[i] !== c && src[i] !== "\n") {
        if (src[i] === "\\") {
          v += src[i + 1] ?? "";
          i += 2;
        } else v += src[i++];
      }
      i++;
      out.push({ t: "str", v, line: start });
    } else if (c === "`") {
      i++;
      skipTemplate();
      out.push({ t: "str", v: "`", line });
    } else if (c === "/" && regexAllowed()) {
      i++;
      let inClass = false;
      while (i < n && src[i] !== "\n") {
        const r = src[i]!;
        if (r === "\\") i++;
        else if (r === "[") inClass = true;
        else if (r === "]") inClass = false;
        else if (r === "/" && !inClass) break;
        i++;
      }
      i++;
      while (i < n && ID_PART.test(src[i]!)) i++;
      out.push({ t: "str", v: "/regex/", line });
    } else if (ID_START.test(c)) {
      let j = i + 1;
      while (j < n && ID_PART.test(src[j]!)) j++;
      out.push({ t: "id", v: src.slice(i, j), line });
      i = j;
    } else if (c === "{") {
      braces.push("code");
      out.push({ t: "punct", v: c, line });
      i++;
    } else if (c === "}") {
      if (braces.pop() === "template") {
        i++;
        skipTemplate();
      } else {
        out.push({ t: "punct", v: c, line });
        i++;
      }
    } else if (/[0-9]/.test(c)) {
      let j = i + 1;
      while (j < n && /[0-9A-Za-z_.]/.test(src[j]!)) j++;
      out.push({ t: "id", v: src.slice(i, j), line });
      i = j;
    } else {
      out.push({ t: "punct", v: c, line });
      i++;
    }
  }
  return out;
}

/** Tokens that may stand between `import`/`export` and `from`. */
function isClauseToken(tok: Token): boolean {
  return tok.t === "id" ? tok.v !== "from" : tok.t === "punct" && ["{", "}", ",", "*"].includes(tok.v);
}

/** Every import of a TypeScript source: static, type-only and dynamic with a literal specifier. */
export function scanImports(src: string): ImportRef[] {
  const toks = tokenize(src);
  const refs: ImportRef[] = [];
  for (let k = 0; k < toks.length; k++) {
    const tok = toks[k]!;
    if (tok.t !== "id" || (tok.v !== "import" && tok.v !== "export")) continue;
    const prev = toks[k - 1];
    if (prev?.t === "punct" && prev.v === ".") continue; // x.import
    const next = toks[k + 1];
    if (!next) continue;
    if (tok.v === "import" && next.t === "punct" && next.v === "(") {
      const spec = toks[k + 2];
      const close = toks[k + 3];
      if (
        spec?.t === "str" && spec.v !== "`" && close?.t === "punct" && (close.v === ")" || close.v === ",")
      ) {
        const isType = prev?.t === "id" && prev.v === "typeof";
        refs.push({ specifier: spec.v, kind: isType ? "type" : "dynamic", line: spec.line });
      }
      continue;
    }
    if (tok.v === "import" && next.t === "str") {
      refs.push({ specifier: next.v, kind: "static", line: next.line });
      continue;
    }
    const typeOnly = next.t === "id" && next.v === "type";
    let j = k + 1;
    while (j < toks.length && isClauseToken(toks[j]!)) j++;
    const from = toks[j];
    const spec = toks[j + 1];
    if (from?.t === "id" && from.v === "from" && spec?.t === "str" && spec.v !== "`") {
      refs.push({ specifier: spec.v, kind: typeOnly ? "type" : "static", line: spec.line });
    }
  }
  return refs;
}

// ---- the graph -----------------------------------------------------------------------------

/** The TypeScript files the checks cover: main.ts, runtime/** and mod/**, relative to `root`. */
export function sourceFiles(root: string): string[] {
  const files: string[] = [];
  const walk = (dir: string) => {
    for (const name of readdirSync(join(root, dir)).sort()) {
      const rel = `${dir}/${name}`;
      if (statSync(join(root, rel)).isDirectory()) walk(rel);
      else if (name.endsWith(".ts")) files.push(rel);
    }
  };
  if (existsSync(join(root, "main.ts"))) files.push("main.ts");
  for (const dir of ["runtime", "mod"]) if (existsSync(join(root, dir))) walk(dir);
  return files;
}

/** Whether a specifier names a file of the repository (not a package, `node:` or `#gen/`). */
function isLocal(specifier: string): boolean {
  return specifier.startsWith("./") || specifier.startsWith("../");
}

/** The import graph over `files` (paths relative to `root`); imports of packages and `#gen/` are left out. */
export function importGraph(root: string, files: readonly string[]): Edge[] {
  const edges: Edge[] = [];
  for (const from of files) {
    for (const ref of scanImports(readFileSync(join(root, from), "utf8"))) {
      if (!isLocal(ref.specifier)) continue;
      const to = relative(root, resolve(root, dirname(from), ref.specifier)).split("\\").join("/");
      edges.push({ from, to, kind: ref.kind, line: ref.line });
    }
  }
  return edges;
}

/**
 * Strongly connected components with more than one file (or a file importing itself), by
 * Tarjan's algorithm; each sorted, the list sorted by its first file.
 */
export function findCycles(edges: readonly Edge[]): string[][] {
  const adj = new Map<string, string[]>();
  for (const e of edges) {
    if (!adj.has(e.from)) adj.set(e.from, []);
    if (!adj.has(e.to)) adj.set(e.to, []);
    adj.get(e.from)!.push(e.to);
  }
  const index = new Map<string, number>();
  const low = new Map<string, number>();
  const onStack = new Set<string>();
  const stack: string[] = [];
  const sccs: string[][] = [];
  let next = 0;

  // iterative, so a deep import chain cannot overflow the call stack
  for (const start of [...adj.keys()].sort()) {
    if (index.has(start)) continue;
    const work: Array<{ v: string; i: number }> = [{ v: start, i: 0 }];
    index.set(start, next);
    low.set(start, next++);
    stack.push(start);
    onStack.add(start);
    while (work.length > 0) {
      const frame = work[work.length - 1]!;
      const succ = adj.get(frame.v)!;
      if (frame.i < succ.length) {
        const w = succ[frame.i++]!;
        if (!index.has(w)) {
          index.set(w, next);
          low.set(w, next++);
          stack.push(w);
          onStack.add(w);
          work.push({ v: w, i: 0 });
        } else if (onStack.has(w)) {
          low.set(frame.v, Math.min(low.get(frame.v)!, index.get(w)!));
        }
        continue;
      }
      work.pop();
      const parent = work[work.length - 1];
      if (parent) low.set(parent.v, Math.min(low.get(parent.v)!, low.get(frame.v)!));
      if (low.get(frame.v) === index.get(frame.v)) {
        const scc: string[] = [];
        let w: string;
        do {
          w = stack.pop()!;
          onStack.delete(w);
          scc.push(w);
        } while (w !== frame.v);
        const selfLoop = scc.length === 1 && succ.includes(frame.v);
        if (scc.length > 1 || selfLoop) sccs.push(scc.sort());
      }
    }
  }
  return sccs.sort((a, b) => a[0]!.localeCompare(b[0]!));
}

/**
 * Imports from one module directory into a file of another module other than its `mod.ts`, or
 * other than its `lazy.ts` by a dynamic import (a module's code loaded only when needed, such as
 * the etcd client, which loads etcd's protobuf descriptors). Open directories (base layer and
 * runtime contracts) may be imported file by file; importers outside mod/ (runtime/, main.ts)
 * assemble the modules and are not counted.
 */
export function findBypasses(edges: readonly Edge[]): Edge[] {
  return edges.filter((e) => {
    const from = moduleOf(e.from);
    const to = moduleOf(e.to);
    if (from === undefined || to === undefined || from === to) return false;
    if (OPEN_DIRECTORIES.includes(to)) return false;
    if (e.to === `mod/${to}/lazy.ts` && e.kind === "dynamic") return false;
    return e.to !== `mod/${to}/mod.ts`;
  });
}

/** Imports whose target sits in a higher layer than their importer, or outside the layers
 * (tests, scripts, bench); a data file such as package.json is not code and is left out. */
export function findUpward(edges: readonly Edge[]): Edge[] {
  return edges.filter((e) => e.to.endsWith(".ts") && (layerOf(e.to) > layerOf(e.from) || layerOf(e.to) < 0));
}

/** Imports of files that do not exist. */
export function findUnresolved(root: string, edges: readonly Edge[]): Edge[] {
  return edges.filter((e) => !existsSync(join(root, e.to)));
}

/** One line per import, `from -> to`, without repeats: the form of the allowlist files. */
export function edgeLines(edges: readonly Edge[]): string[] {
  return [...new Set(edges.map((e) => `${e.from} -> ${e.to}`))].sort();
}

/** Everything the checks find in the tree at `root`. */
export function analyseLayers(root: string) {
  const files = sourceFiles(root);
  const edges = importGraph(root, files);
  return {
    files,
    edges,
    cycles: findCycles(edges),
    bypasses: findBypasses(edges),
    upward: findUpward(edges),
    unresolved: findUnresolved(root, edges),
  };
}

/** The printed report: counts, and with `list` every cycle, bypass and upward import. */
export function layersReport(root: string, list: boolean): string {
  const a = analyseLayers(root);
  const bypassLines = edgeLines(a.bypasses);
  const bypassFiles = new Set(a.bypasses.map((e) => e.from));
  const out: string[] = [
    `files: ${a.files.length}, imports: ${a.edges.length}`,
    `cycles: ${a.cycles.length} (${a.cycles.reduce((s, c) => s + c.length, 0)} files)`,
    `bypasses of mod.ts: ${a.bypasses.length} imports (${bypassLines.length} distinct) in ${bypassFiles.size} files`,
    `upward imports: ${a.upward.length}`,
    `unresolved imports: ${a.unresolved.length}`,
  ];
  const fmt = (e: Edge) =>
    `  ${e.from}:${e.line} -> ${e.to}${e.kind === "static" ? "" : ` (${e.kind})`}` +
    `  [${LAYERS[layerOf(e.from)]?.name ?? "?"} -> ${LAYERS[layerOf(e.to)]?.name ?? "?"}]`;
  for (const c of a.cycles) out.push(`cycle: ${c.join(" ")}`);
  for (const e of a.upward) out.push(`upward:${fmt(e)}`);
  for (const e of a.unresolved) out.push(`unresolved:${fmt(e)}`);
  if (list) { for (const e of a.bypasses) out.push(`bypass:${fmt(e)}`); }
  return out.join("\n") + "\n";
}

if (import.meta.main) {
  const root = resolve(import.meta.dir, "..");
  const report = layersReport(root, process.argv.includes("--list"));
  process.stdout.write(report);
  const a = analyseLayers(root);
  const broken = a.cycles.length + a.bypasses.length + a.upward.length + a.unresolved.length;
  process.exit(broken === 0 ? 0 : 1);
}
