import { describe, expect, test } from "bun:test";
import { parseConfig } from "../../mod/galley/parse.ts";
import { formatDiagnostic, type Resource } from "../../mod/api/resource.ts";
import {
  checkSchema,
  durationProblem,
  fieldPath,
  indexPath,
  isCIDR,
  isIP,
  labelKeyProblem,
  labelValueProblem,
  parseIP,
  splitFieldPath,
  suggest,
  t,
} from "../../mod/api/schema.ts";

/** A parsed WorkloadEntry whose spec is `spec` (YAML, indented two spaces, first line is line 6). */
function specResource(spec: string): Resource {
  const r = parseConfig(
    `apiVersion: networking.istio.io/v1\nkind: WorkloadEntry\nmetadata:\n  name: demo\nspec:\n${spec}`,
    "s.yaml",
  );
  expect(r.diagnostics).toEqual([]);
  return r.resources[0]!;
}

const portSchema = t.object({
  number: t.int({ required: true, min: 1, max: 65535 }),
  protocol: t.enum(["HTTP", "TCP"]),
  name: t.string({ nonEmpty: true }),
});

describe("checkSchema()", () => {
  test("checkSchema() accepts data that matches", () => {
    const r = specResource("  number: 80\n  protocol: HTTP\n  name: web\n");
    expect(checkSchema(r, portSchema)).toEqual([]);
  });

  test("checkSchema() reports unknown fields, wrong types, missing fields and enum values with positions", () => {
    const r = specResource("  protocl: HTTP\n  name: 80\n  protocol: UDP\n");
    expect(checkSchema(r, portSchema).map(formatDiagnostic)).toEqual([
      's.yaml:6:3: WorkloadEntry default/demo: spec.protocl: unknown field "protocl" (did you mean "protocol"?)',
      "s.yaml:5:1: WorkloadEntry default/demo: spec.number: is required",
      's.yaml:8:3: WorkloadEntry default/demo: spec.protocol: must be one of HTTP, TCP; got "UDP"',
      's.yaml:7:3: WorkloadEntry default/demo: spec.name: must be a string, got the number 80; quote it: "80"',
    ]);
  });

  test("checkSchema() reports integers, ranges and list entries", () => {
    const schema = t.object({
      ports: t.array(portSchema, { minItems: 1 }),
      ratio: t.number({ min: 0, max: 1 }),
    });
    const r = specResource("  ports:\n  - number: 1.5\n  - number: 70000\n  - null\n  ratio: 2\n");
    expect(checkSchema(r, schema).map((d) => [d.field, d.pos?.line, d.message])).toEqual([
      ["spec.ports[0].number", 7, "must be an integer, got 1.5"],
      ["spec.ports[1].number", 8, "70000: must be 1–65535"],
      ["spec.ports[2]", 9, "list entries must not be null"],
      ["spec.ratio", 10, "2: must be 0–1"],
    ]);
    expect(checkSchema(r, schema, { value: { ports: [] } }).map((d) => d.message)).toEqual([
      "must have at least one entry",
    ]);
  });

  test("checkSchema() enforces oneOf and exactlyOneOf groups", () => {
    const schema = t.object({ a: t.string(), b: t.string(), c: t.string() }, {
      exactlyOneOf: [["a", "b", "c"]],
    });
    const r = specResource("  a: x\n  c: y\n");
    expect(checkSchema(r, schema).map((d) => [d.field, d.message])).toEqual([
      ["spec.c", "only one of a, b or c may be set; found a and c"],
    ]);
    expect(checkSchema(r, schema, { value: {} }).map((d) => [d.field, d.message])).toEqual([[
      "spec",
      "exactly one of a, b or c must be set",
    ]]);
  });

  test("checkSchema() runs checks only on subtrees without errors, and reports their warnings", () => {
    const seen: unknown[] = [];
    const schema = t.object<{ n?: number }>(
      { n: t.int() },
      {
        check: (v, path, report) => {
          seen.push(v);
          report.warning(fieldPath(path, "n"), "n is deprecated");
        },
      },
    );
    const bad = specResource("  n: many\n");
    expect(checkSchema(bad, schema).map((d) => d.severity)).toEqual(["error"]);
    expect(seen).toEqual([]);
    const good = specResource("  n: 3\n");
    expect(checkSchema(good, schema).map((d) => [d.severity, d.field, d.pos?.line])).toEqual([
      ["warning", "spec.n", 6],
    ]);
    expect(seen).toEqual([{ n: 3 }]);
  });

  test("checkSchema() checks map keys and values, naming awkward keys in brackets", () => {
    const schema = t.object({
      headers: t.map(t.string(), {
        key: (k, path, report) => {
          if (k !== k.toLowerCase()) report.error(path, "must be lower case");
        },
      }),
    });
    const r = specResource("  headers:\n    X-User: bob\n    x-ok: 1\n");
    expect(checkSchema(r, schema).map((d) => [d.field, d.pos?.line, d.message])).toEqual([
      ['spec.headers["X-User"]', 7, "must be lower case"],
      ['spec.headers["x-ok"]', 8, 'must be a string, got the number 1; quote it: "1"'],
    ]);
  });

  test("t.duration() applies Istio's duration rules", () => {
    const schema = t.object({
      d: t.duration(),
      s: t.duration({ precision: "s", min: "1s" }),
      z: t.duration({ min: "0" }),
    });
    const r = specResource("  d: 1.5s\n  s: 1m\n  z: 0s\n");
    expect(checkSchema(r, schema)).toEqual([]);
    expect(checkSchema(r, schema, { value: { d: "1.0005s", s: "1500ms" } }).map((d) => d.message)).toEqual([
      "only durations to millisecond precision are supported",
      "only whole seconds are supported for this duration",
    ]);
  });
});

