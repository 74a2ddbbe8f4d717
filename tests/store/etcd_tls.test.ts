/**
 * meshd's etcd client against a real etcd over mutual TLS (`--etcd-ca/--etcd-cert/--etcd-key`),
 * and with etcd's username/password authentication whose tokens expire or are invalidated.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { runCli } from "../../mod/cli/run.ts";
import { parseCommandLine } from "../../mod/cli/flags.ts";
import { configCommand } from "../../mod/galley/config_command.ts";
import { createLogger } from "../../mod/shared/logger.ts";
import { createEtcdClient } from "../../mod/store/etcd_client.ts";
import { openStore } from "../../mod/store/open_store.ts";
import { STORE_SETTINGS } from "../../mod/store/settings.ts";
import { quiet } from "../galley/_harness.ts";
import { type EtcdCluster, makeTestCa, startEtcd } from "./_etcd.ts";

const dir = mkdtempSync(join(tmpdir(), "meshd-etcd-tls-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const vs = (name: string, timeout = "5s") =>
  `apiVersion: networking.istio.io/v1
kind: VirtualService
metadata:
  name: ${name}
  namespace: bookinfo
spec:
  hosts: [${name}]
  http:
  - timeout: ${timeout}
    route:
    - destination: { host: ${name} }
`;

function file(name: string, text: string): string {
  const p = join(dir, name);
  writeFileSync(p, text);
  return p;
}

/** Runs `meshd config ...` in-process; its exit code and output. */
async function config(argv: readonly string[], env: Record<string, string> = {}) {
  let out = "";
  let err = "";
  const code = await runCli([configCommand], ["config", ...argv], {
    env: { MESHD_ETCD_TIMEOUT: "3s", ...env },
    out: (t) => (out += t),
    err: (t) => (err += t),
    signal: new AbortController().signal,
  });
  return { code, out, err };
}

describe("etcd over mutual TLS", () => {
  let etcd: EtcdCluster;
  let store: string;
  beforeAll(async () => {
    etcd = await startEtcd(1, { tls: true });
    store = `etcd://${etcd.endpoints}/tls`;
  }, 60_000);
  afterAll(async () => {
    await etcd?.stop();
  });

  test("config apply and get work with --etcd-ca, --etcd-cert and --etcd-key", async () => {
    const pki = etcd.tls!;
    const tls = ["--store", store, "--etcd-ca", pki.ca, "--etcd-cert", pki.cert, "--etcd-key", pki.key];
    const applied = await config(["apply", "-f", file("a.yaml", vs("a")), ...tls]);
    expect(applied.err).toBe("");
    expect(applied.out).toMatch(/^VirtualService bookinfo\/a created \(revision \d+\)\n$/);
    expect(applied.code).toBe(0);
    expect(await etcd.ctl(["get", "/tls/", "--prefix", "--keys-only"])).toContain(
      "/tls/config/networking.istio.io/VirtualService/bookinfo/a",
    );
    const got = await config(["get", "VirtualService", "bookinfo/a", ...tls]);
    expect(got.err).toBe("");
    expect(got.code).toBe(0);
    expect(got.out).toContain("name: a");
  }, 30_000);

  test("the client watches and keeps leases over mutual TLS", async () => {
    const pki = etcd.tls!;
    const tls = {
      ca: readFileSync(pki.ca, "utf8"),
      cert: readFileSync(pki.cert, "utf8"),
      key: readFileSync(pki.key, "utf8"),
    };
    const client = createEtcdClient({ endpoints: [etcd.members[0]!.addr], tls, logger: quiet });
    const stop = new AbortController();
    try {
      const from = (await client.list("/tls/watched/")).revision + 1;
      const batches = client.watch("/tls/watched/", from, stop.signal)[Symbol.asyncIterator]();
      await etcd.ctl(["put", "/tls/watched/k", "v"]);
      let seen: string[] = [];
      // Progress reports carry no events; the put comes in one of the first batches.
      for (let n = 0; n < 10 && seen.length === 0; n++) {
        const next = await batches.next();
        if (next.done) throw new Error("the watch ended");
        seen = next.value.events.map((e) => `${e.type} ${e.kv.key}`);
      }
      expect(seen).toEqual(["put /tls/watched/k"]);
      const lease = await client.grantLease(30);
      expect(await client.keepLeaseAlive(lease)).toBe(30);
      await client.revokeLease(lease);
      expect(await client.keepLeaseAlive(lease)).toBe(0);
    } finally {
      stop.abort();
      client.close();
    }
  }, 30_000);

  test("without a client certificate the command fails naming the member and the TLS refusal", async () => {
    const r = await config(["get", "VirtualService", "--store", store, "--etcd-ca", etcd.tls!.ca]);
    expect(r.code).toBe(1);
    expect(r.out).toBe("");
    expect(r.err).toStartWith(`meshd config: etcd list at ${etcd.members[0]!.addr}: TLS: the member refused`);
    expect(r.err).toContain("no client certificate was given and the member requires one");
    expect(r.err).not.toContain("    at ");
  }, 30_000);

  test(
    "with a CA that did not sign the member's certificate the command fails naming the member and why",
    async () => {
      const stranger = await makeTestCa(dir, "stranger-ca");
      const pki = etcd.tls!;
      const r = await config(
        ["get", "VirtualService", "--store", store, "--etcd-ca", stranger.cert, "--etcd-cert", pki.cert],
        { MESHD_ETCD_KEY: pki.key },
      );
      expect(r.code).toBe(1);
      expect(r.out).toBe("");
      expect(r.err).toStartWith(
        `meshd config: etcd list at ${
          etcd.members[0]!.addr
        }: TLS: the member's serving certificate is not trusted`,
      );
      expect(r.err).toContain("it is not signed by the CA given");
      expect(r.err).not.toContain("    at ");
    },
    30_000,
  );
});

