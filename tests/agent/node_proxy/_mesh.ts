/**
 * Certificates for node proxy tests from the project's CA code: a self-signed root made by
 * citadel's makeRoot and workload leaves signed by its leaf signer (the CA's hot path), each
 * for one SPIFFE identity, as agent bundles. Also a free port on two loopback addresses at once
 * (the HBONE port is the same on every machine).
 */
import type { Duplex } from "node:stream";
import { createPrivateKey, generateKeyPairSync } from "node:crypto";
import { createServer } from "node:net";
import { makeRoot } from "../../../mod/citadel/ca_store.ts";
import { pemDecodeAll, pemEncode } from "../../../mod/citadel/pem.ts";
import { createLeafSigner, type LeafSigner } from "../../../mod/citadel/sign.ts";
import { type CertBundle, makeBundle } from "../../../mod/agent/certs.ts";

/** A test CA. */
export interface TestCa {
  readonly rootPem: string;
  /** A fresh key and leaf for `identity`, valid from a minute ago for `ttlMs` (default 1 h). */
  issue(identity: string, ttlMs?: number): CertBundle;
}

/** Makes a root for `trustDomain` (default cluster.local). */
export async function createTestCa(trustDomain = "cluster.local"): Promise<TestCa> {
  const root = await makeRoot("ec-p256", trustDomain, Date.now());
  const signer: LeafSigner = createLeafSigner({
    certDer: pemDecodeAll(root.certPem)[0]!.der,
    key: createPrivateKey(root.keyPem),
  });
  return {
    rootPem: root.certPem,
    issue(identity, ttlMs = 3_600_000) {
      const { privateKey, publicKey } = generateKeyPairSync("ec", { namedCurve: "P-256" });
      const now = Date.now();
      const leaf = signer.sign({
        spki: new Uint8Array(publicKey.export({ format: "der", type: "spki" })),
        names: [{ type: "uri", value: identity }],
        notBefore: now - 60_000,
        notAfter: now + ttlMs,
      });
      const pem = pemEncode("CERTIFICATE", leaf.der);
      return makeBundle(
        [pem],
        privateKey.export({ format: "pem", type: "pkcs8" }) as string,
        [root.certPem],
        {
          what: identity,
          expectedIdentity: identity,
        },
      );
    },
  };
}

/** A port free on every one of `hosts` (tried a few times). */
export async function commonFreePort(hosts: readonly string[]): Promise<number> {
  const tryBind = (host: string, port: number) =>
    new Promise<number | undefined>((resolve) => {
      const s = createServer();
      s.once("error", () => resolve(undefined));
      s.listen(port, host, () => {
        const p = (s.address() as { port: number }).port;
        s.close(() => resolve(p));
      });
    });
  for (let i = 0; i < 20; i++) {
    const port = await tryBind(hosts[0]!, 0);
    if (port === undefined) continue;
    let ok = true;
    for (const h of hosts.slice(1)) ok &&= (await tryBind(h, port)) !== undefined;
    if (ok) return port;
  }
  throw new Error(`no port free on all of ${hosts.join(", ")}`);
}

/** Everything `s` sends until it ends, as one buffer. */
export function readAll(s: Duplex): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    s.on("data", (c: Buffer) => chunks.push(c));
    s.once("end", () => resolve(Buffer.concat(chunks)));
    s.once("error", reject);
  });
}
