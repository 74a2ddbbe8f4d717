/**
 * openStore(): the --store and --etcd-* settings, checked before anything connects, and etcd's
 * user/password authentication against a real etcd with auth enabled.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { parseCommandLine } from "../../mod/cli/flags.ts";
import { openStore } from "../../mod/store/open_store.ts";
import { STORE_SETTINGS } from "../../mod/store/settings.ts";
import { storeDebugHandler } from "../../mod/store/storez.ts";
import { quiet } from "../galley/_harness.ts";
import { type EtcdCluster, startEtcd } from "./_etcd.ts";

const dir = mkdtempSync(join(tmpdir(), "meshd-open-store-"));
const settings = (...argv: string[]) =>
  parseCommandLine(STORE_SETTINGS, argv, { command: "test", env: {} }).settings;
const open = (...argv: string[]) => openStore(settings(...argv), { logger: quiet });

afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe("openStore()", () => {
  test("returns nothing without --store, and /debug/storez says so", async () => {
    expect(open()).toBeUndefined();
    expect(await (await storeDebugHandler(undefined).handle(new Request("http://x/debug/storez"))).json())
      .toEqual({
        store: "none",
        message: "--store is not set",
      });
  });

  test("refuses flags that need others, naming them", () => {
    expect(() => open("--etcd-ca", "/x")).toThrow("--etcd-ca needs --store etcd://HOST:PORT");
    expect(() => open("--store", "etcd://a:1", "--etcd-user", "root")).toThrow(
      "--etcd-user and --etcd-password-file go together",
    );
    const cert = join(dir, "cert.pem");
    writeFileSync(cert, "x");
    expect(() => open("--store", "etcd://a:1", "--etcd-cert", cert)).toThrow(
      "--etcd-cert and --etcd-key go together",
    );
  });

  test("names the flag of a malformed address or an unreadable file", () => {
    expect(() => open("--store", "etcd://a")).toThrow(/^--store: endpoint "a"/);
    expect(() => open("--store", "etcd://a:1", "--etcd-ca", join(dir, "missing.pem"))).toThrow(
      `--etcd-ca: cannot read ${join(dir, "missing.pem")}`,
    );
  });
});

describe("etcd authentication", () => {
  let etcd: EtcdCluster;
  beforeAll(async () => {
    etcd = await startEtcd(1);
    await etcd.ctl(["user", "add", "root:s3cret"]);
    await etcd.ctl(["auth", "enable"]);
  });
  afterAll(async () => {
    await etcd?.stop();
  });

  test("--etcd-user and --etcd-password-file authenticate; a wrong password is refused with etcd's reason", async () => {
    const good = join(dir, "good");
    writeFileSync(good, "s3cret\n");
    const store = open(
      "--store",
      `etcd://${etcd.endpoints}/auth`,
      "--etcd-user",
      "root",
      "--etcd-password-file",
      good,
    )!;
    try {
      const enc = new TextEncoder();
      const res = await store.client.txn([{ key: "/auth/k", modRevision: 0 }], [{
        put: "/auth/k",
        value: enc.encode("v"),
      }]);
      expect(res.succeeded).toBe(true);
      expect((await store.client.list("/auth/")).kvs.map((kv) => kv.key)).toEqual(["/auth/k"]);
      expect(store.status()).toMatchObject({ auth: true, tls: false, available: true });
    } finally {
      store.close();
    }
    const bad = join(dir, "bad");
    writeFileSync(bad, "guess");
    const refused = open(
      "--store",
      `etcd://${etcd.endpoints}/auth`,
      "--etcd-user",
      "root",
      "--etcd-password-file",
      bad,
    )!;
    try {
      await expect(refused.client.list("/auth/")).rejects.toThrow(/authentication failed/);
    } finally {
      refused.close();
    }
  });
});
