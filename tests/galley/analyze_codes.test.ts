import { describe, expect, test } from "bun:test";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { runCli } from "../../mod/cli/run.ts";
import { analyze, ANALYZERS, INTERNAL_ERROR, ISTIO_MESSAGES } from "../../mod/galley/analyze.ts";
import { analyzeCommand } from "../../mod/galley/cli.ts";
import { conflictingVirtualServiceHosts } from "../../mod/galley/analyzers/conflicting_virtual_services.ts";
import { noMatchingWorkloads } from "../../mod/galley/analyzers/selector_workloads.ts";
import { analysisCodesDoc } from "../../scripts/analysis_codes.ts";
import { load, run } from "./_analyze_fixture.ts";

describe("Istio codes", () => {
  test("docs/analysis-codes.md is current (bun scripts/analysis_codes.ts > docs/analysis-codes.md)", () => {
    const doc = readFileSync(join(import.meta.dir, "../../docs/analysis-codes.md"), "utf8");
    expect(doc).toBe(analysisCodesDoc());
  });

  test("every analyzer's IST code is one of istioctl's, and not one meshd lists as left out", () => {
    const byCode = new Map(ISTIO_MESSAGES.map((m) => [m.code, m]));
    expect(byCode.size).toBe(ISTIO_MESSAGES.length);
    for (const a of [INTERNAL_ERROR, ...ANALYZERS]) {
      if (a.istioCode === undefined) continue;
      expect({ code: a.code, istio: a.istioCode, left: byCode.get(a.istioCode)?.left }).toEqual({
        code: a.code,
        istio: a.istioCode,
        left: undefined,
      });
      expect(byCode.has(a.istioCode)).toBe(true);
    }
  });

  test("every istioctl code is either reported by an analyzer or says why it is left", () => {
    const reported = new Set([INTERNAL_ERROR, ...ANALYZERS].map((a) => a.istioCode));
    for (const m of ISTIO_MESSAGES) {
      expect({ code: m.code, covered: reported.has(m.code) || (m.left ?? "").length > 10 }).toEqual({
        code: m.code,
        covered: true,
      });
    }
  });

  test("same-meaning names: an analyzer mapped one to one carries istioctl's name or a close one", () => {
    // The checks Istio names the same way keep Istio's name, so the mapping can be read at a glance.
    const names = new Map(ISTIO_MESSAGES.map((m) => [m.code, m.name]));
    for (
      const code of [
        "IST0110",
        "IST0111",
        "IST0130",
        "IST0131",
        "IST0132",
        "IST0134",
        "IST0138",
        "IST0140",
        "IST0145",
      ]
    ) {
      const a = ANALYZERS.find((x) => x.istioCode === code)!;
      expect(a.name).toBe(names.get(code)!);
    }
  });

  test("findings carry the analyzer's Istio code, or a per-finding one", () => {
    const vs = (name: string, gateways: string) =>
      `apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: { name: ${name}, namespace: default }
spec:
  hosts: [shop.example.com]
  gateways: [${gateways}]
  http: [{ route: [{ destination: { host: reviews } }] }]
`;
    const gw = `apiVersion: networking.istio.io/v1
kind: Gateway
metadata: { name: edge, namespace: default }
spec:
  servers: [{ port: { number: 80, name: http, protocol: HTTP }, hosts: ["*"] }]
---
`;
    const onMesh = run(conflictingVirtualServiceHosts, `${vs("a", "mesh")}---\n${vs("b", "mesh")}`);
    expect(onMesh.map((d) => [d.code, d.istio])).toEqual([["MSH0109", "IST0109"], ["MSH0109", "IST0109"]]);
    const onGateway = run(conflictingVirtualServiceHosts, `${gw}${vs("a", "edge")}---\n${vs("b", "edge")}`);
    expect(onGateway.map((d) => [d.code, d.istio])).toEqual([["MSH0109", undefined], ["MSH0109", undefined]]);

    const policies = `apiVersion: networking.istio.io/v1
kind: Sidecar
metadata: { name: s, namespace: default }
spec: { workloadSelector: { labels: { app: nothing } }, outboundTrafficPolicy: { mode: REGISTRY_ONLY } }
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: { name: p, namespace: default }
spec: { selector: { matchLabels: { app: nothing } } }
`;
    expect(run(noMatchingWorkloads, policies).map((d) => [d.resource, d.istio])).toEqual([
      ["Sidecar default/s", "IST0101"],
      ["AuthorizationPolicy default/p", "IST0127"],
    ]);
    expect(analyze(load({ "x.yaml": vs("a", "mesh") })).every((d) => d.istio === "IST0101")).toBe(true);
  });

  test("meshd analyze -o json adds istio next to code and keeps every other field", async () => {
    let out = "";
    const code = await runCli([analyzeCommand], [
      "analyze",
      "-o",
      "json",
      join(import.meta.dir, "analyze_fixture"),
    ], { env: {}, out: (t) => (out += t), err: () => {}, signal: new AbortController().signal });
    expect(code).toBe(1);
    const j = JSON.parse(out) as { diagnostics: Array<Record<string, unknown>> };
    const withIstio = j.diagnostics.filter((d) => d.istio !== undefined);
    expect(withIstio.length).toBeGreaterThan(0);
    for (const d of j.diagnostics) {
      expect(Object.keys(d)).toEqual(expect.arrayContaining(["severity", "code", "message", "text"]));
      if (d.istio !== undefined) expect(d.istio).toMatch(/^IST0\d{3}$/);
      if (d.code === "MSH0101") expect(d.istio).toBe("IST0101");
    }
  });
});
