import { describe, expect, test } from "bun:test";
import { envoyAttributes, istioAttributes } from "../../mod/api/attributes.ts";
import { compileExpression, evaluate, re2Error } from "../../mod/api/cel.ts";

function compile(expr: string, type: Parameters<typeof compileExpression>[1] = "any") {
  const r = compileExpression(expr, type);
  if (!r.ok) throw new Error(`expected ${expr} to compile: ${r.message}`);
  return r;
}

function failure(expr: string, type: Parameters<typeof compileExpression>[1] = "any"): string {
  const r = compileExpression(expr, type);
  if (r.ok) throw new Error(`expected ${expr} not to compile`);
  return r.message;
}

describe("compileExpression()", () => {
  test("compileExpression() type-checks Istio attribute expressions with dotted names", () => {
    for (
      const expr of [
        'source.labels["app"] == "ratings"',
        'request.headers["x-user"].startsWith("bob")',
        "destination.port == 9080",
        "request.size > 1024",
        "has(source.workload.name) && source.workload.name != 'x'",
        'request.auth.claims["groups"].split(",").exists(g, g == "admin")',
        "source.ip == ip('10.0.0.1') && connection.mtls",
        "response.duration > duration('100ms') || request.time < timestamp('2030-01-01T00:00:00Z')",
        "match(destination.service.host, '*.svc.cluster.local')",
      ]
    ) {
      expect(compile(expr, "bool").program.resultType).toBe("bool");
    }
  });

  test("compileExpression() lists the attributes an expression references", () => {
    const r = compile(
      'source.labels["app"] == "ratings" && destination.port == 9080 && source.labels.version == "v1"',
      "bool",
    );
    expect(r.referenced).toEqual(["destination.port", "source.labels"]);
    expect(r.program.referenced).toEqual(["destination.port", "source.labels"]);
  });

  test("compileExpression() reports unknown attributes with a suggestion and a column", () => {
    expect(failure("sourc.ip == ip('1.1.1.1')")).toBe(
      'undeclared reference to "sourc.ip" (did you mean "source.ip"?) (at column 6)',
    );
    expect(failure("source.workload == 'x'")).toContain(
      '"source.workload" is not an attribute; attributes under it are source.workload.uid, source.workload.name',
    );
  });

  test("compileExpression() rejects operators on mismatched types", () => {
    expect(failure('destination.port == "9080"')).toBe(
      "operator == cannot be applied to (int, string) (at column 18)",
    );
    expect(failure("request.size.startsWith('1')")).toContain("no method startsWith(string) on int");
    expect(failure("request.time + 1")).toContain("operator + cannot be applied to (timestamp, int)");
  });

  test("compileExpression() checks the result type against expectType", () => {
    expect(failure('source.labels["app"]', "bool")).toBe(
      "expression must produce a bool, but it produces a string",
    );
    expect(compile("request.headers", "string_map").program.resultType).toBe("map(string, string)");
    expect(compile("dyn(request.size)", "string").program.resultType).toBe("dyn");
  });

  test("compileExpression() reports syntax errors with their column, and hints at Mixer's | operator", () => {
    expect(failure("a ==")).toBe("syntax error at column 3: found = but expecting end of input");
    expect(failure('source.workload.name | "unknown"')).toContain(
      'the "a | b" default operator is Mixer\'s old expression language',
    );
    expect(failure("")).toBe("expression is empty");
    expect(failure(`${"(".repeat(5000)}1${")".repeat(5000)} == 1`)).toBe("expression is nested too deeply");
  });

  test("compileExpression() resolves names against the chosen vocabulary", () => {
    expect(compileExpression("response.code >= 500", "bool", { attributes: envoyAttributes }).ok).toBe(true);
    expect(compileExpression("source.address == '1.2.3.4'", "bool", { attributes: istioAttributes }).ok).toBe(
      false,
    );
    expect(compileExpression("x.output.value == 'ok'", "bool", { extraAttributes: { "x.output": "dyn" } }).ok)
      .toBe(true);
  });
});

