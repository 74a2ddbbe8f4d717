import { afterAll, describe, expect, test } from "bun:test";
import { createPrivateKey, generateKeyPairSync, X509Certificate } from "node:crypto";
import { readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { pemEncode } from "../../mod/citadel/pem.ts";
import { createLeafSigner } from "../../mod/citadel/sign.ts";
import { parseCertificate, subjectKeyIdentifierOf } from "../../mod/citadel/x509.ts";
import { makeOfflineCa, opensslOk, tempDir } from "./_ca.ts";

const ID = "spiffe://cluster.local/ns/app/sa/web";
const dir = tempDir();
afterAll(() => dir.cleanup());
makeOfflineCa(dir.path);

const caPem = readFileSync(join(dir.path, "ca-cert.pem"), "utf8");
const caKey = createPrivateKey(readFileSync(join(dir.path, "ca-key.pem"), "utf8"));
const caDer = new Uint8Array(new X509Certificate(caPem).raw);

function spki(): Uint8Array {
  const { publicKey } = generateKeyPairSync("ec", { namedCurve: "P-256" });
  return new Uint8Array(publicKey.export({ format: "der", type: "spki" }));
}

describe("createLeafSigner()", () => {
  test("issues an X.509-SVID leaf that openssl reads field by field and verifies for client and server use", () => {
    const signer = createLeafSigner({ certDer: caDer, key: caKey });
    const now = Date.now();
    const leaf = signer.sign({
      spki: spki(),
      names: [{ type: "uri", value: ID }],
      notBefore: now - 60_000,
      notAfter: now + 3600_000,
    });
    writeFileSync(join(dir.path, "leaf.pem"), pemEncode("CERTIFICATE", leaf.der));
    const text = opensslOk(["x509", "-in", "leaf.pem", "-noout", "-text"], { cwd: dir.path });
    expect(text).toContain("Version: 3 (0x2)");
    expect(text).toContain("Signature Algorithm: ecdsa-with-SHA256");
    expect(text).toContain("Issuer: O = cluster.local, CN = meshd intermediate");
    expect(text).toMatch(/Subject: *\n/);
    expect(text).toMatch(/X509v3 Key Usage: critical\s+Digital Signature, Key Encipherment/);
    expect(text).toMatch(
      /X509v3 Extended Key Usage: *\n\s+TLS Web Server Authentication, TLS Web Client Authentication/,
    );
    expect(text).toMatch(/X509v3 Basic Constraints: critical\s+CA:FALSE/);
    expect(text).toMatch(
      /X509v3 Subject Alternative Name: critical\s+URI:spiffe:\/\/cluster.local\/ns\/app\/sa\/web\n/,
    );
    for (const purpose of ["sslclient", "sslserver"]) {
      expect(
        opensslOk(
          [
            "verify",
            "-x509_strict",
            "-purpose",
            purpose,
            "-CAfile",
            "root-cert.pem",
            "-untrusted",
            "ca-cert.pem",
            "leaf.pem",
          ],
          { cwd: dir.path },
        ),
      ).toContain("leaf.pem: OK");
    }
    const x = new X509Certificate(pemEncode("CERTIFICATE", leaf.der));
    expect(Date.parse(x.validFrom)).toBe(Math.floor((now - 60_000) / 1000) * 1000);
    expect(Date.parse(x.validTo)).toBe(Math.floor((now + 3600_000) / 1000) * 1000);
    expect(x.serialNumber.toLowerCase().replace(/^0+/, "")).toBe(leaf.serialHex.replace(/^0+/, ""));
    const fields = parseCertificate(leaf.der);
    const aki = fields.extensions.get("2.5.29.35")!.value;
    const ski = subjectKeyIdentifierOf(parseCertificate(caDer))!;
    expect(Buffer.from(aki).includes(Buffer.from(ski))).toBe(true);
  });

  test("serials are random, positive and at most 17 octets", () => {
    const signer = createLeafSigner({ certDer: caDer, key: caKey });
    const key = spki();
    const serials = new Set<string>();
    for (let i = 0; i < 600; i++) {
      const leaf = signer.sign({
        spki: key,
        names: [{ type: "uri", value: ID }],
        notBefore: 0,
        notAfter: 86_400_000,
      });
      const hex = parseCertificate(leaf.der).serialHex;
      expect(hex.length).toBeLessThanOrEqual(34);
      expect(parseInt(hex.slice(0, 2), 16)).toBeLessThan(0x80);
      expect(leaf.serialHex).toBe(hex);
      serials.add(hex);
    }
    expect(serials.size).toBe(600);
  });

  test("an RSA CA signs with sha256WithRSAEncryption, and DNS and IP names are encoded for server certificates", () => {
    opensslOk(
      [
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        "rsa-key.pem",
        "-out",
        "rsa-ca.pem",
        "-days",
        "2",
        "-subj",
        "/O=rsa-ca",
        "-addext",
        "basicConstraints=critical,CA:TRUE",
        "-addext",
        "keyUsage=critical,keyCertSign",
      ],
      { cwd: dir.path },
    );
    const pem = readFileSync(join(dir.path, "rsa-ca.pem"), "utf8");
    const signer = createLeafSigner({
      certDer: new Uint8Array(new X509Certificate(pem).raw),
      key: createPrivateKey(readFileSync(join(dir.path, "rsa-key.pem"), "utf8")),
    });
    const now = Date.now();
    const leaf = signer.sign({
      spki: spki(),
      names: [{ type: "dns", value: "localhost" }, { type: "ip", value: "127.0.0.1" }, {
        type: "ip",
        value: "fd00::1",
      }],
      notBefore: now - 1000,
      notAfter: now + 3600_000,
    });
    writeFileSync(join(dir.path, "rsa-leaf.pem"), pemEncode("CERTIFICATE", leaf.der));
    const text = opensslOk(["x509", "-in", "rsa-leaf.pem", "-noout", "-text"], { cwd: dir.path });
    expect(text).toContain("Signature Algorithm: sha256WithRSAEncryption");
    expect(text).toContain("DNS:localhost, IP Address:127.0.0.1, IP Address:FD00:0:0:0:0:0:0:1");
    expect(opensslOk(["verify", "-CAfile", "rsa-ca.pem", "rsa-leaf.pem"], { cwd: dir.path })).toContain("OK");
    expect(new X509Certificate(pemEncode("CERTIFICATE", leaf.der)).checkHost("localhost")).toBe("localhost");
    expect(new X509Certificate(pem).publicKey.asymmetricKeyType).toBe("rsa");
  });

  test("refuses a leaf without names", () => {
    const signer = createLeafSigner({ certDer: caDer, key: caKey });
    expect(() => signer.sign({ spki: spki(), names: [], notBefore: 0, notAfter: 1000 })).toThrow(
      /at least one/,
    );
  });
});
