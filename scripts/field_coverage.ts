/**
 * Measures which fields of Istio's networking, security and telemetry APIs meshd honours, and
 * writes the table of docs/field-coverage.md.
 *
 * - **Fields** come from the API layer: the networking schemas directly, the security and
 *   telemetry ones by probing their validators (their schemas are not exported), so the list is
 *   what validation accepts. Paths read `Kind.spec.a.b`, `[]` for list items, `*` for map keys.
 * - **Envoy** and **gRPC** are measured: every corpus input (the golden inputs of
 *   tests/pilot/golden and tests/fixtures/coverage/*.yaml) is translated for its test proxies
 *   with every resource's spec wrapped in a recording Proxy, once through the Envoy builders and
 *   once through the proxyless gRPC builders, each with its own PushContext (so what the push
 *   context reads to decide what a proxy gets counts for both). A field counts when a builder
 *   reads it while it is set. For gRPC a field named by grpcUnsupported is "partial".
 * - **Real client** comes from tests/e2e/_coverage.ts, the list kept next to the e2e tests.
 * - **Refused**: fields for which validation of the corpus, or of the inputs under
 *   tests/fixtures/coverage/refused/, reports "not supported" at that field.
 *
 * Usage: `bun scripts/field_coverage.ts` prints the Markdown; `--write` writes
 * docs/field-coverage.md; `--totals` prints the totals; `--gaps` prints, and `--write-gaps`
 * writes, the known-gaps file of the rule of tests/api/field_coverage.test.ts (only after fixing
 * gaps: that list may only shrink).
 *
 * @module
 */
import { readdirSync, readFileSync, statSync, writeFileSync } from "node:fs";
import { join, resolve } from "node:path";
import { parse } from "yaml";
import type { JsonObject } from "@bufbuild/protobuf";
import type { Diagnostic, Resource } from "../mod/api/resource.ts";
import { fieldPath, type Schema } from "../mod/api/schema.ts";
import { networkingSchemas } from "../mod/api/kinds/networking.ts";
import {
  validateAuthorizationPolicy,
  validatePeerAuthentication,
  validateRequestAuthentication,
} from "../mod/api/kinds/security.ts";
import { validateTelemetry } from "../mod/api/kinds/telemetry.ts";
import { type ConfigSnapshot, createConfigStore } from "../mod/galley/mod.ts";
import { parseConfig } from "../mod/galley/parse.ts";
import { validateResource } from "../mod/galley/validate.ts";
import { createPushContext } from "../mod/pilot/model/push_context.ts";
import { type Proxy, proxyFromNode } from "../mod/pilot/model/proxy.ts";
import { buildClusters, buildEndpoints, buildListeners, buildRoutes } from "../mod/pilot/translate/mod.ts";
import {
  buildGrpcClusters,
  buildGrpcEndpoints,
  buildGrpcListeners,
  buildGrpcRoutes,
  grpcUnsupported,
} from "../mod/pilot/translate/grpc/mod.ts";
import { createLogger } from "../mod/shared/logger.ts";
import { E2E_COVERAGE } from "../tests/e2e/_coverage.ts";

/** The repository root. */
export const ROOT = resolve(import.meta.dir, "..");
/** The generated document. */
export const DOC_PATH = join(ROOT, "docs/field-coverage.md");
/** Inputs written to set every field. */
export const FIXTURE_DIR = join(ROOT, "tests/fixtures/coverage");
/** Golden inputs, also part of the corpus. */
export const GOLDEN_DIR = join(ROOT, "tests/pilot/golden");

// ---------------------------------------------------------------------------------------------
// The fields of the API
// ---------------------------------------------------------------------------------------------

/** A kind whose fields are listed, with its schema or, when that is not exported, its validator. */
export interface ApiKind {
  readonly group: string;
  readonly version: string;
  readonly kind: string;
  readonly schema?: Schema;
  readonly validate: (r: Resource) => Diagnostic[];
}

const NET = "networking.istio.io";
const SEC = "security.istio.io";