describe("string formats", () => {
  test("durationProblem() accepts Go/protobuf durations and explains bad ones", () => {
    for (const ok of ["1.5s", "100ms", "1h2m", "2h45m30.5s", "0.001s"]) {
      expect(durationProblem(ok)).toBeUndefined();
    }
    expect(durationProblem("10")).toBe(
      'invalid duration "10": use a number with a unit, like "1.5s", "100ms" or "1h2m"',
    );
    expect(durationProblem("1d")).toContain("invalid duration");
    expect(durationProblem("-1s")).toBe('duration must be positive, got "-1s"');
    expect(durationProblem("0s")).toBe("duration must be at least 1ms");
    expect(durationProblem("1500us")).toBe("only durations to millisecond precision are supported");
    expect(durationProblem("0s", { min: "0" })).toBeUndefined();
    expect(durationProblem("2h", { max: "1h" })).toBe("duration must be at most 1h");
  });

  test("parseIP(), isIP() and isCIDR() follow Go's netip rules", () => {
    expect(parseIP("10.1.2.3")).toEqual(new Uint8Array([10, 1, 2, 3]));
    expect(parseIP("::ffff:1.2.3.4")?.slice(10)).toEqual(new Uint8Array([0xff, 0xff, 1, 2, 3, 4]));
    expect(parseIP("2001:db8::1")?.length).toBe(16);
    for (const bad of ["10.1.2", "10.1.2.256", "010.1.2.3", "1::2::3", "2001:db8:::1", "abc", ""]) {
      expect(isIP(bad)).toBe(false);
    }
    expect(isCIDR("10.0.0.0/8")).toBe(true);
    expect(isCIDR("2001:db8::/32")).toBe(true);
    expect(isCIDR("10.0.0.0/33")).toBe(false);
    expect(isCIDR("10.0.0.0/08")).toBe(false);
    expect(isCIDR("10.0.0.0")).toBe(false);
  });

  test("labelKeyProblem() and labelValueProblem() apply Kubernetes label syntax", () => {
    expect(labelKeyProblem("app")).toBeUndefined();
    expect(labelKeyProblem("app.kubernetes.io/name")).toBeUndefined();
    expect(labelKeyProblem("Bad_Prefix/name")).toContain("must be a DNS-1123 subdomain");
    expect(labelKeyProblem("-x")).toContain("invalid label key");
    expect(labelValueProblem("")).toBeUndefined();
    expect(labelValueProblem("v1.2_beta")).toBeUndefined();
    expect(labelValueProblem("*")).toContain("invalid label value");
  });
});

describe("field paths", () => {
  test("fieldPath() and splitFieldPath() round-trip plain and bracketed keys", () => {
    const path = fieldPath(
      indexPath(fieldPath(fieldPath("spec", "selector"), "app.kubernetes.io/name"), 2),
      "x",
    );
    expect(path).toBe('spec.selector["app.kubernetes.io/name"][2].x');
    expect(splitFieldPath(path)).toEqual(["spec", "selector", "app.kubernetes.io/name", 2, "x"]);
    expect(splitFieldPath("spec.http[0].route[1].weight")).toEqual(["spec", "http", 0, "route", 1, "weight"]);
    expect(splitFieldPath('a["unterminated')).toBeUndefined();
  });

  test("suggest() catches edits and swapped letters but not unrelated words", () => {
    expect(suggest("hostss", ["hosts", "gateways"])).toBe("hosts");
    expect(suggest("sepc", ["apiVersion", "kind", "metadata", "spec"])).toBe("spec");
    expect(suggest("DSN", ["NONE", "STATIC", "DNS"])).toBe("DNS");
    expect(suggest("banana", ["hosts", "gateways"])).toBeUndefined();
  });
});