describe("a three-member etcd over mutual TLS", () => {
  let etcd: EtcdCluster;
  beforeAll(async () => {
    etcd = await startEtcd(3, { tls: true });
  }, 60_000);
  afterAll(async () => {
    await etcd?.stop();
  });

  test("the client fails over to another member when the one it uses dies", async () => {
    const pki = etcd.tls!;
    const pem = (path: string) => readFileSync(path, "utf8");
    const client = createEtcdClient({
      endpoints: etcd.members.map((m) => m.addr),
      tls: { ca: pem(pki.ca), cert: pem(pki.cert), key: pem(pki.key) },
      timeoutMs: 3_000,
      logger: quiet,
    });
    try {
      const enc = new TextEncoder();
      expect((await client.txn([], [{ put: "/tls3/a", value: enc.encode("1") }])).succeeded).toBe(true);
      const used = client.status().endpoints.findIndex((e) => e.current);
      await etcd.kill(used);
      await etcd.healthy(30_000);
      expect((await client.get("/tls3/a"))?.value).toEqual(enc.encode("1"));
      expect((await client.txn([], [{ put: "/tls3/b", value: enc.encode("2") }])).succeeded).toBe(true);
      const status = client.status();
      expect(status.available).toBe(true);
      expect(status.endpoints.findIndex((e) => e.current)).not.toBe(used);
      expect(await etcd.ctl(["get", "/tls3/b", "--print-value-only"])).toBe("2\n");
    } finally {
      client.close();
    }
  }, 60_000);
});

