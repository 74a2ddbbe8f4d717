/**
 * Config sources under hostile input: directory links that loop back to the root, a Kubernetes
 * ConfigMap swap, more config than the bounds allow, deep nesting, and an emptied directory.
 * Against a real `meshd serve` process for the loops, the swap and the emptied directory (where
 * readiness must keep answering 200), and in-process (store plus directory source) where memory
 * is measured with process.memoryUsage().
 */
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, test } from "bun:test";
import {
  mkdirSync,
  mkdtempSync,
  readFileSync,
  renameSync,
  rmSync,
  symlinkSync,
  truncateSync,
  writeFileSync,
} from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createDirSource } from "../../mod/galley/dir_source.ts";
import type { ConfigSource } from "../../mod/runtime/config_source.ts";
import { createConfigStore, type WritableConfigStore } from "../../mod/galley/store.ts";
import { eventually, type MeshdProcess, runMeshdCommand, startMeshd } from "../e2e/_meshd.ts";
import { finishSwap, linkVisible, projectConfigMap } from "../galley/_configmap.ts";
import { quiet } from "../galley/_harness.ts";

const we = (name: string, ip = "192.0.2.1") =>
  `apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata:
  name: ${name}
  namespace: bookinfo
spec:
  address: ${ip}
`;

interface Configz {
  version: number;
  resources: Array<{ key: string; state: string }>;
  origins: Array<{ origin: string; state: string; errors: string[] }>;
  sources: Array<{ name: string; state: string; errors: string[]; warnings: string[]; resources: number }>;
}

const configz = async (m: MeshdProcess) =>
  (await (await fetch(`http://${m.adminAddr}/debug/configz`)).json()) as Configz;
const ready = async (m: MeshdProcess) => (await fetch(`http://${m.adminAddr}/healthz/ready`)).status;
/** Resident set size of a process, from /proc, in bytes. */
const rssOf = (pid: number) =>
  Number(/VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, "utf8"))![1]) * 1024;
const MB = 1024 * 1024;

/** Polls readiness `rounds` times, `stepMs` apart; resolves with every status seen. */
async function readinessDuring(m: MeshdProcess, rounds: number, stepMs = 100): Promise<number[]> {
  const seen: number[] = [];
  for (let i = 0; i < rounds; i++) {
    seen.push(await ready(m));
    await Bun.sleep(stepMs);
  }
  return seen;
}

const serveArgs = (dir: string, extra: string[] = []) => [
  `--config-dir=${dir}`,
  "--config-debounce=20ms",
  "--config-rescan=200ms",
  ...extra,
];

