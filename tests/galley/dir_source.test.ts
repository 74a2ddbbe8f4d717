import { afterEach, beforeEach, describe, expect, test } from "bun:test";
import {
  appendFileSync,
  mkdirSync,
  mkdtempSync,
  rmSync,
  symlinkSync,
  truncateSync,
  writeFileSync,
} from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createDirSource, walkConfigDir } from "../../mod/galley/dir_source.ts";
import { createLogger } from "../../mod/shared/logger.ts";
import type { ConfigSource } from "../../mod/runtime/config_source.ts";
import { createConfigStore, type WritableConfigStore } from "../../mod/galley/store.ts";
import { eventually } from "../e2e/_meshd.ts";
import { finishSwap, linkVisible as linkVisibleIn, projectConfigMap } from "./_configmap.ts";
import { quiet } from "./_harness.ts";

const we = (name: string, ip: string) =>
  `apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata:
  name: ${name}
  namespace: bookinfo
spec:
  address: ${ip}
  labels:
    app: ${name}
`;

let dir: string;
let source: ConfigSource | undefined;
let store: WritableConfigStore;

beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), "meshd-dirsrc-"));
  store = createConfigStore({ logger: quiet, maxBytes: 1024 * 1024 });
});
afterEach(async () => {
  await source?.stop();
  source = undefined;
  rmSync(dir, { recursive: true, force: true });
});

async function start(
  debounceMs = 30,
  extra: { maxFiles?: number; logger?: ReturnType<typeof createLogger> } = {},
) {
  source = createDirSource({
    dir,
    logger: extra.logger ?? quiet,
    debounceMs,
    rescanMs: 0,
    maxBytes: 1024 * 1024,
    maxTotalBytes: 4 * 1024 * 1024,
    maxFiles: extra.maxFiles,
  });
  await source.start(store.sink(source.name));
}

/** A logger that keeps the JSON records it writes. */
function recording() {
  const records: Array<Record<string, unknown>> = [];
  const logger = createLogger({ format: "json", write: (line) => records.push(JSON.parse(line)) });
  return {
    logger,
    records,
    warnings: (msg: RegExp) => records.filter((r) => r.level === "warn" && msg.test(String(r.msg))),
  };
}

const sourceStatus = () => store.status().sources[0]!;

const names = () => [...store.snapshot().resources.values()].map((r) => r.metadata.name).sort();

