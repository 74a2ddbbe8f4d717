/**
 * The key-encryption key (KEK) that protects the CA's and the token signer's private keys while
 * they rest in etcd: 32 random bytes in a file (mode 0600, `meshd ca kek create --out FILE`),
 * given to every replica with `--ca-kek-file`.
 *
 * A sealed secret is `aes256gcm:` and the base64 of a random 96-bit nonce, the ciphertext and the
 * 128-bit tag. The name of what it protects (the etcd key and the certificate it belongs to) is
 * the associated data, so a ciphertext copied to another entry does not open.
 *
 * @module
 */
import { createCipheriv, createDecipheriv, randomBytes } from "node:crypto";
import { existsSync, readFileSync } from "node:fs";
import { errorMessage } from "../shared/errors.ts";
import { createFileExclusive, isGroupOrWorldReadable } from "../shared/state_files.ts";

/** Length of a KEK in bytes (AES-256). */
export const KEK_BYTES = 32;

const PREFIX = "aes256gcm:";
const NONCE_BYTES = 12;
const TAG_BYTES = 16;

/** A KEK and the file it came from (named in errors). */
export interface Kek {
  readonly key: Uint8Array;
  readonly file: string;
}

/** A sealed secret that does not open: wrong KEK, another entry's ciphertext, or tampering. */
export class KekError extends Error {
  override readonly name = "KekError";
}

/**
 * Writes a new KEK to `file` (0600). Throws, naming the file, when it exists already: replacing
 * a KEK would make every key sealed with it unreadable.
 */
export function createKekFile(file: string): void {
  if (existsSync(file) || !createFileExclusive(file, randomBytes(KEK_BYTES), 0o600)) {
    throw new Error(`${file} exists already; a key-encryption key is never overwritten`);
  }
}

/**
 * Reads the KEK in `file`. Throws, naming the file, when it cannot be read or does not hold
 * exactly 32 bytes; `warn` hears about a file that others can read.
 */
export function readKekFile(file: string, warn?: (msg: string) => void): Kek {
  let key: Uint8Array;
  try {
    key = new Uint8Array(readFileSync(file));
  } catch (err) {
    throw new Error(`--ca-kek-file ${file}: cannot read: ${errorMessage(err)}`);
  }
  if (key.length !== KEK_BYTES) {
    throw new Error(
      `--ca-kek-file ${file}: holds ${key.length} bytes, want ${KEK_BYTES} (make one with meshd ca kek create)`,
    );
  }
  if (warn && isGroupOrWorldReadable(file)) warn(`${file} is readable by group or others; chmod 600 it`);
  return { key, file };
}

/** Encrypts `plaintext` under the KEK with `name` as associated data. */
export function sealSecret(kek: Kek, plaintext: Uint8Array, name: string): string {
  const nonce = randomBytes(NONCE_BYTES);
  const cipher = createCipheriv("aes-256-gcm", kek.key, nonce);
  cipher.setAAD(Buffer.from(name, "utf8"));
  const ct = Buffer.concat([cipher.update(plaintext), cipher.final()]);
  return PREFIX + Buffer.concat([nonce, ct, cipher.getAuthTag()]).toString("base64");
}

/**
 * Decrypts what {@link sealSecret} made for `name`. Throws KekError, calling the secret `label`
 * ("the CA key in etcd"), when it is malformed, or was sealed under another KEK or for another
 * name, or was altered.
 */
export function openSecret(kek: Kek, sealed: string, name: string, label = name): Uint8Array {
  if (!sealed.startsWith(PREFIX)) throw new KekError(`${label} (${name}): not an ${PREFIX} sealed secret`);
  const raw = Buffer.from(sealed.slice(PREFIX.length), "base64");
  if (raw.length < NONCE_BYTES + TAG_BYTES) throw new KekError(`${label} (${name}): truncated`);
  const decipher = createDecipheriv("aes-256-gcm", kek.key, raw.subarray(0, NONCE_BYTES));
  decipher.setAAD(Buffer.from(name, "utf8"));
  decipher.setAuthTag(raw.subarray(raw.length - TAG_BYTES));
  try {
    return new Uint8Array(
      Buffer.concat([decipher.update(raw.subarray(NONCE_BYTES, raw.length - TAG_BYTES)), decipher.final()]),
    );
  } catch {
    throw new KekError(
      `${label} does not decrypt with --ca-kek-file ${kek.file}: wrong key-encryption key? (${name})`,
    );
  }
}
