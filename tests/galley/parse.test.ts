import { describe, expect, test } from "bun:test";
import { defaultMaxBytes, duplicateDiagnostics, parseConfig } from "../../mod/galley/parse.ts";
import { formatDiagnostic } from "../../mod/api/resource.ts";

const entry = (name: string, extra = "") =>
  `apiVersion: networking.istio.io/v1\nkind: WorkloadEntry\nmetadata:\n  name: ${name}\n${extra}spec:\n  address: 10.0.0.1\n`;

const messages = (input: string | Uint8Array, file = "f.yaml") =>
  parseConfig(input, file).diagnostics.map(formatDiagnostic);

describe("parseConfig() reads resources", () => {
  test("parseConfig() reads multi-document YAML and skips empty documents", () => {
    const r = parseConfig(`---\n# nothing here\n---\n${entry("a")}---\n---\n${entry("b")}...\n`, "f.yaml");
    expect(r.diagnostics).toEqual([]);
    expect(r.resources.map((x) => x.metadata.name)).toEqual(["a", "b"]);
  });

  test("parseConfig() splits apiVersion, defaults the namespace and records the source", () => {
    const r = parseConfig(
      `# leading comment\n${entry("a")}---\n${entry("b", "  namespace: prod\n")}`,
      "f.yaml",
    );
    const [a, b] = r.resources;
    expect(a).toMatchObject({
      group: "networking.istio.io",
      version: "v1",
      kind: "WorkloadEntry",
      metadata: { name: "a", namespace: "default" },
      spec: { address: "10.0.0.1" },
      source: { file: "f.yaml", line: 2, col: 1 },
    });
    expect(b!.metadata.namespace).toBe("prod");
    expect(b!.source).toEqual({ file: "f.yaml", line: 9, col: 1 });
  });

  test("parseConfig() keeps labels, annotations and resourceVersion", () => {
    const r = parseConfig(
      entry("a", '  labels:\n    app: ratings\n  annotations:\n    note: hi\n  resourceVersion: "42"\n'),
      "f.yaml",
    );
    expect(r.resources[0]!.metadata).toEqual({
      name: "a",
      namespace: "default",
      labels: { app: "ratings" },
      annotations: { note: "hi" },
      resourceVersion: "42",
    });
  });

  test("parseConfig() reads JSON, including tab-indented JSON", () => {
    const json = JSON.stringify(
      {
        apiVersion: "networking.istio.io/v1",
        kind: "WorkloadEntry",
        metadata: { name: "j" },
        spec: { address: "1.2.3.4" },
      },
      null,
      "\t",
    );
    const r = parseConfig(json, "f.json");
    expect(r.diagnostics).toEqual([]);
    expect(r.resources[0]!.spec).toEqual({ address: "1.2.3.4" });
    expect(r.resources[0]!.positionOf("spec.address")).toEqual({ file: "f.json", line: 8, col: 3 });
  });

  test("parseConfig() expands kind: List and typed *List documents", () => {
    const indent = (s: string) => s.trimEnd().split("\n").join("\n  ");
    const list = `apiVersion: v1\nkind: List\nitems:\n- ${indent(entry("x"))}\n- ${indent(entry("y"))}\n`;
    const r = parseConfig(list, "f.yaml");
    expect(r.diagnostics).toEqual([]);
    expect(r.resources.map((x) => x.metadata.name)).toEqual(["x", "y"]);
    expect(r.resources[1]!.source).toEqual({ file: "f.yaml", line: 10, col: 3 });
    expect(r.resources[1]!.positionOf("spec.address")).toEqual({ file: "f.yaml", line: 15, col: 5 });

    const typed = parseConfig(
      "apiVersion: networking.istio.io/v1\nkind: WorkloadEntryList\nitems:\n- metadata: {name: p}\n  spec: {address: 1.1.1.1}\n",
      "f.yaml",
    );
    expect(typed.diagnostics).toEqual([]);
    expect(typed.resources[0]).toMatchObject({
      kind: "WorkloadEntry",
      version: "v1",
      metadata: { name: "p" },
    });
  });

  test("positionOf() maps dotted paths to keys and items, falling back to the nearest ancestor", () => {
    const yaml = `apiVersion: networking.istio.io/v1
kind: VirtualService
metadata:
  name: reviews
spec:
  hosts: [reviews]
  http:
  - match:
    - headers:
        x-user: {exact: bob}
    route:
    - destination: {host: reviews, subset: v1}
      weight: 50
    - destination: {host: reviews, subset: v2}
      weight: 50
`;
    const r = parseConfig(yaml, "vs.yaml").resources[0]!;
    expect(r.positionOf("spec.http[0].route[1].weight")).toEqual({ file: "vs.yaml", line: 15, col: 7 });
    expect(r.positionOf("spec.http[0].route[1]")).toEqual({ file: "vs.yaml", line: 14, col: 7 });
    expect(r.positionOf("spec.hosts[0]")).toEqual({ file: "vs.yaml", line: 6, col: 11 });
    expect(r.positionOf('spec.http[0].match[0].headers["x-user"].exact')).toEqual({
      file: "vs.yaml",
      line: 10,
      col: 18,
    });
    expect(r.positionOf("spec.http[0].route[1].destination.port.number")).toEqual({
      file: "vs.yaml",
      line: 14,
      col: 7,
    });
    expect(r.positionOf("spec.tcp[3]")).toEqual({ file: "vs.yaml", line: 5, col: 1 });
    expect(r.positionOf("metadata.namespace")).toEqual({ file: "vs.yaml", line: 3, col: 1 });
    expect(r.positionOf("[[[")).toEqual(r.source);
  });
});