describe("meshd serve: directory links back to the config root", () => {
  const dir = mkdtempSync(join(tmpdir(), "meshd-hostile-loop-"));
  let meshd: MeshdProcess;
  const REAL = 12;

  beforeAll(async () => {
    mkdirSync(join(dir, "sub"));
    for (let i = 0; i < REAL - 1; i++) writeFileSync(join(dir, `f${i}.yaml`), we(`f${i}`));
    writeFileSync(join(dir, "sub/s.yaml"), we("s"));
    // Two links back to the root: every level of the walk doubles without loop detection.
    symlinkSync("..", join(dir, "sub/up"));
    symlinkSync(".", join(dir, "self"));
    meshd = await startMeshd({ args: serveArgs(dir) });
  });
  afterAll(async () => {
    await meshd?.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  test(
    "scans end, each file is read once, the links are named in one warning, readiness stays 200",
    async () => {
      expect(await eventually(async () => (await ready(meshd)) === 200)).toBe(true);
      const rssBefore = rssOf(meshd.proc.pid);
      // Keep the directory changing while rescans run every 200 ms: about 15 scans.
      const statuses = await readinessDuring(meshd, 30);
      writeFileSync(join(dir, "late.yaml"), we("late"));
      statuses.push(...await readinessDuring(meshd, 10));
      expect(statuses.every((s) => s === 200)).toBe(true);
      expect(await eventually(async () => (await configz(meshd)).origins.length === REAL + 1)).toBe(true);
      const c = await configz(meshd);
      expect(c.resources).toHaveLength(REAL + 1);
      expect(c.resources.every((r) => r.state === "accepted")).toBe(true);
      expect(c.sources[0]!.warnings.sort()).toEqual([
        `skipped ${join(dir, "self")}: a directory link that loops or leads to a directory already read`,
        `skipped ${join(dir, "sub/up")}: a directory link that loops or leads to a directory already read`,
      ]);
      const warned = meshd.logs.filter((l) => l.level === "warn" && String(l.msg).includes("links skipped"));
      expect(warned).toHaveLength(1);
      expect((warned[0]!.links as string[]).sort()).toEqual([join(dir, "self"), join(dir, "sub/up")]);
      expect(rssOf(meshd.proc.pid) - rssBefore).toBeLessThan(64 * MB);
    },
    30_000,
  );
});

describe("meshd serve: a ConfigMap volume swapped, then emptied", () => {
  const dir = mkdtempSync(join(tmpdir(), "meshd-hostile-cm-"));
  let meshd: MeshdProcess;
  let old = "";

  beforeAll(async () => {
    old = projectConfigMap(dir, "100", {
      "a.yaml": we("alpha", "192.0.2.1"),
      "b.yaml": we("beta", "192.0.2.2"),
    });
    linkVisible(dir, "a.yaml");
    linkVisible(dir, "b.yaml");
    // One link back to the root inside the volume's directory: without loop detection, 40 copies.
    symlinkSync("..", join(dir, old, "loop"));
    meshd = await startMeshd({ args: serveArgs(dir) });
  });
  afterAll(async () => {
    await meshd?.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  test("each file is read once under its visible name, with no nested copies", async () => {
    expect(await eventually(async () => (await ready(meshd)) === 200)).toBe(true);
    const c = await configz(meshd);
    expect(c.origins.map((o) => o.origin)).toEqual([join(dir, "a.yaml"), join(dir, "b.yaml")]);
    expect(c.resources.every((r) => r.state === "accepted")).toBe(true);
    expect(c.sources[0]!.warnings).toEqual([
      `skipped ${join(dir, "loop")}: a directory link that loops or leads to a directory already read`,
    ]);
  });

  test("a swap is one new snapshot with the whole new version", async () => {
    const before = (await configz(meshd)).version;
    const next = projectConfigMap(dir, "200", { "a.yaml": we("alpha", "192.0.2.11"), "c.yaml": we("gamma") });
    await Bun.sleep(300); // rescans run while b.yaml's link dangles and c.yaml has none
    finishSwap(dir, { added: ["c.yaml"], removed: ["b.yaml"], old });
    old = next;
    expect(await eventually(async () => (await configz(meshd)).version > before)).toBe(true);
    await Bun.sleep(500);
    const c = await configz(meshd);
    expect(c.version).toBe(before + 1);
    expect(c.resources.map((r) => r.key.split("/").pop())).toEqual(["alpha", "gamma"]);
    const res = await fetch(
      `http://${meshd.adminAddr}/debug/configz?key=networking.istio.io/WorkloadEntry/bookinfo/alpha`,
    );
    expect(((await res.json()) as { spec: { address: string } }).spec.address).toBe("192.0.2.11");
  });

  test(
    "a swap to an empty version keeps the last good config, says so, and readiness stays 200",
    async () => {
      const before = await configz(meshd);
      const next = projectConfigMap(dir, "300", {});
      finishSwap(dir, { added: [], removed: ["a.yaml", "c.yaml"], old });
      expect(await eventually(async () => (await configz(meshd)).sources[0]!.state === "refused")).toBe(true);
      expect((await readinessDuring(meshd, 5)).every((s) => s === 200)).toBe(true);
      const c = await configz(meshd);
      expect(c.version).toBe(before.version);
      expect(c.resources).toHaveLength(2);
      expect(c.sources[0]!.errors).toEqual(["emptied: kept 2 resources; pass --allow-empty-config to allow"]);
      const status = await runMeshdCommand(["config-status", `--admin-addr=${meshd.adminAddr}`]);
      expect(status.code).toBe(1);
      expect(status.stdout).toContain("emptied: kept 2 resources; pass --allow-empty-config to allow");
      expect(
        meshd.logs.filter((l) => l.msg === "config change refused; keeping the last good config"),
      ).toHaveLength(1);
      // New content after the refusal is applied whole: what was kept goes, the new file stays.
      writeFileSync(join(dir, "new.yaml"), we("fresh"));
      expect(await eventually(async () => (await configz(meshd)).sources[0]!.state === "ok")).toBe(true);
      expect((await configz(meshd)).resources.map((r) => r.key.split("/").pop())).toEqual(["fresh"]);
      rmSync(join(dir, next), { recursive: true });
    },
    30_000,
  );
});

describe("meshd serve --allow-empty-config", () => {
  const dir = mkdtempSync(join(tmpdir(), "meshd-hostile-empty-"));
  let meshd: MeshdProcess;

  beforeAll(async () => {
    writeFileSync(join(dir, "a.yaml"), we("alpha"));
    writeFileSync(join(dir, "b.yaml"), we("beta"));
    meshd = await startMeshd({ args: serveArgs(dir, ["--allow-empty-config"]) });
  });
  afterAll(async () => {
    await meshd?.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  test("an emptied directory empties the config", async () => {
    expect(await eventually(async () => (await configz(meshd)).resources.length === 2)).toBe(true);
    rmSync(join(dir, "a.yaml"));
    rmSync(join(dir, "b.yaml"));
    expect(await eventually(async () => (await configz(meshd)).resources.length === 0)).toBe(true);
    expect((await configz(meshd)).sources[0]!.state).toBe("ok");
    expect(await ready(meshd)).toBe(200);
  });
});

describe("store and directory source in-process: bounds on total config", () => {
  let dir: string;
  let store: WritableConfigStore;
  let source: ConfigSource | undefined;
  const sourceStatus = () => store.status().sources[0]!;
  const many = (prefix: string, n: number) =>
    Array.from({ length: n }, (_, i) => we(`${prefix}-${i}`)).join("---\n");

  beforeEach(() => {
    dir = mkdtempSync(join(tmpdir(), "meshd-hostile-bounds-"));
  });
  afterEach(async () => {
    await source?.stop();
    source = undefined;
    rmSync(dir, { recursive: true, force: true });
  });

  /** Starts a store with the daemon's default bounds (smaller where a test says) over `dir`. */
  async function start(bounds: { maxResources?: number; maxTotalBytes?: number } = {}) {
    const maxTotalBytes = bounds.maxTotalBytes ?? 64 * MB;
    store = createConfigStore({
      logger: quiet,
      maxResources: bounds.maxResources ?? 20_000,
      maxTotalBytes,
      refuseEmpty: true,
    });
    source = createDirSource({ dir, logger: quiet, debounceMs: 20, rescanMs: 0, maxTotalBytes });
    await source.start(store.sink(source.name));
  }

  /** Moves files written elsewhere into `dir` at once, as one change. */
  function arrive(files: Record<string, string>) {
    const stage = mkdtempSync(join(tmpdir(), "meshd-hostile-stage-"));
    for (const [name, text] of Object.entries(files)) writeFileSync(join(stage, name), text);
    renameSync(stage, join(dir, "attack"));
  }

  test(
    "more resources than the bound: refused whole, last good kept, status says why, memory back after removal",
    async () => {
      writeFileSync(join(dir, "good.yaml"), we("good"));
      await start({ maxResources: 2_000 });
      const version = store.snapshot().version;
      Bun.gc(true);
      const rssBefore = process.memoryUsage().rss;
      arrive({ "a.yaml": many("a", 1_500), "b.yaml": many("b", 1_500), "c.yaml": many("c", 1_500) });
      expect(await eventually(() => sourceStatus().state === "refused", 60_000)).toBe(true);
      expect(sourceStatus().errors[0]).toMatch(
        /^this change would hold at least 2001 resources across all sources, 1 over the limit of 2000 \(--config-max-resources\); keeping the last good config$/,
      );
      expect(store.snapshot().version).toBe(version);
      expect([...store.snapshot().resources.keys()]).toEqual([
        "networking.istio.io/WorkloadEntry/bookinfo/good",
      ]);
      rmSync(join(dir, "attack"), { recursive: true });
      expect(await eventually(() => sourceStatus().state === "ok", 30_000)).toBe(true);
      expect(store.snapshot().resources.size).toBe(1);
      Bun.gc(true);
      expect(process.memoryUsage().rss - rssBefore).toBeLessThan(100 * MB);
    },
    60_000,
  );

  test("twenty files under the per-file limit but over the total: refused without being read", async () => {
    writeFileSync(join(dir, "good.yaml"), we("good"));
    await start();
    Bun.gc(true);
    const rssBefore = process.memoryUsage().rss;
    const stage = mkdtempSync(join(tmpdir(), "meshd-hostile-stage-"));
    for (let i = 0; i < 20; i++) {
      writeFileSync(join(stage, `big${i}.yaml`), "");
      truncateSync(join(stage, `big${i}.yaml`), 7 * MB); // sparse: no disk, no content worth parsing
    }
    renameSync(stage, join(dir, "attack"));
    expect(await eventually(() => sourceStatus().state === "refused")).toBe(true);
    const total = 20 * 7 * MB + Buffer.byteLength(we("good"));
    expect(sourceStatus().errors).toEqual([
      `the files under ${dir} add up to 140 MiB (${total} bytes), 76 MiB over the limit of 64 MiB ` +
      `(--config-max-total-size); keeping the last good config`,
    ]);
    expect(process.memoryUsage().rss - rssBefore).toBeLessThan(32 * MB);
    expect(store.snapshot().resources.size).toBe(1);
  });

  test("a 500 KB nested flow map is refused at the nesting limit, naming file and line, at little memory", async () => {
    writeFileSync(join(dir, "good.yaml"), we("good"));
    await start();
    const depth = 100_000;
    const text = `apiVersion: networking.istio.io/v1\nkind: WorkloadEntry\nmetadata: {name: deep}\nspec: ${
      "{a: ".repeat(depth)
    }1${"}".repeat(depth)}\n`;
    Bun.gc(true);
    const rssBefore = process.memoryUsage().rss;
    writeFileSync(join(dir, "deep.yaml"), text);
    const deep = join(dir, "deep.yaml");
    expect(await eventually(() => store.status().origins.some((o) => o.origin === deep))).toBe(true);
    const o = store.status().origins.find((x) => x.origin === deep)!;
    expect(o.state).toBe("rejected");
    expect(o.errors).toEqual([
      `${deep}:4:259: document is nested too deeply (more than 64 levels of mappings and sequences); refusing it`,
    ]);
    expect(process.memoryUsage().rss - rssBefore).toBeLessThan(32 * MB);
    expect(store.snapshot().resources.size).toBe(1);
  });
});
