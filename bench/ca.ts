/**
 * CA benchmark: workload certificates issued per second end to end, in-process through the
 * service's issue function (PEM CSR decoded and parsed, proof of possession checked, policy
 * applied, leaf built as DER, signed and PEM-encoded, chain assembled), against the raw
 * node:crypto ECDSA P-256 signing rate of the same CA key in the same run, and the same
 * issuance through @peculiar/x509 for comparison. Also: the full CreateCertificate path with a
 * bootstrap token verified per request.
 *
 * Usage: bun bench/ca.ts [--seconds 3] [--csrs 2000]
 */
import { generateKeyPairSync, sign } from "node:crypto";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Registry } from "prom-client";
import { initCa } from "../mod/citadel/ca_store.ts";
import { createCsr } from "../mod/citadel/csr.ts";
import { type Caller, createCaService, createIssuer } from "../mod/citadel/service.ts";
import { parseWorkloadIdentity, type WorkloadIdentity } from "../mod/citadel/spiffe.ts";
import { createToken, loadOrCreateTokenKey, openUsedTokens } from "../mod/citadel/token.ts";
import { systemClock } from "../mod/shared/clock.ts";
import { createLogger } from "../mod/shared/logger.ts";
import { benchArgs } from "./_args.ts";

/** What one run measured. */
export interface CaBench {
  readonly csrs: number;
  /** Leaves per second through the service's issue function (authenticated caller). */
  readonly issuePerSec: number;
  /** Raw ECDSA P-256 signatures per second with the CA key over a TBSCertificate-sized input. */
  readonly rawSignPerSec: number;
  /** issue rate / raw sign rate: the median over alternating rounds. */
  readonly ratio: number;
  /** Leaves per second through @peculiar/x509 (parse, verify, generate, PEM). */
  readonly peculiarPerSec: number;
  /** Leaves per second through createCertificate with a bootstrap token verified each time. */
  readonly withTokenPerSec: number;
}

function median(xs: readonly number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const m = Math.floor(s.length / 2);
  return s.length % 2 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
}

/** Runs `fn` repeatedly for about `ms` milliseconds; returns calls per second. */
function rate(ms: number, fn: (i: number) => void): number {
  let n = 0;
  const t0 = performance.now();
  let t = t0;
  while (t - t0 < ms) {
    for (let k = 0; k < 50; k++) fn(n++);
    t = performance.now();
  }
  return n / ((t - t0) / 1000);
}

async function rateAsync(ms: number, fn: (i: number) => Promise<void>): Promise<number> {
  let n = 0;
  const t0 = performance.now();
  let t = t0;
  while (t - t0 < ms) {
    await fn(n++);
    t = performance.now();
  }
  return n / ((t - t0) / 1000);
}

/**
 * Runs the benchmark: raw signing and issuance for `seconds` each (in alternating rounds), the
 * other paths for `seconds` each, over `csrCount` pre-made CSRs.
 */
