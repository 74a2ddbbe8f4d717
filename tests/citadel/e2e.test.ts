/**
 * Citadel end to end: `meshd serve` as a real process, real TLS, a real gRPC client, and
 * openssl checking what comes out.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { Code, ConnectError } from "@connectrpc/connect";
import { spawn } from "bun";
import { createHash, X509Certificate } from "node:crypto";
import { readFileSync, writeFileSync } from "node:fs";
import { join, resolve } from "node:path";
import { pemDecodeAll } from "../../mod/citadel/pem.ts";
import { createToken, loadOrCreateTokenKey } from "../../mod/citadel/token.ts";
import { type MeshdProcess, ROOT, startMeshd } from "../e2e/_meshd.ts";
import { caClient, csrFor, ecKey, keyPem, makeOfflineCa, openssl, opensslOk, tempDir } from "./_ca.ts";

const TD = "cluster.local";
const WEB = `spiffe://${TD}/ns/app/sa/web`;

/** Runs `meshd ARGS` (not serve) to completion. */
async function meshdCli(args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  const proc = spawn([process.execPath, resolve(ROOT, "main.ts"), ...args], {
    stdout: "pipe",
    stderr: "pipe",
    cwd: ROOT,
  });
  const [stdout, stderr, code] = await Promise.all([
    new Response(proc.stdout).text(),
    new Response(proc.stderr).text(),
    proc.exited,
  ]);
  return { code, stdout, stderr };
}

/** Runs `meshd serve` expecting it to fail at start; resolves with its exit code and stderr. */
async function serveFails(args: string[]): Promise<{ code: number; stderr: string }> {
  const proc = spawn(
    [
      process.execPath,
      resolve(ROOT, "main.ts"),
      "serve",
      "--modules=citadel",
      "--grpc-addr=127.0.0.1:0",
      "--admin-addr=127.0.0.1:0",
      "--grpc-tls-addr=127.0.0.1:0",
      "--log-format=json",
      ...args,
    ],
    { stdout: "pipe", stderr: "pipe", cwd: ROOT },
  );
  const timer = setTimeout(() => proc.kill("SIGKILL"), 20_000);
  const [stderr, code] = await Promise.all([new Response(proc.stderr).text(), proc.exited]);
  clearTimeout(timer);
  return { code, stderr };
}

async function codeOf(p: Promise<unknown>): Promise<Code | "ok"> {
  try {
    await p;
    return "ok";
  } catch (err) {
    return ConnectError.from(err).code;
  }
}

function bearer(token: string) {
  return { headers: { authorization: `Bearer ${token}` } };
}

function pemCount(pem: string): number {
  return pemDecodeAll(pem).length;
}

function fingerprint(pem: string): string {
  return createHash("sha256").update(new X509Certificate(pem).raw).digest("hex");
}

async function metric(m: MeshdProcess, name: string): Promise<number> {
  const text = await (await fetch(`http://${m.adminAddr}/metrics`)).text();
  const line = text.split("\n").find((l) => l.startsWith(name + " "));
  return line ? Number(line.split(" ").pop()) : 0;
}

async function refusedCount(m: MeshdProcess, reason: string): Promise<number> {
  const text = await (await fetch(`http://${m.adminAddr}/metrics`)).text();
  const line = text.split("\n").find((l) => l.startsWith(`citadel_csr_refused_total{reason="${reason}"}`));
  return line ? Number(line.split(" ").pop()) : 0;
}

async function startCitadel(
  dataDir: string,
  extra: string[] = [],
): Promise<{ meshd: MeshdProcess; tlsAddr: string }> {
  const meshd = await startMeshd({
    args: [
      "--modules=citadel",
      `--data-dir=${dataDir}`,
      "--grpc-tls-addr=127.0.0.1:0",
      "--shutdown-grace=2s",
      ...extra,
    ],
  });
  const tlsAddr = await meshd.addrOf("citadel TLS listening");
  return { meshd, tlsAddr };
}

