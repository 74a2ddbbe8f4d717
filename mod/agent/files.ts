/**
 * The agent's files: written atomically (a temporary file in the same directory, fsync,
 * rename, fsync of the directory), so a reader (Envoy, a gRPC file watcher, the next start of
 * the agent) sees the old content or the new, never a torn file.
 *
 * @module
 */
import {
  chmodSync,
  closeSync,
  existsSync,
  fsyncSync,
  mkdirSync,
  openSync,
  readFileSync,
  renameSync,
  rmSync,
  writeSync,
} from "node:fs";
import { basename, dirname, join } from "node:path";
import { type CertBundle, makeBundle, splitPem } from "./certs.ts";

/** The certificate chain file (leaf and intermediates). */
export const CERT_CHAIN_FILE = "cert-chain.pem";
/** The private key file, mode 0600. */
export const KEY_FILE = "key.pem";
/** The trusted roots file. */
export const ROOT_CERT_FILE = "root-cert.pem";

let tmpSeq = 0;

/**
 * Writes `data` to `path` atomically with `mode` (the mode is set before the content is
 * written, so a key is never readable by others, even for a moment).
 */
export function writeFileAtomic(path: string, data: string | Uint8Array, mode = 0o644): void {
  const dir = dirname(path);
  const tmp = join(dir, `.${basename(path)}.${process.pid}.${++tmpSeq}.tmp`);
  const fd = openSync(tmp, "wx", mode);
  try {
    chmodSync(tmp, mode);
    const bytes = typeof data === "string" ? new TextEncoder().encode(data) : data;
    let off = 0;
    while (off < bytes.length) off += writeSync(fd, bytes, off, bytes.length - off);
    fsyncSync(fd);
  } catch (err) {
    closeSync(fd);
    rmSync(tmp, { force: true });
    throw err;
  }
  closeSync(fd);
  try {
    renameSync(tmp, path);
  } catch (err) {
    rmSync(tmp, { force: true });
    throw err;
  }
  syncDir(dir);
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
 * Creates `dir` (and parents) if needed and sets its mode. `what` names the setting in errors
 * ("--output-dir").
 */
export function ensureDir(dir: string, mode: number, what: string): void {
  try {
    mkdirSync(dir, { recursive: true, mode });
    chmodSync(dir, mode);
  } catch (err) {
    throw new Error(`${what} ${dir}: ${(err as Error).message}`);
  }
}

/** Writes the bundle's three files into `dir` (the key with mode 0600), each atomically. */
export function writeBundle(dir: string, b: CertBundle): void {
  writeFileAtomic(join(dir, KEY_FILE), b.keyPem, 0o600);
  writeFileAtomic(join(dir, CERT_CHAIN_FILE), b.chainPem, 0o644);
  writeFileAtomic(join(dir, ROOT_CERT_FILE), b.rootPem, 0o644);
}

/**
 * Reads a bundle written by writeBundle. Returns undefined when the files are absent; throws,
 * naming the file, when they are present but unusable (key does not match, wrong identity).
 */
export function readBundle(dir: string, expectedIdentity?: string): CertBundle | undefined {
  const chainPath = join(dir, CERT_CHAIN_FILE);
  const keyPath = join(dir, KEY_FILE);
  const rootPath = join(dir, ROOT_CERT_FILE);
  if (!existsSync(chainPath) || !existsSync(keyPath) || !existsSync(rootPath)) return undefined;
  return makeBundle(
    splitPem(readFileSync(chainPath, "utf8")),
    readFileSync(keyPath, "utf8"),
    splitPem(readFileSync(rootPath, "utf8")),
    { what: chainPath, expectedIdentity },
  );
}
