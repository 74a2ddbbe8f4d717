import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { X509Certificate } from "node:crypto";
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createCertificate } from "../../mod/agent/ca_client.ts";
import {
  bundleFromIssued,
  type CertBundle,
  createCsr,
  renewalDelay,
  spiffeId,
  splitPem,
} from "../../mod/agent/certs.ts";
import { ensureDir, readBundle, RECEIPT_FILE, writeBundle, writeFileAtomic } from "../../mod/agent/files.ts";
import { LEAF_BACKDATE_MS } from "../../mod/citadel/service.ts";
import { type Citadel, startCitadel } from "./_citadel.ts";

const ID = spiffeId("cluster.local", "vms", "app");
let ca: Citadel;
let dir: string;
/** A real bootstrap token for ID, signed with the CA's token key. */
let tok: string;

beforeAll(async () => {
  // An intermediate from a --ca-dir under an offline root, so answers carry a chain.
  ca = await startCitadel({ intermediate: true });
  tok = ca.token("vms", "app");
  dir = mkdtempSync(join(tmpdir(), "meshd-agent-certs-"));
});
afterAll(async () => {
  await ca.close();
  rmSync(dir, { recursive: true, force: true });
});

describe("createCsr()", () => {
  test("makes a P-256 key and a CSR whose only name is the SPIFFE URI SAN", async () => {
    await import("reflect-metadata");
    const x509 = await import("@peculiar/x509");
    const p = await createCsr(ID);
    const csr = new x509.Pkcs10CertificateRequest(p.csrPem);
    expect(await csr.verify()).toBe(true);
    expect(csr.subject).toBe("");
    const san =
      (csr.getExtension("2.5.29.17") as InstanceType<typeof x509.SubjectAlternativeNameExtension> | null)!;
    expect(san.names.items.map((n) => [n.type, n.value])).toEqual([["url", ID]]);
    expect((csr.publicKey.algorithm as { namedCurve?: string }).namedCurve).toBe("P-256");
    expect(p.keyPem).toContain("BEGIN PRIVATE KEY");
    expect(p.csrPem).not.toContain("PRIVATE");
  });
});

