import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { createPrivateKey, createPublicKey } from "node:crypto";
import { existsSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createBackoff } from "../../mod/shared/backoff.ts";
import { createCertManager, type IssueVia } from "../../mod/agent/cert_manager.ts";
import {
  bundleFromIssued,
  type CertBundle,
  createCsr,
  renewalDelay,
  spiffeId,
} from "../../mod/agent/certs.ts";
import { SettingError } from "../../mod/agent/failure.ts";
import { ensureDir, readBundle, RECEIPT_FILE, writeBundle } from "../../mod/agent/files.ts";
import { initCa } from "../../mod/citadel/ca_store.ts";
import { pemEncode } from "../../mod/citadel/pem.ts";
import { createIssuer, type Issuer, LEAF_BACKDATE_MS } from "../../mod/citadel/service.ts";
import { createManualClock, type ManualClock, systemClock } from "../../mod/shared/clock.ts";
import { createLogger, type LogFields } from "../../mod/shared/logger.ts";

const HOUR = 3_600_000;
const quiet = createLogger({ write: () => {} });
/** Lets promise callbacks run. */
const flush = async () => {
  for (let i = 0; i < 10; i++) await Promise.resolve();
};
/** Waits (up to 5 s of real time) for work that is not driven by the clock, such as making a key. */
async function until(cond: () => boolean): Promise<void> {
  const end = Date.now() + 5000;
  while (!cond()) {
    if (Date.now() > end) throw new Error("timed out waiting");
    await Bun.sleep(5);
  }
}

function bundle(notBefore: number, lifetime: number, tag = ""): CertBundle {
  return {
    chainPem: `chain${tag}`,
    keyPem: `key${tag}`,
    rootPem: "root",
    notBefore,
    notAfter: notBefore + lifetime,
    identity: "spiffe://cluster.local/ns/a/sa/b",
  };
}

/** A CA double: answers with a bundle valid for `lifetime` from the clock's now, or fails. */
function harness(
  clock: ManualClock,
  opts: { lifetime?: number; initial?: CertBundle; random?: () => number } = {},
) {
  const calls: IssueVia["kind"][] = [];
  const stored: CertBundle[] = [];
  const fatal: SettingError[] = [];
  let failing: boolean | Error = false;
  let storeFails = false;
  const m = createCertManager({
    clock,
    logger: quiet,
    random: opts.random ?? (() => 0.5),
    initial: opts.initial,
    backoff: { initialMs: 1000, maxMs: 8000 },
    issue(via) {
      calls.push(via.kind);
      if (failing) return Promise.reject(failing === true ? new Error("CA unreachable") : failing);
      return Promise.resolve(bundle(clock.now(), opts.lifetime ?? 10 * HOUR, String(calls.length)));
    },
    onCert(b) {
      if (storeFails) throw new Error("disk full");
      stored.push(b);
    },
    onFatal: (err) => fatal.push(err),
  });
  return {
    m,
    calls,
    stored,
    fatal,
    fail(v: boolean | Error) {
      failing = v;
    },
    failStore(v: boolean) {
      storeFails = v;
    },
  };
}

describe("renewalDelay()", () => {
  test("is half the lifetime from notBefore, moved by at most ±10 %", () => {
    const b = bundle(0, 10 * HOUR);
    expect(renewalDelay(b, 0, () => 0.5)).toBe(5 * HOUR);
    expect(renewalDelay(b, 0, () => 0)).toBe(4.5 * HOUR);
    expect(renewalDelay(b, 0, () => 0.999999)).toBeCloseTo(5.5 * HOUR, -2);
    expect(renewalDelay(b, 2 * HOUR, () => 0.5)).toBe(3 * HOUR);
  });

  test("counts the lifetime from receipt when the certificate was backdated", () => {
    const b = { notBefore: 0, notAfter: 80_000, receivedAt: 60_000 };
    expect(renewalDelay(b, 60_000, () => 0.5)).toBe(10_000);
    expect(renewalDelay({ notBefore: 0, notAfter: 80_000 }, 60_000, () => 0.5)).toBe(0);
  });

  test("is zero when the renewal is overdue", () => {
    expect(renewalDelay(bundle(0, 10 * HOUR), 9 * HOUR, () => 0.5)).toBe(0);
  });
});

