import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { Code } from "@connectrpc/connect";
import { randomBytes, X509Certificate } from "node:crypto";
import { join } from "node:path";
import { Registry } from "prom-client";
import { initCa, loadCaDir } from "../../mod/citadel/ca_store.ts";
import { pemDecodeAll, pemEncode } from "../../mod/citadel/pem.ts";
import {
  CaRefusal,
  type CaService,
  type CaServiceOptions,
  createCaService,
  createIssuer,
  type Issuer,
} from "../../mod/citadel/service.ts";
import {
  createToken,
  loadOrCreateTokenKey,
  openUsedTokens,
  type TokenSigningKey,
} from "../../mod/citadel/token.ts";
import { createManualClock, type ManualClock } from "../../mod/shared/clock.ts";
import { createLogger } from "../../mod/shared/logger.ts";
import { csrFor, makeOfflineCa, tempDir } from "./_ca.ts";

const TD = "cluster.local";
const WEB = `spiffe://${TD}/ns/app/sa/web`;
const DB = `spiffe://${TD}/ns/app/sa/db`;
const HOUR = 3600_000;

const data = tempDir();
const foreign = tempDir();
let issuer: Issuer;
let foreignIssuer: Issuer;
let key: TokenSigningKey;
afterAll(() => {
  data.cleanup();
  foreign.cleanup();
});
beforeAll(async () => {
  const quiet = createLogger({ write: () => {} });
  const clock = createManualClock(Date.now());
  issuer = createIssuer(
    (await initCa({ dataDir: data.path, keyType: "ec-p256", clock, logger: quiet }, TD)).current(),
  );
  foreignIssuer = createIssuer(
    (await initCa({ dataDir: foreign.path, keyType: "ec-p256", clock, logger: quiet }, TD)).current(),
  );
  key = loadOrCreateTokenKey(data.path);
});

interface Harness {
  svc: CaService;
  clock: ManualClock;
  logs: Array<Record<string, unknown>>;
  metrics: Registry;
  token(o?: { sa?: string; td?: string; singleUse?: boolean }): string;
  bearer(o?: { sa?: string; td?: string; singleUse?: boolean }): { authorization: string };
}

let seq = 0;
const harnessDirs: Array<{ cleanup(): void }> = [];
afterAll(() => harnessDirs.forEach((d) => d.cleanup()));
function harness(over: Partial<CaServiceOptions> = {}): Harness {
  const clock = createManualClock(Date.now());
  const logs: Array<Record<string, unknown>> = [];
  const metrics = new Registry();
  const dir = tempDir();
  harnessDirs.push(dir);
  const svc = createCaService({
    issuer: () => issuer,
    trustDomain: () => TD,
    tokenKey: key,
    usedTokens: openUsedTokens(join(dir.path, `used-${seq++}.json`), clock.now),
    clock,
    logger: createLogger({ format: "json", write: (l) => logs.push(JSON.parse(l)) }),
    metrics,
    defaultTtlMs: 24 * HOUR,
    maxTtlMs: 48 * HOUR,
    ratePerMinute: 100,
    ...over,
  });
  const token = (o: { sa?: string; td?: string; singleUse?: boolean } = {}) =>
    createToken(key, {
      trustDomain: o.td ?? TD,
      namespace: "app",
      serviceAccount: o.sa ?? "web",
      ttlMs: HOUR,
      now: clock.now(),
      singleUse: o.singleUse,
    });
  return { svc, clock, logs, metrics, token, bearer: (o) => ({ authorization: `Bearer ${token(o)}` }) };
}

function refusal(fn: () => unknown): { code: Code; reason: string; message: string } | "issued" {
  try {
    fn();
    return "issued";
  } catch (err) {
    if (!(err instanceof CaRefusal)) throw err;
    return { code: err.code, reason: err.reason, message: err.message };
  }
}

async function counter(m: Registry, name: string, reason?: string): Promise<number> {
  const json = await m.getMetricsAsJSON();
  const metric = json.find((x) => x.name === name) as {
    values: Array<{ value: number; labels: Record<string, string> }>;
  };
  return metric.values.filter((v) => reason === undefined || v.labels.reason === reason).reduce(
    (a, v) => a + v.value,
    0,
  );
}

function leafOf(chain: string[]): X509Certificate {
  return new X509Certificate(chain[0]!);
}

