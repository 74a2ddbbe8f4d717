/**
 * The admin server under hostile requests. A web page in a browser on the control-plane host
 * (a cross-origin POST, or DNS rebinding with its own name in `Host`) and a local process without
 * the admin token must not change state; refusals are counted and logged; `meshd ca` works with
 * the token from `--data-dir`. Against a real `meshd serve --modules=citadel` process, and the
 * admin app in-process for the handler registry and the log rate limit (injected clock).
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { mkdtempSync, rmSync, statSync } from "node:fs";
import { connect } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createAdminApp } from "../../mod/admin/server.ts";
import { readAdminToken } from "../../mod/admin/token.ts";
import type { DebugHandler } from "../../mod/runtime/module.ts";
import { createManualClock } from "../../mod/shared/clock.ts";
import { createLogger } from "../../mod/shared/logger.ts";
import { createMetricsRegistry, type MetricsRegistry } from "../../mod/shared/metrics.ts";
import { adminPost, eventually, type MeshdProcess, runMeshdCommand, startMeshd } from "../e2e/_meshd.ts";

const TOKEN = "t".repeat(43);

/** The refusal counter's value for `reason` in a Prometheus text exposition. */
function refusedIn(text: string, reason: string): number {
  const line = text.split("\n").find((l) =>
    l.startsWith(`meshd_admin_requests_refused_total{reason="${reason}"} `)
  );
  return line === undefined ? NaN : Number(line.split(" ").pop());
}

describe("admin app (in-process): the debug handler registry", () => {
  /** An app with one handler that changes state (it counts its calls) and one that reads. */
  function app(opts: { token?: string; now?: () => number; metrics?: MetricsRegistry } = {}) {
    let calls = 0;
    const logs: Array<Record<string, unknown>> = [];
    const handlers: DebugHandler[] = [
      {
        path: "thing/bump",
        description: "bumps",
        mutates: true,
        handle: () => Response.json({ calls: ++calls }),
      },
      { path: "thing", description: "reads", handle: () => Response.json({ calls }) },
    ];
    const metrics = opts.metrics ?? createMetricsRegistry();
    const a = createAdminApp({
      metrics,
      readiness: () => ({ notReady: [], stopping: false }),
      debugHandlers: () => handlers,
      adminToken: "token" in opts ? opts.token : TOKEN,
      logger: createLogger({ format: "json", write: (l) => logs.push(JSON.parse(l)) }),
      now: opts.now,
    });
    const send = (method: string, path: string, headers: Record<string, string> = {}) =>
      a.request(path, { method, headers: { host: "127.0.0.1:15014", ...headers } });
    return { send, calls: () => calls, logs, metrics };
  }
  const bearer = { authorization: `Bearer ${TOKEN}` };

  test("a handler that changes state is reached only by POST with the token; GET, HEAD and PUT never call it", async () => {
    const a = app();
    for (const method of ["GET", "HEAD"]) {
      const res = await a.send(method, "/debug/thing/bump", bearer);
      expect(res.status).toBe(405);
      expect(res.headers.get("allow")).toBe("POST");
    }
    expect((await a.send("PUT", "/debug/thing/bump", bearer)).status).toBe(405);
    expect((await a.send("POST", "/debug/thing/bump")).status).toBe(401);
    expect(a.calls()).toBe(0);
    const ok = await a.send("POST", "/debug/thing/bump", { ...bearer, "content-type": "application/json" });
    expect(ok.status).toBe(200);
    expect(a.calls()).toBe(1);
    // A handler that reads answers GET and HEAD only, even to the token's holder.
    expect((await a.send("GET", "/debug/thing")).status).toBe(200);
    expect((await a.send("HEAD", "/debug/thing")).status).toBe(200);
    const post = await a.send("POST", "/debug/thing", bearer);
    expect(post.status).toBe(405);
    expect(post.headers.get("allow")).toBe("GET, HEAD");
    // The listing says which method each takes.
    const list = await (await a.send("GET", "/debug/")).json() as { handlers: Array<{ method: string }> };
    expect(list.handlers.map((h) => h.method)).toEqual(["POST", "GET"]);
  });

  test("without a token (an agent, or a daemon with nothing to change) no request but GET or HEAD is served", async () => {
    const a = app({ token: undefined });
    const res = await a.send("POST", "/debug/thing/bump", { authorization: "Bearer " });
    expect(res.status).toBe(401);
    expect((await res.json() as { error: string }).error).toContain("answers GET and HEAD only");
    expect(a.calls()).toBe(0);
  });

  test("refusals are logged once a minute per source and reason, and every one is counted", async () => {
    const clock = createManualClock(1_000_000);
    const a = app({ now: clock.now });
    for (let i = 0; i < 5; i++) await a.send("POST", "/debug/thing/bump", { authorization: "Bearer nope" });
    await a.send("GET", "/healthz/ready", { host: "attacker.example" });
    const refusals = () => a.logs.filter((l) => l.msg === "admin request refused");
    expect(refusals().map((l) => l.reason)).toEqual(["token", "host"]);
    expect(refusals()[1]).toMatchObject({
      from: "unknown",
      host: "attacker.example",
      path: "/healthz/ready",
    });
    clock.advance(59_000);
    await a.send("POST", "/debug/thing/bump");
    expect(refusals()).toHaveLength(2);
    clock.advance(1_000);
    await a.send("POST", "/debug/thing/bump");
    expect(refusals().map((l) => l.reason)).toEqual(["token", "host", "token"]);
    const text = await a.metrics.metrics();
    expect(refusedIn(text, "token")).toBe(7);
    expect(refusedIn(text, "host")).toBe(1);
    expect(refusedIn(text, "origin")).toBe(0);
  });
});