describe("createBackoff()", () => {
  test("doubles up to the maximum, each delay in [base/2, base]", () => {
    let r = 0;
    const b = createBackoff({ initialMs: 1000, maxMs: 8000, random: () => r });
    expect([b.next(), b.next(), b.next(), b.next(), b.next()]).toEqual([500, 1000, 2000, 4000, 4000]);
    r = 0.999999;
    b.reset();
    expect([b.next(), b.next(), b.next(), b.next(), b.next()]).toEqual([1000, 2000, 4000, 8000, 8000]);
    expect(b.attempts).toBe(5);
  });

  test("jitter spreads delays over the whole range", () => {
    const b = createBackoff({ initialMs: 1000, maxMs: 1000 });
    const seen = new Set(Array.from({ length: 200 }, () => Math.floor(b.next() / 100)));
    expect(seen.size).toBeGreaterThanOrEqual(4);
    for (const s of seen) expect(s).toBeGreaterThanOrEqual(5);
  });

  test("refuses nonsense options", () => {
    expect(() => createBackoff({ initialMs: 0, maxMs: 10 })).toThrow(/initialMs/);
    expect(() => createBackoff({ initialMs: 10, maxMs: 5 })).toThrow();
  });
});

describe("createCertManager()", () => {
  test("without a certificate asks with the token, then renews over mTLS at half the lifetime", async () => {
    const clock = createManualClock(1_000_000);
    const h = harness(clock);
    h.m.start();
    await flush();
    expect(h.calls).toEqual(["token"]);
    expect(h.m.valid()).toBe(true);
    expect(h.stored.length).toBe(1);
    expect(h.m.nextAttemptAt()).toBe(1_000_000 + 5 * HOUR);
    clock.advance(5 * HOUR - 1);
    await flush();
    expect(h.calls).toEqual(["token"]);
    clock.advance(1);
    await flush();
    expect(h.calls).toEqual(["token", "mtls"]);
    expect(h.m.current()!.chainPem).toBe("chain2");
    clock.advance(5 * HOUR);
    await flush();
    expect(h.calls).toEqual(["token", "mtls", "mtls"]);
    h.m.stop();
    expect(clock.pending()).toBe(0);
  });

  test("a backdated short-lived certificate renews at half of what is left of it, never at once", async () => {
    const clock = createManualClock(1_000_000);
    const calls: number[] = [];
    const m = createCertManager({
      clock,
      logger: quiet,
      random: () => 0.5,
      issue() {
        calls.push(clock.now());
        const now = clock.now();
        return Promise.resolve({ ...bundle(now - 60_000, 80_000) });
      },
      onCert() {},
    });
    m.start();
    await flush();
    expect(m.nextAttemptAt()).toBe(1_000_000 + 10_000);
    clock.advance(10_000);
    await flush();
    expect(calls).toEqual([1_000_000, 1_010_000]);
    m.stop();
    // A CA that answers with an (almost) expired certificate does not make the agent spin.
    const c2 = createManualClock(0);
    const m2 = createCertManager({
      clock: c2,
      logger: quiet,
      issue: () => Promise.resolve(bundle(c2.now() - 60_000, 60_100)),
      onCert() {},
    });
    m2.start();
    await flush();
    expect(m2.nextAttemptAt()).toBe(1000);
    m2.stop();
  });

  test("renewal times are jittered by the random source", async () => {
    const clock = createManualClock(0);
    const h = harness(clock, { random: () => 0 });
    h.m.start();
    await flush();
    expect(h.m.nextAttemptAt()).toBe(4.5 * HOUR);
    h.m.stop();
  });

  test("a valid stored certificate renews over mTLS without the token", async () => {
    const clock = createManualClock(2 * HOUR);
    const h = harness(clock, { initial: bundle(0, 10 * HOUR) });
    h.m.start();
    await flush();
    expect(h.calls).toEqual([]);
    expect(h.m.valid()).toBe(true);
    expect(h.m.nextAttemptAt()).toBe(5 * HOUR);
    clock.advance(3 * HOUR);
    await flush();
    expect(h.calls).toEqual(["mtls"]);
    h.m.stop();
  });

  test("a stored certificate past its renewal time renews at once", async () => {
    const clock = createManualClock(8 * HOUR);
    const h = harness(clock, { initial: bundle(0, 10 * HOUR) });
    h.m.start();
    clock.advance(0);
    await flush();
    expect(h.calls).toEqual(["mtls"]);
    h.m.stop();
  });

  test("an expired stored certificate falls back to the token", async () => {
    const clock = createManualClock(11 * HOUR);
    const h = harness(clock, { initial: bundle(0, 10 * HOUR) });
    expect(h.m.valid()).toBe(false);
    h.m.start();
    await flush();
    expect(h.calls).toEqual(["token"]);
    h.m.stop();
  });

  test("while the CA is down it backs off, keeps the old certificate, and is invalid after expiry", async () => {
    const clock = createManualClock(0);
    const h = harness(clock, { lifetime: 10 * HOUR });
    h.m.start();
    await flush();
    const first = h.m.current();
    h.fail(true);
    clock.advance(5 * HOUR);
    await flush();
    expect(h.calls).toEqual(["token", "mtls"]);
    expect(h.m.current()).toBe(first);
    // Backoff with random 0.5: 750, 1500, 3000, 6000, 6000 ... (base 1 s doubling to 8 s).
    const t0 = clock.now();
    expect(h.m.nextAttemptAt()! - t0).toBe(750);
    clock.advance(750);
    await flush();
    expect(h.m.nextAttemptAt()! - clock.now()).toBe(1500);
    clock.advance(1500);
    await flush();
    expect(h.m.nextAttemptAt()! - clock.now()).toBe(3000);
    expect(h.calls.length).toBe(4);
    expect(h.m.valid()).toBe(true);
    // Let the certificate expire while the CA stays down.
    clock.advance(5 * HOUR);
    await flush();
    expect(h.m.valid()).toBe(false);
    expect(h.m.current()).toBe(first);
    const before = h.calls.length;
    clock.advance(8000);
    await flush();
    expect(h.calls.length).toBeGreaterThan(before);
    expect(h.calls.at(-1)).toBe("token");
    // The CA comes back: a new certificate, and the backoff starts over.
    h.fail(false);
    clock.advance(8000);
    await flush();
    expect(h.m.valid()).toBe(true);
    expect(h.m.current()).not.toBe(first);
    const c = h.m.current()!;
    expect(c.receivedAt).toBe(clock.now());
    expect(h.m.nextAttemptAt()).toBe(c.receivedAt! + (c.notAfter - c.receivedAt!) / 2);
    h.fail(true);
    clock.advance(5 * HOUR);
    await flush();
    expect(h.m.nextAttemptAt()! - clock.now()).toBe(750);
    h.m.stop();
  });

  test("a SettingError is retried while the certificate is valid, and ends the attempts once it is not", async () => {
    const clock = createManualClock(0);
    const h = harness(clock, { lifetime: 10 * HOUR });
    h.m.start();
    await flush();
    const wrongPort = new SettingError("127.0.0.1:15010 is plaintext, not TLS");
    h.fail(wrongPort);
    clock.advance(5 * HOUR);
    await flush();
    expect(h.calls).toEqual(["token", "mtls"]);
    expect(h.fatal).toEqual([]);
    expect(h.m.nextAttemptAt()).toBe(clock.now() + 750);
    // Expired: the first attempt that fails without a valid certificate ends them all.
    clock.advance(5 * HOUR);
    await flush();
    expect(h.m.valid()).toBe(false);
    expect(h.fatal).toEqual([wrongPort]);
    expect(h.m.nextAttemptAt()).toBeUndefined();
    const calls = h.calls.length;
    clock.advance(HOUR);
    await flush();
    expect(h.calls.length).toBe(calls);
    h.m.stop();
  });

  test("without a certificate a SettingError ends the attempts at once; other failures are retried", async () => {
    const clock = createManualClock(0);
    const h = harness(clock);
    h.fail(true);
    h.m.start();
    await flush();
    expect(h.fatal).toEqual([]);
    expect(h.m.nextAttemptAt()).toBe(750);
    const redeemed = new SettingError("the CA refused the token in --token-file: already redeemed");
    h.fail(redeemed);
    clock.advance(750);
    await flush();
    expect(h.calls).toEqual(["token", "token"]);
    expect(h.fatal).toEqual([redeemed]);
    expect(h.m.nextAttemptAt()).toBeUndefined();
    h.m.stop();
  });

  test("a failure to store the certificate keeps it in service and retries", async () => {
    const clock = createManualClock(0);
    const h = harness(clock);
    h.failStore(true);
    h.m.start();
    await flush();
    expect(h.m.valid()).toBe(true);
    expect(h.m.nextAttemptAt()).toBe(750);
    h.failStore(false);
    clock.advance(750);
    await flush();
    expect(h.calls).toEqual(["token", "mtls"]);
    expect(h.stored.length).toBe(1);
    expect(h.m.nextAttemptAt()).toBe(750 + 5 * HOUR);
    h.m.stop();
  });

  test("stop() cancels timers and ignores an answer in flight", async () => {
    const clock = createManualClock(0);
    let resolveIssue: ((b: CertBundle) => void) | undefined;
    const m = createCertManager({
      clock,
      logger: quiet,
      issue: () => new Promise((r) => (resolveIssue = r)),
      onCert: () => {
        throw new Error("must not be called");
      },
    });
    m.start();
    m.stop();
    resolveIssue!(bundle(0, HOUR));
    await flush();
    expect(m.current()).toBeUndefined();
    expect(clock.pending()).toBe(0);
  });
});

