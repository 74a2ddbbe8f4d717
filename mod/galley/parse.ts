/**
 * Parsing of config files into {@link Resource}s: multi-document YAML and JSON, kubectl style
 * (`---` separators, `kind: List` and `*List` documents with `items`).
 *
 * Every problem becomes a {@link Diagnostic} with a position; a bad document never stops the good
 * documents of the same file. Input is refused before decoding when it is larger than the limit,
 * and before parsing when it is binary (NUL bytes, control characters, invalid UTF-8). YAML alias
 * expansion is capped, so "billion laughs" documents are refused quickly, and a document nested
 * deeper than {@link defaultMaxDepth} levels is refused while it is read, before a document model
 * is built for it.
 *
 * @module
 */

import {
  Composer,
  type CST,
  type Document,
  isAlias,
  isMap,
  isScalar,
  isSeq,
  Lexer,
  LineCounter,
  type Node as YamlNode,
  Parser,
  type YAMLMap,
} from "yaml";
import {
  type Diagnostic,
  type Resource,
  resourceKey,
  resourceLabel,
  type SourcePos,
} from "../api/resource.ts";
import {
  dns1123LabelProblem,
  dns1123SubdomainProblem,
  fieldPath,
  isPlainObject,
  labelKeyProblem,
  labelValueProblem,
  splitFieldPath,
  suggest,
} from "../api/schema.ts";
import { findKind, knownKinds } from "./validate.ts";

/** Options of {@link parseConfig}. */
export interface ParseOptions {
  /** Largest input accepted, in bytes; default {@link defaultMaxBytes} (8 MiB). */
  readonly maxBytes?: number;
  /** Deepest nesting of mappings and sequences accepted; default {@link defaultMaxDepth}. */
  readonly maxDepth?: number;
  /**
   * Stop reading once more than this many resources were read: the result then holds the
   * resources read so far (more than the limit) and an error where reading stopped.
   */
  readonly maxResources?: number;
}

/** What {@link parseConfig} found: the resources it could read and every problem. */
export interface ParseResult {
  readonly resources: Resource[];
  readonly diagnostics: Diagnostic[];
  /** True when reading stopped at `maxResources` with documents left unread. */
  readonly truncated?: boolean;
}

/** The default input size limit: 8 MiB. */
export const defaultMaxBytes = 8 * 1024 * 1024;

/** The default nesting limit: 64 levels of mappings and sequences. */
export const defaultMaxDepth = 64;

/** How many alias expansions one document may perform before it is refused. */
export const maxAliasCount = 100;

const topLevelFields = ["apiVersion", "kind", "metadata", "spec", "status"];

/**
 * Parses `input` (YAML or JSON, possibly many documents) read from `file`. Returns every resource
 * that could be read, and diagnostics for everything wrong: malformed YAML, tab indentation,
 * duplicate keys, oversized or binary input, alias bombs, documents that are not mappings,
 * missing apiVersion/kind/metadata.name, unknown kinds, unsupported versions, invalid names and
 * resources defined twice. Documents of other APIs (Kubernetes Deployments, Services, ...) are
 * skipped with a note (severity info, or warning for a meshd kind name in another group). Resource specs are not validated here; see `validateResource`.
 */