describe("createCertificate() and bundleFromIssued()", () => {
  test("token over plaintext: the leaf and intermediate form the chain, the trailing root is the trust bundle", async () => {
    const p = await createCsr(ID);
    const chain = await createCertificate({
      addr: ca.plainAddr,
      token: tok,
      csrPem: p.csrPem,
      ttlMs: 3_600_000,
      timeoutMs: 5000,
    });
    expect(chain.length).toBe(3);
    const b = bundleFromIssued(chain, p.keyPem, { expectedIdentity: ID });
    expect(splitPem(b.chainPem).length).toBe(2);
    expect(b.rootPem).toBe(ca.rootPem);
    expect(b.identity).toBe(ID);
    expect(b.notAfter - b.notBefore).toBeGreaterThan(3_590_000);
    expect(ca.calls.at(-1)).toEqual({ via: "token", tls: false, ok: true, ttlSeconds: 3600 });
  });

  test("token over TLS verifies the server with the roots; mutual TLS authenticates with the certificate", async () => {
    const p = await createCsr(ID);
    const chain = await createCertificate({
      addr: ca.tlsAddr,
      tls: { ca: ca.rootPem },
      token: tok,
      csrPem: p.csrPem,
      ttlMs: 60_000,
      timeoutMs: 5000,
    });
    const b = bundleFromIssued(chain, p.keyPem, { expectedIdentity: ID });
    const p2 = await createCsr(ID);
    const chain2 = await createCertificate({
      addr: ca.tlsAddr,
      tls: { ca: b.rootPem, cert: b.chainPem, key: b.keyPem },
      csrPem: p2.csrPem,
      ttlMs: 60_000,
      timeoutMs: 5000,
    });
    expect(ca.calls.at(-1)).toMatchObject({ via: "mtls", ok: true });
    expect(bundleFromIssued(chain2, p2.keyPem, { expectedIdentity: ID }).identity).toBe(ID);
  });

  test("a server certificate that does not chain to the given roots is refused", async () => {
    const other = await startCitadel();
    try {
      const p = await createCsr(ID);
      const err = await createCertificate({
        addr: ca.tlsAddr,
        tls: { ca: other.rootPem },
        token: tok,
        csrPem: p.csrPem,
        ttlMs: 60_000,
        timeoutMs: 5000,
      }).catch((e: Error) => e);
      expect(err).toBeInstanceOf(Error);
      expect((err as Error).message).toContain(`CreateCertificate at ${ca.tlsAddr} (token over TLS)`);
    } finally {
      await other.close();
    }
  });

  test("the server certificate is checked against --ca-server-name when one is given", async () => {
    const ask = async (serverName: string) => {
      const p = await createCsr(ID);
      return await createCertificate({
        addr: ca.tlsAddr,
        tls: { ca: ca.rootPem, serverName },
        token: tok,
        csrPem: p.csrPem,
        ttlMs: 60_000,
        timeoutMs: 5000,
      }).then(() => "ok", (e: Error) => e.message);
    };
    expect(await ask("localhost")).toBe("ok");
    expect(await ask("meshd.example.org")).toMatch(/meshd.example.org|altnames|Hostname/i);
  });

  test("errors name the address, the method and the CA's reason", async () => {
    const p = await createCsr(ID);
    const err = await createCertificate({
      addr: ca.plainAddr,
      token: "wrong",
      csrPem: p.csrPem,
      ttlMs: 60_000,
      timeoutMs: 5000,
    }).catch((e: Error) => e);
    expect((err as Error).message).toBe(
      `CreateCertificate at ${ca.plainAddr} (token over plaintext): unauthenticated: token is not a compact JWS (three base64url parts)`,
    );
  });

  test("a leaf for another identity, or for another key, is refused", async () => {
    const p = await createCsr(ID);
    const chain = await createCertificate({
      addr: ca.plainAddr,
      token: tok,
      csrPem: p.csrPem,
      ttlMs: 60_000,
      timeoutMs: 5000,
    });
    expect(() => bundleFromIssued(chain, p.keyPem, { expectedIdentity: spiffeId("cluster.local", "x", "y") }))
      .toThrow(
        /is for spiffe:\/\/cluster.local\/ns\/vms\/sa\/app, want spiffe:\/\/cluster.local\/ns\/x\/sa\/y/,
      );
    const other = await createCsr(ID);
    expect(() => bundleFromIssued(chain, other.keyPem, { expectedIdentity: ID })).toThrow(
      /does not match the private key/,
    );
  });

  test("a CSR for an identity other than the token's is refused by the CA", async () => {
    const p = await createCsr(spiffeId("cluster.local", "vms", "other"));
    const err = await createCertificate({
      addr: ca.plainAddr,
      token: tok,
      csrPem: p.csrPem,
      ttlMs: 60_000,
      timeoutMs: 5000,
    }).catch((e: Error) => e);
    expect((err as Error).message).toBe(
      `CreateCertificate at ${ca.plainAddr} (token over plaintext): permission_denied: ` +
        `CSR asks for spiffe://cluster.local/ns/vms/sa/other but the caller is ${ID}`,
    );
    expect(ca.calls.at(-1)).toMatchObject({ via: "token", ok: false });
  });

  test("without a root in the answer, the roots already trusted are kept; with none, it is an error", async () => {
    const p = await createCsr(ID);
    const answer = await createCertificate({
      addr: ca.plainAddr,
      token: tok,
      csrPem: p.csrPem,
      ttlMs: 60_000,
      timeoutMs: 5000,
    });
    // The real CA always ends its answer with the trust bundle; an answer without it (as from
    // a CA that sends only the chain) is that answer minus its last element.
    expect(answer.length).toBe(3);
    expect(answer.at(-1)).toBe(ca.rootPem);
    const chain = answer.slice(0, -1);
    expect(bundleFromIssued(chain, p.keyPem, { expectedIdentity: ID, fallbackRootPem: ca.rootPem }).rootPem)
      .toBe(ca.rootPem);
    expect(() => bundleFromIssued(chain, p.keyPem, { expectedIdentity: ID })).toThrow(/no trusted root/);
  });
});

