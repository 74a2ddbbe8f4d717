/**
 * The graph's live updates over a real admin server (node:http behind the connection guard):
 * one long-lived server-sent-events stream per browser, read here incrementally without a
 * browser; heartbeats while nothing changes; the server's side cleaned up when the client goes
 * away; and a bound on open streams.
 */
import { afterEach, describe, expect, test } from "bun:test";
import { type AdminServer, startAdminServer } from "../../mod/admin/mod.ts";
import { createMetricsRegistry } from "../../mod/shared/metrics.ts";
import { type ConsoleFixture, consoleFixture, report, sseEvents } from "./_fixture.ts";

let fx: ConsoleFixture | undefined;
let admin: AdminServer | undefined;
afterEach(async () => {
  fx?.close();
  await admin?.stop();
  fx = undefined;
  admin = undefined;
});

async function serve(opts: { maxWaitMs?: number; maxWatchers?: number } = {}): Promise<string> {
  fx = consoleFixture({ tickMs: 10, ...opts });
  admin = await startAdminServer("127.0.0.1:0", {
    metrics: createMetricsRegistry(),
    readiness: () => ({ notReady: [], stopping: false }),
    debugHandlers: () => [],
    mounts: [fx.console.app],
  });
  return `http://127.0.0.1:${admin.port}`;
}

async function until(cond: () => boolean, what: string): Promise<void> {
  for (let i = 0; i < 500 && !cond(); i++) await Bun.sleep(10);
  if (!cond()) throw new Error(`timed out waiting for ${what}`);
}

describe("graph live updates over the admin server", () => {
  test("one response carries the current graph, then each change as it happens", async () => {
    const base = await serve();
    const gone = new AbortController();
    const res = await fetch(`${base}/ui/graph/events`, { signal: gone.signal });
    expect(res.status).toBe(200);
    expect(res.headers.get("content-type")).toContain("text/event-stream");
    expect(res.headers.get("content-length")).toBeNull();
    const events = sseEvents(res.body!);
    const first = (await events.next()).value!;
    expect(JSON.parse(first.data).edges).toEqual([]);
    for (let n = 1; n <= 3; n++) {
      report(fx!.graph, "a.ns", "b.ns.svc.cluster.local", 1);
      const e = (await events.next()).value!;
      expect(Number(e.id)).toBe(Number(first.id) + n);
      expect(JSON.parse(e.data).edges[0].title).toContain(`${n} requests`);
    }
    expect(fx!.console.graphWatchers()).toBe(1);
    gone.abort();
    await events.return(undefined);
    await until(() => fx!.console.graphWatchers() === 0, "the server to drop the stream");
  });

  test("a quiet graph sends heartbeat comments on the open stream", async () => {
    const base = await serve({ maxWaitMs: 40 });
    const gone = new AbortController();
    const res = await fetch(`${base}/ui/graph/events`, { signal: gone.signal });
    const reader = res.body!.getReader();
    const dec = new TextDecoder();
    let text = "";
    while ((text.match(/: heartbeat/g) ?? []).length < 2) text += dec.decode((await reader.read()).value);
    expect(text.startsWith("retry: ")).toBe(true);
    expect((text.match(/event: graph/g) ?? []).length).toBe(1);
    gone.abort();
    await reader.cancel().catch(() => {});
    await until(() => fx!.console.graphWatchers() === 0, "the server to drop the stream");
  });

  test("streams past the bound are refused with 503, and a closed one frees its place", async () => {
    const base = await serve({ maxWatchers: 2 });
    const open = [new AbortController(), new AbortController()];
    const streams = await Promise.all(
      open.map((c) => fetch(`${base}/ui/graph/events`, { signal: c.signal })),
    );
    expect(streams.map((r) => r.status)).toEqual([200, 200]);
    await until(() => fx!.console.graphWatchers() === 2, "two streams");
    const third = await fetch(`${base}/ui/graph/events`);
    expect(third.status).toBe(503);
    expect(await third.text()).toContain("too many live graph streams");
    open[0]!.abort();
    await until(() => fx!.console.graphWatchers() === 1, "the first stream to close");
    const again = new AbortController();
    const fourth = await fetch(`${base}/ui/graph/events`, { signal: again.signal });
    expect(fourth.status).toBe(200);
    again.abort();
    open[1]!.abort();
    await until(() => fx!.console.graphWatchers() === 0, "every stream to close");
  });
});
