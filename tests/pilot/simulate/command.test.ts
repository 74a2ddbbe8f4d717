import { describe, expect, test } from "bun:test";
import { join } from "node:path";
import { runCli } from "../../../mod/cli/run.ts";
import { simulateCommand } from "../../../mod/pilot/simulate/command.ts";
import { ROOT } from "../translate/_golden.ts";

async function run(args: string[]): Promise<{ code: number; out: string; err: string }> {
  let out = "";
  let err = "";
  const code = await runCli([simulateCommand], ["simulate", ...args], {
    env: {},
    out: (t) => (out += t),
    err: (t) => (err += t),
    signal: new AbortController().signal,
  });
  return { code, out, err };
}

const SAMPLES = join(ROOT, "config/samples");
const PRODUCTPAGE = "sidecar~192.0.2.10~productpage-v1.bookinfo~bookinfo.svc.cluster.local";

describe("meshd simulate", () => {
  test("meshd simulate prints where a request goes as a table", async () => {
    const r = await run([
      SAMPLES,
      "--proxy",
      PRODUCTPAGE,
      "--host",
      "reviews",
      "--port",
      "9080",
      "--header",
      "end-user=jason",
    ]);
    expect(r.code).toBe(0);
    expect(r.out).toContain("CLUSTER");
    expect(r.out).toContain("outbound|9080|v2|reviews.bookinfo.svc.cluster.local");
    expect(r.out.split("\n")[0]).toMatch(/^LISTENER\s+0\.0\.0\.0_9080$/);
  });

  test("meshd simulate -o json prints the outcome and takes labels from --proxy-labels", async () => {
    const r = await run([
      SAMPLES,
      "--proxy",
      "router~192.0.2.20~ingressgateway-1.istio-system~istio-system.svc.cluster.local",
      "--proxy-labels",
      "istio=ingressgateway",
      "--host",
      "bookinfo.example.com",
      "--port",
      "80",
      "--path",
      "/login",
      "-o",
      "json",
    ]);
    expect(r.code).toBe(0);
    expect(JSON.parse(r.out)).toMatchObject({
      routeConfig: "http.80",
      cluster: "outbound|9080||productpage.bookinfo.svc.cluster.local",
    });
  });

  test("meshd simulate exits 1 when the request reaches nothing", async () => {
    const r = await run([
      SAMPLES,
      "--proxy",
      PRODUCTPAGE,
      "--host",
      "www.example.com",
      "--port",
      "9080",
      "--path",
      "/",
    ]);
    expect(r.code).toBe(0);
    const none = await run([
      SAMPLES,
      "--proxy",
      "router~192.0.2.20~ingressgateway-1.istio-system~istio-system.svc.cluster.local",
      "--host",
      "x",
      "--port",
      "81",
    ]);
    expect(none.code).toBe(1);
    expect(none.out).toContain("no listener for port 81");
  });

  test("meshd simulate refuses missing flags and malformed node ids with exit 2", async () => {
    expect((await run([SAMPLES, "--host", "a", "--port", "1"])).err).toContain("--proxy is required");
    expect((await run([SAMPLES, "--proxy", PRODUCTPAGE, "--port", "1"])).code).toBe(2);
    const bad = await run([SAMPLES, "--proxy", "nope", "--host", "a", "--port", "1"]);
    expect([bad.code, bad.err.includes("want TYPE~IP~NAME")]).toEqual([2, true]);
    expect((await run(["/no/such/dir", "--proxy", PRODUCTPAGE, "--host", "a", "--port", "1"])).err).toContain(
      "no such file",
    );
    expect(
      (await run([SAMPLES, "--proxy", PRODUCTPAGE, "--host", "a", "--port", "1", "--header", "nope"])).err,
    )
      .toContain("want name=value");
  });
});
