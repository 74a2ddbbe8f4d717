/**
 * The field coverage table (scripts/field_coverage.ts, docs/field-coverage.md) and the rule it
 * serves: no field is validated and then ignored. Every field that validation accepts is read by
 * pilot's Envoy translation, or honoured elsewhere (NO_TRANSLATION, with a reason), or refused by
 * validation as "not supported"; today's exceptions are listed in
 * tests/fixtures/coverage/known_gaps.txt, which may only shrink.
 */
import { beforeAll, describe, expect, test } from "bun:test";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { networkingSchemas } from "../../mod/api/kinds/networking.ts";
import { t } from "../../mod/api/schema.ts";
import { createPushContext } from "../../mod/pilot/model/push_context.ts";
import { buildClusters, buildListeners, buildRoutes } from "../../mod/pilot/translate/mod.ts";
import {
  API_KINDS,
  apiFields,
  corpus,
  coverageRows,
  DOC_PATH,
  type FieldRow,
  KNOWN_GAPS_PATH,
  knownGaps,
  NO_TRANSLATION,
  noTranslationReason,
  probeFields,
  recording,
  recordingSnapshot,
  renderMarkdown,
  ROOT,
  ruleViolations,
  schemaFields,
  snapshotOf,
} from "../../scripts/field_coverage.ts";
import { E2E_COVERAGE } from "../e2e/_coverage.ts";

let rows: FieldRow[];
let fields: Map<string, string[]>;
beforeAll(() => {
  fields = apiFields();
  rows = coverageRows(fields);
});

describe("listing the fields", () => {
  test("probing a validator finds exactly the fields of its schema (every networking kind)", () => {
    for (const k of API_KINDS.filter((k) => k.schema)) {
      expect({ kind: k.kind, fields: probeFields(k) }).toEqual({
        kind: k.kind,
        fields: schemaFields(networkingSchemas[k.kind]!, `${k.kind}.spec`),
      });
    }
  });

  test("schemaFields lists leaves with [] for list items and * for map keys", () => {
    const schema = t.object({
      a: t.string(),
      b: t.array(t.object({ c: t.int() })),
      d: t.map(t.object({ e: t.bool() })),
      f: t.map(t.string()),
      g: t.array(t.string()),
    });
    expect(schemaFields(schema, "K.spec")).toEqual([
      "K.spec.a",
      "K.spec.b[].c",
      "K.spec.d.*.e",
      "K.spec.f",
      "K.spec.g",
    ]);
  });

  test("the table covers networking, security and telemetry", () => {
    expect([...fields.keys()]).toEqual([
      "VirtualService",
      "DestinationRule",
      "Gateway",
      "ServiceEntry",
      "WorkloadEntry",
      "WorkloadGroup",
      "Sidecar",
      "PeerAuthentication",
      "RequestAuthentication",
      "AuthorizationPolicy",
      "Telemetry",
    ]);
    expect(fields.get("AuthorizationPolicy")).toContain(
      "AuthorizationPolicy.spec.rules[].from[].source.principals",
    );
    expect(fields.get("DestinationRule")).toContain("DestinationRule.spec.trafficPolicy.loadBalancer.simple");
  });
});