describe("createDirSource()", () => {
  test("reads *.yaml, *.yml and *.json recursively and skips hidden files, backups and other extensions", async () => {
    mkdirSync(join(dir, "a/b"), { recursive: true });
    mkdirSync(join(dir, ".git"));
    writeFileSync(join(dir, "one.yaml"), we("one", "192.0.2.1"));
    writeFileSync(join(dir, "a/b/two.yml"), we("two", "192.0.2.2"));
    writeFileSync(
      join(dir, "a/three.json"),
      JSON.stringify({
        apiVersion: "networking.istio.io/v1",
        kind: "WorkloadEntry",
        metadata: { name: "three", namespace: "bookinfo" },
        spec: { address: "192.0.2.3" },
      }),
    );
    writeFileSync(join(dir, ".hidden.yaml"), we("hidden", "192.0.2.4"));
    writeFileSync(join(dir, ".git/x.yaml"), we("git", "192.0.2.5"));
    writeFileSync(join(dir, "backup.yaml~"), we("backup", "192.0.2.6"));
    writeFileSync(join(dir, "notes.txt"), "not config");
    await start();
    expect(names()).toEqual(["one", "three", "two"]);
    expect(store.status().origins.map((o) => o.origin)).toContain(join(dir, "a/b/two.yml"));
  });

  test("a refused oversized file is reported without being read, does not count toward the total, and keeps nothing half-applied", async () => {
    writeFileSync(join(dir, "ok.yaml"), we("ok", "192.0.2.1"));
    const big = join(dir, "big.yaml");
    writeFileSync(big, "");
    truncateSync(big, 100 * 1024 * 1024); // sparse: 100 MB that takes no disk
    const rssBefore = process.memoryUsage().rss;
    await start();
    expect(process.memoryUsage().rss - rssBefore).toBeLessThan(50 * 1024 * 1024);
    expect(names()).toEqual(["ok"]);
    const o = store.status().origins.find((x) => x.origin === big)!;
    expect(o.state).toBe("rejected");
    expect(o.errors[0]).toContain("file is 104857600 bytes; the limit is 1048576 bytes");
  });

  test("a file written in pieces is only taken whole", async () => {
    await start(150);
    const seen: string[][] = [];
    store.subscribe(() => seen.push(names()));
    const p = join(dir, "pieces.yaml");
    const whole = we("alpha", "192.0.2.1") + "---\n" + we("beta", "192.0.2.2");
    const cut = whole.indexOf("---") + 4;
    writeFileSync(p, whole.slice(0, cut));
    await Bun.sleep(40);
    appendFileSync(p, whole.slice(cut));
    expect(await eventually(() => names().length === 2, 5000)).toBe(true);
    expect(seen).toEqual([["alpha", "beta"]]);
  });

  test("an editor's atomic save (write temp, rename over) is one change", async () => {
    writeFileSync(join(dir, "vs.yaml"), we("alpha", "192.0.2.1"));
    await start();
    let changes = 0;
    store.subscribe(() => changes++);
    writeFileSync(join(dir, ".vs.yaml.swp"), we("alpha", "192.0.2.9"));
    writeFileSync(join(dir, "vs.yaml.tmp~"), we("alpha", "192.0.2.9"));
    const { renameSync } = await import("node:fs");
    renameSync(join(dir, "vs.yaml.tmp~"), join(dir, "vs.yaml"));
    rmSync(join(dir, ".vs.yaml.swp"));
    const addr = () =>
      store.snapshot().get<{ address: string }>("networking.istio.io", "WorkloadEntry", "bookinfo", "alpha")
        ?.spec.address;
    expect(await eventually(() => addr() === "192.0.2.9")).toBe(true);
    await Bun.sleep(200);
    expect(changes).toBe(1);
  });

  test("a file renamed keeps its resources without a gap, and a deleted file removes them", async () => {
    writeFileSync(join(dir, "a.yaml"), we("alpha", "192.0.2.1"));
    await start();
    const { renameSync } = await import("node:fs");
    renameSync(join(dir, "a.yaml"), join(dir, "b.yaml"));
    expect(await eventually(() => store.status().origins.some((o) => o.origin === join(dir, "b.yaml")))).toBe(
      true,
    );
    expect(names()).toEqual(["alpha"]);
    rmSync(join(dir, "b.yaml"));
    expect(await eventually(() => names().length === 0)).toBe(true);
  });

  test("a missing directory is a clear error at start", async () => {
    source = createDirSource({ dir: join(dir, "nope"), logger: quiet });
    await expect(source.start(store.sink("x"))).rejects.toThrow(/config directory .*nope: /);
    source = undefined;
  });
});