/** The kinds of the table, in its order. */
export const API_KINDS: readonly ApiKind[] = [
  ...Object.entries(networkingSchemas).map(([kind, schema]): ApiKind => ({
    group: NET,
    version: "v1",
    kind,
    schema,
    validate: (r) => validateResource(r),
  })),
  { group: SEC, version: "v1", kind: "PeerAuthentication", validate: validatePeerAuthentication },
  { group: SEC, version: "v1", kind: "RequestAuthentication", validate: validateRequestAuthentication },
  { group: SEC, version: "v1", kind: "AuthorizationPolicy", validate: validateAuthorizationPolicy },
  { group: "telemetry.istio.io", version: "v1alpha1", kind: "Telemetry", validate: validateTelemetry },
];

/** The leaf field paths of a schema under `prefix` (objects are followed, their leaves listed). */
export function schemaFields(schema: Schema, prefix: string): string[] {
  switch (schema.type) {
    case "object": {
      const names = Object.keys(schema.fields);
      if (names.length === 0) return [prefix];
      return names.flatMap((n) => schemaFields(schema.fields[n]!, `${prefix}.${n}`));
    }
    case "array":
      return isContainer(schema.items) ? schemaFields(schema.items, `${prefix}[]`) : [prefix];
    case "map":
      return isContainer(schema.values) ? schemaFields(schema.values, `${prefix}.*`) : [prefix];
    default:
      return [prefix];
  }
}

function isContainer(s: Schema): boolean {
  return s.type === "object" || s.type === "array" || s.type === "map";
}

/** What probing has learnt of a node of a schema. */
type Shape =
  | { readonly t: "unknown" }
  | { readonly t: "leaf" }
  | { readonly t: "object"; readonly fields: Map<string, Shape> }
  | { readonly t: "array"; items: Shape }
  | { readonly t: "map"; values: Shape }
  | { readonly t: "mapOrLeaf" };

const PROBE_KEY = "probekey";

function probeResource(k: ApiKind, spec: unknown): Resource {
  const source = { file: "probe.yaml", line: 1, col: 1 };
  return {
    group: k.group,
    version: k.version,
    kind: k.kind,
    metadata: { name: "probe", namespace: "probe" },
    spec,
    source,
    positionOf: () => source,
  };
}

/**
 * The leaf field paths a kind's validator accepts, found by probing it: objects that record
 * which fields the walker asks for, and the type errors it reports for values of the wrong type.
 * Each pass gives the validator a value built from what is known so far, until nothing changes.
 */
export function probeFields(k: ApiKind): string[] {
  const root: Shape = { t: "object", fields: new Map() };
  for (let pass = 0; pass < 40; pass++) {
    const recorded = new Map<string, Map<string, Shape>>();
    const before = JSON.stringify(dump(root));
    let diags: Diagnostic[] = [];
    try {
      diags = k.validate(probeResource(k, probeValue(root, "spec", recorded)));
    } catch {
      // A check met a probe it did not expect; the fields recorded before still count.
    }
    refine(root, "spec", { diags, recorded });
    if (JSON.stringify(dump(root)) === before) break;
  }
  return shapeFields(root, `${k.kind}.spec`);
}

/** A value for one probing pass: a recording object where an object may be, lists of one item. */
function probeValue(shape: Shape, path: string, recorded: Map<string, Map<string, Shape>>): unknown {
  switch (shape.t) {
    case "leaf":
      return undefined;
    case "array":
      return [probeValue(shape.items, `${path}[0]`, recorded)];
    case "map":
      return { [PROBE_KEY]: probeValue(shape.values, fieldPath(path, PROBE_KEY), recorded) };
    case "mapOrLeaf":
      return { [PROBE_KEY]: probeValue({ t: "unknown" }, fieldPath(path, PROBE_KEY), recorded) };
    case "unknown":
    case "object": {
      const fields = shape.t === "object" ? shape.fields : new Map<string, Shape>();
      recorded.set(path, fields);
      return new Proxy({}, {
        get(_target, prop) {
          if (typeof prop !== "string") return undefined;
          if (!fields.has(prop)) fields.set(prop, { t: "unknown" });
          return probeValue(fields.get(prop)!, fieldPath(path, prop), recorded);
        },
      });
    }
  }
}

interface PassResult {
  readonly diags: readonly Diagnostic[];
  readonly recorded: ReadonlyMap<string, Map<string, Shape>>;
}