export function parseConfig(input: string | Uint8Array, file: string, opts: ParseOptions = {}): ParseResult {
  const maxBytes = opts.maxBytes ?? defaultMaxBytes;
  const maxDepth = opts.maxDepth ?? defaultMaxDepth;
  const start: SourcePos = { file, line: 1, col: 1 };
  const size = inputBytes(input);
  if (size > maxBytes) {
    return {
      resources: [],
      diagnostics: [{
        severity: "error",
        message:
          `input is ${formatSize(size)} (${size} bytes), larger than the limit of ${formatSize(maxBytes)} ` +
          `(${maxBytes} bytes); refusing to parse it`,
        pos: start,
      }],
    };
  }
  const decoded = decodeText(input, file);
  if (!decoded.ok) return { resources: [], diagnostics: [decoded.diagnostic] };
  const text = decoded.text;
  if (text.trim() === "") return { resources: [], diagnostics: [] };

  const diagnostics: Diagnostic[] = [];
  const resources: Resource[] = [];
  let truncated = false;
  for (const chunk of splitDocuments(text)) {
    if (opts.maxResources !== undefined && resources.length > opts.maxResources) {
      diagnostics.push({
        severity: "error",
        message: `more than ${opts.maxResources} resources; stopped reading here`,
        pos: { file, line: chunk.line, col: 1 },
      });
      truncated = true;
      break;
    }
    const lines = new LineCounter();
    const at = (offset: number): SourcePos => {
      const { line, col } = lines.linePos(offset);
      return { file, line: line + chunk.line - 1, col };
    };
    let documents: Document.Parsed[];
    try {
      const parsed = parseDocuments(chunk.text, lines, maxDepth);
      if ("tooDeepAt" in parsed) {
        diagnostics.push({
          severity: "error",
          message: `${nestedTooDeeply} (more than ${maxDepth} levels of mappings and sequences); refusing it`,
          pos: at(parsed.tooDeepAt),
        });
        continue;
      }
      documents = parsed.documents;
    } catch (e) {
      diagnostics.push({
        severity: "error",
        message: `cannot parse YAML: ${errorText(e)}`,
        pos: { file, line: chunk.line, col: 1 },
      });
      continue;
    }
    for (const doc of documents) readDocument(doc, { file, at, diagnostics, resources });
  }
  const duplicates = duplicateDiagnostics(resources);
  let unique = resources;
  if (duplicates.length > 0) {
    diagnostics.push(...duplicates);
    const seen = new Set<string>();
    unique = resources.filter((r) => {
      const key = resourceKey(r);
      if (seen.has(key)) return false;
      seen.add(key);
      return true;
    });
  }
  return { resources: unique, diagnostics, ...(truncated ? { truncated } : {}) };
}

/**
 * Reads the YAML documents of `text` as `parseAllDocuments` does, but watches the parser's stack
 * while it reads and gives up at the first token nested deeper than `maxDepth` collections: before
 * the rest is read and before a document model is composed (deep nesting costs the composer
 * hundreds of megabytes and overflows its stack).
 */
function parseDocuments(
  text: string,
  lines: LineCounter,
  maxDepth: number,
): { documents: Document.Parsed[] } | { tooDeepAt: number } {
  const parser = new Parser(lines.addNewLine);
  const tokens: CST.Token[] = [];
  lines.addNewLine(0);
  for (const lexeme of new Lexer().lex(text)) {
    for (const token of parser.next(lexeme)) tokens.push(token);
    // The stack holds the document, the open collections and a few scalars or block values
    // besides; collections are counted only once it is long enough to matter.
    if (parser.stack.length > maxDepth + 1 && collectionDepth(parser.stack) > maxDepth) {
      return { tooDeepAt: Math.max(0, parser.offset - lexeme.length) };
    }
  }
  for (const token of parser.end()) tokens.push(token);
  const composer = new Composer({ uniqueKeys: true, merge: true });
  return { documents: [...composer.compose(tokens)] };
}

function collectionDepth(stack: readonly CST.Token[]): number {
  let depth = 0;
  for (const t of stack) {
    if (t.type === "block-map" || t.type === "block-seq" || t.type === "flow-collection") depth++;
  }
  return depth;
}

/**
 * Reports resources that share a {@link resourceKey} (group, kind, namespace, name), naming both
 * places, and more than one MeshConfig per mesh. The first definition (in array order) is the
 * reference; each later one gets an error at its own position. The store uses this across files.
 */
export function duplicateDiagnostics(resources: readonly Resource[]): Diagnostic[] {
  const diagnostics: Diagnostic[] = [];
  const first = new Map<string, Resource>();
  let meshConfig: Resource | undefined;
  const where = (p: SourcePos) => `${p.file}:${p.line}:${p.col}`;
  for (const r of resources) {
    const key = resourceKey(r);
    const earlier = first.get(key);
    if (earlier) {
      diagnostics.push({
        severity: "error",
        message: `defined more than once: first at ${where(earlier.source)}, again at ${where(r.source)}`,
        pos: r.source,
        resource: resourceLabel(r),
      });
      continue;
    }
    first.set(key, r);
    if (r.group === "config.meshd.io" && r.kind === "MeshConfig") {
      if (meshConfig) {
        diagnostics.push({
          severity: "error",
          message:
            `only one MeshConfig is allowed per mesh; ${resourceLabel(meshConfig)} is already defined at ` +
            `${where(meshConfig.source)}`,
          pos: r.source,
          resource: resourceLabel(r),
        });
      } else meshConfig = r;
    }
  }
  return diagnostics;
}