describe("etcd authentication tokens", () => {
  let etcd: EtcdCluster;
  let store: string;
  const password = file("password", "s3cret\n");
  const auth = () => ["--store", store, "--etcd-user", "root", "--etcd-password-file", password];
  beforeAll(async () => {
    // etcd 3.4 takes --auth-token-ttl for its "simple" tokens: an idle token is dropped after it.
    etcd = await startEtcd(1, { args: ["--auth-token-ttl=2"] });
    store = `etcd://${etcd.endpoints}/auth`;
    await etcd.ctl(["user", "add", "root:s3cret"]);
    await etcd.ctl(["auth", "enable"]);
  }, 60_000);
  afterAll(async () => {
    await etcd?.stop();
  });
  const rootCtl = (args: readonly string[]) => etcd.ctl(["--user=root:s3cret", ...args]);
  /** openStore() with `argv`, logging into `lines`; `renewals()` counts re-authentications logged. */
  function open(argv: readonly string[]) {
    const lines: string[] = [];
    const logger = createLogger({ format: "json", write: (l) => lines.push(l) });
    const settings = parseCommandLine(STORE_SETTINGS, [...argv], { command: "test", env: {} }).settings;
    const store = openStore(settings, { logger })!;
    const renewals = () => lines.filter((l) => l.includes("authenticating again")).length;
    return { store, lines, renewals };
  }

  test("openStore()'s client keeps reading and writing after its token expired", async () => {
    const s = open(auth());
    try {
      const enc = new TextEncoder();
      expect((await s.store.client.txn([], [{ put: "/auth/one", value: enc.encode("1") }])).succeeded).toBe(
        true,
      );
      // Idle past the 2 s TTL (etcd sweeps idle tokens once a second), longer each round on a slow
      // machine, until a read finds the token gone; the read must still succeed.
      for (const idleMs of [4_000, 8_000, 16_000]) {
        await Bun.sleep(idleMs);
        expect((await s.store.client.get("/auth/one"))?.value).toEqual(enc.encode("1"));
        if (s.renewals() > 0) break;
      }
      expect(s.renewals()).toBe(1);
      expect(s.lines.join("")).toContain("invalid auth token");
      expect((await s.store.client.txn([], [{ put: "/auth/two", value: enc.encode("2") }])).succeeded).toBe(
        true,
      );
      expect(await rootCtl(["get", "/auth/two", "--print-value-only"])).toBe("2\n");
    } finally {
      s.store.close();
    }
  }, 60_000);

  test(
    "openStore()'s client renews a token that etcd invalidated (auth disabled and enabled again)",
    async () => {
      const s = open(auth());
      try {
        const enc = new TextEncoder();
        expect((await s.store.client.txn([], [{ put: "/auth/three", value: enc.encode("3") }])).succeeded)
          .toBe(true);
        // Disabling auth drops every token etcd handed out.
        await rootCtl(["auth", "disable"]);
        await etcd.ctl(["auth", "enable"]);
        expect((await s.store.client.get("/auth/three"))?.value).toEqual(enc.encode("3"));
        expect(s.renewals()).toBe(1);
        await rootCtl(["auth", "disable"]);
        await etcd.ctl(["auth", "enable"]);
        expect((await s.store.client.txn([], [{ put: "/auth/four", value: enc.encode("4") }])).succeeded)
          .toBe(true);
        expect(s.renewals()).toBe(2);
        expect(await rootCtl(["get", "/auth/four", "--print-value-only"])).toBe("4\n");
      } finally {
        s.store.close();
      }
    },
    60_000,
  );

  test("config apply and get authenticate; a wrong password is refused with etcd's reason", async () => {
    const applied = await config(["apply", "-f", file("b.yaml", vs("b")), ...auth()]);
    expect(applied.err).toBe("");
    expect(applied.code).toBe(0);
    const got = await config(["get", "VirtualService", "bookinfo/b", ...auth()]);
    expect(got.code).toBe(0);
    expect(got.out).toContain("name: b");
    const wrong = file("wrong", "guess\n");
    const r = await config([
      "get",
      "VirtualService",
      "--store",
      store,
      "--etcd-user",
      "root",
      "--etcd-password-file",
      wrong,
    ]);
    expect(r.code).toBe(1);
    expect(r.err).toStartWith(`meshd config: etcd list at ${etcd.members[0]!.addr}: `);
    expect(r.err).toContain("authentication failed, invalid user ID or password");
    expect(r.err).not.toContain("    at ");
  }, 30_000);
});