/** What a node given an unknown-shaped probe at `p` turned out to be, if the pass showed it. */
function learnt(p: string, pass: PassResult): Shape {
  const messages = pass.diags.filter((d) => d.field === p).map((d) => d.message);
  if (messages.some((m) => m.startsWith("must be a list"))) return { t: "array", items: { t: "unknown" } };
  if (messages.some((m) => /^must be (a string|an integer|a number|a boolean)/.test(m))) return { t: "leaf" };
  if (messages.some((m) => m.startsWith("must be a map"))) return { t: "map", values: { t: "unknown" } };
  const fields = pass.recorded.get(p);
  if (fields && fields.size > 0) return { t: "object", fields };
  return { t: "mapOrLeaf" };
}

/** What a node probed as map-or-leaf at `p` is: an empty object, a map, or a leaf (any). */
function learntMapOrLeaf(p: string, pass: PassResult): Shape {
  const kp = fieldPath(p, PROBE_KEY);
  if (pass.diags.some((d) => d.field === kp && d.message.startsWith("unknown field"))) {
    return { t: "object", fields: new Map() };
  }
  const values = learnt(kp, pass);
  return values.t === "mapOrLeaf" ? { t: "leaf" } : { t: "map", values };
}

/** Applies what one probing pass showed to the shape tree under `path`. */
function refine(shape: Shape, path: string, pass: PassResult): void {
  const next = (child: Shape, p: string): Shape => {
    if (child.t === "unknown") return learnt(p, pass);
    if (child.t === "mapOrLeaf") return learntMapOrLeaf(p, pass);
    refine(child, p, pass);
    return child;
  };
  if (shape.t === "object") {
    for (const [name, child] of shape.fields) shape.fields.set(name, next(child, fieldPath(path, name)));
  } else if (shape.t === "array") shape.items = next(shape.items, `${path}[0]`);
  else if (shape.t === "map") shape.values = next(shape.values, fieldPath(path, PROBE_KEY));
}

function dump(shape: Shape): unknown {
  switch (shape.t) {
    case "object":
      return Object.fromEntries([...shape.fields].map(([k, v]) => [k, dump(v)]));
    case "array":
      return [dump(shape.items)];
    case "map":
      return { "*": dump(shape.values) };
    default:
      return shape.t;
  }
}

function shapeFields(shape: Shape, prefix: string): string[] {
  switch (shape.t) {
    case "object":
      if (shape.fields.size === 0) return [prefix];
      return [...shape.fields].flatMap(([n, s]) => shapeFields(s, `${prefix}.${n}`));
    case "array":
      return shape.items.t === "object" || shape.items.t === "array" || shape.items.t === "map"
        ? shapeFields(shape.items, `${prefix}[]`)
        : [prefix];
    case "map":
      return shape.values.t === "object" || shape.values.t === "array" || shape.values.t === "map"
        ? shapeFields(shape.values, `${prefix}.*`)
        : [prefix];
    default:
      return [prefix];
  }
}

/** The leaf field paths of every kind of the table, by kind, in schema order. */
export function apiFields(): Map<string, string[]> {
  return new Map(
    API_KINDS.map((k) => [k.kind, k.schema ? schemaFields(k.schema, `${k.kind}.spec`) : probeFields(k)]),
  );
}

// ---------------------------------------------------------------------------------------------
// The corpus
// ---------------------------------------------------------------------------------------------

/** One corpus input: config documents and the proxies to translate them for. */
export interface CorpusCase {
  readonly name: string;
  readonly yaml: readonly string[];
  readonly proxies: readonly Proxy[];
}

interface TestProxySpec {
  id: string;
  metadata?: JsonObject;
  include?: string[];
}

function yamlFiles(dir: string): string[] {
  return readdirSync(dir).filter((f) => /\.ya?ml$/.test(f)).sort().map((f) => join(dir, f));
}

