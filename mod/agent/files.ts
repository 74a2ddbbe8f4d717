/**
 * The agent's files: written atomically (a temporary file in the same directory, fsync,
 * rename, fsync of the directory), so a reader (Envoy, a gRPC file watcher, the next start of
 * the agent) sees the old content or the new, never a torn file.
 *
 * @module
 */
import { chmodSync, existsSync, mkdirSync, readFileSync, rmSync } from "node:fs";
import { join } from "node:path";
import { writeFileAtomic as writeStateFile, writeFilesAtomic } from "../shared/state_files.ts";
import { applyReceiptRecord, type CertBundle, makeBundle, receiptRecord, splitPem } from "./certs.ts";

/** The certificate chain file (leaf and intermediates). */
export const CERT_CHAIN_FILE = "cert-chain.pem";
/** The private key file, mode 0600. */
export const KEY_FILE = "key.pem";
/** The trusted roots file. */
export const ROOT_CERT_FILE = "root-cert.pem";
/** When the agent received the certificate in CERT_CHAIN_FILE (see receiptRecord); optional. */
export const RECEIPT_FILE = "cert-received.json";

/**
 * Writes `data` to `path` atomically with `mode` (the mode is set before the content is
 * written, so a key is never readable by others, even for a moment).
 */
export function writeFileAtomic(path: string, data: string | Uint8Array, mode = 0o644): void {
  writeStateFile(path, data, mode);
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

/**
 * Writes the bundle's three files into `dir` (the key with mode 0600), renamed into place
 * together (writeFilesAtomic, so a reader rarely sees a key and a chain that do not match), then
 * the record of when it was received (or removes a record left from an earlier certificate
 * when the bundle has none). The record names its leaf, so one that is stale after a crash
 * between these writes is recognised and ignored by readBundle.
 */
export function writeBundle(dir: string, b: CertBundle): void {
  writeFilesAtomic([
    { path: join(dir, KEY_FILE), data: b.keyPem, mode: 0o600 },
    { path: join(dir, CERT_CHAIN_FILE), data: b.chainPem, mode: 0o644 },
    { path: join(dir, ROOT_CERT_FILE), data: b.rootPem, mode: 0o644 },
  ]);
  const receipt = receiptRecord(b);
  if (receipt === undefined) rmSync(join(dir, RECEIPT_FILE), { force: true });
  else writeFileAtomic(join(dir, RECEIPT_FILE), receipt, 0o644);
}

/** Options of readBundle. */
export interface ReadBundleOptions {
  /** The clock's now: a receipt record later than this is ignored (default Date.now()). */
  readonly now?: number;
  /** Told why a receipt record is ignored (the bundle is still returned, without receivedAt). */
  warn?(msg: string, fields: Record<string, unknown>): void;
}

/**
 * Reads a bundle written by writeBundle. Returns undefined when the files are absent; throws,
 * naming the file, when they are present but unusable (key does not match, wrong identity).
 * receivedAt comes from RECEIPT_FILE when that is present and valid for this certificate; a
 * bundle without it (written by an older agent) loads without receivedAt.
 */
export function readBundle(
  dir: string,
  expectedIdentity?: string,
  opts: ReadBundleOptions = {},
): CertBundle | undefined {
  const chainPath = join(dir, CERT_CHAIN_FILE);
  const keyPath = join(dir, KEY_FILE);
  const rootPath = join(dir, ROOT_CERT_FILE);
  if (!existsSync(chainPath) || !existsSync(keyPath) || !existsSync(rootPath)) return undefined;
  const b = makeBundle(
    splitPem(readFileSync(chainPath, "utf8")),
    readFileSync(keyPath, "utf8"),
    splitPem(readFileSync(rootPath, "utf8")),
    { what: chainPath, expectedIdentity },
  );
  const receiptPath = join(dir, RECEIPT_FILE);
  if (!existsSync(receiptPath)) return b;
  let problem: string | undefined;
  let out = b;
  try {
    ({ bundle: out, problem } = applyReceiptRecord(
      b,
      readFileSync(receiptPath, "utf8"),
      opts.now ?? Date.now(),
    ));
  } catch (err) {
    problem = (err as Error).message;
  }
  if (problem !== undefined) {
    opts.warn?.(
      "ignoring the record of when the certificate was received; its lifetime counts from notBefore",
      {
        file: receiptPath,
        problem,
      },
    );
  }
  return out;
}