// ---------------------------------------------------------------------------------------------
// Decoding
// ---------------------------------------------------------------------------------------------

type Decoded = { ok: true; text: string } | { ok: false; diagnostic: Diagnostic };

// deno-lint-ignore no-control-regex
const controlCharacter = /[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]/;
const loneSurrogate = /[\ud800-\udbff](?![\udc00-\udfff])|(?<![\ud800-\udbff])[\udc00-\udfff]/;

function decodeText(input: string | Uint8Array, file: string): Decoded {
  const binary = (message: string, pos: SourcePos): Decoded => ({
    ok: false,
    diagnostic: {
      severity: "error",
      message: `${message}; this looks like binary data, not YAML or JSON text`,
      pos,
    },
  });
  if (typeof input !== "string") {
    const nul = input.indexOf(0);
    if (nul >= 0) return binary(`NUL byte at byte offset ${nul}`, bytePos(input, nul, file));
    let text: string;
    try {
      text = new TextDecoder("utf-8", { fatal: true }).decode(input);
    } catch {
      const bad = firstInvalidUtf8(input);
      return binary(`invalid UTF-8 at byte offset ${bad}`, bytePos(input, bad, file));
    }
    return checkText(text, file, binary);
  }
  const text = input.startsWith("\ufeff") ? input.slice(1) : input;
  const surrogate = loneSurrogate.exec(text);
  if (surrogate) {
    return binary("invalid Unicode (an unpaired surrogate)", textPos(text, surrogate.index, file));
  }
  return checkText(text, file, binary);
}

function checkText(
  text: string,
  file: string,
  binary: (message: string, pos: SourcePos) => Decoded,
): Decoded {
  const control = controlCharacter.exec(text);
  if (control) {
    const code = control[0].charCodeAt(0);
    const name = code === 0
      ? "NUL character"
      : `control character U+${code.toString(16).toUpperCase().padStart(4, "0")}`;
    return binary(name, textPos(text, control.index, file));
  }
  return { ok: true, text };
}

function textPos(text: string, index: number, file: string): SourcePos {
  const before = text.slice(0, index);
  const line = before.split("\n").length;
  return { file, line, col: index - before.lastIndexOf("\n") };
}

function bytePos(bytes: Uint8Array, offset: number, file: string): SourcePos {
  let line = 1;
  let lineStart = 0;
  for (let i = 0; i < offset; i++) {
    if (bytes[i] === 0x0a) {
      line++;
      lineStart = i + 1;
    }
  }
  return { file, line, col: offset - lineStart + 1 };
}

/** Offset of the first byte that breaks UTF-8 (bad lead byte, truncated or overlong sequence). */
function firstInvalidUtf8(bytes: Uint8Array): number {
  let i = 0;
  while (i < bytes.length) {
    const b = bytes[i]!;
    let need = 0;
    let min = 0;
    if (b < 0x80) {
      i++;
      continue;
    } else if (b >= 0xc2 && b <= 0xdf) {
      need = 1;
      min = 0x80;
    } else if (b >= 0xe0 && b <= 0xef) {
      need = 2;
      min = 0x800;
    } else if (b >= 0xf0 && b <= 0xf4) {
      need = 3;
      min = 0x10000;
    } else return i;
    let cp = b & (0x3f >> need);
    for (let k = 1; k <= need; k++) {
      const c = bytes[i + k];
      if (c === undefined || (c & 0xc0) !== 0x80) return i;
      cp = (cp << 6) | (c & 0x3f);
    }
    if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff)) return i;
    i += need + 1;
  }
  return bytes.length;
}

/** The size of config input in bytes (UTF-8 for text). */
export function inputBytes(input: string | Uint8Array): number {
  return typeof input === "string" ? Buffer.byteLength(input, "utf8") : input.byteLength;
}

/** A byte count for people: "8 MiB", "1.5 KiB", "300 bytes". */
export function formatSize(bytes: number): string {
  if (bytes >= 1024 * 1024) return `${+(bytes / (1024 * 1024)).toFixed(1)} MiB`;
  if (bytes >= 1024) return `${+(bytes / 1024).toFixed(1)} KiB`;
  return `${bytes} bytes`;
}

