/**
 * Persistent state files of the CA: private directories, atomic replacement, and exclusive
 * creation, so a crash never leaves a half-written key or list behind and two processes that
 * create the same file at once end up sharing one.
 *
 * @module
 */
import { randomBytes } from "node:crypto";
import {
  closeSync,
  fsyncSync,
  linkSync,
  mkdirSync,
  openSync,
  renameSync,
  statSync,
  unlinkSync,
  writeSync,
} from "node:fs";
import { dirname, join } from "node:path";

/** Creates `dir` (and parents) if missing; a directory meshd creates is private (0700). */
export function ensurePrivateDir(dir: string): void {
  mkdirSync(dir, { recursive: true, mode: 0o700 });
}

function writeTemp(path: string, data: string | Uint8Array, mode: number): string {
  const tmp = join(dirname(path), `.${randomBytes(6).toString("hex")}.tmp`);
  const fd = openSync(tmp, "wx", mode);
  try {
    writeSync(fd, typeof data === "string" ? Buffer.from(data) : data);
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
  return tmp;
}

/** Replaces `path` with `data` atomically (write a temporary file, sync, rename), with `mode`. */
export function writeFileAtomic(path: string, data: string | Uint8Array, mode = 0o600): void {
  ensurePrivateDir(dirname(path));
  const tmp = writeTemp(path, data, mode);
  try {
    renameSync(tmp, path);
  } catch (err) {
    unlinkSync(tmp);
    throw err;
  }
}

/**
 * Creates `path` with `data` only if it does not exist yet, atomically. Returns false (and
 * leaves the existing file alone) when another writer got there first.
 */
export function createFileExclusive(path: string, data: string | Uint8Array, mode = 0o600): boolean {
  ensurePrivateDir(dirname(path));
  const tmp = writeTemp(path, data, mode);
  try {
    linkSync(tmp, path);
    return true;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === "EEXIST") return false;
    throw err;
  } finally {
    unlinkSync(tmp);
  }
}

/** True when the file at `path` can be read by its group or others (a private key should not be). */
export function isGroupOrWorldReadable(path: string): boolean {
  return (statSync(path).mode & 0o077) !== 0;
}