describe("createCaService()", () => {
  test("issues to a token holder: leaf then bundle, default and capped lifetimes, backdated notBefore", async () => {
    const h = harness();
    const now = h.clock.now();
    const a = h.svc.createCertificate({ csr: csrFor(WEB).csr, validityDuration: 0n }, h.bearer());
    expect(a.certChain).toHaveLength(2);
    expect(a.certChain[1]).toBe(issuer.material.trustBundle);
    const leaf = leafOf(a.certChain);
    expect(leaf.subjectAltName).toBe(`URI:${WEB}`);
    expect(leaf.verify(new X509Certificate(issuer.material.roots[0]!).publicKey)).toBe(true);
    expect(Date.parse(leaf.validTo)).toBe(Math.floor((now + 24 * HOUR) / 1000) * 1000);
    expect(Date.parse(leaf.validFrom)).toBe(Math.floor((now - 60_000) / 1000) * 1000);
    const short = leafOf(
      h.svc.createCertificate({ csr: csrFor(WEB).csr, validityDuration: 3600n }, h.bearer()).certChain,
    );
    expect(Date.parse(short.validTo)).toBe(Math.floor((now + HOUR) / 1000) * 1000);
    const capped = leafOf(
      h.svc.createCertificate(
        { csr: csrFor(WEB).csr, validityDuration: BigInt(10 * 365 * 24 * 3600) },
        h.bearer(),
      ).certChain,
    );
    expect(Date.parse(capped.validTo)).toBe(Math.floor((now + 48 * HOUR) / 1000) * 1000);
    expect(await counter(h.metrics, "citadel_certs_issued_total")).toBe(3);
    const line = h.logs.find((l) => l.msg === "certificate issued")!;
    expect(line).toMatchObject({ level: "info", identity: WEB, via: "token" });
    expect(line.serial).toMatch(/^[0-9a-f]{32,34}$/);
    expect(Date.parse(line.notAfter as string)).toBe(now + 24 * HOUR);
  });

  test("a leaf never outlives the signing certificate of a --ca-dir CA", () => {
    const d = tempDir();
    try {
      makeOfflineCa(d.path, { intermediateDays: 1 });
      const m = loadCaDir(d.path, { now: Date.now(), logger: createLogger({ write: () => {} }) });
      const h = harness({ issuer: () => createIssuer(m) });
      const out = h.svc.createCertificate({ csr: csrFor(WEB).csr, validityDuration: 0n }, h.bearer());
      expect(out.certChain).toHaveLength(3);
      expect(Date.parse(leafOf(out.certChain).validTo)).toBeLessThanOrEqual(m.notAfter);
    } finally {
      d.cleanup();
    }
  });

  test("renews with a client certificate it issued; refuses expired, foreign, CA, garbage and unauthorized ones", async () => {
    const h = harness();
    const first = h.svc.createCertificate({ csr: csrFor(WEB).csr, validityDuration: 3600n }, h.bearer());
    const der = new Uint8Array(leafOf(first.certChain).raw);
    const renewed = h.svc.createCertificate({ csr: csrFor(WEB).csr, validityDuration: 0n }, {
      peer: { der, authorized: true },
    });
    expect(leafOf(renewed.certChain).subjectAltName).toBe(`URI:${WEB}`);
    expect(h.logs.filter((l) => l.msg === "certificate issued").map((l) => l.via)).toEqual([
      "token",
      "certificate",
    ]);

    const req = { csr: csrFor(WEB).csr, validityDuration: 0n };
    // The TLS layer's verdict is honoured...
    expect(
      refusal(() =>
        h.svc.createCertificate(req, { peer: { der, authorized: false, authorizationError: "X" } })
      ),
    )
      .toMatchObject({ code: Code.Unauthenticated, reason: "certificate_untrusted" });
    // ...and not relied on: a certificate of another CA is refused even when marked authorized.
    const foreignLeaf = foreignIssuer.signer.sign({
      spki: new Uint8Array(
        new X509Certificate(first.certChain[0]!).publicKey.export({ format: "der", type: "spki" }),
      ),
      names: [{ type: "uri", value: WEB }],
      notBefore: h.clock.now() - 1000,
      notAfter: h.clock.now() + HOUR,
    });
    expect(refusal(() => h.svc.createCertificate(req, { peer: { der: foreignLeaf.der, authorized: true } })))
      .toMatchObject({ code: Code.Unauthenticated, reason: "certificate_untrusted" });
    const caCert = issuer.material.signingCertDer;
    expect(refusal(() => h.svc.createCertificate(req, { peer: { der: caCert, authorized: true } })))
      .toMatchObject({ reason: "certificate_untrusted", message: expect.stringContaining("CA certificate") });
    expect(refusal(() => h.svc.createCertificate(req, { peer: { der: randomBytes(200), authorized: true } })))
      .toMatchObject({ reason: "certificate_untrusted" });
    h.clock.advance(2 * HOUR);
    expect(refusal(() => h.svc.createCertificate(req, { peer: { der, authorized: true } })))
      .toMatchObject({ code: Code.Unauthenticated, reason: "certificate_expired" });
    expect(await counter(h.metrics, "citadel_csr_refused_total", "certificate_untrusted")).toBe(4);
  });

  test("a valid client certificate wins over a token; an invalid one falls back to the token", () => {
    const h = harness();
    const web = h.svc.createCertificate({ csr: csrFor(WEB).csr, validityDuration: 0n }, h.bearer());
    const der = new Uint8Array(leafOf(web.certChain).raw);
    expect(
      refusal(() =>
        h.svc.createCertificate({ csr: csrFor(DB).csr, validityDuration: 0n }, {
          peer: { der, authorized: true },
          ...h.bearer({ sa: "db" }),
        })
      ),
    ).toMatchObject({ code: Code.PermissionDenied, reason: "identity_mismatch" });
    const viaToken = h.svc.createCertificate({ csr: csrFor(DB).csr, validityDuration: 0n }, {
      peer: { der, authorized: false },
      ...h.bearer({ sa: "db" }),
    });
    expect(leafOf(viaToken.certChain).subjectAltName).toBe(`URI:${DB}`);
  });

  test("policy: one SPIFFE URI equal to the caller's, in the CA's trust domain, no impersonation", async () => {
    const h = harness();
    const cases: Array<[string, () => unknown, Code, string]> = [
      [
        "another identity",
        () => h.svc.createCertificate({ csr: csrFor(DB).csr, validityDuration: 0n }, h.bearer()),
        Code.PermissionDenied,
        "identity_mismatch",
      ],
      [
        "another trust domain",
        () =>
          h.svc.createCertificate({
            csr: csrFor("spiffe://other.org/ns/app/sa/web").csr,
            validityDuration: 0n,
          }, h.bearer({ td: "other.org" })),
        Code.PermissionDenied,
        "trust_domain",
      ],
      [
        "impersonation",
        () =>
          h.svc.createCertificate({
            csr: csrFor(WEB).csr,
            validityDuration: 0n,
            metadata: { ImpersonatedIdentity: DB },
          }, h.bearer()),
        Code.PermissionDenied,
        "impersonation",
      ],
      [
        "extra DNS SAN",
        () =>
          h.svc.createCertificate(
            {
              csr: csrFor([{ type: "uri", value: WEB }, { type: "dns", value: "x.example" }]).csr,
              validityDuration: 0n,
            },
            h.bearer(),
          ),
        Code.InvalidArgument,
        "csr_names",
      ],
      [
        "two URIs",
        () =>
          h.svc.createCertificate(
            {
              csr: csrFor([{ type: "uri", value: WEB }, { type: "uri", value: DB }]).csr,
              validityDuration: 0n,
            },
            h.bearer(),
          ),
        Code.InvalidArgument,
        "csr_names",
      ],
      [
        "no SAN",
        () => h.svc.createCertificate({ csr: csrFor([]).csr, validityDuration: 0n }, h.bearer()),
        Code.InvalidArgument,
        "csr_names",
      ],
      [
        "IP SAN only",
        () =>
          h.svc.createCertificate({
            csr: csrFor([{ type: "ip", value: "10.1.2.3" }]).csr,
            validityDuration: 0n,
          }, h.bearer()),
        Code.InvalidArgument,
        "csr_names",
      ],
      [
        "garbage",
        () => h.svc.createCertificate({ csr: "garbage", validityDuration: 0n }, h.bearer()),
        Code.InvalidArgument,
        "csr_invalid",
      ],
      [
        "oversized",
        () => h.svc.createCertificate({ csr: "x".repeat(65_537), validityDuration: 0n }, h.bearer()),
        Code.InvalidArgument,
        "csr_too_large",
      ],
      [
        "no credentials",
        () => h.svc.createCertificate({ csr: csrFor(WEB).csr, validityDuration: 0n }, {}),
        Code.Unauthenticated,
        "unauthenticated",
      ],
      [
        "not a bearer header",
        () =>
          h.svc.createCertificate({ csr: csrFor(WEB).csr, validityDuration: 0n }, {
            authorization: "Basic d2ViOnB3",
          }),
        Code.Unauthenticated,
        "unauthenticated",
      ],
    ];
    for (const [name, fn, code, reason] of cases) {
      expect({ name, r: refusal(fn) }).toMatchObject({ name, r: { code, reason } });
    }
    expect(await counter(h.metrics, "citadel_certs_issued_total")).toBe(0);
    expect(await counter(h.metrics, "citadel_csr_refused_total")).toBe(cases.length);
    const audits = h.logs.filter((l) => l.msg === "certificate request refused");
    expect(audits).toHaveLength(cases.length);
    expect(audits[0]).toMatchObject({ level: "warn", reason: "identity_mismatch", requested: DB });
    expect(String(audits[0]!.caller)).toContain(`sub=${WEB}`);
  });

  test("rate limit per identity: RESOURCE_EXHAUSTED past the burst, other identities unaffected, refilled over time", () => {
    const h = harness({ ratePerMinute: 3 });
    const ask = (id: string, sa: string) => () =>
      h.svc.createCertificate({ csr: csrFor(id).csr, validityDuration: 0n }, h.bearer({ sa }));
    for (let i = 0; i < 3; i++) expect(refusal(ask(WEB, "web"))).toBe("issued");
    expect(refusal(ask(WEB, "web"))).toMatchObject({ code: Code.ResourceExhausted, reason: "rate_limited" });
    expect(refusal(ask(DB, "db"))).toBe("issued");
    h.clock.advance(20_000);
    expect(refusal(ask(WEB, "web"))).toBe("issued");
    expect(refusal(ask(WEB, "web"))).toMatchObject({ reason: "rate_limited" });
  });

  test("a single-use token is redeemed only when a certificate is issued, then never again", () => {
    const h = harness();
    const once = { authorization: `Bearer ${h.token({ singleUse: true })}` };
    expect(refusal(() => h.svc.createCertificate({ csr: "junk", validityDuration: 0n }, once))).toMatchObject(
      {
        reason: "csr_invalid",
      },
    );
    expect(refusal(() => h.svc.createCertificate({ csr: csrFor(WEB).csr, validityDuration: 0n }, once))).toBe(
      "issued",
    );
    expect(refusal(() => h.svc.createCertificate({ csr: csrFor(WEB).csr, validityDuration: 0n }, once)))
      .toMatchObject({
        code: Code.Unauthenticated,
        reason: "token_replayed",
      });
  });

  test("nothing is issued when a redeemed token cannot be recorded, or before the CA is ready", () => {
    {
      const h = harness({
        usedTokens: {
          has: () => false,
          add: () => {
            throw new Error("disk full");
          },
          size: () => 0,
        },
      });
      const once = { authorization: `Bearer ${h.token({ singleUse: true })}` };
      expect(refusal(() => h.svc.createCertificate({ csr: csrFor(WEB).csr, validityDuration: 0n }, once)))
        .toMatchObject({
          code: Code.Internal,
          reason: "internal",
        });
      const notReady = harness({ trustDomain: () => undefined });
      expect(
        refusal(() =>
          notReady.svc.createCertificate({ csr: csrFor(WEB).csr, validityDuration: 0n }, notReady.bearer())
        ),
      )
        .toMatchObject({ code: Code.Unavailable, reason: "not_ready" });
      const noCa = harness({ issuer: () => undefined });
      expect(
        refusal(() =>
          noCa.svc.createCertificate({ csr: csrFor(WEB).csr, validityDuration: 0n }, noCa.bearer())
        ),
      )
        .toMatchObject({ code: Code.Unavailable, reason: "not_ready" });
    }
  });

  test("never throws anything but CaRefusal on random CSRs and headers", () => {
    const h = harness({ ratePerMinute: 0 });
    const good = csrFor(WEB).csr;
    const body = good.split("\n").slice(1, -2).join("");
    for (let i = 0; i < 500; i++) {
      const bytes = Buffer.from(body, "base64");
      for (let f = 0; f < 1 + (i % 5); f++) {
        bytes[randomBytes(2).readUInt16BE() % bytes.length] = randomBytes(1)[0]!;
      }
      const csr = i % 3 === 0 ? randomBytes(i).toString("latin1") : pemEncode("CERTIFICATE REQUEST", bytes);
      const auth = i % 11 === 0 ? `Bearer ${randomBytes(40).toString("base64url")}` : `Bearer ${h.token()}`;
      const r = refusal(() =>
        h.svc.createCertificate({ csr, validityDuration: BigInt(i - 250) }, { authorization: auth })
      );
      if (r !== "issued") {
        expect([Code.InvalidArgument, Code.Unauthenticated, Code.PermissionDenied]).toContain(r.code);
      }
    }
    expect(pemDecodeAll(issuer.material.trustBundle)).toHaveLength(1);
  });
});