function errorText(e: unknown): string {
  return e instanceof Error ? e.message : String(e);
}

/** One `---`-separated part of the input and the line it starts on. */
interface Chunk {
  readonly text: string;
  readonly line: number;
}

const documentMarker = /^(---|\.\.\.)(\s|$)/;

/**
 * Splits the input at document markers (`---` and `...` at the start of a line), which YAML
 * forbids inside any scalar, so that a broken document (an unclosed quote, say) cannot swallow
 * the documents after it. Directive lines (`%YAML`) move with the document they precede.
 */
function splitDocuments(text: string): Chunk[] {
  const lines = text.split("\n");
  const chunks: Chunk[] = [];
  let start = 0;
  for (let i = 1; i < lines.length; i++) {
    if (!lines[i]!.startsWith("---") || !documentMarker.test(lines[i]!)) continue;
    let cut = i;
    while (cut > start && lines[cut - 1]!.startsWith("%")) cut--;
    if (cut > start) chunks.push({ text: lines.slice(start, cut).join("\n") + "\n", line: start + 1 });
    start = cut;
  }
  chunks.push({ text: lines.slice(start).join("\n"), line: start + 1 });
  return chunks;
}

// ---------------------------------------------------------------------------------------------
// Documents
// ---------------------------------------------------------------------------------------------

interface ParseContext {
  readonly file: string;
  readonly at: (offset: number) => SourcePos;
  readonly diagnostics: Diagnostic[];
  readonly resources: Resource[];
}

function readDocument(doc: Document.Parsed, ctx: ParseContext): void {
  const docStart = ctx.at(doc.contents?.range[0] ?? doc.range[0]);
  if (doc.errors.length > 0) {
    const duplicates = duplicateKeyDiagnostics(doc.contents, ctx);
    const hasDuplicates = duplicates.length > 0;
    if (hasDuplicates) ctx.diagnostics.push(...duplicates);
    const reported = new Set<string>();
    for (const err of doc.errors) {
      if (err.code === "DUPLICATE_KEY" && hasDuplicates) continue;
      const message = yamlErrorMessage(err.code, err.message);
      const pos = ctx.at(err.pos[0]);
      const key = message === nestedTooDeeply ? message : `${pos.line}:${pos.col}:${message}`;
      if (reported.has(key)) continue;
      reported.add(key);
      ctx.diagnostics.push({ severity: "error", message, pos });
    }
    return;
  }
  const root = doc.contents;
  if (root === null || (isScalar(root) && (root.value === null || root.value === undefined))) return;
  let value: unknown;
  try {
    value = doc.toJS({ maxAliasCount });
  } catch (e) {
    const message = errorText(e);
    ctx.diagnostics.push({
      severity: "error",
      message: /alias count/i.test(message)
        ? `YAML aliases in this document expand to too much data (more than ${maxAliasCount} expansions), as in a ` +
          `"billion laughs" attack; refusing it`
        : /call stack|recursion/i.test(message)
        ? nestedTooDeeply
        : `cannot read document: ${message}`,
      pos: docStart,
    });
    return;
  }
  readObject(value, root, doc, ctx, undefined);
}

const nestedTooDeeply = "document is nested too deeply";

function yamlErrorMessage(code: string, message: string): string {
  switch (code) {
    case "TAB_AS_INDENT":
      return "tab characters are not allowed for indentation in YAML; indent with spaces";
    case "DUPLICATE_KEY":
      return "duplicate key in a mapping";
    default:
      if (/call stack/i.test(message)) return nestedTooDeeply;
      return `invalid YAML: ${message}`;
  }
}

/** Finds keys defined twice in the same mapping, naming both lines. */
function duplicateKeyDiagnostics(node: YamlNode | null, ctx: ParseContext): Diagnostic[] {
  const out: Diagnostic[] = [];
  const visit = (n: unknown) => {
    if (isMap(n)) {
      const seen = new Map<string, number>();
      for (const pair of n.items) {
        const key = pair.key;
        if (isScalar(key) && key.range) {
          const name = String(key.value);
          const first = seen.get(name);
          if (first !== undefined) {
            out.push({
              severity: "error",
              message: `duplicate key ${JSON.stringify(name)} (first defined at line ${ctx.at(first).line})`,
              pos: ctx.at(key.range[0]),
            });
          } else seen.set(name, key.range[0]);
        }
        visit(pair.value);
      }
    } else if (isSeq(n)) {
      for (const item of n.items) visit(item);
    }
  };
  visit(node);
  return out;
}