describe("admin server (process): meshd serve --modules=citadel", () => {
  let data: string;
  let meshd: MeshdProcess;
  const url = (path: string) => `http://${meshd.adminAddr}${path}`;
  const port = () => meshd.adminAddr.split(":").pop()!;
  const rootCount = async () =>
    ((await (await fetch(url("/debug/ca"))).json()) as { roots: unknown[] }).roots.length;
  const refused = async (reason: string) => refusedIn(await (await fetch(url("/metrics"))).text(), reason);
  const token = () => readAdminToken(data);
  const refusalLogs = (reason: string) =>
    meshd.logs.filter((l) => l.msg === "admin request refused" && l.reason === reason);

  beforeAll(async () => {
    data = mkdtempSync(join(tmpdir(), "meshd-hostile-admin-"));
    meshd = await startMeshd({
      args: [
        "--modules=citadel",
        `--data-dir=${data}`,
        "--admin-allowed-hosts=meshd.internal",
        "--shutdown-grace=2s",
      ],
    });
    expect(await eventually(async () => (await fetch(url("/healthz/ready"))).status === 200)).toBe(true);
  });
  afterAll(async () => {
    await meshd?.stop();
    rmSync(data, { recursive: true, force: true });
  });

  test("the daemon keeps a random admin token in --data-dir/admin-token, mode 0600, and never logs it", () => {
    expect(statSync(join(data, "admin-token")).mode & 0o777).toBe(0o600);
    expect(token()).toMatch(/^[A-Za-z0-9_-]{43}$/);
    expect(meshd.logs.some((l) => JSON.stringify(l).includes(token()))).toBe(false);
  });

  test("a cross-origin text/plain POST, as a web page sends it, is refused and changes nothing", async () => {
    const before = { origin: await refused("origin"), contentType: await refused("content_type") };
    const page = await fetch(url("/debug/ca/rotate"), {
      method: "POST",
      headers: { origin: "http://attacker.example", "content-type": "text/plain;charset=UTF-8" },
      body: "{}",
    });
    expect(page.status).toBe(403);
    expect((await page.json() as { error: string }).error).toContain("Origin");
    // Holding the token does not make a browser's request acceptable, nor a text/plain body.
    const withToken = { authorization: `Bearer ${token()}` };
    const fromPage = await fetch(url("/debug/ca/rotate"), {
      method: "POST",
      headers: { ...withToken, origin: "http://attacker.example" },
    });
    expect(fromPage.status).toBe(403);
    const plain = await fetch(url("/debug/ca/rotate"), {
      method: "POST",
      headers: { ...withToken, "content-type": "text/plain" },
      body: "{}",
    });
    expect(plain.status).toBe(415);
    expect(await rootCount()).toBe(1);
    expect(await refused("origin")).toBe(before.origin + 2);
    expect(await refused("content_type")).toBe(before.contentType + 1);
    expect(refusalLogs("origin")[0]).toMatchObject({ from: "127.0.0.1", origin: "http://attacker.example" });
  });

  test("a foreign Host (DNS rebinding) is refused on every route, readiness included; local names and IPs are served", async () => {
    const before = await refused("host");
    const foreign = `rebind.attacker.example:${port()}`;
    for (const path of ["/debug/ca", "/healthz/ready", "/metrics", "/debug/"]) {
      const res = await fetch(url(path), { headers: { host: foreign } });
      expect(res.status).toBe(403);
      expect((await res.json() as { error: string }).error).toContain("--admin-allowed-hosts");
    }
    const post = await fetch(url("/debug/ca/rotate"), {
      method: "POST",
      headers: { host: foreign, authorization: `Bearer ${token()}` },
    });
    expect(post.status).toBe(403);
    // A request without any Host (HTTP/1.0) is refused too.
    const raw = await rawRequest(meshd.adminAddr, "GET /healthz/ready HTTP/1.0\r\n\r\n");
    expect(raw).toStartWith("HTTP/1.1 403");
    expect(await refused("host")).toBe(before + 6);
    expect(await rootCount()).toBe(1);
    expect(refusalLogs("host")[0]).toMatchObject({ from: "127.0.0.1", host: foreign });
    for (const host of [`localhost:${port()}`, `127.0.0.1:${port()}`, `[::1]:${port()}`, "meshd.internal"]) {
      expect((await fetch(url("/healthz/ready"), { headers: { host } })).status).toBe(200);
    }
    expect((await fetch(url("/debug/ca"), { headers: { host: `MESHD.Internal.:${port()}` } })).status).toBe(
      200,
    );
  });

  test("a POST without the token, or with a wrong one, is refused with 401 and changes nothing", async () => {
    const before = await refused("token");
    const attempts: Array<Record<string, string>> = [
      {},
      { authorization: "Bearer wrong" },
      { authorization: `Bearer ${token()}x` },
      { authorization: `Basic ${btoa(`admin:${token()}`)}` },
      { authorization: token() },
    ];
    for (const headers of attempts) {
      const res = await fetch(url("/debug/ca/rotate"), { method: "POST", headers });
      expect(res.status).toBe(401);
      expect(res.headers.get("www-authenticate")).toStartWith("Bearer");
      expect((await res.json() as { error: string }).error).toContain("admin-token");
    }
    expect(await rootCount()).toBe(1);
    expect(await refused("token")).toBe(before + attempts.length);
    // Logged once for this source, not once per attempt.
    expect(refusalLogs("token")).toHaveLength(1);
    expect(refusalLogs("token")[0]).toMatchObject({
      from: "127.0.0.1",
      method: "POST",
      path: "/debug/ca/rotate",
    });
  });

  test("GET and HEAD on a route that changes state change nothing; no route that reads takes a POST", async () => {
    const before = await refused("method");
    for (const method of ["GET", "HEAD"]) {
      for (const path of ["/debug/ca/rotate", "/debug/ca/activate", "/debug/ca/retire"]) {
        const res = await fetch(url(path), { method });
        expect(res.status).toBe(405);
        expect(res.headers.get("allow")).toBe("POST");
      }
    }
    expect(await rootCount()).toBe(1);
    const list = await (await fetch(url("/debug/"))).json() as {
      handlers: Array<{ path: string; method: string }>;
    };
    expect(list.handlers.filter((h) => h.method === "POST").map((h) => h.path).sort()).toEqual([
      "/debug/ca/activate",
      "/debug/ca/retire",
      "/debug/ca/rotate",
    ]);
    const readers = list.handlers.filter((h) => h.method === "GET");
    for (const h of readers) expect((await adminPost(meshd, h.path)).status).toBe(405);
    expect(await refused("method")).toBe(before + 6 + readers.length);
  });

  test("with the token, POST /debug/ca/rotate changes the roots", async () => {
    const res = await fetch(url("/debug/ca/rotate"), {
      method: "POST",
      headers: { authorization: `Bearer ${token()}`, "content-type": "application/json" },
    });
    expect(res.status).toBe(200);
    expect(await rootCount()).toBe(2);
  });

  test("meshd ca status|activate|retire-root read the token from --data-dir and work end to end", async () => {
    const ca = (action: string, dataDir = data) =>
      runMeshdCommand(["ca", action, `--admin-addr=${meshd.adminAddr}`, `--data-dir=${dataDir}`]);
    const status = await ca("status");
    expect(status.code).toBe(0);
    expect(JSON.parse(status.stdout).roots).toHaveLength(2);
    expect((await ca("activate")).code).toBe(0);
    const retired = await ca("retire-root");
    expect(retired.code).toBe(0);
    expect(JSON.parse(retired.stdout).roots).toHaveLength(1);
    expect(await rootCount()).toBe(1);
    // Without a token file: one line naming the file and --data-dir, and nothing changes.
    const empty = mkdtempSync(join(tmpdir(), "meshd-no-token-"));
    try {
      const refusedCli = await ca("rotate", empty);
      expect(refusedCli.code).toBe(1);
      expect(refusedCli.stderr.trimEnd().split("\n")).toHaveLength(1);
      expect(refusedCli.stderr).toContain(join(empty, "admin-token"));
      expect(refusedCli.stderr).toContain("--data-dir");
    } finally {
      rmSync(empty, { recursive: true, force: true });
    }
    expect(await rootCount()).toBe(1);
  });
});

/** Sends `text` on a new TCP connection to `addr` and resolves with everything the server answers. */
function rawRequest(addr: string, text: string): Promise<string> {
  const i = addr.lastIndexOf(":");
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    const s = connect({ host: addr.slice(0, i), port: Number(addr.slice(i + 1)) }, () => s.write(text));
    s.setTimeout(10_000, () => s.destroy(new Error("no answer")));
    s.on("data", (c) => chunks.push(c));
    s.on("end", () => resolve(Buffer.concat(chunks).toString()));
    s.on("error", reject);
  });
}
