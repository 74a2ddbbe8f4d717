/**
 * The console in real headless Chromium (Debian's /usr/bin/chromium through playwright-core)
 * against a real `meshd serve` with every module: each page loads without console errors; after
 * real Report calls to mixer the graph shows the edges with their counts (and follows new traffic
 * live); a NACK sent by a real ADS client shows on the proxies page; a config error shows its
 * file:line. Screenshots go to tests/console/.artifacts/ (git-ignored).
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { create } from "@bufbuild/protobuf";
import { createClient } from "@connectrpc/connect";
import { createGrpcTransport } from "@connectrpc/connect-node";
import { cpSync, existsSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { type BrowserContext, chromium, type Page } from "playwright-core";
import { AggregatedDiscoveryService } from "#gen/envoy/service/discovery/v3/ads_pb.ts";
import {
  type DiscoveryRequest,
  DiscoveryRequestSchema,
} from "#gen/envoy/service/discovery/v3/discovery_pb.ts";
import { Mixer } from "#gen/meshd/mixer/v1/mixer_pb.ts";
import { encodeBag } from "../../mod/mixer/client/wire.ts";
import { createChannel } from "../../mod/shared/channel.ts";
import { eventually, type MeshdProcess, ROOT, startMeshd } from "../e2e/_meshd.ts";
import { BROKEN_YAML } from "./_fixture.ts";

const CHROMIUM = "/usr/bin/chromium";
const ARTIFACTS = join(ROOT, "tests/console/.artifacts");
const CDS = "type.googleapis.com/envoy.config.cluster.v3.Cluster";
const NACKER = "sidecar~10.0.0.9~reviews-v1.bookinfo~bookinfo.svc.cluster.local";
const NACK_MESSAGE = "cluster outbound|9080||ratings.bookinfo.svc.cluster.local: rejected by this client";

const available = existsSync(CHROMIUM);
if (!available) {
  console.warn(`skipping the console's browser tests: ${CHROMIUM} is absent (apt-get install chromium)`);
}

describe.skipIf(!available)("the console in headless Chromium", () => {
  const configDir = mkdtempSync(join(tmpdir(), "meshd-console-cfg-"));
  const profile = mkdtempSync(join(tmpdir(), "meshd-console-chromium-"));
  let meshd: MeshdProcess;
  let browser: BrowserContext;
  let base: string;
  const errors: string[] = [];
  const abort = new AbortController();

  /** Reports `n` requests from workload `from` ("name.namespace") to `host` through mixer's Report. */
  async function traffic(from: string, host: string, n: number, code = 200): Promise<void> {
    const client = createClient(Mixer, createGrpcTransport({ baseUrl: `http://${meshd.grpcAddr}` }));
    const [name, namespace] = from.split(".");
    for (let i = 0; i < n; i += 10) {
      const entries = Array.from({ length: Math.min(10, n - i) }, (_, j) =>
        encodeBag({
          "source.workload.name": name!,
          "source.workload.namespace": namespace!,
          "destination.service.host": host,
          "request.path": "/",
          "response.code": code,
          "response.duration": 10 + ((i + j) % 7),
        }));
      await client.report({ entries });
    }
  }

  /** An ADS stream that subscribes to CDS and NACKs the first response. */
  async function nackOnce(): Promise<void> {
    const client = createClient(
      AggregatedDiscoveryService,
      createGrpcTransport({ baseUrl: `http://${meshd.grpcAddr}` }),
    );
    const reqs = createChannel<DiscoveryRequest>();
    const responses = client.streamAggregatedResources(reqs, { signal: abort.signal })
      [Symbol.asyncIterator]();
    reqs.push(create(DiscoveryRequestSchema, {
      node: { id: NACKER, metadata: { NAMESPACE: "bookinfo", LABELS: { app: "reviews", version: "v1" } } },
      typeUrl: CDS,
    }));
    const first = await responses.next();
    if (first.done) throw new Error("ADS stream ended before a response");
    reqs.push(create(DiscoveryRequestSchema, {
      typeUrl: CDS,
      responseNonce: first.value.nonce,
      errorDetail: { code: 3, message: NACK_MESSAGE },
    }));
    // Keep reading so the stream stays open until the test ends.
    (async () => {
      try {
        while (!(await responses.next()).done);
      } catch { /* aborted at the end */ }
    })();
  }

  async function open(path: string, shot: string): Promise<Page> {
    const page = await browser.newPage();
    page.on("console", (m) => {
      if (m.type() === "error") errors.push(`${path}: ${m.text()}`);
    });
    page.on("pageerror", (e) => errors.push(`${path}: ${e.message}`));
    const res = await page.goto(base + path, { waitUntil: "load" });
    expect(res?.status()).toBe(200);
    await page.screenshot({ path: join(ARTIFACTS, `${shot}.png`), fullPage: true });
    return page;
  }

  beforeAll(async () => {
    mkdirSync(ARTIFACTS, { recursive: true });
    cpSync(join(ROOT, "config/samples"), configDir, { recursive: true });
    rmSync(join(configDir, "README.md"), { force: true });
    writeFileSync(join(configDir, "broken.yaml"), BROKEN_YAML);
    meshd = await startMeshd({ args: [`--config-dir=${configDir}`] });
    base = `http://${meshd.adminAddr}`;
    expect(await eventually(async () => (await fetch(`${base}/healthz/ready`)).status === 200, 20_000)).toBe(
      true,
    );
    browser = await chromium.launchPersistentContext(profile, {
      executablePath: CHROMIUM,
      headless: true,
      args: [
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
      ],
    });
  }, 60_000);

  afterAll(async () => {
    abort.abort();
    await browser?.close();
    await meshd?.stop();
    rmSync(configDir, { recursive: true, force: true });
    rmSync(profile, { recursive: true, force: true });
  });

  test("every page loads with no console errors", async () => {
    for (
      const [path, shot] of [
        ["/ui/", "overview"],
        ["/ui/graph", "graph-empty"],
        ["/ui/services", "services"],
        ["/ui/services?host=reviews.bookinfo.svc.cluster.local", "service-reviews"],
        ["/ui/proxies", "proxies-empty"],
        ["/ui/config", "config"],
        ["/ui/security", "security"],
      ] as const
    ) {
      const page = await open(path, shot);
      expect(await page.locator("h1").textContent()).toBeTruthy();
      await page.close();
    }
    expect(errors).toEqual([]);
  }, 60_000);

  test("a config error shows its file and line", async () => {
    const page = await open("/ui/config", "config-error");
    const text = await page.locator("main").innerText();
    expect(text).toContain(`${join(configDir, "broken.yaml")}:11:`);
    expect(text).toContain("must not be negative");
    await page.close();
  }, 30_000);

  test(
    "after traffic through mixer the graph shows the edges with their counts, then follows new traffic live",
    async () => {
      await traffic("productpage-v1.bookinfo", "reviews.bookinfo.svc.cluster.local", 30);
      await traffic("reviews-v2.bookinfo", "ratings.bookinfo.svc.cluster.local", 12, 503);
      const page = await open("/ui/graph", "graph");
      const row = (src: string, dst: string) =>
        page.locator("table tr", { has: page.locator(`td:text-is("${src}")`) }).filter({
          has: page.locator(`td:text-is("${dst}")`),
        });
      expect(
        await row("productpage-v1.bookinfo", "reviews.bookinfo.svc.cluster.local").locator("td").nth(2)
          .textContent(),
      )
        .toBe("30");
      expect(
        await row("reviews-v2.bookinfo", "ratings.bookinfo.svc.cluster.local").locator("td").nth(2)
          .textContent(),
      )
        .toBe("12");
      expect(
        await row("reviews-v2.bookinfo", "ratings.bookinfo.svc.cluster.local").locator("td").nth(4)
          .textContent(),
      )
        .toBe("100.0%");
      const edge = page.locator('[data-edge="productpage-v1.bookinfo->reviews.bookinfo.svc.cluster.local"]');
      expect(await edge.locator("title").textContent()).toContain("30 requests");
      expect(await edge.locator("text").textContent()).toContain("mTLS on");
      expect(await page.locator('[data-node="productpage-v1.bookinfo"] text').textContent()).toContain(
        "(VM)",
      );
      // Live: more traffic changes the edge's title without a reload.
      await traffic("productpage-v1.bookinfo", "reviews.bookinfo.svc.cluster.local", 10);
      await page.waitForFunction(
        `document.querySelector('[data-edge="productpage-v1.bookinfo->reviews.bookinfo.svc.cluster.local"] title')` +
          `?.textContent?.includes("40 requests")`,
        undefined,
        { timeout: 15_000 },
      );
      // A new edge appears live too (the layout is fetched again).
      await traffic("details-v1.bookinfo", "ratings.bookinfo.svc.cluster.local", 5);
      await page.waitForSelector('[data-edge="details-v1.bookinfo->ratings.bookinfo.svc.cluster.local"]', {
        timeout: 15_000,
      });
      // A node opens its details.
      await page.locator('[data-node="reviews.bookinfo.svc.cluster.local"] circle').click();
      await page.waitForSelector("#node-details h2");
      expect(await page.locator("#node-details").innerText()).toContain("productpage-v1.bookinfo");
      await page.screenshot({ path: join(ARTIFACTS, "graph-live.png"), fullPage: true });
      await page.close();
      expect(errors).toEqual([]);
    },
    60_000,
  );

  test("a NACK shows on the proxies page with the client's message", async () => {
    await nackOnce();
    expect(
      await eventually(async () => {
        const sync = await (await fetch(`${base}/debug/syncz`)).json() as Array<
          { types: { CDS?: { state: string } } }
        >;
        return sync.some((p) => p.types.CDS?.state === "NACKED");
      }),
    ).toBe(true);
    const page = await open("/ui/proxies", "proxies-nack");
    const text = await page.locator("main").innerText();
    expect(text).toContain(NACK_MESSAGE);
    expect(text).toContain(NACKER);
    // The proxy's own page, and the simulate form run against the running config.
    await page.locator(`a:text-is("${NACKER}")`).first().click();
    await page.waitForSelector("form input[name=host]");
    await page.fill("form input[name=host]", "ratings");
    await page.fill("form input[name=port]", "9080");
    await page.locator("form button:text-is('Simulate')").click();
    await page.waitForSelector("text=outbound|9080|");
    await page.screenshot({ path: join(ARTIFACTS, "proxy-simulate.png"), fullPage: true });
    await page.close();
    expect(errors).toEqual([]);
  }, 60_000);
});