/** Defaults a typed list (`VirtualServiceList`) gives its items. */
interface ListDefaults {
  readonly apiVersion: unknown;
  readonly kind: string;
}

function readObject(
  value: unknown,
  node: YamlNode,
  doc: Document.Parsed,
  ctx: ParseContext,
  defaults: ListDefaults | undefined,
): void {
  const source = ctx.at(node.range?.[0] ?? 0);
  const positionOf = positionLookup(node, doc, ctx.at, source);
  const fail = (message: string, field?: string, resource?: string) =>
    ctx.diagnostics.push({
      severity: "error",
      message,
      pos: field ? positionOf(field) : source,
      field,
      resource,
    });

  if (!isPlainObject(value)) {
    const got = Array.isArray(value) ? "a list" : value === null ? "null" : `a ${typeof value}`;
    fail(
      `a document must be a mapping with apiVersion, kind, metadata and spec; got ${got}` +
        (Array.isArray(value)
          ? ' (to put several resources in one document, use "kind: List" with items)'
          : ""),
    );
    return;
  }
  const apiVersion = value["apiVersion"] ?? defaults?.apiVersion;
  const kind = value["kind"] ?? defaults?.kind;

  if (kind === "List" || (typeof kind === "string" && kind.endsWith("List") && "items" in value)) {
    readList(value, node, doc, ctx, apiVersion, kind, positionOf);
    return;
  }

  const metadata = value["metadata"];
  const name = isPlainObject(metadata) ? metadata["name"] : undefined;
  const namespaceRaw = isPlainObject(metadata) ? metadata["namespace"] : undefined;
  const namespace = typeof namespaceRaw === "string" && namespaceRaw !== "" ? namespaceRaw : "default";
  const label = typeof kind === "string" && typeof name === "string"
    ? `${kind} ${namespace}/${name}`
    : undefined;

  let broken = false;
  if (apiVersion === undefined || apiVersion === null || apiVersion === "") {
    fail("missing apiVersion", "apiVersion", label);
    broken = true;
  } else if (typeof apiVersion !== "string") {
    fail(
      `apiVersion must be a string like "networking.istio.io/v1", got ${typeof apiVersion}`,
      "apiVersion",
      label,
    );
    broken = true;
  }
  if (kind === undefined || kind === null || kind === "") {
    fail("missing kind", "kind", label);
    broken = true;
  } else if (typeof kind !== "string") {
    fail(`kind must be a string, got ${typeof kind}`, "kind", label);
    broken = true;
  }
  if (!broken) {
    // Documents of other APIs are skipped whatever their metadata looks like.
    const [group] = splitApiVersion(apiVersion as string);
    const skip = foreignKindNote(group, kind as string, apiVersion as string);
    if (skip) {
      ctx.diagnostics.push({ ...skip, pos: positionOf("kind"), field: "kind", resource: label });
      return;
    }
  }
  if (metadata === undefined || metadata === null) {
    fail("missing metadata.name", "metadata", label);
    broken = true;
  } else if (!isPlainObject(metadata)) {
    fail("metadata must be a mapping", "metadata", label);
    broken = true;
  } else if (name === undefined || name === null || name === "") {
    fail("missing metadata.name", "metadata.name", label);
    broken = true;
  } else if (typeof name !== "string") {
    fail(`metadata.name must be a string, got ${typeof name}`, "metadata.name", label);
    broken = true;
  }
  if (broken) return;

  const [group, version] = splitApiVersion(apiVersion as string);
  if (!checkKind(group, version, kind as string, apiVersion as string, fail, label)) return;

  // The resource is identifiable from here on; further problems are keyed to it.
  const meta = metadata as Record<string, unknown>;
  const keyed = (message: string, field: string) => fail(message, field, label);
  const nameProblem = dns1123SubdomainProblem(name as string);
  if (nameProblem) keyed(`invalid name: ${nameProblem}`, "metadata.name");
  if (namespaceRaw !== undefined && namespaceRaw !== null) {
    if (typeof namespaceRaw !== "string") {
      keyed(`metadata.namespace must be a string, got ${typeof namespaceRaw}`, "metadata.namespace");
    } else if (namespaceRaw !== "") {
      const nsProblem = dns1123LabelProblem(namespaceRaw);
      if (nsProblem) keyed(`invalid namespace: ${nsProblem}`, "metadata.namespace");
    }
  }
  const labels = stringMap(meta["labels"], "metadata.labels", keyed, true);
  const annotations = stringMap(meta["annotations"], "metadata.annotations", keyed, false);
  const resourceVersion = meta["resourceVersion"];
  for (const key of Object.keys(value)) {
    if (topLevelFields.includes(key)) continue;
    const guess = suggest(key, topLevelFields);
    keyed(
      `unknown top-level field ${JSON.stringify(key)}` +
        (guess ? ` (did you mean ${JSON.stringify(guess)}?)` : ""),
      fieldPath("", key),
    );
  }
  const spec = value["spec"] ?? {};

  const resource: Resource = {
    group,
    version,
    kind: kind as string,
    metadata: {
      name: name as string,
      namespace,
      ...(labels ? { labels } : {}),
      ...(annotations ? { annotations } : {}),
      ...(typeof resourceVersion === "string" ? { resourceVersion } : {}),
    },
    spec,
    source,
    positionOf,
  };
  ctx.resources.push(resource);
}

