/**
 * `meshd config apply|get|delete|import` in-process against a real one-member etcd.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { runCli } from "../../mod/cli/run.ts";
import { configCommand } from "../../mod/galley/config_command.ts";
import { freePort } from "../e2e/_grpc.ts";
import { type EtcdCluster, startEtcd } from "./_etcd.ts";

const vs = (name: string, timeout = "5s", extra = "") =>
  `apiVersion: networking.istio.io/v1
kind: VirtualService
metadata:
  name: ${name}
  namespace: bookinfo${extra}
spec:
  hosts: [${name}]
  http:
  - timeout: ${timeout}
    route:
    - destination: { host: ${name} }
`;

const KEY = (name: string) => `/t/config/networking.istio.io/VirtualService/bookinfo/${name}`;

describe("meshd config", () => {
  let etcd: EtcdCluster;
  let store: string;
  const dir = mkdtempSync(join(tmpdir(), "meshd-config-cmd-"));
  const file = (name: string, text: string) => {
    const p = join(dir, name);
    writeFileSync(p, text);
    return p;
  };
  async function run(...argv: string[]) {
    let out = "";
    let err = "";
    const code = await runCli([configCommand], ["config", ...argv], {
      env: { MESHD_STORE: store },
      out: (t) => (out += t),
      err: (t) => (err += t),
      signal: new AbortController().signal,
    });
    return { code, out, err };
  }
  const revisionOf = async (key: string) => {
    const out = await etcd.ctl(["get", key, "-w", "json"]);
    const kv = (JSON.parse(out) as { kvs?: Array<{ mod_revision: number }> }).kvs?.[0];
    return kv?.mod_revision;
  };
  const keys = async () =>
    (await etcd.ctl(["get", "/t/", "--prefix", "--keys-only"])).split("\n").filter(Boolean);

  beforeAll(async () => {
    etcd = await startEtcd(1);
    store = `etcd://${etcd.endpoints}/t`;
  });
  afterAll(async () => {
    await etcd?.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  test("apply writes each resource under its key, then reports it unchanged", async () => {
    const f = file("a.yaml", vs("a") + "---\n" + vs("b"));
    const r = await run("apply", "-f", f);
    expect(r.err).toBe("");
    expect(r.out).toMatch(
      /^VirtualService bookinfo\/a created \(revision (\d+)\)\nVirtualService bookinfo\/b created \(revision \1\)\n$/,
    );
    expect(r.code).toBe(0);
    expect(await keys()).toEqual([KEY("a"), KEY("b")]);
    const again = await run("apply", "-f", f);
    expect(again.out).toBe("VirtualService bookinfo/a unchanged\nVirtualService bookinfo/b unchanged\n");
  });

  test("an invalid apply writes nothing and names file and line", async () => {
    const before = await etcd.revision();
    const f = file("bad.yaml", vs("c") + "---\n" + vs("a", "soon"));
    const r = await run("apply", "-f", f);
    expect(r.code).toBe(1);
    expect(r.err).toContain(
      `${f}:21:5: VirtualService bookinfo/a: spec.http[0].timeout: invalid duration "soon"`,
    );
    expect(r.err).toContain("VirtualService bookinfo/a: spec.http[0].timeout:");
    expect(r.err).toContain("nothing was written");
    expect(await etcd.revision()).toBe(before);
  });

  test("get prints resourceVersion; applying a stale copy is a conflict that writes nothing of its file", async () => {
    const got = await run("get", "VirtualService", "bookinfo/a");
    expect(got.code).toBe(0);
    const rv = String(await revisionOf(KEY("a")));
    expect(got.out).toContain(`resourceVersion: "${rv}"`);
    // Someone else changes a after it was read.
    await etcd.ctl(
      ["put", KEY("a")],
      JSON.stringify({
        apiVersion: "networking.istio.io/v1",
        kind: "VirtualService",
        metadata: { name: "a", namespace: "bookinfo" },
        spec: { hosts: ["a"] },
      }),
    );
    const before = await etcd.revision();
    const stale = file("stale.yaml", vs("a", "9s", `\n  resourceVersion: "${rv}"`) + "---\n" + vs("d"));
    const r = await run("apply", "-f", stale);
    expect(r.code).toBe(1);
    expect(r.err).toContain(
      `conflict: ${stale}:1: VirtualService bookinfo/a was changed by someone else since it was read (resourceVersion ${rv}, now ${before})`,
    );
    expect(r.err).toContain(`nothing from ${stale} was written`);
    expect(await etcd.revision()).toBe(before);
    expect(await keys()).not.toContain(KEY("d"));
    const forced = await run("apply", "-f", stale, "--force");
    expect(forced.code).toBe(0);
    expect(forced.out).toContain("VirtualService bookinfo/a configured");
  });

  test("get lists by kind as YAML or a JSON List; delete removes one resource", async () => {
    const list = await run("get", "virtualservice", "-o", "json");
    const body = JSON.parse(list.out) as { kind: string; items: Array<{ metadata: { name: string } }> };
    expect(body.kind).toBe("List");
    expect(body.items.map((i) => i.metadata.name)).toEqual(["a", "b", "d"]);
    expect((await run("get")).out.split("---\n")).toHaveLength(3);
    const del = await run("delete", "VirtualService", "bookinfo/b");
    expect(del.out).toMatch(/^VirtualService bookinfo\/b deleted \(revision \d+\)\n$/);
    expect(await keys()).toEqual([KEY("a"), KEY("d")]);
    const missing = await run("delete", "VirtualService", "bookinfo/b");
    expect([missing.code, missing.err]).toEqual([
      1,
      `meshd config delete: VirtualService bookinfo/b not found (no key ${KEY("b")})\n`,
    ]);
    expect((await run("get", "Gadget")).err).toContain("unknown kind Gadget");
  });

  test("import writes what etcd lacks, leaves what is equal, and reports what differs without writing it", async () => {
    const cfg = join(dir, "cfg");
    mkdirSync(join(cfg, "sub"), { recursive: true });
    writeFileSync(join(cfg, "d.yaml"), vs("d")); // equal to what etcd holds
    writeFileSync(join(cfg, "sub", "e.yaml"), vs("e")); // new
    writeFileSync(join(cfg, "a.yaml"), vs("a", "1s")); // etcd holds another version
    const r = await run("import", cfg);
    expect(r.code).toBe(1);
    expect(r.out).toContain("VirtualService bookinfo/d unchanged");
    expect(r.out).toMatch(/VirtualService bookinfo\/e created/);
    expect(r.err).toContain("VirtualService bookinfo/a is already in etcd with other content");
    expect((await run("get", "VirtualService", "bookinfo/a", "-o", "json")).out).not.toContain('"1s"');
  });

  test("a file with more resources than etcd takes in one transaction is refused before anything is written", async () => {
    const many = (n: number, prefix: string) =>
      Array.from({ length: n }, (_, i) => vs(`${prefix}${i}`)).join("---\n");
    const small = file("txn-small.yaml", vs("txn-first"));
    const big = file("txn-big.yaml", many(129, "big"));
    const dirWithBoth = join(dir, "txn");
    mkdirSync(dirWithBoth);
    writeFileSync(join(dirWithBoth, "1.yaml"), readFileSync(small));
    writeFileSync(join(dirWithBoth, "2.yaml"), readFileSync(big));
    const before = await etcd.revision();
    const r = await run("apply", "-f", dirWithBoth);
    expect(r.code).toBe(1);
    expect(r.err).toContain(`${join(dirWithBoth, "2.yaml")}: 129 resources`);
    expect(r.err).toContain("--max-txn-ops");
    expect(r.err).toContain("nothing was written");
    expect(await etcd.revision()).toBe(before);
    // etcd's own default is what the check assumes: 128 in one file are written in one transaction.
    const fits = await run("apply", "-f", file("txn-fits.yaml", many(128, "fits")));
    expect(fits.err).toBe("");
    expect(fits.code).toBe(0);
  });

  test("without a reachable etcd every command fails with UNAVAILABLE and the reason", async () => {
    const port = await freePort();
    let err = "";
    const code = await runCli([configCommand], ["config", "apply", "-f", file("f.yaml", vs("f"))], {
      env: { MESHD_STORE: `etcd://127.0.0.1:${port}`, MESHD_ETCD_TIMEOUT: "1s" },
      out: () => {},
      err: (t) => (err += t),
      signal: new AbortController().signal,
    });
    expect(code).toBe(1);
    expect(err).toMatch(
      new RegExp(
        `^meshd config apply: UNAVAILABLE: etcd is unavailable \\(get\\): 127\\.0\\.0\\.1:${port}: cannot connect`,
      ),
    );
    expect(err).toContain("nothing more was written");
  });

  test("--store is required, and bad flags are usage errors naming the flag", async () => {
    const noStore = await runCli([configCommand], ["config", "get"], {
      env: {},
      out: () => {},
      err: () => {},
      signal: new AbortController().signal,
    });
    expect(noStore).toBe(2);
    expect((await run("get", "--store", "etcd://a")).code).toBe(2);
    expect((await run("apply")).code).toBe(2);
  });
});