/** Reads an input file: config documents, and `kind: TestProxy` documents naming proxies. */
export function readCorpusFile(file: string): CorpusCase {
  const config: string[] = [];
  const specs: TestProxySpec[] = [];
  for (const doc of readFileSync(file, "utf8").split(/^---[ \t]*$/m)) {
    const parsed = parse(doc) as { kind?: string; spec?: TestProxySpec } | null;
    if (parsed?.kind === "TestProxy" && parsed.spec) specs.push(parsed.spec);
    else if (parsed) config.push(doc);
  }
  if (specs.length === 0) throw new Error(`${file}: no TestProxy document`);
  const included = specs.flatMap((s) => s.include ?? []).flatMap((p) => {
    const abs = join(ROOT, p);
    return statSync(abs).isDirectory() ? yamlFiles(abs) : [abs];
  }).map((f) => readFileSync(f, "utf8"));
  return {
    name: file.slice(ROOT.length + 1),
    yaml: [...included, config.join("\n---\n")],
    proxies: specs.map((s) => proxyFromNode({ id: s.id, metadata: s.metadata ?? {} })),
  };
}

/** Every corpus input: the golden inputs and the coverage fixtures. */
export function corpus(): CorpusCase[] {
  const golden = readdirSync(GOLDEN_DIR).filter((f) => f.endsWith(".input.yaml")).sort().map((f) =>
    join(GOLDEN_DIR, f)
  );
  return [...golden, ...yamlFiles(FIXTURE_DIR)].map(readCorpusFile);
}

/** The accepted config of a corpus input; throws when any of it is rejected. */
export function snapshotOf(c: CorpusCase): ConfigSnapshot {
  const store = createConfigStore({ logger: createLogger({ write: () => {} }) });
  store.sink("coverage").replace(c.yaml.map((content, i) => ({ origin: `${c.name}#${i}`, content })));
  const status = store.status();
  const bad = [
    ...status.resources.filter((r) => r.state === "rejected").flatMap((r) => r.errors),
    ...status.origins.flatMap((o) => o.errors),
  ];
  if (bad.length > 0) throw new Error(`${c.name}: config rejected:\n${bad.join("\n")}`);
  return store.snapshot();
}

// ---------------------------------------------------------------------------------------------
// Recording reads
// ---------------------------------------------------------------------------------------------

/**
 * Wraps `value` so that reading a property that is set records its path (`[]` for list items)
 * into `reads`. Reads of unset fields and of array methods or lengths are not recorded.
 */
export function recording<T>(value: T, path: string, reads: Set<string>): T {
  if (typeof value !== "object" || value === null) return value;
  const isArray = Array.isArray(value);
  const target = (isArray ? [...value] : { ...value }) as object;
  const cache = new Map<string, unknown>();
  return new Proxy(target, {
    get(t, prop, receiver) {
      if (typeof prop !== "string" || !Object.hasOwn(t, prop) || (isArray && prop === "length")) {
        return Reflect.get(t, prop, receiver);
      }
      const child = isArray && /^\d+$/.test(prop) ? `${path}[]` : `${path}.${prop}`;
      reads.add(child);
      if (!cache.has(prop)) cache.set(prop, recording((t as Record<string, unknown>)[prop], child, reads));
      return cache.get(prop);
    },
  }) as T;
}

/** A snapshot whose resources' specs record the paths read (`Kind.spec...`) into `reads`. */
export function recordingSnapshot(snapshot: ConfigSnapshot, reads: Set<string>): ConfigSnapshot {
  const wrapped = new Map<Resource, Resource>();
  const wrap = <S>(r: Resource<S>): Resource<S> => {
    let w = wrapped.get(r as Resource);
    if (!w) {
      w = { ...r, spec: recording(r.spec, `${r.kind}.spec`, reads) } as Resource;
      wrapped.set(r as Resource, w);
    }
    return w as Resource<S>;
  };
  return {
    version: snapshot.version,
    resources: new Map([...snapshot.resources].map(([k, r]) => [k, wrap(r)])),
    list: <S>(group: string, kind: string) => snapshot.list<S>(group, kind).map(wrap),
    get: <S>(group: string, kind: string, namespace: string, name: string) => {
      const r = snapshot.get<S>(group, kind, namespace, name);
      return r && wrap(r);
    },
  };
}

/** The proxyless gRPC client of the same workload as `proxy`. */
function proxylessOf(proxy: Proxy): Proxy {
  const [, ...rest] = proxy.id.split("~");
  return proxyFromNode({
    id: ["proxyless", ...rest].join("~"),
    metadata: { ...proxy.metadata, GENERATOR: "grpc" },
  });
}

