import { afterAll, describe, expect, test } from "bun:test";
import { generateKeyPairSync, randomBytes } from "node:crypto";
import { readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import {
  createCsr,
  createCsrDer,
  csrDerFromPem,
  CsrError,
  parseCsr,
  readCsr,
} from "../../mod/citadel/csr.ts";
import { opensslOk, tempDir } from "./_ca.ts";

const ID = "spiffe://cluster.local/ns/app/sa/web";
const dir = tempDir();
afterAll(() => dir.cleanup());

describe("parseCsr()", () => {
  test("reads what createCsr() builds for EC, RSA and Ed25519 keys, and openssl agrees", () => {
    const keys = [
      generateKeyPairSync("ec", { namedCurve: "P-256" }).privateKey,
      generateKeyPairSync("ec", { namedCurve: "P-384" }).privateKey,
      generateKeyPairSync("rsa", { modulusLength: 2048 }).privateKey,
      generateKeyPairSync("ed25519").privateKey,
    ];
    const described = keys.map((key, i) => {
      const pem = createCsr({ key, names: [{ type: "uri", value: ID }] });
      writeFileSync(join(dir.path, `c${i}.pem`), pem);
      const text = opensslOk(["req", "-in", `c${i}.pem`, "-noout", "-verify", "-text"], { cwd: dir.path });
      expect(text).toContain(`URI:${ID}`);
      const parsed = parseCsr(csrDerFromPem(pem));
      expect(parsed.names.uris).toEqual([ID]);
      return parsed.keyDescription;
    });
    expect(described).toEqual(["ec P-256", "ec P-384", "rsa 2048", "ed25519"]);
  });

  test("reads CSRs made by openssl, with every kind of requested name counted", () => {
    opensslOk(
      [
        "req",
        "-new",
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:P-256",
        "-nodes",
        "-keyout",
        "k.pem",
        "-out",
        "o.csr",
        "-subj",
        "/O=ignored",
        "-addext",
        `subjectAltName=URI:${ID},DNS:a.example,IP:10.0.0.1,email:x@example.com`,
      ],
      { cwd: dir.path },
    );
    const parsed = parseCsr(csrDerFromPem(readFileSync(join(dir.path, "o.csr"), "utf8")));
    expect(parsed.names).toEqual({
      uris: [ID],
      dns: ["a.example"],
      ips: ["10.0.0.1"],
      emails: ["x@example.com"],
      other: 0,
    });
  });

  test("refuses a CSR whose signature does not verify with its own key (no proof of possession)", () => {
    const key = generateKeyPairSync("ec", { namedCurve: "P-256" }).privateKey;
    const der = createCsrDer({ key, names: [{ type: "uri", value: ID }] });
    const tampered = new Uint8Array(der);
    const at = Buffer.from(tampered).indexOf(Buffer.from("ns/app"));
    tampered[at + 4] = "x".charCodeAt(0);
    expect(readCsr(tampered).names.uris).toEqual(["spiffe://cluster.local/ns/axp/sa/web"]);
    expect(() => parseCsr(tampered)).toThrow(/no proof of possession/);
  });

  test("refuses weak or unsupported keys", () => {
    const small = generateKeyPairSync("rsa", { modulusLength: 1024 }).privateKey;
    expect(() => parseCsr(createCsrDer({ key: small, names: [{ type: "uri", value: ID }] }))).toThrow(
      /1024 bits/,
    );
    const p521 = generateKeyPairSync("ec", { namedCurve: "P-521" }).privateKey;
    expect(() => parseCsr(createCsrDer({ key: p521, names: [{ type: "uri", value: ID }] }))).toThrow(
      /secp521r1/,
    );
  });

  test("refuses garbage with a CsrError saying what is wrong, never another error", () => {
    expect(() => csrDerFromPem("not pem at all")).toThrow(/not a PEM CERTIFICATE REQUEST/);
    expect(() => csrDerFromPem("-----BEGIN CERTIFICATE-----\nAQ==\n-----END CERTIFICATE-----\n")).toThrow(
      CsrError,
    );
    expect(() => parseCsr(Uint8Array.of(0x30, 0x03, 0x02, 0x01, 0x00))).toThrow(/CertificationRequestInfo/);
    expect(() => parseCsr(new TextEncoder().encode("garbage bytes"))).toThrow(CsrError);
    const good = createCsrDer({
      key: generateKeyPairSync("ec", { namedCurve: "P-256" }).privateKey,
      names: [{ type: "uri", value: ID }],
    });
    expect(() => parseCsr(good.subarray(0, good.length - 1))).toThrow(CsrError);
    expect(() => parseCsr(Uint8Array.from([...good, 0]))).toThrow(/trailing bytes/);
  });

  test("never throws anything but CsrError on thousands of mutated CSRs", () => {
    const good = createCsrDer({
      key: generateKeyPairSync("ec", { namedCurve: "P-256" }).privateKey,
      names: [{ type: "uri", value: ID }, { type: "dns", value: "x.example" }],
    });
    let refused = 0;
    for (let i = 0; i < 3000; i++) {
      const m = new Uint8Array(good);
      const flips = 1 + (i % 4);
      const r = randomBytes(flips * 3);
      for (let f = 0; f < flips; f++) m[(r[f * 3]! << 8 | r[f * 3 + 1]!) % m.length] = r[f * 3 + 2]!;
      const cut = i % 7 === 0 ? m.subarray(0, r[0]! % m.length) : m;
      try {
        parseCsr(cut);
      } catch (err) {
        expect(err).toBeInstanceOf(CsrError);
        refused++;
      }
    }
    expect(refused).toBeGreaterThan(2900);
  });
});
