/** The CA's recent history (/debug/certz): certificates issued and requests refused, bounded. */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { join } from "node:path";
import { Registry } from "prom-client";
import { initCa } from "../../mod/citadel/ca_store.ts";
import { createCertLog } from "../../mod/citadel/cert_log.ts";
import { createCaService, createIssuer, type Issuer } from "../../mod/citadel/service.ts";
import {
  createToken,
  loadOrCreateTokenKey,
  openUsedTokens,
  type TokenSigningKey,
} from "../../mod/citadel/token.ts";
import { createManualClock } from "../../mod/shared/clock.ts";
import { createLogger } from "../../mod/shared/logger.ts";
import { csrFor, tempDir } from "./_ca.ts";

const TD = "cluster.local";
const HOUR = 3600_000;
const data = tempDir();
let issuer: Issuer;
let key: TokenSigningKey;
afterAll(() => data.cleanup());
beforeAll(async () => {
  const clock = createManualClock(Date.now());
  const quiet = createLogger({ write: () => {} });
  issuer = createIssuer(
    (await initCa({ dataDir: data.path, keyType: "ec-p256", clock, logger: quiet }, TD)).current(),
  );
  key = loadOrCreateTokenKey(data.path);
});

describe("certificate log", () => {
  test("the CA records each certificate issued and each refusal with its reason, newest first", () => {
    const clock = createManualClock(Date.parse("2026-06-01T00:00:00Z"));
    const certLog = createCertLog();
    const svc = createCaService({
      certLog,
      issuer: () => issuer,
      trustDomain: () => TD,
      tokenKey: key,
      usedTokens: openUsedTokens(join(data.path, "used.json"), clock.now),
      clock,
      logger: createLogger({ write: () => {} }),
      metrics: new Registry(),
      defaultTtlMs: 24 * HOUR,
      maxTtlMs: 48 * HOUR,
      ratePerMinute: 100,
    });
    const bearer = (sa: string) => ({
      authorization: `Bearer ${
        createToken(key, {
          trustDomain: TD,
          namespace: "app",
          serviceAccount: sa,
          ttlMs: HOUR,
          now: clock.now(),
        })
      }`,
    });
    const web = `spiffe://${TD}/ns/app/sa/web`;
    const db = `spiffe://${TD}/ns/app/sa/db`;
    const a = svc.createCertificate({ csr: csrFor(web).csr, validityDuration: 0n }, bearer("web"));
    clock.advance(1000);
    const b = svc.createCertificate({ csr: csrFor(db).csr, validityDuration: 3600n }, bearer("db"));
    // web's token asking for db's identity: refused.
    expect(() => svc.createCertificate({ csr: csrFor(db).csr, validityDuration: 0n }, bearer("web")))
      .toThrow();
    const v = certLog.view();
    expect(v.issued.map((c) => [c.identity, c.serial])).toEqual([[db, b.serialHex], [web, a.serialHex]]);
    expect(v.issued[0]).toMatchObject({
      issuedAt: "2026-06-01T00:00:01.000Z",
      notAfter: "2026-06-01T01:00:01.000Z",
      via: "token",
    });
    expect(v.refused).toHaveLength(1);
    expect(v.refused[0]).toMatchObject({ at: "2026-06-01T00:00:01.000Z", requested: db });
    expect(v.refused[0]!.reason).not.toBe("");
    expect(v.refused[0]!.message).not.toBe("");
  });

  test("keeps only the last N of each kind", () => {
    const log = createCertLog(3);
    for (let i = 0; i < 5; i++) {
      log.issued({ identity: `id${i}`, serial: `${i}`, issuedAt: "", notAfter: "", via: "token" });
    }
    expect(log.view().issued.map((c) => c.identity)).toEqual(["id4", "id3", "id2"]);
    expect(log.view().limit).toBe(3);
  });
});