function readList(
  value: Record<string, unknown>,
  node: YamlNode,
  doc: Document.Parsed,
  ctx: ParseContext,
  apiVersion: unknown,
  kind: string,
  positionOf: (field: string) => SourcePos,
): void {
  const items = value["items"];
  if (items === null || items === undefined) return;
  if (!Array.isArray(items)) {
    ctx.diagnostics.push({
      severity: "error",
      message: `items of a ${kind} must be a list`,
      pos: positionOf("items"),
      field: "items",
    });
    return;
  }
  const itemsNode = resolveNode(isMap(node) ? node.get("items", true) : undefined, doc);
  const defaults = kind === "List" ? undefined : { apiVersion, kind: kind.slice(0, -"List".length) };
  items.forEach((item, i) => {
    const itemNode = isSeq(itemsNode) ? resolveNode(itemsNode.items[i], doc) : undefined;
    readObject(item, itemNode ?? node, doc, ctx, defaults);
  });
}

function splitApiVersion(apiVersion: string): [group: string, version: string] {
  const slash = apiVersion.lastIndexOf("/");
  return slash < 0 ? ["", apiVersion] : [apiVersion.slice(0, slash), apiVersion.slice(slash + 1)];
}

/**
 * API groups of Istio that hold no mesh config: the installer's IstioOperator and the like, which
 * Istio's samples ship next to mesh config.
 */
const istioInstallGroups = new Set(["install.istio.io"]);

/** Istio kinds meshd does not implement, by group: refused with a message that says so. */
const unsupportedIstioKinds: Readonly<Record<string, readonly string[]>> = {
  "networking.istio.io": ["EnvoyFilter", "ProxyConfig"],
  "extensions.istio.io": ["WasmPlugin"],
};

/** True for an API group whose kinds meshd reads or should know: Istio's and meshd's own. */
function isMeshGroup(group: string): boolean {
  if (istioInstallGroups.has(group)) return false;
  return group === "istio.io" || group.endsWith(".istio.io") || group === "meshd.io" ||
    group.endsWith(".meshd.io") || knownKinds.some((k) => k.group === group);
}

/**
 * The note for a document of another API (a Kubernetes Deployment, Service, ServiceAccount or
 * ConfigMap next to Istio config, as Istio's samples ship them): it is skipped, not refused.
 * Undefined for kinds meshd reads, and for a meshd kind written without its group
 * (`apiVersion: v1`, `kind: VirtualService`), which checkKind reports as a mistake.
 */
function foreignKindNote(
  group: string,
  kind: string,
  apiVersion: string,
): Pick<Diagnostic, "severity" | "message"> | undefined {
  if (isMeshGroup(group)) return undefined;
  const same = knownKinds.find((k) => k.kind === kind);
  if (same && group === "") return undefined;
  if (same) {
    return {
      severity: "warning",
      message: `skipped: ${kind} of ${apiVersion} is not Istio config ` +
        `(meshd reads ${kind} of ${same.group}/${same.versions[0]})`,
    };
  }
  return { severity: "info", message: `skipped: ${kind} (${apiVersion}) is not Istio or meshd config` };
}