describe("citadel (process): issuance, renewal, hostile requests, rotation", () => {
  const data = tempDir();
  const work = tempDir();
  let meshd: MeshdProcess;
  let tlsAddr: string;
  let rootPem: string;
  let leafPem: string;
  let leafKey: string;

  beforeAll(async () => {
    ({ meshd, tlsAddr } = await startCitadel(data.path, ["--csr-rate-per-identity=1000"]));
  });
  afterAll(async () => {
    await meshd?.stop();
    data.cleanup();
    work.cleanup();
  });

  test("a bootstrap token from `meshd token create` gets a certificate over 15010 that openssl verifies", async () => {
    const made = await meshdCli([
      "token",
      "create",
      "--namespace=app",
      "--service-account=web",
      `--data-dir=${data.path}`,
      "--ttl=10m",
    ]);
    expect(made.code).toBe(0);
    const token = made.stdout.trim();
    expect(token.split(".")).toHaveLength(3);
    const { csr, key } = csrFor(WEB);
    const res = await caClient(meshd.grpcAddr).createCertificate(
      { csr, validityDuration: 3600n },
      bearer(token),
    );
    expect(res.certChain).toHaveLength(2);
    [leafPem, rootPem] = res.certChain as [string, string];
    leafKey = keyPem(key);
    writeFileSync(join(work.path, "leaf.pem"), leafPem);
    writeFileSync(join(work.path, "root.pem"), rootPem);
    expect(opensslOk(["verify", "-CAfile", "root.pem", "leaf.pem"], { cwd: work.path })).toContain(
      "leaf.pem: OK",
    );
    const text = opensslOk(["x509", "-in", "leaf.pem", "-noout", "-text"], { cwd: work.path });
    expect(text).toContain(`URI:${WEB}`);
    expect(text).toMatch(/X509v3 Subject Alternative Name: critical/);
    expect(text).toMatch(/CA:FALSE/);
    const leaf = new X509Certificate(leafPem);
    const life = Date.parse(leaf.validTo) - Date.parse(leaf.validFrom);
    expect(life).toBeGreaterThanOrEqual(3600_000);
    expect(life).toBeLessThanOrEqual(3600_000 + 61_000);
    expect(new X509Certificate(rootPem).subject).toContain(`O=${TD}`);
    expect(
      meshd.logs.some((l) =>
        l.msg === "certificate issued" && l.identity === WEB && typeof l.serial === "string"
      ),
    )
      .toBe(true);
  });

  test("renewal over mutual TLS on 15012 with the issued certificate and no token", async () => {
    const { csr } = csrFor(WEB);
    const client = caClient(tlsAddr, { ca: rootPem, cert: leafPem, key: leafKey });
    const res = await client.createCertificate({ csr, validityDuration: 0n });
    const renewed = new X509Certificate(res.certChain[0]!);
    expect(renewed.subjectAltName).toContain(WEB);
    expect(renewed.verify(new X509Certificate(rootPem).publicKey)).toBe(true);
    const life = Date.parse(renewed.validTo) - Date.parse(renewed.validFrom);
    expect(life).toBeGreaterThan(23 * 3600_000);
    // TLS without a client certificate and without a token is refused.
    expect(await codeOf(caClient(tlsAddr, { ca: rootPem }).createCertificate({ csr }))).toBe(
      Code.Unauthenticated,
    );
  });

  test("hostile requests are refused with the right status, audited, counted, and nothing is issued", async () => {
    const key = loadOrCreateTokenKey(data.path);
    const other = tempDir();
    const plain = caClient(meshd.grpcAddr);
    const token = (
      o: { ns?: string; sa?: string; now?: number; ttlMs?: number; singleUse?: boolean } = {},
      k = key,
    ) =>
      createToken(k, {
        trustDomain: TD,
        namespace: o.ns ?? "app",
        serviceAccount: o.sa ?? "web",
        ttlMs: o.ttlMs ?? 600_000,
        now: o.now ?? Date.now(),
        singleUse: o.singleUse,
      });
    const issuedBefore = await metric(meshd, "citadel_certs_issued_total");
    const b64 = (v: unknown) => Buffer.from(JSON.stringify(v)).toString("base64url");
    const now = Math.floor(Date.now() / 1000);
    const noneToken = `${b64({ alg: "none", typ: "JWT" })}.${
      b64({
        iss: "meshd",
        aud: "meshd-ca",
        sub: WEB,
        ns: "app",
        sa: "web",
        exp: now + 600,
        iat: now,
        nbf: now,
        jti: "abcdefghijkl",
      })
    }.`;
    const outsider = openssl(
      [
        "req",
        "-x509",
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:P-256",
        "-nodes",
        "-keyout",
        "out-key.pem",
        "-out",
        "out-cert.pem",
        "-days",
        "1",
        "-subj",
        "/O=evil",
        "-addext",
        `subjectAltName=critical,URI:${WEB}`,
        "-addext",
        "basicConstraints=critical,CA:FALSE",
      ],
      { cwd: work.path },
    );
    expect(outsider.code).toBe(0);
    const cases: Array<[string, () => Promise<unknown>, Code, string]> = [
      [
        "no credentials",
        () => plain.createCertificate({ csr: csrFor(WEB).csr }),
        Code.Unauthenticated,
        "unauthenticated",
      ],
      [
        "CSR for another identity",
        () => plain.createCertificate({ csr: csrFor(`spiffe://${TD}/ns/app/sa/db`).csr }, bearer(token())),
        Code.PermissionDenied,
        "identity_mismatch",
      ],
      [
        "expired token",
        () =>
          plain.createCertificate(
            { csr: csrFor(WEB).csr },
            bearer(token({ now: Date.now() - 7200_000, ttlMs: 3600_000 })),
          ),
        Code.Unauthenticated,
        "token_expired",
      ],
      [
        "token signed by another key",
        () =>
          plain.createCertificate(
            { csr: csrFor(WEB).csr },
            bearer(token({}, loadOrCreateTokenKey(other.path))),
          ),
        Code.Unauthenticated,
        "token_invalid",
      ],
      [
        "alg none",
        () => plain.createCertificate({ csr: csrFor(WEB).csr }, bearer(noneToken)),
        Code.Unauthenticated,
        "token_invalid",
      ],
      [
        "garbage CSR bytes",
        () =>
          plain.createCertificate(
            {
              csr:
                "-----BEGIN CERTIFICATE REQUEST-----\nZ2FyYmFnZSBieXRlcw==\n-----END CERTIFICATE REQUEST-----\n",
            },
            bearer(token()),
          ),
        Code.InvalidArgument,
        "csr_invalid",
      ],
      [
        "CSR with extra SANs",
        () =>
          plain.createCertificate(
            { csr: csrFor([{ type: "uri", value: WEB }, { type: "dns", value: "evil.example.com" }]).csr },
            bearer(token()),
          ),
        Code.InvalidArgument,
        "csr_names",
      ],
      [
        "oversized request",
        () => plain.createCertificate({ csr: "A".repeat(100 * 1024) }, bearer(token())),
        Code.InvalidArgument,
        "csr_too_large",
      ],
      [
        "client certificate from another CA",
        () =>
          caClient(tlsAddr, {
            ca: rootPem,
            cert: readFileSync(join(work.path, "out-cert.pem"), "utf8"),
            key: readFileSync(join(work.path, "out-key.pem"), "utf8"),
          }).createCertificate({ csr: csrFor(WEB).csr }),
        Code.Unauthenticated,
        "certificate_untrusted",
      ],
    ];
    for (const [name, call, want, reason] of cases) {
      const got = await codeOf(call());
      expect({ name, code: got === "ok" ? "ok" : Code[got] }).toEqual({ name, code: Code[want] });
      expect({ name, counted: await refusedCount(meshd, reason) > 0 }).toEqual({ name, counted: true });
    }

    // A single-use token works once; the replay is refused.
    const once = token({ singleUse: true });
    expect(await codeOf(plain.createCertificate({ csr: csrFor(WEB).csr }, bearer(once)))).toBe("ok");
    expect(await codeOf(plain.createCertificate({ csr: csrFor(WEB).csr }, bearer(once)))).toBe(
      Code.Unauthenticated,
    );
    expect(await refusedCount(meshd, "token_replayed")).toBe(1);

    // Only the single-use token's certificate was issued.
    expect(await metric(meshd, "citadel_certs_issued_total")).toBe(issuedBefore + 1);
    const audit = meshd.logs.filter((l) => l.msg === "certificate request refused");
    expect(audit.length).toBeGreaterThanOrEqual(cases.length + 1);
    expect(
      audit.every((l) =>
        l.level === "warn" && typeof l.caller === "string" && typeof l.requested === "string"
      ),
    )
      .toBe(true);
    const mismatch = audit.find((l) => l.reason === "identity_mismatch")!;
    expect(mismatch.requested).toBe(`spiffe://${TD}/ns/app/sa/db`);
    expect(mismatch.caller).toContain(`sub=${WEB}`);
    // Still serving.
    expect(await codeOf(plain.createCertificate({ csr: csrFor(WEB).csr }, bearer(token())))).toBe("ok");
    other.cleanup();
  });

  test("rotation: both roots trusted until retire, old leaves verify against the bundle; then only the new root", async () => {
    const key = loadOrCreateTokenKey(data.path);
    const tok = () =>
      createToken(key, {
        trustDomain: TD,
        namespace: "app",
        serviceAccount: "web",
        ttlMs: 600_000,
        now: Date.now(),
      });
    const plain = caClient(meshd.grpcAddr);
    const oldRoot = rootPem;

    const rotated = await meshdCli([
      "ca",
      "rotate",
      `--admin-addr=${meshd.adminAddr}`,
      `--data-dir=${data.path}`,
    ]);
    expect(rotated.code).toBe(0);
    expect(JSON.parse(rotated.stdout).roots).toHaveLength(2);

    // Prepared: leaves are still signed by the old root, and the bundle already carries both.
    const prepared = await plain.createCertificate({ csr: csrFor(WEB).csr }, bearer(tok()));
    expect(pemCount(prepared.certChain[1]!)).toBe(2);
    expect(new X509Certificate(prepared.certChain[0]!).verify(new X509Certificate(oldRoot).publicKey)).toBe(
      true,
    );

    const activated = await meshdCli([
      "ca",
      "activate",
      `--admin-addr=${meshd.adminAddr}`,
      `--data-dir=${data.path}`,
    ]);
    expect(activated.code).toBe(0);

    const during = await plain.createCertificate({ csr: csrFor(WEB).csr }, bearer(tok()));
    expect(during.certChain).toHaveLength(2);
    const bundle = during.certChain[1]!;
    expect(pemCount(bundle)).toBe(2);
    const [newRoot, stillOld] = pemDecodeAll(bundle).map((b) => new X509Certificate(b.der).toString());
    expect(fingerprint(stillOld!)).toBe(fingerprint(oldRoot));
    expect(fingerprint(newRoot!)).not.toBe(fingerprint(oldRoot));
    writeFileSync(join(work.path, "bundle.pem"), bundle);
    writeFileSync(join(work.path, "leaf-new.pem"), during.certChain[0]!);
    // The new leaf is signed by the new root; the leaf from before the rotation still verifies.
    expect(new X509Certificate(during.certChain[0]!).verify(new X509Certificate(newRoot!).publicKey)).toBe(
      true,
    );
    expect(opensslOk(["verify", "-CAfile", "bundle.pem", "leaf-new.pem"], { cwd: work.path })).toContain(
      "OK",
    );
    expect(opensslOk(["verify", "-CAfile", "bundle.pem", "leaf.pem"], { cwd: work.path })).toContain("OK");
    // An agent that has not renewed yet (old root, old leaf) can still renew over mutual TLS.
    const renew = await caClient(tlsAddr, { ca: oldRoot, cert: leafPem, key: leafKey }).createCertificate({
      csr: csrFor(WEB).csr,
    });
    expect(pemCount(renew.certChain[1]!)).toBe(2);

    const retired = await meshdCli([
      "ca",
      "retire-root",
      `--admin-addr=${meshd.adminAddr}`,
      `--data-dir=${data.path}`,
    ]);
    expect(retired.code).toBe(0);
    expect(JSON.parse(retired.stdout).roots).toHaveLength(1);
    const after = await plain.createCertificate({ csr: csrFor(WEB).csr }, bearer(tok()));
    expect(pemCount(after.certChain[1]!)).toBe(1);
    expect(fingerprint(after.certChain[1]!)).toBe(fingerprint(newRoot!));
    writeFileSync(join(work.path, "bundle-after.pem"), after.certChain[1]!);
    expect(openssl(["verify", "-CAfile", "bundle-after.pem", "leaf.pem"], { cwd: work.path }).code).not.toBe(
      0,
    );
    expect(opensslOk(["verify", "-CAfile", "bundle-after.pem", "leaf-new.pem"], { cwd: work.path }))
      .toContain("OK");
    // The listener now presents a certificate of the new root and no longer accepts old-root leaves.
    const newLeafKey = csrFor(WEB);
    const fresh = await plain.createCertificate({ csr: newLeafKey.csr }, bearer(tok()));
    const viaNew = caClient(tlsAddr, {
      ca: newRoot!,
      cert: fresh.certChain[0]!,
      key: keyPem(newLeafKey.key),
    });
    expect(await codeOf(viaNew.createCertificate({ csr: csrFor(WEB).csr }))).toBe("ok");
    const stale = caClient(tlsAddr, { ca: newRoot!, cert: leafPem, key: leafKey });
    expect(await codeOf(stale.createCertificate({ csr: csrFor(WEB).csr }))).toBe(Code.Unauthenticated);
    // Nothing left to retire.
    const nothingLeft = await meshdCli([
      "ca",
      "retire-root",
      `--admin-addr=${meshd.adminAddr}`,
      `--data-dir=${data.path}`,
    ]);
    expect(nothingLeft.code).toBe(1);
  });
});

