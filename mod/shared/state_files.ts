/**
 * Files meshd keeps its state in: private directories, atomic replacement, exclusive creation,
 * and the removal of the temporary files an interrupted write leaves behind.
 *
 * Every write goes through a temporary file next to its target, named
 * `.<target>.<pid>.<random>.tmp`, which is synced and then renamed (or linked) into place, so a
 * reader sees the old content or the new, never a torn file. A crash or a full disk can leave
 * such a temporary file behind (one may hold a copy of a private key); {@link
 * removeLeftoverTempFiles} recognises them by that name, and by the writer's process id knows
 * whether a live process may still be writing one.
 *
 * @module
 */
import { randomBytes } from "node:crypto";
import {
  chmodSync,
  closeSync,
  fsyncSync,
  linkSync,
  mkdirSync,
  openSync,
  readdirSync,
  renameSync,
  rmSync,
  statSync,
  writeSync,
} from "node:fs";
import { basename, dirname, join } from "node:path";
import { errorMessage } from "./errors.ts";
import type { Logger } from "./logger.ts";

/**
 * Temporary files of the writers below (`.<target>.<pid>.<hex>.tmp`), and of earlier versions
 * of meshd (`.<12 hex digits>.tmp`, without a process id).
 */
const TEMP_NAME = /^\.(?:.+\.(\d+)\.[0-9a-f]+|[0-9a-f]{12})\.tmp$/;

/** Creates `dir` (and parents) if missing; a directory meshd creates is private (0700). */
export function ensurePrivateDir(dir: string): void {
  mkdirSync(dir, { recursive: true, mode: 0o700 });
}

/** True when the file at `path` can be read by its group or others (a private key should not be). */
export function isGroupOrWorldReadable(path: string): boolean {
  return (statSync(path).mode & 0o077) !== 0;
}

/**
 * Writes `data` to a new temporary file beside `path` with `mode` (set before any byte is
 * written, so a key is never readable by others, even for a moment) and syncs it, creating the
 * directory (0700) when missing. Returns its path; on failure (a full disk) removes it and throws.
 */
function writeTemp(path: string, data: string | Uint8Array, mode: number): string {
  ensurePrivateDir(dirname(path));
  const tmp = join(dirname(path), `.${basename(path)}.${process.pid}.${randomBytes(6).toString("hex")}.tmp`);
  const fd = openSync(tmp, "wx", mode);
  try {
    chmodSync(tmp, mode);
    const bytes = typeof data === "string" ? Buffer.from(data) : data;
    let off = 0;
    while (off < bytes.length) off += writeSync(fd, bytes, off, bytes.length - off);
    fsyncSync(fd);
  } catch (err) {
    closeSync(fd);
    rmSync(tmp, { force: true });
    throw err;
  }
  closeSync(fd);
  return tmp;
}

function syncDir(dir: string): void {
  let fd: number | undefined;
  try {
    fd = openSync(dir, "r");
    fsyncSync(fd);
  } catch {
    // Some filesystems refuse fsync on a directory; the rename is still atomic there.
  } finally {
    if (fd !== undefined) closeSync(fd);
  }
}

/**
 * Replaces `path` with `data` atomically (a temporary file in the same directory, fsync,
 * rename, fsync of the directory), with `mode`. The directory is created (0700) when missing.
 */
export function writeFileAtomic(path: string, data: string | Uint8Array, mode: number): void {
  const tmp = writeTemp(path, data, mode);
  try {
    renameSync(tmp, path);
  } catch (err) {
    rmSync(tmp, { force: true });
    throw err;
  }
  syncDir(dirname(path));
}

/**
 * Writes several files so that a reader sees the new set as nearly at once as a file system
 * allows: every new content is written (and synced) to a temporary file first, then all are
 * renamed into place back to back, so the window in which some are new and some old is a few
 * renames, not a write and sync (a certificate and its key read between two writes would not
 * match).
 */
export function writeFilesAtomic(
  files: ReadonlyArray<{ readonly path: string; readonly data: string | Uint8Array; readonly mode: number }>,
): void {
  const temps: string[] = [];
  try {
    for (const f of files) temps.push(writeTemp(f.path, f.data, f.mode));
    files.forEach((f, i) => renameSync(temps[i]!, f.path));
  } catch (err) {
    for (const t of temps) rmSync(t, { force: true });
    throw err;
  }
  for (const dir of new Set(files.map((f) => dirname(f.path)))) syncDir(dir);
}

/**
 * Creates `path` with `data` and `mode` only if it does not exist yet, atomically. Returns false
 * (and leaves the existing file alone) when another writer got there first.
 */
export function createFileExclusive(path: string, data: string | Uint8Array, mode: number): boolean {
  const tmp = writeTemp(path, data, mode);
  try {
    linkSync(tmp, path);
    syncDir(dirname(path));
    return true;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === "EEXIST") return false;
    throw err;
  } finally {
    rmSync(tmp, { force: true });
  }
}

/** True when a process with this id runs (one we may not signal counts as running). */
function processRuns(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === "EPERM";
  }
}

/** Options of removeLeftoverTempFiles. */
export interface RemoveLeftoversOptions {
  /** Told of each file removed (warn) and each that could not be (error). */
  readonly logger: Logger;
  /** Levels of subdirectories to look into as well (symbolic links are not followed); default 0. */
  readonly depth?: number;
}

/**
 * Removes the temporary files the writers of this module left in `dir` when a process stopped
 * or a disk filled up in the middle of a write, logging each path once. A file whose writer
 * (by the process id in its name) is another process still running is left alone: it may be
 * writing it right now. This process's own are leftovers of an earlier process with the same id,
 * since every write here is synchronous. A missing `dir` is not an error. Returns the paths removed.
 */
export function removeLeftoverTempFiles(dir: string, opts: RemoveLeftoversOptions): string[] {
  let entries;
  try {
    entries = readdirSync(dir, { withFileTypes: true });
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === "ENOENT") return [];
    opts.logger.error("cannot look for leftover temporary files", { dir, err: errorMessage(err) });
    return [];
  }
  const removed: string[] = [];
  const depth = opts.depth ?? 0;
  for (const e of entries) {
    const path = join(dir, e.name);
    if (e.isDirectory()) {
      if (depth > 0) removed.push(...removeLeftoverTempFiles(path, { ...opts, depth: depth - 1 }));
      continue;
    }
    const m = TEMP_NAME.exec(e.name);
    if (m === null || !e.isFile()) continue;
    const pid = m[1] === undefined ? undefined : Number(m[1]);
    if (pid !== undefined && pid !== process.pid && processRuns(pid)) continue;
    try {
      rmSync(path, { force: true });
      removed.push(path);
      opts.logger.warn("removed a temporary file left by an interrupted write", { path });
    } catch (err) {
      opts.logger.error("cannot remove a leftover temporary file", { path, err: errorMessage(err) });
    }
  }
  return removed;
}