describe("evaluate()", () => {
  test("evaluate() runs compiled programs against attribute bags", () => {
    const match = compile('source.labels["app"] == "ratings" && destination.port == 9080', "bool").program;
    expect(evaluate(match, { "source.labels": { app: "ratings" }, "destination.port": 9080 })).toEqual({
      ok: true,
      value: true,
    });
    expect(evaluate(match, { "source.labels": { app: "reviews" }, "destination.port": 9080 })).toEqual({
      ok: true,
      value: false,
    });

    const prefix = compile('request.headers["x-user"].startsWith("bob")', "bool").program;
    expect(evaluate(prefix, { "request.headers": new Map([["x-user", "bobby"]]) })).toEqual({
      ok: true,
      value: true,
    });

    const size = compile("request.size > 1024", "bool").program;
    expect(evaluate(size, { "request.size": 2048 })).toEqual({ ok: true, value: true });
    expect(evaluate(size, { "request.size": 10n })).toEqual({ ok: true, value: false });
  });

  test("evaluate() converts IPs, timestamps and durations to their CEL types", () => {
    const ip = compile("source.ip == ip('10.0.0.1')", "bool").program;
    expect(evaluate(ip, { "source.ip": "10.0.0.1" })).toEqual({ ok: true, value: true });
    expect(evaluate(ip, { "source.ip": new Uint8Array([10, 0, 0, 2]) })).toEqual({ ok: true, value: false });

    const slow = compile("response.duration > duration('100ms')", "bool").program;
    expect(evaluate(slow, { "response.duration": 150 })).toEqual({ ok: true, value: true });
    expect(evaluate(slow, { "response.duration": "50ms" })).toEqual({ ok: true, value: false });

    const time = compile("request.time", "timestamp").program;
    expect(evaluate(time, { "request.time": new Date("2024-05-01T10:00:00Z") })).toEqual({
      ok: true,
      value: new Date("2024-05-01T10:00:00Z"),
    });
  });

  test("evaluate() returns plain values: numbers, strings, lists and maps", () => {
    const value = compile('{"n": request.size, "tags": [source.name, "x"]}').program;
    expect(evaluate(value, { "request.size": 7, "source.name": "a" })).toEqual({
      ok: true,
      value: { n: 7, tags: ["a", "x"] },
    });
  });

  test("evaluate() treats has() on an attribute as presence in the bag", () => {
    const fallback =
      compile("has(source.workload.name) ? source.workload.name : 'unknown'", "string").program;
    expect(evaluate(fallback, {})).toEqual({ ok: true, value: "unknown" });
    expect(evaluate(fallback, { "source.workload.name": "ratings-v1" })).toEqual({
      ok: true,
      value: "ratings-v1",
    });
  });

  test("evaluate() reports a missing attribute by name", () => {
    const size = compile("request.size > 1024", "bool").program;
    expect(evaluate(size, {})).toEqual({
      ok: false,
      message: "attribute request.size is not present (or has the wrong type)",
    });
    const div = compile("request.size / 0").program;
    expect(evaluate(div, { "request.size": 1 })).toEqual({ ok: false, message: "int divide by zero" });
  });

  test("evaluate() reuses one compiled program quickly", () => {
    const program = compile('source.labels["app"] == "ratings" && destination.port == 9080', "bool").program;
    const bag = { "source.labels": { app: "ratings" }, "destination.port": 9080 };
    const start = performance.now();
    for (let i = 0; i < 20_000; i++) evaluate(program, bag);
    expect(performance.now() - start).toBeLessThan(1000);
  });
});

test("re2Error() accepts RE2 syntax and rejects what RE2 cannot compile", () => {
  expect(re2Error("^/api/v[0-9]+/.*$")).toBeUndefined();
  expect(re2Error("(?i)admin")).toBeUndefined();
  expect(re2Error("(?=x)")).toContain("invalid or unsupported Perl syntax");
  expect(re2Error("a\\1")).toContain("invalid escape sequence");
});