describe("citadel (process): persistence and bring-your-own CA", () => {
  test("a restart with the same --data-dir keeps the root, the token key and the redeemed single-use tokens", async () => {
    const data = tempDir();
    try {
      let { meshd } = await startCitadel(data.path);
      const key = loadOrCreateTokenKey(data.path);
      const once = createToken(key, {
        trustDomain: TD,
        namespace: "app",
        serviceAccount: "web",
        ttlMs: 600_000,
        now: Date.now(),
        singleUse: true,
      });
      const first = await caClient(meshd.grpcAddr).createCertificate({ csr: csrFor(WEB).csr }, bearer(once));
      expect(await meshd.stop()).toBe(0);

      ({ meshd } = await startCitadel(data.path));
      try {
        expect(
          await codeOf(caClient(meshd.grpcAddr).createCertificate({ csr: csrFor(WEB).csr }, bearer(once))),
        )
          .toBe(Code.Unauthenticated);
        const again = createToken(loadOrCreateTokenKey(data.path), {
          trustDomain: TD,
          namespace: "app",
          serviceAccount: "web",
          ttlMs: 600_000,
          now: Date.now(),
        });
        const second = await caClient(meshd.grpcAddr).createCertificate(
          { csr: csrFor(WEB).csr },
          bearer(again),
        );
        expect(fingerprint(second.certChain[1]!)).toBe(fingerprint(first.certChain[1]!));
        expect(meshd.logs.some((l) => l.msg === "loaded the CA")).toBe(true);
      } finally {
        await meshd.stop();
      }
    } finally {
      data.cleanup();
    }
  });

  test("--ca-dir: leaves of an intermediate under an offline root pass openssl verify -untrusted", async () => {
    const data = tempDir();
    const ca = tempDir();
    try {
      makeOfflineCa(ca.path);
      const { meshd, tlsAddr } = await startCitadel(data.path, [`--ca-dir=${ca.path}`]);
      try {
        const key = loadOrCreateTokenKey(data.path);
        const tok = createToken(key, {
          trustDomain: TD,
          namespace: "app",
          serviceAccount: "web",
          ttlMs: 600_000,
          now: Date.now(),
        });
        const { csr, key: leafKey } = csrFor(WEB);
        const res = await caClient(meshd.grpcAddr).createCertificate({ csr }, bearer(tok));
        expect(res.certChain).toHaveLength(3);
        const [leaf, inter, roots] = res.certChain as [string, string, string];
        expect(fingerprint(inter)).toBe(fingerprint(readFileSync(join(ca.path, "ca-cert.pem"), "utf8")));
        expect(fingerprint(roots)).toBe(fingerprint(readFileSync(join(ca.path, "root-cert.pem"), "utf8")));
        writeFileSync(join(ca.path, "leaf.pem"), leaf);
        writeFileSync(join(ca.path, "chain.pem"), inter);
        expect(
          opensslOk(["verify", "-CAfile", "root-cert.pem", "-untrusted", "chain.pem", "leaf.pem"], {
            cwd: ca.path,
          }),
        )
          .toContain("leaf.pem: OK");
        expect(openssl(["verify", "-CAfile", "root-cert.pem", "leaf.pem"], { cwd: ca.path }).code).not.toBe(
          0,
        );
        // mTLS renewal: the server certificate chains through the intermediate to the offline root.
        const renewed = await caClient(tlsAddr, { ca: roots, cert: leaf + inter, key: keyPem(leafKey) })
          .createCertificate({
            csr: csrFor(WEB).csr,
          });
        expect(renewed.certChain).toHaveLength(3);
        const rotate = await meshdCli([
          "ca",
          "rotate",
          `--admin-addr=${meshd.adminAddr}`,
          `--data-dir=${data.path}`,
        ]);
        expect(rotate.code).toBe(1);
        expect(rotate.stderr).toContain("--ca-dir");
      } finally {
        await meshd.stop();
      }
    } finally {
      data.cleanup();
      ca.cleanup();
    }
  });

  test("a key that does not match, a broken chain or a non-CA certificate is refused at start, naming the file", async () => {
    const data = tempDir();
    const ca = tempDir();
    try {
      makeOfflineCa(ca.path);
      const goodKey = readFileSync(join(ca.path, "ca-key.pem"), "utf8");
      writeFileSync(join(ca.path, "ca-key.pem"), keyPem(ecKey()));
      let r = await serveFails([`--data-dir=${data.path}`, `--ca-dir=${ca.path}`]);
      expect(r.code).not.toBe(0);
      expect(r.stderr).toContain(join(ca.path, "ca-key.pem"));
      expect(r.stderr).toContain("does not match");

      writeFileSync(join(ca.path, "ca-key.pem"), goodKey);
      const other = tempDir();
      makeOfflineCa(other.path);
      // Chain and roots of another CA: nothing issued this intermediate.
      writeFileSync(join(ca.path, "cert-chain.pem"), readFileSync(join(other.path, "ca-cert.pem")));
      writeFileSync(join(ca.path, "root-cert.pem"), readFileSync(join(other.path, "root-cert.pem")));
      r = await serveFails([`--data-dir=${data.path}`, `--ca-dir=${ca.path}`]);
      expect(r.code).not.toBe(0);
      expect(r.stderr).toContain(join(ca.path, "cert-chain.pem"));
      expect(r.stderr).toContain("broken chain");
      other.cleanup();

      const notCa = tempDir();
      makeOfflineCa(notCa.path, { intermediateCa: false });
      r = await serveFails([`--data-dir=${data.path}`, `--ca-dir=${notCa.path}`]);
      expect(r.code).not.toBe(0);
      expect(r.stderr).toContain(join(notCa.path, "ca-cert.pem"));
      expect(r.stderr).toContain("not a CA certificate");
      notCa.cleanup();
    } finally {
      data.cleanup();
      ca.cleanup();
    }
  });
});