describe("createDirSource() with links", () => {
  test("walkConfigDir() reads each directory once when two links lead back to the root", async () => {
    mkdirSync(join(dir, "sub"));
    writeFileSync(join(dir, "one.yaml"), we("one", "192.0.2.1"));
    writeFileSync(join(dir, "sub/two.yaml"), we("two", "192.0.2.2"));
    symlinkSync("..", join(dir, "sub/up"));
    symlinkSync(".", join(dir, "self"));
    const listing = await walkConfigDir(dir);
    expect(listing.files.map((f) => f.origin)).toEqual([join(dir, "one.yaml"), join(dir, "sub/two.yaml")]);
    expect([...listing.skipped].sort()).toEqual([join(dir, "self"), join(dir, "sub/up")]);
    expect(listing.incomplete).toBeUndefined();
  });

  test("walkConfigDir() calls a tree deeper than 32 directories incomplete, naming the directory", async () => {
    const deep = join(dir, ...Array.from({ length: 33 }, (_, i) => `d${i}`));
    mkdirSync(deep, { recursive: true });
    writeFileSync(join(deep, "x.yaml"), we("x", "192.0.2.1"));
    expect((await walkConfigDir(dir)).incomplete).toBe(`${deep} is more than 32 directories below ${dir}`);
    rmSync(join(deep, "x.yaml"));
    rmSync(deep, { recursive: true });
    expect((await walkConfigDir(dir)).incomplete).toBeUndefined();
  });

  test("a link back to the root is skipped with one warning naming it, not read 40 times", async () => {
    mkdirSync(join(dir, "sub"));
    writeFileSync(join(dir, "one.yaml"), we("one", "192.0.2.1"));
    symlinkSync("..", join(dir, "sub/up"));
    const rec = recording();
    await start(30, { logger: rec.logger });
    expect(names()).toEqual(["one"]);
    expect(store.status().origins.map((o) => o.origin)).toEqual([join(dir, "one.yaml")]);
    expect(sourceStatus().warnings).toEqual([
      `skipped ${join(dir, "sub/up")}: a directory link that loops or leads to a directory already read`,
    ]);
    // Later scans that find the same loop do not warn again.
    writeFileSync(join(dir, "two.yaml"), we("two", "192.0.2.2"));
    expect(await eventually(() => names().length === 2)).toBe(true);
    const warned = rec.warnings(/links skipped/);
    expect(warned).toHaveLength(1);
    expect(warned[0]!.links).toEqual([join(dir, "sub/up")]);
    expect(rec.warnings(/config rejected|duplicate/)).toEqual([]);
  });

  test("a directory reached through two links is read once; a linked file is read", async () => {
    const shared = mkdtempSync(join(tmpdir(), "meshd-shared-"));
    try {
      writeFileSync(join(shared, "s.yaml"), we("shared", "192.0.2.9"));
      symlinkSync(shared, join(dir, "a"));
      symlinkSync(shared, join(dir, "b"));
      writeFileSync(join(shared, "f.yaml.src"), we("linked", "192.0.2.8"));
      symlinkSync(join(shared, "f.yaml.src"), join(dir, "f.yaml"));
      await start();
      expect(names()).toEqual(["linked", "shared"]);
      expect(store.status().resources.every((r) => r.state === "accepted")).toBe(true);
      expect(sourceStatus().warnings).toHaveLength(1);
      expect(sourceStatus().warnings[0]).toStartWith(`skipped ${join(dir, "b")}: `);
    } finally {
      rmSync(shared, { recursive: true, force: true });
    }
  });
});

describe("createDirSource() with a Kubernetes ConfigMap volume", () => {
  const project = (version: string, files: Record<string, string>) => projectConfigMap(dir, version, files);
  const linkVisible = (name: string) => linkVisibleIn(dir, name);
  const address = (name: string) =>
    store.snapshot().get<{ address: string }>("networking.istio.io", "WorkloadEntry", "bookinfo", name)?.spec
      .address;

  test("each file is read once, under its visible name", async () => {
    project("100", { "a.yaml": we("alpha", "192.0.2.1"), "b.yaml": we("beta", "192.0.2.2") });
    linkVisible("a.yaml");
    linkVisible("b.yaml");
    await start();
    expect(names()).toEqual(["alpha", "beta"]);
    expect(store.status().origins.map((o) => [o.origin, o.state])).toEqual([
      [join(dir, "a.yaml"), "accepted"],
      [join(dir, "b.yaml"), "accepted"],
    ]);
    expect(sourceStatus().warnings).toEqual([]);
  });

  test("a swap is one change with all of the new version, even when a scan runs before kubelet fixes the links", async () => {
    const old = project("100", { "a.yaml": we("alpha", "192.0.2.1"), "b.yaml": we("beta", "192.0.2.2") });
    linkVisible("a.yaml");
    linkVisible("b.yaml");
    await start(30);
    const seen: Array<Array<[string, string | undefined]>> = [];
    store.subscribe(() => seen.push(names().map((n) => [n, address(n)])));
    // The new version changes alpha, drops b.yaml and adds c.yaml.
    project("200", { "a.yaml": we("alpha", "192.0.2.11"), "c.yaml": we("gamma", "192.0.2.3") });
    // Give the debounced scan time to run while b.yaml's link dangles and c.yaml has none yet.
    expect(await eventually(() => seen.length > 0, 5000)).toBe(true);
    await Bun.sleep(150);
    finishSwap(dir, { added: ["c.yaml"], removed: ["b.yaml"], old });
    await Bun.sleep(300);
    expect(seen).toEqual([[["alpha", "192.0.2.11"], ["gamma", "192.0.2.3"]]]);
    expect(store.status().origins.map((o) => o.origin)).toEqual([join(dir, "a.yaml"), join(dir, "c.yaml")]);
  });
});