function checkKind(
  group: string,
  version: string,
  kind: string,
  apiVersion: string,
  fail: (message: string, field?: string, resource?: string) => void,
  label: string | undefined,
): boolean {
  const info = findKind(group, kind);
  if (info) {
    if (info.versions.includes(version)) return true;
    const supported = info.versions.map((v) => `${info.group}/${v}`).join(", ");
    fail(`${apiVersion} is not a supported apiVersion for ${kind}; use ${supported}`, "apiVersion", label);
    return false;
  }
  const sameKind = knownKinds.filter((k) => k.kind === kind);
  if (sameKind.length > 0) {
    const k = sameKind[0]!;
    fail(
      `${kind} belongs to ${k.group} (apiVersion ${k.group}/${k.versions[0]}), not ${apiVersion}`,
      "apiVersion",
      label,
    );
    return false;
  }
  if (unsupportedIstioKinds[group]?.includes(kind)) {
    fail(`${kind} (${apiVersion}) is an Istio kind that meshd does not support`, "kind", label);
    return false;
  }
  const inGroup = knownKinds.filter((k) => k.group === group).map((k) => k.kind);
  const guess = suggest(kind, inGroup.length > 0 ? inGroup : knownKinds.map((k) => k.kind)) ??
    suggest(kind, knownKinds.map((k) => k.kind));
  if (guess) {
    fail(`unknown kind ${JSON.stringify(kind)} (did you mean ${guess}?)`, "kind", label);
  } else {
    const groups = [...new Set(knownKinds.map((k) => k.group))].join(", ");
    fail(
      `unknown kind ${JSON.stringify(kind)} in ${apiVersion}; meshd reads kinds of ${groups}`,
      "kind",
      label,
    );
  }
  return false;
}

function stringMap(
  raw: unknown,
  field: string,
  fail: (message: string, field: string) => void,
  labels: boolean,
): Record<string, string> | undefined {
  if (raw === undefined || raw === null) return undefined;
  if (!isPlainObject(raw)) {
    fail(`${field} must be a mapping of strings`, field);
    return undefined;
  }
  const out: Record<string, string> = {};
  for (const [key, v] of Object.entries(raw)) {
    const at = fieldPath(field, key);
    if (typeof v !== "string") {
      const hint = typeof v === "number" || typeof v === "boolean" ? `; quote it: "${String(v)}"` : "";
      const got = v === null ? "null" : typeof v;
      fail(
        `${labels ? "label" : "annotation"} values must be strings, got ${got}${hint}`,
        at,
      );
      continue;
    }
    if (labels) {
      const problem = labelKeyProblem(key) ?? labelValueProblem(v);
      if (problem) fail(problem, at);
    }
    out[key] = v;
  }
  return out;
}

// ---------------------------------------------------------------------------------------------
// Positions
// ---------------------------------------------------------------------------------------------

function resolveNode(node: unknown, doc: Document.Parsed): YamlNode | undefined {
  let n = node;
  for (let hops = 0; isAlias(n) && hops < 16; hops++) n = n.resolve(doc);
  return n && typeof n === "object" && "range" in n ? n as YamlNode : undefined;
}

/**
 * Returns the resource's `positionOf`: the position of the node at a dotted path (the key, for
 * mapping entries), falling back to the nearest ancestor that exists, then to the document start.
 */
function positionLookup(
  root: YamlNode,
  doc: Document.Parsed,
  at: (offset: number) => SourcePos,
  source: SourcePos,
): (field: string) => SourcePos {
  return (field: string) => {
    const segments = splitFieldPath(field);
    if (!segments) return source;
    let node: YamlNode | undefined = root;
    let best = source;
    for (const segment of segments) {
      node = resolveNode(node, doc);
      if (!node) break;
      if (isMap(node)) {
        const pair = (node as YAMLMap).items.find((p) =>
          isScalar(p.key) && String(p.key.value) === String(segment)
        );
        if (!pair) break;
        const keyNode = pair.key as YamlNode;
        if (keyNode.range) best = at(keyNode.range[0]);
        node = pair.value as YamlNode | undefined;
      } else if (isSeq(node) && typeof segment === "number") {
        const item = resolveNode(node.items[segment], doc);
        if (!item?.range) break;
        best = at(item.range[0]);
        node = item;
      } else break;
    }
    return best;
  };
}