describe("recording reads", () => {
  test("records the paths of set fields read, with [] for list items, and nothing else", () => {
    const reads = new Set<string>();
    const spec = recording(
      { a: { b: 1, c: [{ d: "x" }, { d: "y" }] }, e: 2 } as Record<string, unknown>,
      "K.spec",
      reads,
    );
    const a = spec.a as { b: number; c: { d: string }[]; z?: number };
    expect(a.b).toBe(1);
    expect(a.c.map((x) => x.d)).toEqual(["x", "y"]);
    expect(a.z).toBeUndefined();
    expect([...reads].sort()).toEqual([
      "K.spec.a",
      "K.spec.a.b",
      "K.spec.a.c",
      "K.spec.a.c[]",
      "K.spec.a.c[].d",
    ]);
  });

  test("recording changes nothing: every corpus input translates the same with and without it", () => {
    const text = (v: unknown) => JSON.stringify(v, (_k, x) => (typeof x === "bigint" ? x.toString() : x));
    for (const c of corpus()) {
      const snapshot = snapshotOf(c);
      const plain = createPushContext({ config: snapshot });
      const recorded = createPushContext({ config: recordingSnapshot(snapshot, new Set()) });
      for (const proxy of c.proxies) {
        for (const build of [buildClusters, buildListeners, buildRoutes]) {
          expect({ input: c.name, out: text(build(recorded, proxy)) }).toEqual({
            input: c.name,
            out: text(build(plain, proxy)),
          });
        }
      }
    }
  });

  test("measures what translation reads: a field Envoy honours and one it ignores", () => {
    const at = (path: string) => rows.find((r) => r.path === path);
    expect(at("VirtualService.spec.http[].route[].weight")).toMatchObject({ envoy: "yes", grpc: "yes" });
    expect(at("DestinationRule.spec.trafficPolicy.loadBalancer.consistentHash.httpCookie.name"))
      .toMatchObject({ envoy: "yes", grpc: "no" });
    expect(at("DestinationRule.spec.trafficPolicy.loadBalancer.simple")).toMatchObject({
      envoy: "yes",
      grpc: "partial",
    });
    expect(at("Gateway.spec.servers[].defaultEndpoint")).toMatchObject({
      set: true,
      envoy: "no",
      refused: true,
    });
    expect(at("Gateway.spec.servers[].hosts")).toMatchObject({ envoy: "yes", grpc: "n/a" });
  });
});

describe("docs/field-coverage.md", () => {
  test("is current (bun scripts/field_coverage.ts --write)", () => {
    expect(readFileSync(DOC_PATH, "utf8")).toBe(renderMarkdown(rows));
  });

  test("README.md links to it", () => {
    expect(readFileSync(join(ROOT, "README.md"), "utf8")).toContain("docs/field-coverage.md");
  });
});

describe("tested with a real client (tests/e2e/_coverage.ts)", () => {
  test("names only fields of the API and test files that exist", () => {
    const all = new Set([...fields.values()].flat());
    for (const s of E2E_COVERAGE) {
      expect({ scenario: s.scenario, unknown: s.fields.filter((f) => !all.has(f)) }).toEqual({
        scenario: s.scenario,
        unknown: [],
      });
      expect(readFileSync(join(ROOT, s.file), "utf8").length).toBeGreaterThan(0);
    }
  });
});

describe("no field is validated and then ignored", () => {
  test("every accepted field is honoured by Envoy, needs no translation, or is refused; else a known gap", () => {
    const gaps = new Set(knownGaps());
    const violations = ruleViolations(rows);
    expect({
      newGaps: violations.filter((p) => !gaps.has(p)),
      hint:
        `honour the field, refuse it with "not supported" at validation, or (only for a field honoured elsewhere) add it to NO_TRANSLATION in scripts/field_coverage.ts`,
    }).toEqual({ newGaps: [], hint: expect.any(String) });
  });

  test(`${KNOWN_GAPS_PATH.slice(ROOT.length + 1)} may only shrink: every entry is still a gap`, () => {
    const violations = new Set(ruleViolations(rows));
    expect(knownGaps().filter((p) => !violations.has(p))).toEqual([]);
  });

  test("the known gaps file reads one path a line with # comments", () => {
    expect(knownGaps("# header\nA.spec.x  # not set\n\nB.spec.y\n")).toEqual(["A.spec.x", "B.spec.y"]);
  });

  test("fields that need no translation name a reason and exist", () => {
    const all = [...fields.values()].flat();
    for (const [prefix, reason] of NO_TRANSLATION) {
      expect(reason.length).toBeGreaterThan(20);
      expect(all.some((p) => noTranslationReason(p) === reason && p.startsWith(prefix))).toBe(true);
    }
  });
});
