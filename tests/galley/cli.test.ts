import { describe, expect, test } from "bun:test";
import { join } from "node:path";
import { runCli } from "../../mod/cli/run.ts";
import { analyzeCommand, validateCommand } from "../../mod/galley/cli.ts";

const ROOT = join(import.meta.dir, "../..");
const BROKEN = join(import.meta.dir, "broken");

async function run(...argv: string[]) {
  let out = "";
  let err = "";
  const code = await runCli([validateCommand, analyzeCommand], argv, {
    env: {},
    out: (t) => (out += t),
    err: (t) => (err += t),
    signal: new AbortController().signal,
  });
  return { code, out, err };
}

describe("meshd validate", () => {
  test("passes the samples with exit 0", async () => {
    const r = await run("validate", join(ROOT, "config/samples"));
    expect(r.out).toBe("");
    expect(r.err).toMatch(/^7 files, \d+ resources: 0 errors, 0 warnings\n$/);
    expect(r.code).toBe(0);
  });

  test("gives one precise message for each fault in a directory of broken files, and exits 1", async () => {
    const r = await run("validate", BROKEN);
    expect(r.code).toBe(1);
    const lines = r.out.trim().split("\n").map((l) => l.replace(BROKEN + "/", ""));
    expect(lines).toEqual([
      expect.stringMatching(
        /^bad_cel\.yaml:7:\d+: rule bookinfo\/deny-bob: spec\.match: invalid CEL expression: /,
      ),
      "bad_port.yaml:10:5: ServiceEntry bookinfo/db: spec.ports[0].number: 70000: must be 1–65535",
      "bad_weight.yaml:13:7: VirtualService bookinfo/reviews: spec.http[0].route[1].weight: -10: must not be negative",
      expect.stringMatching(/^duplicate_key\.yaml:8:3: duplicate key "address"/),
      expect.stringMatching(/^syntax\.yaml:\d+:\d+: invalid YAML: /),
      expect.stringMatching(/^tabs\.yaml:5:1: tab characters are not allowed/),
      'unknown_field.yaml:8:3: DestinationRule bookinfo/reviews: spec.subsetz: unknown field "subsetz" (did you mean "subsets"?)',
      expect.stringMatching(
        /^unknown_kind\.yaml:2:1: .*unknown kind "VirtualSevice" \(did you mean VirtualService\?\)/,
      ),
    ]);
    expect(r.err).toContain("8 errors");
  });

  test("-o json gives every diagnostic with file, line, column and field", async () => {
    const r = await run("validate", "-o", "json", join(BROKEN, "bad_weight.yaml"));
    expect(r.code).toBe(1);
    const j = JSON.parse(r.out) as { errors: number; diagnostics: Array<Record<string, unknown>> };
    expect(j.errors).toBe(1);
    expect(j.diagnostics[0]).toMatchObject({
      severity: "error",
      line: 13,
      col: 7,
      resource: "VirtualService bookinfo/reviews",
      field: "spec.http[0].route[1].weight",
      message: "-10: must not be negative",
    });
  });

  test("a path that does not exist is a usage error (exit 2)", async () => {
    const r = await run("validate", join(BROKEN, "nope.yaml"));
    expect(r.code).toBe(2);
    expect(r.err).toContain("no such file or directory");
    expect((await run("validate")).code).toBe(2);
  });
});

describe("meshd analyze", () => {
  test("passes the samples", async () => {
    const r = await run("analyze", join(ROOT, "config/samples"));
    expect(r.out).toBe("");
    expect(r.code).toBe(0);
  });

  test("reports cross-resource problems with codes and exits 1 on errors", async () => {
    const r = await run("analyze", "-o", "json", join(import.meta.dir, "analyze_fixture"));
    const j = JSON.parse(r.out) as { diagnostics: Array<{ code?: string; severity: string }> };
    expect(j.diagnostics.some((d) => d.code?.startsWith("MSH") && d.severity === "error")).toBe(true);
    expect(r.code).toBe(1);
  });
});
