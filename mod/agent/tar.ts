/**
 * A small writer of gzip-compressed POSIX ustar archives (regular files and directories), for
 * onboarding bundles: modes are kept, owners are root, names up to 255 bytes.
 *
 * @module
 */
import { gzipSync } from "node:zlib";

/** One archive member. */
export interface TarEntry {
  /** Path inside the archive ("dir/" for a directory). */
  readonly name: string;
  /** File content; absent for a directory. */
  readonly data?: string | Uint8Array;
  /** Permission bits (default 0644, directories 0755). */
  readonly mode?: number;
}

const BLOCK = 512;
const enc = new TextEncoder();

function octal(n: number, width: number): string {
  return n.toString(8).padStart(width - 1, "0") + "\0";
}

function put(buf: Uint8Array, offset: number, text: string, width: number): void {
  const b = enc.encode(text);
  if (b.length > width) throw new Error(`tar: field ${JSON.stringify(text)} is longer than ${width} bytes`);
  buf.set(b, offset);
}

function splitName(name: string): { prefix: string; base: string } {
  if (enc.encode(name).length <= 100) return { prefix: "", base: name };
  const cut = name.lastIndexOf("/", name.length - 2);
  const prefix = name.slice(0, cut);
  const base = name.slice(cut + 1);
  if (cut <= 0 || enc.encode(prefix).length > 155 || enc.encode(base).length > 100) {
    throw new Error(`tar: name ${JSON.stringify(name)} is too long`);
  }
  return { prefix, base };
}

function header(e: TarEntry, size: number, mtime: number): Uint8Array {
  const h = new Uint8Array(BLOCK);
  const dir = e.data === undefined;
  const { prefix, base } = splitName(e.name);
  put(h, 0, base, 100);
  put(h, 100, octal(e.mode ?? (dir ? 0o755 : 0o644), 8), 8);
  put(h, 108, octal(0, 8), 8);
  put(h, 116, octal(0, 8), 8);
  put(h, 124, octal(size, 12), 12);
  put(h, 136, octal(mtime, 12), 12);
  h.fill(0x20, 148, 156);
  put(h, 156, dir ? "5" : "0", 1);
  put(h, 257, "ustar\0", 6);
  put(h, 263, "00", 2);
  put(h, 265, "root", 32);
  put(h, 297, "root", 32);
  put(h, 345, prefix, 155);
  const sum = h.reduce((s, b) => s + b, 0);
  put(h, 148, sum.toString(8).padStart(6, "0") + "\0 ", 8);
  return h;
}

/**
 * The uncompressed archive. Each member's data is copied once, straight into the archive (a
 * bundle carries a binary of about 110 MB).
 */
export function tar(entries: readonly TarEntry[], mtimeMs = Date.now()): Uint8Array {
  const mtime = Math.floor(mtimeMs / 1000);
  const members = entries.map((e) => ({
    e,
    data: e.data === undefined ? new Uint8Array(0) : typeof e.data === "string" ? enc.encode(e.data) : e.data,
  }));
  const size = members.reduce((n, m) => n + BLOCK + Math.ceil(m.data.length / BLOCK) * BLOCK, 2 * BLOCK);
  const out = new Uint8Array(size);
  let off = 0;
  for (const m of members) {
    out.set(header(m.e, m.data.length, mtime), off);
    out.set(m.data, off + BLOCK);
    off += BLOCK + Math.ceil(m.data.length / BLOCK) * BLOCK;
  }
  return out;
}

/** The archive, gzip-compressed (a .tar.gz). */
export function tarGz(entries: readonly TarEntry[], mtimeMs?: number): Uint8Array {
  return new Uint8Array(gzipSync(tar(entries, mtimeMs)));
}