describe("files", () => {
  test("writeFileAtomic() replaces content with the given mode and leaves no temporary file", () => {
    const d = join(dir, "atomic");
    ensureDir(d, 0o750, "--output-dir");
    expect(statSync(d).mode & 0o777).toBe(0o750);
    const f = join(d, "x.pem");
    writeFileAtomic(f, "one", 0o600);
    expect(statSync(f).mode & 0o777).toBe(0o600);
    writeFileSync(f + ".keep", "");
    writeFileAtomic(f, "two", 0o644);
    expect(readFileSync(f, "utf8")).toBe("two");
    expect(statSync(f).mode & 0o777).toBe(0o644);
    expect(readdirSync(d).sort()).toEqual(["x.pem", "x.pem.keep"]);
  });

  test("a reader in another process never sees a torn file while writes race", async () => {
    const f = join(dir, "race.pem");
    const a = "A".repeat(200_000);
    const b = "B".repeat(300_000);
    writeFileAtomic(f, a);
    const reader = Bun.spawn([
      process.execPath,
      "-e",
      `const fs = require("node:fs"); let torn = 0, reads = 0; const end = Date.now() + 1500;
       while (Date.now() < end) { const t = fs.readFileSync(${JSON.stringify(f)}, "utf8"); reads++;
         if (!(t.length === 200000 && t[0] === "A" && t[199999] === "A") && !(t.length === 300000 && t[0] === "B" && t[299999] === "B")) torn++; }
       console.log(JSON.stringify({ torn, reads }));`,
    ], { stdout: "pipe" });
    const end = Date.now() + 1500;
    let writes = 0;
    while (Date.now() < end) {
      writeFileAtomic(f, writes++ % 2 ? a : b);
      await Bun.sleep(0);
    }
    const r = JSON.parse(await new Response(reader.stdout).text()) as { torn: number; reads: number };
    expect(writes).toBeGreaterThan(20);
    expect(r.reads).toBeGreaterThan(20);
    expect(r.torn).toBe(0);
  });

  test("ensureDir() names the setting when it cannot create the directory", () => {
    const file = join(dir, "plain-file");
    writeFileSync(file, "");
    expect(() => ensureDir(join(file, "sub"), 0o700, "--data-dir")).toThrow(
      /^--data-dir .*plain-file\/sub: /,
    );
  });

  test("writeBundle() writes the key 0600 and readBundle() reads it back, checking the identity", async () => {
    const p = await createCsr(ID);
    const b = bundleFromIssued(
      await createCertificate({
        addr: ca.plainAddr,
        token: tok,
        csrPem: p.csrPem,
        ttlMs: 60_000,
        timeoutMs: 5000,
      }),
      p.keyPem,
      { expectedIdentity: ID },
    );
    const d = join(dir, "bundle");
    ensureDir(d, 0o700, "--data-dir");
    expect(readBundle(d, ID)).toBeUndefined();
    writeBundle(d, b);
    expect(statSync(join(d, "key.pem")).mode & 0o777).toBe(0o600);
    expect(statSync(join(d, "cert-chain.pem")).mode & 0o777).toBe(0o644);
    expect(readBundle(d, ID)).toEqual(b);
    expect(new X509Certificate(readFileSync(join(d, "root-cert.pem"))).subject).toContain(
      "Example Offline Root",
    );
    expect(() => readBundle(d, spiffeId("cluster.local", "other", "sa"))).toThrow(
      /cert-chain.pem: the certificate is for/,
    );
    writeFileSync(join(d, "key.pem"), (await createCsr(ID)).keyPem);
    expect(() => readBundle(d, ID)).toThrow(/does not match the private key/);
  });

  /** A certificate from the real CA for `ttlMs` (backdated by the CA), and the key. */
  const issue = async (ttlMs: number): Promise<CertBundle> => {
    const p = await createCsr(ID);
    const chain = await createCertificate({
      addr: ca.plainAddr,
      token: tok,
      csrPem: p.csrPem,
      ttlMs,
      timeoutMs: 5000,
    });
    return bundleFromIssued(chain, p.keyPem, { expectedIdentity: ID });
  };

  test("a short-lived certificate read back after a restart renews at half of its real lifetime", async () => {
    const b = await issue(90_000);
    const receivedAt = Date.now();
    // The CA backdates: notBefore..notAfter is a minute longer than the lifetime asked for.
    expect(receivedAt - b.notBefore).toBeGreaterThanOrEqual(LEAF_BACKDATE_MS - 1000);
    const d = join(dir, "restart");
    ensureDir(d, 0o700, "--data-dir");
    writeBundle(d, { ...b, receivedAt });
    expect(statSync(join(d, RECEIPT_FILE)).mode & 0o777).toBe(0o644);
    // Ten seconds later, the agent starts again and reads the bundle back.
    const now = receivedAt + 10_000;
    const warnings: unknown[] = [];
    const back = readBundle(d, ID, { now, warn: (...a) => warnings.push(a) })!;
    expect(warnings).toEqual([]);
    expect(back).toEqual({ ...b, receivedAt });
    const want = receivedAt + (b.notAfter - receivedAt) / 2 - now;
    expect(renewalDelay(back, now, () => 0.5)).toBe(Math.round(want));
    // About 35 s (half of ~90 s, less the 10 s since receipt), not the ~5 s counted from the
    // backdated notBefore.
    expect(renewalDelay(back, now, () => 0.5)).toBeGreaterThan(30_000);
    // Nearly expired, it is due at once.
    expect(renewalDelay(back, b.notAfter - 1000, () => 0.5)).toBe(0);
  });

  test("the record of receipt is validated: clamped to the validity, ignored with a warning when garbled, stale or in the future", async () => {
    const b = await issue(90_000);
    const other = await issue(90_000);
    const d = join(dir, "receipts");
    ensureDir(d, 0o700, "--data-dir");
    const receiptPath = join(d, RECEIPT_FILE);
    const read = (now: number) => {
      const warnings: Array<{ msg: string; problem: unknown; file: unknown }> = [];
      const got = readBundle(d, ID, {
        now,
        warn: (msg, f) => warnings.push({ msg, problem: f.problem, file: f.file }),
      })!;
      return { got, warnings };
    };
    const now = b.notBefore + LEAF_BACKDATE_MS + 20_000;

    // Written by an older agent: no record; loads, counted from notBefore.
    writeBundle(d, b);
    expect(existsSync(receiptPath)).toBe(false);
    expect(read(now)).toEqual({ got: b, warnings: [] });
    expect(read(now).got.receivedAt).toBeUndefined();

    // Before notBefore (the agent's clock behind the CA's): clamped to notBefore.
    writeBundle(d, { ...b, receivedAt: b.notBefore - 5000 });
    expect(read(now)).toEqual({ got: { ...b, receivedAt: b.notBefore }, warnings: [] });
    // After notAfter, read once the certificate has expired: clamped to notAfter.
    writeBundle(d, { ...b, receivedAt: b.notAfter + 5000 });
    expect(read(b.notAfter + 6000).got.receivedAt).toBe(b.notAfter);
    expect(renewalDelay(read(b.notAfter + 6000).got, b.notAfter + 6000, () => 0.5)).toBe(0);

    // In the future: ignored with a warning.
    writeBundle(d, { ...b, receivedAt: now + 1 });
    let r = read(now);
    expect(r.got.receivedAt).toBeUndefined();
    expect(r.warnings).toEqual([{
      msg: "ignoring the record of when the certificate was received; its lifetime counts from notBefore",
      problem: expect.stringContaining("is in the future"),
      file: receiptPath,
    }]);

    // Garbled in several ways.
    const good = JSON.parse(readFileSync(receiptPath, "utf8")) as { leafSha256: string; receivedAt: string };
    const garbled: Array<[string, RegExp]> = [
      ["{not json", /not JSON/],
      ["[1]", /not a JSON object/],
      ["null", /not a JSON object/],
      [JSON.stringify({ leafSha256: good.leafSha256 }), /receivedAt undefined is not an ISO 8601 UTC time/],
      [JSON.stringify({ ...good, receivedAt: "yesterday" }), /"yesterday" is not an ISO 8601 UTC time/],
      [JSON.stringify({ ...good, receivedAt: 12345 }), /12345 is not an ISO 8601 UTC time/],
      [JSON.stringify({ ...good, receivedAt: "2024-13-45T99:00:00Z" }), /not an ISO 8601 UTC time/],
      [JSON.stringify({ ...good, receivedAt: "2024-02-30T00:00:00Z" }), /not an ISO 8601 UTC time/],
      [JSON.stringify({ ...good, receivedAt: "2024-02-01 00:00:00" }), /not an ISO 8601 UTC time/],
      [JSON.stringify({ receivedAt: good.receivedAt }), /for another certificate/],
    ];
    for (const [text, problem] of garbled) {
      writeFileSync(receiptPath, text);
      r = read(now);
      expect(r.got).toEqual(b);
      expect(r.warnings.length).toBe(1);
      expect(r.warnings[0]!.problem).toMatch(problem);
    }

    // A record left from another certificate (a crash between writing the chain and the record).
    writeBundle(d, { ...other, receivedAt: now - 1000 });
    writeFileAtomic(join(d, "key.pem"), b.keyPem, 0o600);
    writeFileAtomic(join(d, "cert-chain.pem"), b.chainPem);
    r = read(now);
    expect(r.got).toEqual(b);
    expect(r.warnings[0]!.problem).toBe("it is for another certificate");

    // Writing a bundle without receivedAt removes a record that no longer applies.
    writeBundle(d, { ...b, receivedAt: now - 1000 });
    writeBundle(d, b);
    expect(existsSync(receiptPath)).toBe(false);
    expect(readdirSync(d).sort()).toEqual(["cert-chain.pem", "key.pem", "root-cert.pem"]);
  });
});
