import { afterEach, describe, expect, test } from "bun:test";
import { APP_JS, APP_JS_HASH } from "../../mod/console/assets.ts";
import { createManualClock } from "../../mod/shared/clock.ts";
import { type ConsoleFixture, consoleFixture, report, sseEvents } from "./_fixture.ts";

let fx: ConsoleFixture;
afterEach(() => fx?.close());

async function get(
  path: string,
  headers: Record<string, string> = {},
): Promise<{ status: number; text: string; res: Response }> {
  const res = await fx.console.app.request(path, { headers });
  return { status: res.status, text: await res.text(), res };
}

describe("console pages", () => {
  test("every page answers 200 with HTML under 200 KB", async () => {
    fx = consoleFixture();
    for (const p of ["/ui/", "/ui/graph", "/ui/services", "/ui/proxies", "/ui/config", "/ui/security"]) {
      const r = await get(p);
      expect(r.status).toBe(200);
      expect(r.res.headers.get("content-type")).toContain("text/html");
      expect(r.text).toContain("<!doctype html>");
      expect(r.text.length).toBeLessThan(200_000);
    }
  });

  test("/ui redirects to /ui/, and the script is served under its content hash", async () => {
    fx = consoleFixture();
    const r = await fx.console.app.request("/ui");
    expect(r.status).toBe(302);
    expect(r.headers.get("location")).toBe("/ui/");
    const page = await get("/ui/");
    expect(page.text).toContain(`/ui/app.js?v=${APP_JS_HASH}`);
    const js = await get(`/ui/app.js?v=${APP_JS_HASH}`);
    expect(js.text).toBe(APP_JS);
    expect(js.res.headers.get("cache-control")).toContain("immutable");
    expect(APP_JS).toContain("EventSource");
    expect(APP_JS).not.toContain("interface "); // transpiled, not TypeScript
  });

  test("the overview counts services and workloads and lists modules not ready", async () => {
    fx = consoleFixture();
    const { text } = await get("/ui/");
    expect(text).toMatch(/<b>5<\/b>services/);
    expect(text).toMatch(/<b>7<\/b>workloads/);
    expect(text).toMatch(/citadel<\/td><td><span class="b warn">not ready/);
  });

  test("the config page shows a rejected resource's error with its file and line", async () => {
    fx = consoleFixture();
    const { text } = await get("/ui/config");
    expect(text).toMatch(/\/cfg\/broken\.yaml:11:\d+: VirtualService bookinfo\/broken/);
  });

  test("the config page compares two versions the console kept", async () => {
    fx = consoleFixture();
    const v1 = fx.store.snapshot().version;
    fx.store.sink("dir").update([{
      origin: "/cfg/broken.yaml",
      content: new TextEncoder().encode(
        "apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {name: fixed, namespace: bookinfo}\nspec:\n  hosts: [ratings]\n  http: [{route: [{destination: {host: ratings, subset: v1}}]}]\n",
      ),
    }]);
    const v2 = fx.store.snapshot().version;
    expect(v2).toBeGreaterThan(v1);
    const { text } = await get(`/ui/config?from=${v1}&to=${v2}`);
    expect(text).toContain("1 added, 0 removed, 0 changed");
    expect(text).toContain("networking.istio.io/VirtualService/bookinfo/fixed");
    expect(text).toContain('<span class="add">+');
  });

  test("a service's page lists its endpoints, subsets, the rules routing to it and the policies applying", async () => {
    fx = consoleFixture();
    const { text } = await get("/ui/services?host=reviews.bookinfo.svc.cluster.local");
    // The three WorkloadEntries of the config and the VM its agent registered, as pilot serves them.
    expect(text).toContain("Endpoints (4)");
    expect(text).toContain("as pilot serves them");
    expect(text).toMatch(/<td>198\.18\.7\.9<\/td>.*auto-registered/);
    expect(text).toMatch(/<td>192\.0\.2\.12<\/td>(?:(?!<\/tr>).)*VM(?:(?!<\/tr>).)*<\/tr>/s);
    expect(text).not.toMatch(/<td>192\.0\.2\.12<\/td>(?:(?!<\/tr>).)*auto-registered/s);
    expect(text).toMatch(/<td>v3<\/td>/);
    expect(text).toContain("VirtualService bookinfo/reviews");
    expect(text).toContain("PeerAuthentication istio-system/default");
    expect(text).toContain("mTLS STRICT");
  });

  test("the proxies page shows a NACK with its message, and a proxy's page runs simulate", async () => {
    fx = consoleFixture();
    const list = await get("/ui/proxies");
    expect(list.text).toContain("route: weights do not add up");
    expect(list.text).toContain('class="b bad">NACKED');
    const id = "sidecar~10.0.0.9~productpage-v1.bookinfo~bookinfo.svc.cluster.local";
    const one = await get(`/ui/proxies?id=${encodeURIComponent(id)}&host=reviews&port=9080&path=/`);
    expect(one.status).toBe(200);
    expect(one.text).toContain("outbound|9080|");
    expect(one.text).toContain("reviews.bookinfo.svc.cluster.local");
  });

  test("simulate runs through pilot's /debug/simulate when pilot is here, else over the console's model", async () => {
    fx = consoleFixture();
    const id = "sidecar~10.0.0.9~productpage-v1.bookinfo~bookinfo.svc.cluster.local";
    const q = `/ui/proxies?id=${encodeURIComponent(id)}&host=reviews&port=9080&path=/`;
    const viaPilot = await get(q);
    expect(viaPilot.text).toContain("outbound|9080|");
    // Pilot's answer is what the page shows: make pilot's handler say something recognisable.
    fx.answers.set("simulate", { listener: "from-pilot", cluster: "pilot-cluster" });
    fx.handlers.splice(fx.handlers.findIndex((h) => h.path === "simulate"), 1, {
      path: "simulate",
      description: "",
      handle: () => Response.json(fx.answers.get("simulate")),
    });
    const shown = await get(q);
    expect(shown.text).toContain("from-pilot");
    expect(shown.text).toContain("pilot-cluster");
    // Without pilot, the console simulates over its own model and reaches the same cluster.
    fx.handlers.splice(fx.handlers.findIndex((h) => h.path === "simulate"), 1);
    const local = await get(q);
    expect(local.text).toContain("outbound|9080|");
    expect(local.text).not.toContain("from-pilot");
  });

  test("the security page lists certificates issued and the CA's refusals with reasons", async () => {
    fx = consoleFixture();
    fx.answers.set("certz", {
      limit: 1000,
      issued: [
        {
          identity: "spiffe://cluster.local/ns/bookinfo/sa/reviews",
          serial: "0a1b2c",
          issuedAt: "2026-06-01T00:00:00.000Z",
          notAfter: "2026-06-02T00:00:00.000Z",
          via: "certificate",
        },
        {
          identity: "spiffe://cluster.local/ns/bookinfo/sa/ratings",
          serial: "0d0e0f",
          issuedAt: "2026-06-01T00:00:00.000Z",
          notAfter: "2026-06-02T00:00:00.000Z",
          via: "token",
        },
      ],
      refused: [{
        at: "2026-06-01T00:00:01.000Z",
        reason: "identity_mismatch",
        caller: "token ns/app sa/web",
        requested: "spiffe://cluster.local/ns/app/sa/db",
        message: "the CSR asks for another identity",
      }],
    });
    const all = await get("/ui/security");
    expect(all.text).toContain("Issued (2 of the last 2, at most 1000 kept)");
    expect(all.text).toContain("<code>0a1b2c</code>");
    expect(all.text).toContain("identity_mismatch");
    expect(all.text).toContain("the CSR asks for another identity");
    const one = await get("/ui/security?q=ratings");
    expect(one.text).toContain("Issued (1 of the last 2");
    expect(one.text).not.toContain("0a1b2c");
  });

  test("the graph shows each edge with its request count, error rate and mTLS mode", async () => {
    fx = consoleFixture();
    report(fx.graph, "productpage-v1.bookinfo", "reviews.bookinfo.svc.cluster.local", 7);
    report(fx.graph, "productpage-v1.bookinfo", "details.bookinfo.svc.cluster.local", 3, 503);
    const { text } = await get("/ui/graph");
    expect(text).toContain('data-edge="productpage-v1.bookinfo-&#62;reviews.bookinfo.svc.cluster.local"');
    expect(text).toMatch(
      /productpage-v1\.bookinfo<\/td><td>reviews\.bookinfo\.svc\.cluster\.local<\/td><td>7<\/td>/,
    );
    expect(text).toMatch(
      /details\.bookinfo\.svc\.cluster\.local<\/td><td>3<\/td><td>0\.050\/s<\/td><td>100\.0%/,
    );
    expect(text).toContain("mTLS on");
    // productpage-v1 is a WorkloadEntry: a VM.
    expect(text).toContain("productpage-v1.bookinfo (VM)");
    const node = await get("/ui/graph/node?name=productpage-v1.bookinfo");
    expect(node.text).toContain("reviews.bookinfo.svc.cluster.local");
  });

  test("graph events: one stream, the current graph at once, then the next change", async () => {
    fx = consoleFixture({ tickMs: 10 });
    const gone = new AbortController();
    const res = await fx.console.app.request("/ui/graph/events", { signal: gone.signal });
    expect(res.headers.get("content-type")).toContain("text/event-stream");
    const events = sseEvents(res.body!);
    const first = (await events.next()).value!;
    expect(first.event).toBe("graph");
    expect(JSON.parse(first.data).edges).toEqual([]);
    expect(fx.console.graphWatchers()).toBe(1);
    report(fx.graph, "a.ns", "b.ns.svc.cluster.local", 2);
    const second = (await events.next()).value!;
    expect(Number(second.id)).toBe(Number(first.id) + 1);
    const data = JSON.parse(second.data);
    expect(data.edges[0].id).toBe("a.ns->b.ns.svc.cluster.local");
    expect(data.edges[0].label).toContain("rps");
    gone.abort();
    await events.return(undefined);
    expect(fx.console.graphWatchers()).toBe(0);
  });

  test("the graph's window changes its numbers: 1m, 5m and 15m each count their own requests", async () => {
    const clock = createManualClock(Date.now());
    fx = consoleFixture({ clock });
    report(fx.graph, "a.ns", "b.ns.svc.cluster.local", 5);
    clock.advance(4 * 60_000);
    report(fx.graph, "a.ns", "b.ns.svc.cluster.local", 2);
    const row = (text: string) =>
      /a\.ns<\/td><td>b\.ns\.svc\.cluster\.local<\/td><td>(\d+)<\/td>/.exec(text)?.[1];
    expect(row((await get("/ui/graph?window=1m")).text)).toBe("2");
    expect(row((await get("/ui/graph?window=5m")).text)).toBe("7");
    expect(row((await get("/ui/graph?window=15m")).text)).toBe("7");
    const page = (await get("/ui/graph?window=5m")).text;
    expect(page).toContain('<option value="5m" selected>');
    expect(page).toContain('data-window="5m"');
    // A window the page does not offer falls back to the default one.
    expect(row((await get("/ui/graph?window=7h")).text)).toBe("2");
  });

  test("with a token, requests without it are refused and ?token= sets the cookie", async () => {
    const token = "t".repeat(40);
    fx = consoleFixture({ token });
    expect((await get("/ui/")).status).toBe(401);
    expect((await get("/ui/", { authorization: "Bearer wrong" })).status).toBe(401);
    expect((await get("/ui/", { authorization: `Bearer ${token}` })).status).toBe(200);
    const r = await fx.console.app.request(`/ui/graph?token=${token}`);
    expect(r.status).toBe(303);
    expect(r.headers.get("location")).toBe("/ui/graph");
    const cookie = r.headers.get("set-cookie")!;
    expect(cookie).toContain("HttpOnly");
    expect((await get("/ui/graph", { cookie: cookie.split(";")[0]! })).status).toBe(200);
  });
});
