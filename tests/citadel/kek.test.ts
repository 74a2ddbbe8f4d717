import { describe, expect, test } from "bun:test";
import { mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import {
  createKekFile,
  KEK_BYTES,
  KekError,
  openSecret,
  readKekFile,
  sealSecret,
} from "../../mod/citadel/kek.ts";

const dir = mkdtempSync(join(tmpdir(), "meshd-kek-"));
let n = 0;
const newKek = () => {
  const file = join(dir, `kek-${n++}`);
  createKekFile(file);
  return readKekFile(file);
};
const secret = new TextEncoder().encode("-----BEGIN PRIVATE KEY-----\nabc\n-----END PRIVATE KEY-----\n");

describe("kek", () => {
  test("createKekFile() writes 32 random bytes readable by the owner only and never overwrites", () => {
    const file = join(dir, "made");
    createKekFile(file);
    expect(statSync(file).mode & 0o777).toBe(0o600);
    const bytes = readFileSync(file);
    expect(bytes.length).toBe(KEK_BYTES);
    expect(() => createKekFile(file)).toThrow(
      `${file} exists already; a key-encryption key is never overwritten`,
    );
    expect(readFileSync(file)).toEqual(bytes);
  });

  test("readKekFile() refuses a file of another length, naming the flag and the file", () => {
    const file = join(dir, "short");
    writeFileSync(file, "not a key\n", { mode: 0o600 });
    expect(() => readKekFile(file)).toThrow(`--ca-kek-file ${file}: holds 10 bytes, want 32`);
    expect(() => readKekFile(join(dir, "missing"))).toThrow(
      `--ca-kek-file ${join(dir, "missing")}: cannot read`,
    );
  });

  test("sealSecret() and openSecret() round-trip, with a fresh nonce each time", () => {
    const kek = newKek();
    const a = sealSecret(kek, secret, "/meshd/ca/state root A");
    const b = sealSecret(kek, secret, "/meshd/ca/state root A");
    expect(a).not.toBe(b);
    expect(a).not.toContain("PRIVATE KEY");
    expect(openSecret(kek, a, "/meshd/ca/state root A")).toEqual(secret);
    expect(openSecret(kek, b, "/meshd/ca/state root A")).toEqual(secret);
  });

  test("openSecret() refuses a secret sealed under another KEK, saying which file", () => {
    const kek = newKek();
    const other = newKek();
    const sealed = sealSecret(kek, secret, "k");
    expect(() => openSecret(other, sealed, "k", "the CA key in etcd")).toThrow(
      `the CA key in etcd does not decrypt with --ca-kek-file ${other.file}: wrong key-encryption key?`,
    );
    expect(() => openSecret(other, sealed, "k")).toThrow(KekError);
  });

  test("openSecret() refuses a ciphertext moved to another entry (the name is associated data)", () => {
    const kek = newKek();
    const sealed = sealSecret(kek, secret, "/meshd/ca/state root A");
    expect(() => openSecret(kek, sealed, "/meshd/ca/state root B")).toThrow(KekError);
    expect(() => openSecret(kek, sealed, "/meshd/tokens/signing-key")).toThrow(KekError);
  });

  test("openSecret() refuses a tampered tag, ciphertext or nonce, and a truncated or foreign value", () => {
    const kek = newKek();
    const sealed = sealSecret(kek, secret, "k");
    const raw = Buffer.from(sealed.slice("aes256gcm:".length), "base64");
    const flip = (i: number) => {
      const copy = Buffer.from(raw);
      copy[i]! ^= 1;
      return "aes256gcm:" + copy.toString("base64");
    };
    expect(() => openSecret(kek, flip(raw.length - 1), "k")).toThrow(KekError); // tag
    expect(() => openSecret(kek, flip(20), "k")).toThrow(KekError); // ciphertext
    expect(() => openSecret(kek, flip(0), "k")).toThrow(KekError); // nonce
    expect(() => openSecret(kek, "aes256gcm:" + raw.subarray(0, 20).toString("base64"), "k")).toThrow(
      "truncated",
    );
    expect(() => openSecret(kek, "-----BEGIN PRIVATE KEY-----", "k")).toThrow(
      "not an aes256gcm: sealed secret",
    );
  });
});

process.on("exit", () => rmSync(dir, { recursive: true, force: true }));
