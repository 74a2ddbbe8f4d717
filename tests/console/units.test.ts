import { afterAll, describe, expect, test } from "bun:test";
import { callDepths, layoutGraph } from "../../mod/console/graph_layout.ts";
import { createGraphFeed, SSE_HEARTBEAT, sseEvent, sseStream } from "../../mod/console/graph_feed.ts";
import { lineDiff } from "../../mod/console/history.ts";
import { browserAtHand, consoleUrl, dashboardCommand } from "../../mod/console/dashboard_command.ts";
import { startAdminServer } from "../../mod/admin/mod.ts";
import { parseCommandLine } from "../../mod/cli/flags.ts";
import { createMetricsRegistry } from "../../mod/shared/metrics.ts";
import { consoleFixture } from "./_fixture.ts";

describe("graph layout", () => {
  test("layoutGraph() puts callers left of what they call, by call depth, and is deterministic", () => {
    const edges = [["gw", "a"], ["a", "b"], ["b", "c"], ["gw", "c"]] as const;
    const l1 = layoutGraph(["c", "b", "a", "gw"], edges);
    const l2 = layoutGraph(["gw", "a", "b", "c"], edges);
    expect(l1).toEqual(l2);
    const x = Object.fromEntries(l1.nodes.map((n) => [n.name, n.x]));
    expect(x.gw! < x.a! && x.a! < x.b! && x.b! < x.c!).toBe(true);
  });

  test("callDepths() ends on cycles", () => {
    const d = callDepths(["a", "b", "c"], [["a", "b"], ["b", "c"], ["c", "b"]]);
    expect(d.get("a")).toBe(0);
    expect(Math.max(...d.values())).toBeLessThan(3);
  });
});

describe("config diff", () => {
  test("lineDiff() keeps common lines and marks removed and added ones", () => {
    const d = lineDiff("a\nb\nc", "a\nx\nc");
    expect(d).toEqual([{ op: " ", text: "a" }, { op: "-", text: "b" }, { op: "+", text: "x" }, {
      op: " ",
      text: "c",
    }]);
  });
});

describe("graph feed", () => {
  test("a waiter gets the next change, once, and read() runs once per tick for all waiters", async () => {
    let value = "1";
    let reads = 0;
    const feed = createGraphFeed({
      read: () => {
        reads++;
        return Promise.resolve(value);
      },
      tickMs: 10,
      maxWaitMs: 1000,
    });
    const first = await feed.next(-1);
    expect(first).toEqual({ seq: 1, data: "1" });
    const waiters = [feed.next(1), feed.next(1), feed.next(1)];
    await Bun.sleep(35);
    expect(feed.waiting()).toBe(3);
    const readsBefore = reads;
    value = "2";
    const got = await Promise.all(waiters);
    expect(got.every((g) => g?.seq === 2 && g.data === "2")).toBe(true);
    expect(reads - readsBefore).toBeLessThanOrEqual(2);
    expect(sseEvent(got[0]!)).toBe("id: 2\nevent: graph\ndata: 2\n\n");
    // An id the feed did not give (an older feed's, say) gets the current update at once.
    expect(await feed.next(99)).toEqual({ seq: 2, data: "2" });
    feed.close();
  });

  test("sseStream() sends retry, the current update, a heartbeat, then the change, and ends on abort", async () => {
    let value = "a";
    const feed = createGraphFeed({ read: () => Promise.resolve(value), tickMs: 5, maxWaitMs: 30 });
    const gone = new AbortController();
    let closed = 0;
    const reader = sseStream(() => feed, {
      after: -1,
      retryMs: 1000,
      maxAgeMs: 60_000,
      signal: gone.signal,
      onClose: () => closed++,
    }).getReader();
    const dec = new TextDecoder();
    const next = async () => dec.decode((await reader.read()).value);
    expect(await next()).toBe("retry: 1000\n\n");
    expect(await next()).toBe("id: 1\nevent: graph\ndata: a\n\n");
    expect(await next()).toBe(SSE_HEARTBEAT);
    value = "b";
    let got = await next();
    while (got === SSE_HEARTBEAT) got = await next();
    expect(got).toBe("id: 2\nevent: graph\ndata: b\n\n");
    gone.abort();
    expect(closed).toBe(1);
    expect(feed.waiting()).toBe(0);
    expect((await reader.read()).done).toBe(true);
    feed.close();
  });
});

describe("meshd dashboard", () => {
  const fx = consoleFixture();
  afterAll(() => fx.close());

  test("consoleUrl() reaches a wildcard address on loopback and carries a token", () => {
    expect(consoleUrl("0.0.0.0:15014")).toBe("http://127.0.0.1:15014/ui/");
    expect(consoleUrl("[::1]:9")).toBe("http://[::1]:9/ui/");
    expect(consoleUrl("10.1.2.3:15014", "abc")).toBe("http://10.1.2.3:15014/ui/?token=abc");
  });

  test("browserAtHand() wants a graphical session", () => {
    expect(browserAtHand({ PATH: "/usr/bin:/bin" })).toBeUndefined();
  });

  async function run(args: string[]): Promise<{ code: number; out: string; err: string }> {
    let out = "";
    let err = "";
    const { settings } = parseCommandLine(dashboardCommand.settings(), args, {
      command: "meshd dashboard",
      env: {},
    });
    const code = await dashboardCommand.run({
      settings,
      args: [],
      signal: new AbortController().signal,
      out: (t) => (out += t),
      err: (t) => (err += t),
    });
    return { code, out, err };
  }

  test("prints the console's address once it answers on a real admin server", async () => {
    const admin = await startAdminServer("127.0.0.1:0", {
      metrics: createMetricsRegistry(),
      readiness: () => ({ notReady: [], stopping: false }),
      debugHandlers: () => [],
      mounts: [fx.console.app],
    });
    try {
      const r = await run([`--admin-addr=127.0.0.1:${admin.port}`, "--browser=false"]);
      expect(r).toEqual({ code: 0, out: `http://127.0.0.1:${admin.port}/ui/\n`, err: "" });
      const page = await fetch(r.out.trim());
      expect(page.status).toBe(200);
    } finally {
      await admin.stop();
    }
  });

  test("exits 1 naming the address when nothing answers", async () => {
    const r = await run(["--admin-addr=127.0.0.1:1", "--browser=false"]);
    expect(r.code).toBe(1);
    expect(r.err).toContain("cannot reach meshd's console at http://127.0.0.1:1/ui/");
  });
});