/** What translating the corpus read, per data plane, and what gRPC reported it cannot express. */
export interface Measured {
  readonly envoy: Set<string>;
  readonly grpc: Set<string>;
  /** grpcUnsupported fields as schema-path prefixes (`VirtualService.spec.http[].mirror`). */
  readonly grpcGaps: Set<string>;
  /** Every field path set in the corpus. */
  readonly set: Set<string>;
  /** Field paths at which validation said "not supported". */
  readonly refused: Set<string>;
}

function setPaths(value: unknown, path: string, out: Set<string>): void {
  if (Array.isArray(value)) value.forEach((v) => setPaths(v, `${path}[]`, out));
  else if (typeof value === "object" && value !== null) {
    for (const [k, v] of Object.entries(value)) setPaths(v, `${path}.${k}`, out);
  } else if (value !== undefined && value !== null) out.add(path);
  if (Array.isArray(value) || (typeof value === "object" && value !== null)) out.add(path);
}

const DR_PREFIXES = [
  "DestinationRule.spec.trafficPolicy",
  "DestinationRule.spec.trafficPolicy.portLevelSettings[]",
  "DestinationRule.spec.subsets[].trafficPolicy",
  "DestinationRule.spec.subsets[].trafficPolicy.portLevelSettings[]",
];

function gapPaths(push: ReturnType<typeof createPushContext>, proxy: Proxy): string[] {
  return grpcUnsupported(push, proxy).flatMap((g) => {
    // Another network's endpoints, reached through its gateway (gRPC sends no outbound_ SNI).
    if (g.field.startsWith("endpoints (network")) {
      return ["WorkloadEntry.spec.network", "ServiceEntry.spec.endpoints[].network"];
    }
    // A Sidecar's ingress settings a gRPC server cannot follow: "Sidecar NS/NAME ingress[0].tls".
    const sidecar = /^Sidecar \S+ (.*)$/.exec(g.field);
    if (sidecar) return [`Sidecar.spec.${sidecar[1]!.replace(/\[\d+\]/g, "[]")}`];
    const field = g.field.replace(/^\S+\/\S+ /, "").replace(/ \(.*\)$/, "").replace(/\[\d+\]/g, "[]");
    // A route left out as a whole (its path ends in a list index) names no field.
    if (field.endsWith("]")) return [];
    if (g.resource.startsWith("route ")) return [`VirtualService.spec.${field}`];
    if (field === "resolution") return ["ServiceEntry.spec.resolution"];
    return DR_PREFIXES.map((p) => `${p}.${field}`);
  });
}

/** Translates the corpus for Envoy and for proxyless gRPC, recording the fields each reads. */
export function measure(cases: readonly CorpusCase[] = corpus()): Measured {
  const m: Measured = {
    envoy: new Set(),
    grpc: new Set(),
    grpcGaps: new Set(),
    set: new Set(),
    refused: new Set(),
  };
  for (const c of cases) {
    const snapshot = snapshotOf(c);
    for (const r of snapshot.resources.values()) setPaths(r.spec, `${r.kind}.spec`, m.set);
    const envoyPush = createPushContext({ config: recordingSnapshot(snapshot, m.envoy) });
    for (const proxy of c.proxies) {
      buildClusters(envoyPush, proxy);
      buildListeners(envoyPush, proxy);
      buildRoutes(envoyPush, proxy);
      buildEndpoints(envoyPush, proxy);
    }
    const grpcPush = createPushContext({ config: recordingSnapshot(snapshot, m.grpc) });
    const plainPush = createPushContext({ config: snapshot });
    for (const proxy of c.proxies.filter((p) => p.type !== "router").map(proxylessOf)) {
      buildGrpcListeners(grpcPush, proxy, "*");
      buildGrpcRoutes(grpcPush, proxy, "*");
      buildGrpcClusters(grpcPush, proxy);
      buildGrpcEndpoints(grpcPush, proxy, "*");
      for (const g of gapPaths(plainPush, proxy)) m.grpcGaps.add(g);
    }
    for (const text of c.yaml) refusals(text, c.name, "warning", m.refused);
  }
  for (const f of yamlFiles(REFUSED_DIR)) refusals(readFileSync(f, "utf8"), f, "error", m.refused);
  return m;
}

/** Inputs each setting a field that validation refuses wherever it is set. */
export const REFUSED_DIR = join(FIXTURE_DIR, "refused");

const REFUSAL = /not supported|has no effect|must not be set/;