describe("createDirSource() limits and emptied directories", () => {
  test("a tree over maxFiles keeps the last good config, says so, and recovers when it shrinks", async () => {
    for (const n of ["a", "b", "c"]) writeFileSync(join(dir, `${n}.yaml`), we(n, "192.0.2.1"));
    await start(30, { maxFiles: 5 });
    const version = store.snapshot().version;
    mkdirSync(join(dir, "more"));
    for (let i = 0; i < 10; i++) writeFileSync(join(dir, "more", `m${i}.yaml`), we(`m${i}`, "192.0.2.2"));
    expect(await eventually(() => sourceStatus().state === "refused")).toBe(true);
    expect(sourceStatus().errors).toEqual([
      `more than 5 files and directories under ${dir} (--config-max-files); keeping the last good config`,
    ]);
    expect(store.snapshot().version).toBe(version);
    expect(names()).toEqual(["a", "b", "c"]);
    rmSync(join(dir, "more"), { recursive: true });
    expect(await eventually(() => sourceStatus().state === "ok")).toBe(true);
    expect(names()).toEqual(["a", "b", "c"]);
  });

  test("a tree over maxFiles at start is a clear error", async () => {
    for (const n of ["a", "b", "c"]) writeFileSync(join(dir, `${n}.yaml`), we(n, "192.0.2.1"));
    await expect(start(30, { maxFiles: 2 })).rejects.toThrow(
      `config directory ${dir}: more than 2 files and directories under ${dir} (--config-max-files)`,
    );
    source = undefined;
  });

  test("an emptied directory keeps the last good config; the next change is applied as a full listing", async () => {
    store = createConfigStore({ logger: quiet, maxBytes: 1024 * 1024, refuseEmpty: true });
    writeFileSync(join(dir, "a.yaml"), we("alpha", "192.0.2.1"));
    writeFileSync(join(dir, "b.yaml"), we("beta", "192.0.2.2"));
    await start();
    rmSync(join(dir, "a.yaml"));
    rmSync(join(dir, "b.yaml"));
    expect(await eventually(() => sourceStatus().state === "refused")).toBe(true);
    expect(sourceStatus().errors).toEqual(["emptied: kept 2 resources; pass --allow-empty-config to allow"]);
    expect(names()).toEqual(["alpha", "beta"]);
    // New content after the refusal replaces what was kept: alpha and beta are gone from the directory.
    writeFileSync(join(dir, "c.yaml"), we("gamma", "192.0.2.3"));
    expect(await eventually(() => names().join() === "gamma")).toBe(true);
    expect(sourceStatus().state).toBe("ok");
  });

  test("a directory removed while running keeps the last good config and says why", async () => {
    writeFileSync(join(dir, "a.yaml"), we("alpha", "192.0.2.1"));
    await start();
    const version = store.snapshot().version;
    rmSync(dir, { recursive: true });
    expect(await eventually(() => sourceStatus().state === "refused")).toBe(true);
    expect(sourceStatus().errors[0]).toStartWith(`cannot read ${dir}: `);
    expect(store.snapshot().version).toBe(version);
    expect(names()).toEqual(["alpha"]);
  });
});
