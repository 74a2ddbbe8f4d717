/**
 * State files: atomic writes leave no temporary file behind when they fail, and the temporary
 * files a crash leaves are recognised by their name and removed, unless their writer still runs.
 */
import { afterEach, describe, expect, test } from "bun:test";
import { spawn, spawnSync } from "bun";
import {
  existsSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  statSync,
  symlinkSync,
  writeFileSync,
} from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { createLogger } from "../../mod/shared/logger.ts";
import { removeLeftoverTempFiles, writeFilesAtomic } from "../../mod/shared/state_files.ts";

const STATE_FILES = resolve(import.meta.dir, "../../mod/shared/state_files.ts");
const dirs: string[] = [];
afterEach(() => {
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});
function tempDir(): string {
  const d = mkdtempSync(join(tmpdir(), "meshd-state-files-"));
  dirs.push(d);
  return d;
}
function recorder() {
  const lines: Array<Record<string, unknown>> = [];
  return { lines, logger: createLogger({ format: "json", write: (l) => lines.push(JSON.parse(l)) }) };
}
const temps = (dir: string) => readdirSync(dir).filter((n) => n.endsWith(".tmp"));

/** The id of a process that has exited. */
function deadPid(): number {
  const p = spawnSync(["true"]);
  return p.pid;
}

describe("removeLeftoverTempFiles()", () => {
  test("removes the temporary files of dead writers and of earlier meshd versions, logging each path once", () => {
    const dir = tempDir();
    const dead = deadPid();
    const live = spawn(["sleep", "60"]);
    try {
      const leftovers = [
        `.ca-key.pem.${dead}.0a1b2c3d4e5f.tmp`,
        `.state.json.${process.pid}.ff.tmp`, // an earlier process with this id: writes here are synchronous
        ".0123456789ab.tmp", // the name earlier versions gave
      ];
      const kept = [`.key.pem.${live.pid}.abcdef.tmp`, "key.pem", ".notes.tmp", `.x.${dead}.zz.tmp`];
      for (const n of [...leftovers, ...kept]) writeFileSync(join(dir, n), "secret");
      mkdirSync(join(dir, `.sub.${dead}.aa.tmp`)); // a directory is never removed
      const rec = recorder();
      const removed = removeLeftoverTempFiles(dir, { logger: rec.logger });
      expect([...removed].sort()).toEqual(leftovers.map((n) => join(dir, n)).sort());
      expect(readdirSync(dir).sort()).toEqual([...kept, `.sub.${dead}.aa.tmp`].sort());
      expect(rec.lines.map((l) => [l.level, l.msg, l.path])).toEqual(
        removed.map((p) => ["warn", "removed a temporary file left by an interrupted write", p]),
      );
      expect(removeLeftoverTempFiles(dir, { logger: rec.logger })).toEqual([]);
      expect(rec.lines).toHaveLength(leftovers.length);
    } finally {
      live.kill();
    }
  });

  test("looks `depth` levels of directories down, never through a symbolic link; a missing directory is no error", () => {
    const dir = tempDir();
    const outside = tempDir();
    const dead = deadPid();
    mkdirSync(join(dir, "roots", "r1"), { recursive: true });
    const deep = join(dir, "roots", "r1", `.ca-key.pem.${dead}.01.tmp`);
    writeFileSync(deep, "key");
    writeFileSync(join(outside, `.ca-key.pem.${dead}.02.tmp`), "key");
    symlinkSync(outside, join(dir, "roots", "linked"));
    const { logger } = recorder();
    expect(removeLeftoverTempFiles(dir, { logger, depth: 1 })).toEqual([]);
    expect(removeLeftoverTempFiles(dir, { logger, depth: 2 })).toEqual([deep]);
    expect(temps(outside)).toHaveLength(1);
    expect(removeLeftoverTempFiles(join(dir, "absent"), { logger })).toEqual([]);
  });

  test("a writer killed in the middle of a write: its file is kept while it runs, removed once it is gone", async () => {
    const dir = tempDir();
    const target = join(dir, "ca-key.pem");
    // A writer that replaces a 4 MiB file over and over (each write syncs, so a temporary file
    // exists most of the time); it is stopped, then killed, once one is seen.
    const writer = spawn([
      process.execPath,
      "-e",
      `const { writeFileAtomic } = await import(${JSON.stringify(STATE_FILES)});
       const data = Buffer.alloc(4 << 20, 7);
       for (;;) writeFileAtomic(${JSON.stringify(target)}, data, 0o600);`,
    ], { stdout: "ignore", stderr: "inherit" });
    try {
      let caught: string[] = [];
      for (let i = 0; i < 500 && caught.length === 0; i++) {
        await Bun.sleep(10);
        writer.kill("SIGSTOP");
        caught = temps(dir);
        if (caught.length === 0) writer.kill("SIGCONT");
      }
      expect(caught).toHaveLength(1);
      expect(caught[0]).toStartWith(`.ca-key.pem.${writer.pid}.`);
      const { logger } = recorder();
      expect(removeLeftoverTempFiles(dir, { logger })).toEqual([]);
      writer.kill("SIGKILL");
      await writer.exited;
      expect(removeLeftoverTempFiles(dir, { logger })).toEqual([join(dir, caught[0]!)]);
      expect(temps(dir)).toEqual([]);
    } finally {
      writer.kill("SIGKILL");
    }
  });
});