/**
 * Adds to `out` the schema paths at which validating `text` answers that a field is not
 * supported (has no effect, must not be set), counting diagnostics of at least `severity`:
 * warnings in accepted inputs, errors in the refused ones.
 */
function refusals(text: string, file: string, severity: "warning" | "error", out: Set<string>): void {
  for (const r of parseConfig(text, file).resources) {
    for (const d of validateResource(r)) {
      if (!REFUSAL.test(d.message) || !d.field?.startsWith("spec")) continue;
      if (severity === "error" && d.severity !== "error") continue;
      out.add(`${r.kind}.${d.field.replace(/\[\d+\]/g, "[]").replace(/\["[^"]*"\]/g, ".*")}`);
    }
  }
}

// ---------------------------------------------------------------------------------------------
// The table
// ---------------------------------------------------------------------------------------------

/** Whether a data plane honours a field. */
export type Honoured = "yes" | "partial" | "no" | "unmeasured";

/** One row of the table. */
export interface FieldRow {
  readonly kind: string;
  /** The schema path, `Kind.spec.a.b`. */
  readonly path: string;
  /** Set by some corpus input (otherwise Envoy and gRPC are "unmeasured"). */
  readonly set: boolean;
  readonly envoy: Honoured;
  /** "n/a" for kinds proxyless gRPC has no use for. */
  readonly grpc: Honoured | "n/a";
  /** The real clients of the e2e scenarios that drive it. */
  readonly realClients: readonly string[];
  /** Validation says "not supported" for it. */
  readonly refused: boolean;
}

/** Kinds that mean nothing to a proxyless gRPC client (gateways are Envoy's). */
export const GRPC_NOT_APPLICABLE: ReadonlySet<string> = new Set(["Gateway"]);

/** A regular expression for a schema path (`*` matches one map key, `[]` any list item). */
function pathPattern(path: string): RegExp {
  const escaped = path.replace(/[.+?^${}()|\\]/g, "\\$&").replace(/\[\]/g, "\\[\\]").replace(
    /\\\.\*/g,
    "\\.[^.\\[]+",
  );
  return new RegExp(`^${escaped}$`);
}

/** True when one of `observed` (paths with real map keys) is the schema path `path`. */
function observedAt(path: string, observed: ReadonlySet<string>): boolean {
  if (observed.has(path)) return true;
  if (!path.includes("*")) return false;
  const re = pathPattern(path);
  for (const o of observed) if (re.test(o)) return true;
  return false;
}

function underGap(path: string, gaps: ReadonlySet<string>): boolean {
  for (const g of gaps) {
    if (path === g || path.startsWith(`${g}.`) || path.startsWith(`${g}[`)) return true;
  }
  return false;
}

/** The rows of the table: every field of every kind, measured. */
export function coverageRows(fields = apiFields(), m = measure()): FieldRow[] {
  const clients = new Map<string, Set<string>>();
  for (const s of E2E_COVERAGE) {
    for (const f of s.fields) clients.set(f, (clients.get(f) ?? new Set()).add(s.client));
  }
  const rows: FieldRow[] = [];
  for (const [kind, paths] of fields) {
    for (const path of paths) {
      const set = observedAt(path, m.set);
      const envoy: Honoured = !set ? "unmeasured" : observedAt(path, m.envoy) ? "yes" : "no";
      let grpc: FieldRow["grpc"] = !set ? "unmeasured" : observedAt(path, m.grpc) ? "yes" : "no";
      if (grpc === "yes" && underGap(path, m.grpcGaps)) grpc = "partial";
      if (GRPC_NOT_APPLICABLE.has(kind)) grpc = "n/a";
      rows.push({
        kind,
        path,
        set,
        envoy,
        grpc,
        realClients: [...(clients.get(path) ?? [])].sort(),
        // A warning at a parent ("backendUtilization: not supported") refuses its fields too.
        refused: observedAt(path, m.refused) || underGap(path, m.refused),
      });
    }
  }
  return rows;
}

/** Totals of a set of rows. */
export interface Totals {
  readonly fields: number;
  readonly envoy: number;
  readonly grpcApplicable: number;
  readonly grpc: number;
  readonly grpcPartial: number;
  readonly realClient: number;
  readonly unmeasured: number;
}