describe("parseConfig() reports bad input", () => {
  test("parseConfig() reports malformed YAML with the parser's line and column", () => {
    expect(messages(`${entry("a")}---\nfoo: [1, 2\nbar: 3\n`)).toEqual([
      "f.yaml:9:1: invalid YAML: Flow sequence in block collection must be sufficiently indented and end with a ]",
    ]);
  });

  test("parseConfig() keeps good documents after a bad one", () => {
    const r = parseConfig(`${entry("a")}---\nfoo: "unclosed\n---\nnot: [valid\n---\n${entry("b")}`, "f.yaml");
    expect(r.resources.map((x) => x.metadata.name)).toEqual(["a", "b"]);
    expect(r.diagnostics.map((d) => d.pos?.line)).toEqual([9, 11]);
  });

  test("parseConfig() rejects tab indentation", () => {
    expect(messages("apiVersion: v1\nkind: X\nmetadata:\n\tname: a\n")).toEqual([
      "f.yaml:4:1: tab characters are not allowed for indentation in YAML; indent with spaces",
    ]);
  });

  test("parseConfig() rejects duplicate keys, naming the first definition", () => {
    const r = parseConfig(entry("a").replace("spec:\n", "spec:\n  address: 10.0.0.2\n"), "f.yaml");
    expect(r.resources).toEqual([]);
    expect(r.diagnostics.map(formatDiagnostic)).toEqual([
      'f.yaml:7:3: duplicate key "address" (first defined at line 6)',
    ]);
  });

  test("parseConfig() refuses a 100 MB input with a size error, without decoding it", () => {
    const big = new Uint8Array(100 * 1024 * 1024); // all NUL bytes: decoding would report binary data instead
    const start = performance.now();
    const r = parseConfig(big, "big.yaml");
    expect(performance.now() - start).toBeLessThan(100);
    expect(r.resources).toEqual([]);
    expect(r.diagnostics.map(formatDiagnostic)).toEqual([
      "big.yaml:1:1: input is 100 MiB (104857600 bytes), larger than the limit of 8 MiB (8388608 bytes); refusing to parse it",
    ]);
    expect(defaultMaxBytes).toBe(8 * 1024 * 1024);
  });

  test("parseConfig() applies maxBytes to strings and byte arrays", () => {
    expect(messages(`# ${"a".repeat(2000)}\n`, "s.yaml")).toEqual([]);
    expect(parseConfig("é".repeat(600), "s.yaml", { maxBytes: 1000 }).diagnostics[0]!.message).toBe(
      "input is 1.2 KiB (1200 bytes), larger than the limit of 1000 bytes (1000 bytes); refusing to parse it",
    );
  });

  test("parseConfig() refuses binary garbage: NUL bytes, invalid UTF-8, control characters", () => {
    expect(messages(new TextEncoder().encode(`${entry("a")}\0\x01`))).toEqual([
      "f.yaml:7:1: NUL byte at byte offset 101; this looks like binary data, not YAML or JSON text",
    ]);
    expect(messages(new Uint8Array([0x61, 0x3a, 0x0a, 0x62, 0x3a, 0x20, 0xc3, 0x28]))).toEqual([
      "f.yaml:2:4: invalid UTF-8 at byte offset 6; this looks like binary data, not YAML or JSON text",
    ]);
    expect(messages("a: b\nc: d\u0007\n")).toEqual([
      "f.yaml:2:5: control character U+0007; this looks like binary data, not YAML or JSON text",
    ]);
  });

  test("parseConfig() refuses an alias bomb quickly and still reads the other documents", () => {
    const row = (name: string, ref: string) => `${name}: &${name} [${Array(9).fill(ref).join(",")}]`;
    const bomb = [
      'a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]',
      ...["b", "c", "d", "e", "f", "g", "h", "i"].map((n, i) => row(n, `*${"abcdefgh"[i]}`)),
    ].join("\n");
    const start = performance.now();
    const r = parseConfig(`${bomb}\n---\n${entry("ok")}`, "bomb.yaml");
    expect(performance.now() - start).toBeLessThan(1000);
    expect(r.resources.map((x) => x.metadata.name)).toEqual(["ok"]);
    expect(r.diagnostics.map(formatDiagnostic)).toEqual([
      'bomb.yaml:1:1: YAML aliases in this document expand to too much data (more than 100 expansions), as in a "billion laughs" attack; refusing it',
    ]);
  });

  test("parseConfig() refuses documents nested too deeply instead of crashing", () => {
    const deep = `a: ${"[".repeat(20_000)}${"]".repeat(20_000)}\n---\n${entry("ok")}`;
    const r = parseConfig(deep, "deep.yaml");
    expect(r.resources.map((x) => x.metadata.name)).toEqual(["ok"]);
    // The root mapping is level 1, so the 64th bracket (column 3 + 64) crosses the limit.
    expect(r.diagnostics.map(formatDiagnostic)).toEqual([
      "deep.yaml:1:67: document is nested too deeply (more than 64 levels of mappings and sequences); refusing it",
    ]);
  });

  test("parseConfig() accepts 64 levels of nesting and refuses 65, naming the line where block nesting crossed", () => {
    const nested = (levels: number) => {
      // spec is level 2 below the root mapping; each key nests one more mapping.
      let text = "apiVersion: networking.istio.io/v1\nkind: WorkloadEntry\nmetadata:\n  name: deep\nspec:\n";
      for (let i = 0; i < levels - 2; i++) text += `${"  ".repeat(i + 1)}k${i}:\n`;
      return text + `${"  ".repeat(levels - 1)}leaf: 1\n`;
    };
    expect(messages(nested(64)).filter((m) => m.includes("nested"))).toEqual([]);
    expect(messages(nested(65))).toEqual([
      "f.yaml:69:133: document is nested too deeply (more than 64 levels of mappings and sequences); refusing it",
    ]);
    expect(
      parseConfig(nested(65), "f.yaml", { maxDepth: 80 }).diagnostics.filter((d) => /nested/.test(d.message)),
    )
      .toEqual([]);
  });

  test("parseConfig() refuses a 500 KB nested flow map at the limit, before a document model is built", () => {
    const depth = 100_000; // "{a: " and "}" per level: 500 KB
    const text = `apiVersion: networking.istio.io/v1\nkind: WorkloadEntry\nmetadata: {name: x}\nspec: ${
      "{a: ".repeat(depth)
    }1${"}".repeat(depth)}\n---\n${entry("ok")}`;
    const r = parseConfig(text, "flow.yaml");
    expect(r.resources.map((x) => x.metadata.name)).toEqual(["ok"]);
    expect(r.diagnostics.map(formatDiagnostic)).toEqual([
      "flow.yaml:4:259: document is nested too deeply (more than 64 levels of mappings and sequences); refusing it",
    ]);
  });

  test("parseConfig() with maxResources stops reading past the limit and says where", () => {
    const text = [entry("a"), entry("b"), entry("c"), entry("d")].join("---\n");
    const r = parseConfig(text, "many.yaml", { maxResources: 2 });
    expect(r.resources.map((x) => x.metadata.name)).toEqual(["a", "b", "c"]);
    expect(r.diagnostics.map(formatDiagnostic)).toEqual([
      "many.yaml:21:1: more than 2 resources; stopped reading here",
    ]);
  });

  test("parseConfig() accepts modest aliases and merge keys", () => {
    const r = parseConfig(
      `apiVersion: networking.istio.io/v1\nkind: WorkloadEntry\nmetadata:\n  name: a\n  labels: &l {app: x}\nspec:\n  labels: *l\n  address: 10.0.0.1\n`,
      "f.yaml",
    );
    expect(r.diagnostics).toEqual([]);
    expect(r.resources[0]!.spec).toEqual({ labels: { app: "x" }, address: "10.0.0.1" });
  });

  test("parseConfig() requires each document to be a mapping", () => {
    expect(messages("hello\n---\n- a\n- b\n")).toEqual([
      "f.yaml:1:1: a document must be a mapping with apiVersion, kind, metadata and spec; got a string",
      'f.yaml:3:1: a document must be a mapping with apiVersion, kind, metadata and spec; got a list (to put several resources in one document, use "kind: List" with items)',
    ]);
  });

  test("parseConfig() reports missing apiVersion, kind and metadata.name", () => {
    expect(
      messages(
        "kind: WorkloadEntry\nmetadata: {}\n---\napiVersion: networking.istio.io/v1\nmetadata: {name: a}\n---\napiVersion: networking.istio.io/v1\nkind: WorkloadEntry\n",
      ),
    ).toEqual([
      "f.yaml:1:1: apiVersion: missing apiVersion",
      "f.yaml:2:1: metadata.name: missing metadata.name",
      "f.yaml:4:1: kind: missing kind",
      "f.yaml:7:1: metadata: missing metadata.name",
    ]);
  });

  test("parseConfig() rejects unknown kinds with a did-you-mean", () => {
    expect(messages("apiVersion: networking.istio.io/v1\nkind: VirtualSevice\nmetadata: {name: a}\n"))
      .toEqual([
        'f.yaml:2:1: VirtualSevice default/a: kind: unknown kind "VirtualSevice" (did you mean VirtualService?)',
      ]);
    expect(messages("apiVersion: networking.istio.io/v1\nkind: Widget\nmetadata: {name: a}\n")).toEqual([
      'f.yaml:2:1: Widget default/a: kind: unknown kind "Widget" in networking.istio.io/v1; meshd reads kinds of networking.istio.io, security.istio.io, telemetry.istio.io, config.istio.io, config.meshd.io',
    ]);
  });

  test("parseConfig() skips Kubernetes kinds next to Istio config with a note, not an error", () => {
    const text = [
      "apiVersion: v1\nkind: Service\nmetadata: {name: reviews}\nspec: {ports: [{port: 9080}]}",
      "apiVersion: v1\nkind: ServiceAccount\nmetadata: {name: bookinfo-reviews}",
      "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: reviews-v1}\nspec: {replicas: 1}",
      "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: cfg}\ndata: {a: b}",
      "apiVersion: gateway.networking.k8s.io/v1\nkind: Gateway\nmetadata: {name: gw}\nspec: {}",
      "apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {name: reviews}\nspec: {hosts: [reviews]}",
    ].join("\n---\n");
    const r = parseConfig(text, "f.yaml");
    expect(r.resources.map((x) => x.kind)).toEqual(["VirtualService"]);
    expect(r.diagnostics.map((d) => [d.severity, d.pos?.line, d.message])).toEqual([
      ["info", 2, "skipped: Service (v1) is not Istio or meshd config"],
      ["info", 7, "skipped: ServiceAccount (v1) is not Istio or meshd config"],
      ["info", 11, "skipped: Deployment (apps/v1) is not Istio or meshd config"],
      ["info", 16, "skipped: ConfigMap (v1) is not Istio or meshd config"],
      [
        "warning",
        21,
        "skipped: Gateway of gateway.networking.k8s.io/v1 is not Istio config " +
        "(meshd reads Gateway of networking.istio.io/v1)",
      ],
    ]);
    // A meshd kind written without its group is a mistake, not a foreign kind.
    expect(messages("apiVersion: v1\nkind: VirtualService\nmetadata: {name: a}\n")[0]).toContain(
      "VirtualService belongs to networking.istio.io",
    );
  });

  test("parseConfig() rejects unsupported apiVersions of known kinds", () => {
    expect(messages("apiVersion: networking.istio.io/v2\nkind: VirtualService\nmetadata: {name: a}\n"))
      .toEqual([
        "f.yaml:1:1: VirtualService default/a: apiVersion: networking.istio.io/v2 is not a supported apiVersion for VirtualService; use networking.istio.io/v1, networking.istio.io/v1beta1, networking.istio.io/v1alpha3",
      ]);
    expect(messages("apiVersion: security.istio.io/v1\nkind: VirtualService\nmetadata: {name: a}\n")).toEqual(
      [
        "f.yaml:1:1: VirtualService default/a: apiVersion: VirtualService belongs to networking.istio.io (apiVersion networking.istio.io/v1), not security.istio.io/v1",
      ],
    );
  });

  test("parseConfig() rejects invalid names and namespaces (DNS-1123)", () => {
    const r = parseConfig(entry("Reviews_1", "  namespace: Bad.NS\n"), "f.yaml");
    expect(r.diagnostics.map(formatDiagnostic)).toEqual([
      `f.yaml:4:3: WorkloadEntry Bad.NS/Reviews_1: metadata.name: invalid name: "Reviews_1" is not a valid DNS-1123 subdomain: use lower-case letters, digits, '-' and '.', each part starting and ending with a letter or digit`,
      `f.yaml:5:3: WorkloadEntry Bad.NS/Reviews_1: metadata.namespace: invalid namespace: "Bad.NS" is not a valid DNS-1123 label: use lower-case letters, digits and '-', starting and ending with a letter or digit`,
    ]);
    expect(messages(entry("a".repeat(254)))[0]).toContain("must be at most 253 characters, got 254");
  });

  test("parseConfig() checks label values and unknown top-level fields", () => {
    expect(messages(entry("a", "  labels:\n    version: 1\n").replace("spec:", "sepc:"))).toEqual([
      'f.yaml:6:5: WorkloadEntry default/a: metadata.labels.version: label values must be strings, got number; quote it: "1"',
      'f.yaml:7:1: WorkloadEntry default/a: sepc: unknown top-level field "sepc" (did you mean "spec"?)',
    ]);
  });

  test("parseConfig() reports a resource defined twice in the same input, naming both places", () => {
    const r = parseConfig(`${entry("a")}---\n${entry("a")}`, "f.yaml");
    expect(r.resources).toHaveLength(1);
    expect(r.diagnostics.map(formatDiagnostic)).toEqual([
      "f.yaml:8:1: WorkloadEntry default/a: defined more than once: first at f.yaml:1:1, again at f.yaml:8:1",
    ]);
  });
});

test("duplicateDiagnostics() finds duplicates across files", () => {
  const one = parseConfig(entry("a"), "one.yaml").resources;
  const two = parseConfig(`${entry("b")}---\n${entry("a")}`, "two.yaml").resources;
  const other = parseConfig(entry("a", "  namespace: prod\n"), "three.yaml").resources;
  expect(duplicateDiagnostics([...one, ...two, ...other]).map(formatDiagnostic)).toEqual([
    "two.yaml:8:1: WorkloadEntry default/a: defined more than once: first at one.yaml:1:1, again at two.yaml:8:1",
  ]);
});