describe("writeFileAtomic()", () => {
  const canMount = process.getuid?.() === 0 && spawnSync(["unshare", "--version"]).exitCode === 0;

  test.skipIf(!canMount)(
    "on a full disk throws ENOSPC, keeps the old content and leaves no temporary file",
    () => {
      const dir = tempDir();
      // A 64 KiB tmpfs in a mount namespace of its own, so nothing outlives the child process.
      const script = `
        const { writeFileAtomic } = await import(${JSON.stringify(STATE_FILES)});
        const { readdirSync, readFileSync } = await import("node:fs");
        const dir = ${JSON.stringify(dir)};
        const f = dir + "/key.pem";
        writeFileAtomic(f, "old", 0o600);
        let code = "none";
        try { writeFileAtomic(f, Buffer.alloc(1 << 20, 1), 0o600); } catch (e) { code = e.code; }
        const content = readFileSync(f, "utf8");
        console.log(JSON.stringify({ code, files: readdirSync(dir), content }));`;
      const r = spawnSync([
        "unshare",
        "-m",
        "--propagation",
        "private",
        "sh",
        "-c",
        `mount -t tmpfs -o size=64k tmpfs "$1" && exec "$2" -e "$3"`,
        "sh",
        dir,
        process.execPath,
        script,
      ]);
      expect(r.stderr.toString()).toBe("");
      expect(JSON.parse(r.stdout.toString())).toEqual({ code: "ENOSPC", files: ["key.pem"], content: "old" });
      expect(existsSync(join(dir, "key.pem"))).toBe(false); // the tmpfs is gone with its namespace
    },
  );
});

describe("writeFilesAtomic()", () => {
  test("replaces every file with its mode and leaves no temporary file", () => {
    const dir = mkdtempSync(join(tmpdir(), "meshd-write-files-"));
    try {
      writeFileSync(join(dir, "key.pem"), "old key");
      writeFileSync(join(dir, "cert.pem"), "old cert");
      writeFilesAtomic([
        { path: join(dir, "key.pem"), data: "new key", mode: 0o600 },
        { path: join(dir, "cert.pem"), data: "new cert", mode: 0o644 },
      ]);
      expect(readFileSync(join(dir, "key.pem"), "utf8")).toBe("new key");
      expect(readFileSync(join(dir, "cert.pem"), "utf8")).toBe("new cert");
      expect(statSync(join(dir, "key.pem")).mode & 0o777).toBe(0o600);
      expect(readdirSync(dir).sort()).toEqual(["cert.pem", "key.pem"]);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
