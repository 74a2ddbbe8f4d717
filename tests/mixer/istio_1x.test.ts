import { describe, expect, test } from "bun:test";
import { readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { compileExpression, evaluate } from "../../mod/api/cel.ts";
import { formatDiagnostic } from "../../mod/api/resource.ts";
import { translate1x } from "../../mod/api/mixer/mod.ts";
import { parseConfig } from "../../mod/galley/parse.ts";
import { validateResource } from "../../mod/galley/validate.ts";
import { coreHarness, docs, mixerYaml } from "./_harness.ts";

const FIXTURES = join(import.meta.dir, "../fixtures/istio-1x-mixer");

function run1x(expr: string, bag: Record<string, unknown>): unknown {
  const t = translate1x(expr);
  if (!t.ok) throw new Error(t.message);
  const c = compileExpression(t.cel);
  if (!c.ok) throw new Error(c.message);
  const r = evaluate(c.program, bag);
  return r.ok ? r.value : `error: ${r.message}`;
}

describe("translate1x()", () => {
  test("a | b falls back only when a has no value", () => {
    const e = `source.labels["app"] | source.labels["svc"] | "unknown"`;
    expect(run1x(e, { "source.labels": { app: "a", svc: "s" } })).toBe("a");
    expect(run1x(e, { "source.labels": { svc: "s" } })).toBe("s");
    expect(run1x(e, {})).toBe("unknown");
    expect(run1x(`request.size | 0`, {})).toBe(0);
  });

  test("| binds tighter than ==, as in Go", () => {
    const e = `(context.reporter.kind | "inbound") == "outbound"`;
    expect(run1x(`conditional(${e}, "client", "server")`, {})).toBe("server");
    expect(run1x(`context.reporter.kind | "inbound" == "outbound"`, {})).toBe(false);
  });

  test("duration literals, pattern-receiver .matches(), case-insensitive booleans", () => {
    expect(run1x(`response.duration | "1.5s"`, {})).toBe(1500);
    expect(
      run1x(`"^v[0-9]$".matches(destination.labels["version"])`, { "destination.labels": { version: "v2" } }),
    )
      .toBe(true);
    expect(run1x(`True && !FALSE`, {})).toBe(true);
    expect(run1x(`source.ip == ip("10.0.0.1")`, { "source.ip": "10.0.0.1" })).toBe(true);
    expect(run1x(`"abc".reverse() + reverse("de")`, {})).toBe("cbaed");
    expect(run1x(`request.path.startsWith("/a") && size(request.path) == 3`, { "request.path": "/ab" })).toBe(
      true,
    );
  });

  test("== and != on dnsName() values ignore case and a trailing dot, as Mixer compared them", () => {
    const host = { "request.host": "Example.COM." };
    expect(run1x(`dnsName(request.host) == dnsName("example.com")`, host)).toBe(true);
    expect(run1x(`dnsName(request.host) == "EXAMPLE.com."`, host)).toBe(true);
    expect(run1x(`"example.com" == dnsName(request.host)`, host)).toBe(true);
    expect(run1x(`dnsName(request.host) != "example.org"`, host)).toBe(true);
    expect(run1x(`dnsName(request.host) == "www.example.com"`, host)).toBe(false);
    // A plain string comparison stays exact.
    expect(run1x(`request.host == "example.com"`, host)).toBe(false);
    // The other side is read as a DNS name too: a malformed one fails the expression.
    expect(run1x(`dnsName(request.host) == "not a name"`, host)).toMatch(/^error: .*not a DNS name/);
  });

  test("== on email() values: the local part exactly, the domain as a DNS name", () => {
    const user = { "request.auth.principal": "Alice@Example.COM" };
    expect(run1x(`email(request.auth.principal) == email("Alice@example.com.")`, user)).toBe(true);
    expect(run1x(`email(request.auth.principal) == "Alice@EXAMPLE.com"`, user)).toBe(true);
    expect(run1x(`email(request.auth.principal) == "alice@example.com"`, user)).toBe(false);
    expect(run1x(`email(request.auth.principal) != "bob@example.com"`, user)).toBe(true);
    const mixed = translate1x(`email(request.auth.principal) == dnsName(request.host)`);
    expect(mixed.ok ? "" : mixed.message).toContain("cannot compare");
  });

  test("operators and functions outside the 1.x language are refused with their position", () => {
    const t = translate1x(`request.size * 2`);
    expect(t.ok).toBe(false);
    if (!t.ok) expect(t.message).toContain("operator * at column 14");
    const u = translate1x(`frobnicate(request.path)`);
    expect(u.ok).toBe(false);
    if (!u.ok) expect(u.message).toContain("unknown function frobnicate()");
  });
});

describe("expression language per resource", () => {
  const rule = (match: string, annotations = "") =>
    `apiVersion: config.istio.io/v1alpha2\nkind: rule\nmetadata:\n  name: r\n  namespace: istio-system\n${annotations}spec:\n  match: '${match}'\n`;
  const errors = (yaml: string) => {
    const parsed = parseConfig(yaml, "t.yaml");
    return [...parsed.diagnostics, ...parsed.resources.flatMap(validateResource)]
      .filter((d) => d.severity === "error");
  };

  test("CEL stays CEL, 1.x-only syntax is read as 1.x", () => {
    expect(errors(rule(`has(request.path) ? request.path == "/" : false`))).toEqual([]);
    expect(errors(rule(`(request.headers["x"] | "") == "y"`))).toEqual([]);
  });

  test("a comparison of dnsName() or email() values is read as 1.x unless annotated", async () => {
    const yaml = (annotations: string) =>
      docs(
        mixerYaml("handler", "deny", { compiledAdapter: "denier", params: { status: { code: 7 } } }),
        mixerYaml("instance", "nothing", { compiledTemplate: "checknothing", params: {} }),
        rule(`dnsName(request.host) == "Web.Example.com"`, annotations) +
          `  actions: [{ handler: deny, instances: [nothing] }]\n`,
      );
    for (
      const [annotations, denied] of [["", true], [
        "  annotations:\n    policy.istio.io/lang: CEL\n",
        false,
      ]] as const
    ) {
      expect(errors(yaml(annotations))).toEqual([]);
      const h = coreHarness();
      try {
        h.load(yaml(annotations));
        const d = await h.core.check("test", { "request.host": "web.example.com." });
        expect(d.status.code === 7).toBe(denied);
      } finally {
        await h.close();
      }
    }
  });

  test("text valid in both languages with different meanings needs the annotation", () => {
    const ambiguous = `"v.*".matches(destination.service.name)`;
    const e = errors(rule(ambiguous));
    expect(e.map((d) => d.message).join("\n")).toContain("policy.istio.io/lang");
    expect(errors(rule(ambiguous, `  annotations:\n    policy.istio.io/lang: CEXL\n`))).toEqual([]);
    expect(errors(rule(ambiguous, `  annotations:\n    policy.istio.io/lang: CEL\n`))).toEqual([]);
  });

  test("snake_case fields are the 1.x spelling; an unknown snake_case field is still refused", () => {
    const handler = (field: string) =>
      mixerYaml("handler", "prom", {
        compiledAdapter: "prometheus",
        params: { metrics: [{ name: "c", [field]: "requestcount.instance.istio-system", kind: "COUNTER" }] },
      });
    expect(errors(handler("instance_name"))).toEqual([]);
    expect(errors(handler("instance_nam")).map((d) => d.field)).toContain(
      "spec.params.metrics[0].instance_nam",
    );
  });
});

/**
 * Problems the table reports for a sample, by file. The 1.0 rate-limit sample's rule has no
 * namespace (so it lands in "default") and names `handler.memquota`, which lives in istio-system.
 */
const KNOWN_PROBLEMS: Readonly<Record<string, readonly string[]>> = {
  "1.0.6_mixer-rule-productpage-ratelimit.yaml": ["actions[0]: handler memquota/handler not found"],
};

describe("Istio's own 0.8–1.x Mixer samples", () => {
  const files = readdirSync(FIXTURES).filter((f) => f.endsWith(".yaml")).sort();

  test("there are samples from 0.8, 1.0 and 1.4", () => {
    for (const tag of ["0.8.0_", "1.0.6_", "1.4.10_"]) {
      expect(files.some((f) => f.startsWith(tag))).toBe(true);
    }
  });

  for (const file of files) {
    test(`${file} validates and builds a dispatch table without problems`, async () => {
      const yaml = readFileSync(join(FIXTURES, file), "utf8");
      const parsed = parseConfig(yaml, file);
      const diags = [...parsed.diagnostics, ...parsed.resources.flatMap(validateResource)];
      expect(diags.filter((d) => d.severity === "error").map(formatDiagnostic)).toEqual([]);
      const h = coreHarness();
      try {
        h.load(docs(yaml));
        const table = h.core.table();
        expect(table.problems.map((p) => p.message)).toEqual([...(KNOWN_PROBLEMS[file] ?? [])]);
        const rules = table.counts.check + table.counts.quota + table.counts.report;
        // A sample whose only rule names a handler in another namespace compiles to no rule.
        if (KNOWN_PROBLEMS[file] === undefined) expect(rules).toBeGreaterThan(0);
      } finally {
        await h.close();
      }
    });
  }
});