export async function runCaBench(seconds: number, csrCount: number): Promise<CaBench> {
  const dir = mkdtempSync(join(tmpdir(), "meshd-ca-bench-"));
  try {
    const quiet = createLogger({ write: () => {} });
    const store = await initCa(
      { dataDir: dir, keyType: "ec-p256", clock: systemClock, logger: quiet },
      "cluster.local",
    );
    const material = store.current();
    const issuer = createIssuer(material);
    const tokenKey = loadOrCreateTokenKey(dir);
    const service = createCaService({
      issuer: () => issuer,
      trustDomain: () => "cluster.local",
      tokenKey,
      usedTokens: openUsedTokens(join(dir, "used-tokens.json"), systemClock.now),
      clock: systemClock,
      logger: quiet,
      metrics: new Registry(),
      defaultTtlMs: 24 * 3600_000,
      maxTtlMs: 90 * 24 * 3600_000,
      ratePerMinute: 1e9,
    });
    const identities = 200;
    const csrs: Array<{ csr: string; caller: Caller }> = [];
    for (let i = 0; i < csrCount; i++) {
      const uri = `spiffe://cluster.local/ns/bench/sa/sa-${i % identities}`;
      const key = generateKeyPairSync("ec", { namedCurve: "P-256" }).privateKey;
      const identity = parseWorkloadIdentity(uri) as WorkloadIdentity;
      csrs.push({
        csr: createCsr({ key, names: [{ type: "uri", value: uri }] }),
        caller: { identity, method: "token", description: "bench" },
      });
    }
    const ms = seconds * 1000;

    // Warm up, then measure raw signing and issuance in alternating rounds so that load from
    // elsewhere on the machine hits both alike; the ratio is the median of the rounds' ratios.
    const tbsLike = new Uint8Array(420).fill(7);
    const rawRound = (d: number) => rate(d, () => void sign("sha256", tbsLike, material.signingKey));
    const issueRound = (d: number) =>
      rate(d, (i) => {
        const c = csrs[i % csrs.length]!;
        service.issue({ csr: c.csr, validityDuration: 0n }, c.caller);
      });
    rawRound(100);
    issueRound(100);
    const rounds = Math.max(1, Math.round(seconds * 2));
    const raws: number[] = [];
    const issues: number[] = [];
    for (let r = 0; r < rounds; r++) {
      raws.push(rawRound(ms / rounds));
      issues.push(issueRound(ms / rounds));
    }
    const rawSignPerSec = median(raws);
    const issuePerSec = median(issues);
    const ratio = median(issues.map((x, i) => x / raws[i]!));

    const tokens = csrs.slice(0, identities).map((c) =>
      `Bearer ${
        createToken(tokenKey, {
          trustDomain: "cluster.local",
          namespace: c.caller.identity.namespace,
          serviceAccount: c.caller.identity.serviceAccount,
          ttlMs: 3600_000,
          now: Date.now(),
        })
      }`
    );
    const withTokenPerSec = rate(ms, (i) => {
      const c = csrs[i % csrs.length]!;
      service.createCertificate({ csr: c.csr, validityDuration: 0n }, {
        authorization: tokens[(i % csrs.length) % identities]!,
      });
    });

    await import("reflect-metadata");
    const x509 = await import("@peculiar/x509");
    const alg = { name: "ECDSA", namedCurve: "P-256", hash: "SHA-256" };
    const pkcs8 = material.signingKey.export({ format: "der", type: "pkcs8" });
    const caKey = await crypto.subtle.importKey("pkcs8", pkcs8, alg, false, ["sign"]);
    const caCert = new x509.X509Certificate(material.signingCertPem);
    const aki = await x509.AuthorityKeyIdentifierExtension.create(await caCert.publicKey.export());
    const peculiarPerSec = await rateAsync(ms, async (i) => {
      const c = csrs[i % csrs.length]!;
      const req = new x509.Pkcs10CertificateRequest(c.csr);
      if (!(await req.verify())) throw new Error("CSR does not verify");
      const ext = req.extensions.find((e) => e.type === "2.5.29.17");
      const san = ext ? new x509.SubjectAlternativeNameExtension(ext.rawData) : undefined;
      const uri = san?.names.items.find((n) => n.type === "url")?.value;
      if (uri !== c.caller.identity.uri) throw new Error("unexpected SAN");
      const now = Date.now();
      const cert = await x509.X509CertificateGenerator.create({
        serialNumber: crypto.getRandomValues(new Uint8Array(16)).reduce(
          (s, b) => s + b.toString(16).padStart(2, "0"),
          "1",
        ),
        issuer: caCert.subject,
        subject: "",
        notBefore: new Date(now - 60_000),
        notAfter: new Date(now + 24 * 3600_000),
        signingKey: caKey,
        publicKey: req.publicKey,
        signingAlgorithm: alg,
        extensions: [
          new x509.KeyUsagesExtension(
            x509.KeyUsageFlags.digitalSignature | x509.KeyUsageFlags.keyEncipherment,
            true,
          ),
          new x509.ExtendedKeyUsageExtension([
            x509.ExtendedKeyUsage.serverAuth,
            x509.ExtendedKeyUsage.clientAuth,
          ]),
          new x509.BasicConstraintsExtension(false, undefined, true),
          aki,
          new x509.SubjectAlternativeNameExtension([{ type: "url", value: uri }], true),
        ],
      });
      void [cert.toString("pem"), material.trustBundle];
    });

    return {
      csrs: csrCount,
      issuePerSec,
      rawSignPerSec,
      ratio,
      peculiarPerSec,
      withTokenPerSec,
    };
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

if (import.meta.main) {
  const args = benchArgs();
  const r = await runCaBench(args.number("--seconds", 3), args.number("--csrs", 2000));
  const pct = (x: number) => `${(x * 100).toFixed(1)} %`;
  console.log(`CSRs (pre-made, 200 identities)       ${r.csrs}`);
  console.log(`raw ECDSA P-256 sign (same key)       ${r.rawSignPerSec.toFixed(0)} /s`);
  console.log(
    `issue() end to end                    ${r.issuePerSec.toFixed(0)} /s  (${
      pct(r.ratio)
    } of raw sign; target >= 20 %)`,
  );
  console.log(
    `createCertificate() with token        ${r.withTokenPerSec.toFixed(0)} /s  (${
      pct(r.withTokenPerSec / r.rawSignPerSec)
    })`,
  );
  console.log(
    `@peculiar/x509 path                   ${r.peculiarPerSec.toFixed(0)} /s  (${
      pct(r.peculiarPerSec / r.rawSignPerSec)
    })`,
  );
}
