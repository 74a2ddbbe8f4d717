import { afterEach, beforeEach, describe, expect, test } from "bun:test";
import { appendFileSync, mkdirSync, mkdtempSync, rmSync, truncateSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createDirSource } from "../../mod/galley/dir_source.ts";
import type { ConfigSource } from "../../mod/galley/source.ts";
import { createConfigStore, type WritableConfigStore } from "../../mod/galley/store.ts";
import { eventually } from "../e2e/_meshd.ts";
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

async function start(debounceMs = 30) {
  source = createDirSource({ dir, logger: quiet, debounceMs, rescanMs: 0, maxBytes: 1024 * 1024 });
  await source.start(store.sink(source.name));
}

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

  test("a refused oversized file is reported without being read, and keeps nothing half-applied", async () => {
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