/** Counts rows: parsed fields, honoured by Envoy, by gRPC (of the applicable), driven by a real client. */
export function totals(rows: readonly FieldRow[]): Totals {
  const applicable = rows.filter((r) => r.grpc !== "n/a");
  return {
    fields: rows.length,
    envoy: rows.filter((r) => r.envoy === "yes").length,
    grpcApplicable: applicable.length,
    grpc: applicable.filter((r) => r.grpc === "yes").length,
    grpcPartial: applicable.filter((r) => r.grpc === "partial").length,
    realClient: rows.filter((r) => r.realClients.length > 0).length,
    unmeasured: rows.filter((r) => !r.set).length,
  };
}

/** The totals measured when the table was first generated, before issue 14's translation work. */
export const BASELINE: Totals & { readonly date: string } = {
  date: "2026-12-03",
  fields: 637,
  envoy: 400,
  grpcApplicable: 609,
  grpc: 150,
  grpcPartial: 32,
  realClient: 35,
  unmeasured: 19,
};

const pct = (n: number, d: number) => (d === 0 ? "–" : `${Math.round((n / d) * 100)}%`);

function totalsLine(label: string, t: Totals): string {
  return `| ${label} | ${t.fields} | ${t.envoy} (${pct(t.envoy, t.fields)}) | ${t.grpc} (${
    pct(t.grpc, t.grpcApplicable)
  } of ${t.grpcApplicable}) | ${t.grpcPartial} | ${t.realClient} (${
    pct(t.realClient, t.fields)
  }) | ${t.unmeasured} |`;
}

const MARK: Record<string, string> = {
  yes: "yes",
  partial: "partial",
  no: "–",
  unmeasured: "not set",
  "n/a": "n/a",
};

/** The Markdown of docs/field-coverage.md. */
export function renderMarkdown(rows: readonly FieldRow[]): string {
  const kinds = [...new Set(rows.map((r) => r.kind))];
  const out = [
    "# Field coverage of the Istio API",
    "",
    "Generated by `bun scripts/field_coverage.ts --write` from the API layer (mod/api/kinds) and",
    "a measurement of translation; do not edit by hand. tests/api/field_coverage.test.ts fails when",
    "this file is out of date.",
    "",
    "- **Parsed**: every field listed is accepted by validation (the schema has it).",
    "- **Envoy** / **gRPC**: pilot's Envoy (or proxyless gRPC) translation read the field while",
    "  translating the corpus (tests/pilot/golden/*.input.yaml and tests/fixtures/coverage/*.yaml)",
    "  for sidecars, gateways and proxyless clients. Reads by validation and galley do not count;",
    "  reads by the push context count for both when they decide what a proxy gets. gRPC",
    '  "partial": read, but grpcUnsupported names it for some values. "not set": no corpus input',
    '  sets the field, so it was not measured. "n/a": gateways are not proxyless gRPC\'s.',
    "- **Real client**: an end-to-end test drives it with a real client (tests/e2e/_coverage.ts).",
    '- **Other**: "refused": validation answers "not supported" (has no effect, must not be',
    '  set) for it; "elsewhere": another part of meshd honours it (listed at the end).',
    "",
    "## Totals",
    "",
    "| | fields | Envoy | gRPC | gRPC partial | real client | not set |",
    "| --- | --- | --- | --- | --- | --- | --- |",
    ...(BASELINE.fields > 0 ? [totalsLine(`before (${BASELINE.date})`, BASELINE)] : []),
    totalsLine("now", totals(rows)),
    ...kinds.map((k) => totalsLine(k, totals(rows.filter((r) => r.kind === k)))),
    "",
  ];
  for (const kind of kinds) {
    out.push(
      `## ${kind}`,
      "",
      "| field | parsed | Envoy | gRPC | real client | other |",
      "| --- | --- | --- | --- | --- | --- |",
    );
    for (const r of rows.filter((x) => x.kind === kind)) {
      out.push(
        `| \`${r.path.slice(kind.length + 1)}\` | yes | ${MARK[r.envoy]} | ${MARK[r.grpc]} | ${
          r.realClients.join(", ") || "–"
        } | ${r.refused ? "refused" : noTranslationReason(r.path) ? "elsewhere" : "–"} |`,
      );
    }
    out.push("");
  }
  out.push("## Honoured elsewhere", "", "| fields | by |", "| --- | --- |");
  for (const [prefix, reason] of NO_TRANSLATION) out.push(`| \`${prefix}\` | ${reason} |`);
  out.push("");
  return out.join("\n");
}

