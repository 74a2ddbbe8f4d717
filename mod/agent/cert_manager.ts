/**
 * Keeps the workload certificate fresh. Without a valid certificate it asks with the bootstrap
 * token; with one, it renews over mutual TLS at half the lifetime (±10 % jitter), counted from
 * when the certificate was received rather than from its (backdated) notBefore, also for one
 * read back from disk after a restart; so a token that is lost or expired after the first
 * start does not matter. While the CA cannot be
 * reached it retries with exponential backoff and jitter and keeps the old certificate in
 * service until it expires; after that `valid()` is false (the agent reports not ready) and
 * the next attempt falls back to the token, if there is one. A failure that only a change of a
 * setting fixes (a SettingError: the token refused, TLS to a plaintext port, ...) ends the
 * attempts when no valid certificate is in service (`onFatal`); while one is, it is retried like
 * any other, since the certificate keeps the workload working.
 *
 * @module
 */
import type { Clock, Timer } from "../shared/clock.ts";
import { errorMessage } from "../shared/errors.ts";
import type { Logger } from "../shared/logger.ts";
import { createBackoff } from "../shared/backoff.ts";
import { type CertBundle, renewalDelay } from "./certs.ts";
import { SettingError } from "./failure.ts";

/** The shortest wait before renewing a certificate just received. */
export const MIN_RENEW_MS = 1000;

/** How to authenticate one issuance: the bootstrap token, or the current certificate. */
export type IssueVia = { readonly kind: "token" } | { readonly kind: "mtls"; readonly current: CertBundle };

/** Options for createCertManager. */
export interface CertManagerOptions {
  readonly clock: Clock;
  readonly logger: Logger;
  /** Obtains a new bundle (new key, CSR, CA call); rejects with a message saying why not. */
  issue(via: IssueVia): Promise<CertBundle>;
  /**
   * Called with every new bundle once it is current (write files, push SDS). A throw is logged
   * and the issuance is retried with backoff; the new bundle stays in service meanwhile.
   */
  onCert(b: CertBundle): void;
  /** Called after every attempt, for metrics. */
  onAttempt?(via: IssueVia["kind"], ok: boolean): void;
  /**
   * Called once when an issuance fails with a SettingError while no valid certificate is in
   * service; nothing more is attempted. Absent: such failures are retried like others.
   */
  onFatal?(err: SettingError): void;
  /** A bundle from a previous run (data-dir), used while valid. */
  readonly initial?: CertBundle;
  /** Uniform random numbers in [0, 1) for jitter; injected for tests. */
  readonly random?: () => number;
  /** Retry delays while the CA fails (default 1 s doubling to 60 s). */
  readonly backoff?: { readonly initialMs: number; readonly maxMs: number };
  /** Fraction of the lifetime after which to renew (default 0.5). */
  readonly renewRatio?: number;
  /** Relative jitter of the renewal time (default 0.1). */
  readonly jitter?: number;
}

/** The certificate's keeper. Not reusable after stop(). */
export interface CertManager {
  /** Starts issuing or scheduling the renewal. Call once. */
  start(): void;
  /** The bundle in service (possibly expired), or undefined before the first one. */
  current(): CertBundle | undefined;
  /** Whether a certificate is in service and not expired at the clock's now. */
  valid(): boolean;
  /** When the next attempt is due (clock milliseconds), if one is scheduled. */
  nextAttemptAt(): number | undefined;
  /** Cancels timers; an attempt in flight is ignored when it ends. */
  stop(): void;
}

/** Creates a certificate manager. */
export function createCertManager(o: CertManagerOptions): CertManager {
  const random = o.random ?? Math.random;
  const backoff = createBackoff({
    initialMs: o.backoff?.initialMs ?? 1000,
    maxMs: o.backoff?.maxMs ?? 60_000,
    random,
  });
  const log = o.logger;
  let current = o.initial;
  let timer: Timer | undefined;
  let dueAt: number | undefined;
  let stopped = false;
  let inFlight = false;
  let expiryTimer: Timer | undefined;

  const valid = () => current !== undefined && o.clock.now() < current.notAfter;

  function schedule(ms: number): void {
    timer?.cancel();
    dueAt = o.clock.now() + ms;
    timer = o.clock.setTimer(ms, () => {
      timer = undefined;
      dueAt = undefined;
      void attempt();
    });
  }

  function watchExpiry(b: CertBundle): void {
    expiryTimer?.cancel();
    const left = b.notAfter - o.clock.now();
    if (left <= 0) return;
    expiryTimer = o.clock.setTimer(left, () => {
      if (current === b) {
        log.error("the workload certificate expired and could not be renewed; reporting not ready", {
          notAfter: new Date(b.notAfter).toISOString(),
        });
      }
    });
  }

  function scheduleRenewal(b: CertBundle, justIssued: boolean): void {
    let ms = renewalDelay(b, o.clock.now(), random, { ratio: o.renewRatio, jitter: o.jitter });
    // A certificate just issued is never renewed at once: a CA capping lifetimes below what
    // makes sense must not make the agent spin. A stored one that is due renews at once.
    if (justIssued) ms = Math.max(ms, MIN_RENEW_MS);
    log.info("certificate renewal scheduled", {
      identity: b.identity,
      notAfter: new Date(b.notAfter).toISOString(),
      inMs: ms,
    });
    schedule(ms);
  }

  async function attempt(): Promise<void> {
    if (stopped || inFlight) return;
    inFlight = true;
    const via: IssueVia = valid() ? { kind: "mtls", current: current! } : { kind: "token" };
    let fresh: CertBundle | undefined;
    try {
      fresh = await o.issue(via);
    } catch (err) {
      inFlight = false;
      if (stopped) return;
      o.onAttempt?.(via.kind, false);
      if (err instanceof SettingError && !valid() && o.onFatal) {
        stopped = true;
        o.onFatal(err);
        return;
      }
      const ms = backoff.next();
      log.warn("certificate request failed; retrying", {
        via: via.kind,
        err: errorMessage(err),
        attempt: backoff.attempts,
        retryInMs: ms,
        serving: valid() ? "the previous certificate" : "nothing (no valid certificate)",
      });
      schedule(ms);
      return;
    }
    inFlight = false;
    if (stopped) return;
    o.onAttempt?.(via.kind, true);
    fresh = { ...fresh, receivedAt: o.clock.now() };
    current = fresh;
    watchExpiry(fresh);
    try {
      o.onCert(fresh);
      // Logged once the certificate is stored and served, so a reader of the log finds the files.
      log.info("certificate issued", {
        via: via.kind,
        identity: fresh.identity,
        notAfter: new Date(fresh.notAfter).toISOString(),
      });
    } catch (err) {
      const ms = backoff.next();
      log.error("storing the new certificate failed; it is served from memory, retrying", {
        err: errorMessage(err),
        retryInMs: ms,
      });
      schedule(ms);
      return;
    }
    backoff.reset();
    scheduleRenewal(fresh, true);
  }

  return {
    start() {
      if (current && valid()) {
        watchExpiry(current);
        if (current.receivedAt === undefined) {
          log.info(
            "no record of when the stored certificate was received; its lifetime counts from notBefore",
          );
        }
        scheduleRenewal(current, false);
      } else {
        if (current) log.info("the stored certificate expired; requesting a new one with the token");
        void attempt();
      }
    },
    current: () => current,
    valid,
    nextAttemptAt: () => dueAt,
    stop() {
      stopped = true;
      timer?.cancel();
      expiryTimer?.cancel();
      timer = undefined;
      dueAt = undefined;
    },
  };
}