describe("createCertManager() across a restart, with the bundle on disk", () => {
  const ID = spiffeId("cluster.local", "a", "b");
  let root: string;
  let issuer: Issuer;
  beforeAll(async () => {
    root = mkdtempSync(join(tmpdir(), "meshd-agent-restart-"));
    const store = await initCa(
      { dataDir: join(root, "ca"), keyType: "ec-p256", clock: systemClock, logger: quiet },
      "cluster.local",
    );
    issuer = createIssuer(store.current());
  });
  afterAll(() => rmSync(root, { recursive: true, force: true }));

  /** Signs as meshd's CA does at the clock's now: notBefore backdated, `lifetime` from now. */
  async function issueAt(clock: ManualClock, lifetime: number): Promise<CertBundle> {
    const p = await createCsr(ID);
    const spki = createPublicKey(createPrivateKey(p.keyPem)).export({ type: "spki", format: "der" });
    const leaf = issuer.signer.sign({
      spki: new Uint8Array(spki),
      names: [{ type: "uri", value: ID }],
      notBefore: clock.now() - LEAF_BACKDATE_MS,
      notAfter: clock.now() + lifetime,
    });
    const m = issuer.material;
    return bundleFromIssued([pemEncode("CERTIFICATE", leaf.der), ...m.chain, m.trustBundle], p.keyPem, {
      expectedIdentity: ID,
    });
  }

  /** A run of the agent's certificate keeping: the manager storing into `dir`, as the agent does. */
  function run(clock: ManualClock, dir: string, initial: CertBundle | undefined, lifetime: number) {
    const calls: Array<[IssueVia["kind"], number]> = [];
    const logs: Array<[string, LogFields | undefined]> = [];
    const logger = { ...quiet, info: (msg: string, f?: LogFields) => logs.push([msg, f]) };
    const m = createCertManager({
      clock,
      logger,
      random: () => 0.5,
      initial,
      issue(via) {
        calls.push([via.kind, clock.now()]);
        return issueAt(clock, lifetime);
      },
      onCert: (b) => writeBundle(dir, b),
    });
    return { m, calls, logs };
  }

  /** Whole seconds, as in certificates. */
  const startAt = () => Math.floor(Date.now() / 1000) * 1000;

  test("a 90 s certificate received 10 s before the restart renews at half its real lifetime, not at once", async () => {
    const t0 = startAt();
    const clock = createManualClock(t0);
    const dir = join(root, "restart");
    ensureDir(dir, 0o700, "--data-dir");
    const first = run(clock, dir, undefined, 90_000);
    first.m.start();
    await until(() => first.m.current() !== undefined);
    expect(first.calls).toEqual([["token", t0]]);
    expect(first.m.current()!.notBefore).toBe(t0 - 60_000);
    expect(first.m.current()!.notAfter).toBe(t0 + 90_000);
    expect(existsSync(join(dir, RECEIPT_FILE))).toBe(true);
    clock.advance(10_000);
    first.m.stop();

    // The restart: the bundle comes back from disk.
    const warnings: unknown[] = [];
    const stored = readBundle(dir, ID, { now: clock.now(), warn: (...a) => warnings.push(a) });
    expect(warnings).toEqual([]);
    expect(stored?.receivedAt).toBe(t0);
    const second = run(clock, dir, stored, 90_000);
    second.m.start();
    clock.advance(0);
    await flush();
    expect(second.calls).toEqual([]);
    expect(second.m.valid()).toBe(true);
    // Half of the 90 s from receipt (t0), not half of the 150 s from the backdated notBefore.
    expect(second.m.nextAttemptAt()).toBe(t0 + 45_000);
    clock.advance(45_000 - 10_000 - 1);
    await flush();
    expect(second.calls).toEqual([]);
    clock.advance(1);
    await until(() => second.m.current() !== stored);
    expect(second.calls).toEqual([["mtls", t0 + 45_000]]);
    // The renewed one is stored with its own receipt, for the next restart.
    expect(readBundle(dir, ID, { now: clock.now() })!.receivedAt).toBe(t0 + 45_000);
    second.m.stop();
  });

  test("a stored certificate past its renewal time, or without a record of receipt, is still renewed in time", async () => {
    const t0 = startAt();
    const clock = createManualClock(t0);
    const dir = join(root, "overdue");
    ensureDir(dir, 0o700, "--data-dir");
    writeBundle(dir, { ...(await issueAt(clock, 90_000)), receivedAt: t0 });

    // Restarted 50 s after receipt: past half of the 90 s, so at once (no minimum wait).
    clock.advance(50_000);
    const late = run(clock, dir, readBundle(dir, ID, { now: clock.now() }), 90_000);
    late.m.start();
    expect(late.m.nextAttemptAt()).toBe(t0 + 50_000);
    clock.advance(0);
    await flush();
    expect(late.calls).toEqual([["mtls", t0 + 50_000]]);
    late.m.stop();

    // Nearly expired: at once as well.
    writeBundle(dir, { ...(await issueAt(clock, 90_000)), receivedAt: clock.now() });
    clock.advance(89_000);
    const nearly = run(clock, dir, readBundle(dir, ID, { now: clock.now() }), 90_000);
    nearly.m.start();
    expect(nearly.m.nextAttemptAt()).toBe(clock.now());
    nearly.m.stop();

    // Stored by an agent that kept no record: counted from notBefore, as before, and said so.
    const t1 = clock.now();
    writeBundle(dir, await issueAt(clock, 90_000));
    expect(existsSync(join(dir, RECEIPT_FILE))).toBe(false);
    clock.advance(10_000);
    const legacy = run(clock, dir, readBundle(dir, ID, { now: clock.now() }), 90_000);
    legacy.m.start();
    expect(legacy.m.nextAttemptAt()).toBe(t1 - 60_000 + 75_000);
    expect(legacy.logs.map((l) => l[0])).toContain(
      "no record of when the stored certificate was received; its lifetime counts from notBefore",
    );
    legacy.m.stop();
  });
});