// ---------------------------------------------------------------------------------------------
// The rule: no field is validated and then ignored
// ---------------------------------------------------------------------------------------------

/**
 * Fields that need no translation by pilot, by path prefix, with the reason: another part of
 * meshd honours them. A field read by the push context to decide what a proxy gets is measured
 * as read and needs no entry here.
 */
export const NO_TRANSLATION: ReadonlyMap<string, string> = new Map<string, string>([
  [
    "WorkloadGroup.spec.template",
    "copied by auto-registration (mod/pilot/autoregister.ts) into the WorkloadEntry it makes for a " +
    "connecting workload, where translation reads it as that entry's field",
  ],
  [
    "WorkloadGroup.spec.metadata.labels",
    "merged by auto-registration (mod/pilot/autoregister.ts) into the labels of the WorkloadEntry it makes",
  ],
  [
    "WorkloadGroup.spec.metadata.annotations",
    "copied by auto-registration (mod/pilot/autoregister.ts) into the annotations of the WorkloadEntry " +
    "it makes, as Istio does (shown by /debug/registrationz)",
  ],
  [
    "WorkloadGroup.spec.probe",
    "sent by auto-registration to the node agent, which runs the probe (mod/agent/health.ts); " +
    "unhealthy workloads leave EDS",
  ],
]);

/** The reason a field needs no translation, if it is in {@link NO_TRANSLATION}. */
export function noTranslationReason(path: string): string | undefined {
  for (const [prefix, reason] of NO_TRANSLATION) {
    if (path === prefix || path.startsWith(`${prefix}.`) || path.startsWith(`${prefix}[`)) return reason;
  }
  return undefined;
}

/** The known-gaps file of the rule's test: one schema path a line, `#` comments. */
export const KNOWN_GAPS_PATH = join(FIXTURE_DIR, "known_gaps.txt");

/** Fields that break the rule: accepted, neither honoured by Envoy, nor exempt, nor refused. */
export function ruleViolations(rows: readonly FieldRow[]): string[] {
  return rows
    .filter((r) => r.envoy !== "yes" && !r.refused && noTranslationReason(r.path) === undefined)
    .map((r) => r.path);
}

/** The known gaps listed in {@link KNOWN_GAPS_PATH}. */
export function knownGaps(text = readFileSync(KNOWN_GAPS_PATH, "utf8")): string[] {
  return text.split("\n").map((l) => l.replace(/#.*/, "").trim()).filter((l) => l !== "");
}

/** The header of {@link KNOWN_GAPS_PATH}. */
const KNOWN_GAPS_HEADER = [
  "# Fields that validation accepts and that neither Envoy's translation honours, nor another part",
  '# of meshd (scripts/field_coverage.ts NO_TRANSLATION), nor validation refuses as "not supported".',
  "# tests/api/field_coverage.test.ts fails on a field missing here and on a field listed here that",
  "# is no longer a gap: this list may only shrink. Regenerate: bun scripts/field_coverage.ts --write-gaps",
];

/** The text of {@link KNOWN_GAPS_PATH} for today's violations (unset fields marked). */
export function renderKnownGaps(rows: readonly FieldRow[]): string {
  const unset = new Set(rows.filter((r) => !r.set).map((r) => r.path));
  const lines = ruleViolations(rows).map((p) => (unset.has(p) ? `${p}  # not set by the corpus` : p));
  return [...KNOWN_GAPS_HEADER, ...lines, ""].join("\n");
}

if (import.meta.main) {
  const rows = coverageRows();
  if (process.argv.includes("--gaps")) process.stdout.write(renderKnownGaps(rows));
  else if (process.argv.includes("--write-gaps")) writeFileSync(KNOWN_GAPS_PATH, renderKnownGaps(rows));
  else if (process.argv.includes("--totals")) console.log(JSON.stringify(totals(rows)));
  else if (process.argv.includes("--write")) writeFileSync(DOC_PATH, renderMarkdown(rows));
  else console.log(renderMarkdown(rows));
}
