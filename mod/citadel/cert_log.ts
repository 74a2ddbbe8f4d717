/**
 * The CA's recent history in memory, for /debug/certz and the console's security page: the
 * workload certificates issued (identity, serial, issued at, expiry) and the requests refused
 * (reason, caller, requested identity, message), each the last {@link CERT_LOG_SIZE}. Bounded
 * whatever the traffic; gone on restart (the audit log lines stay the record).
 *
 * @module
 */

/** Entries kept of each kind. */
export const CERT_LOG_SIZE = 1000;

/** One issued certificate. */
export interface IssuedEntry {
  readonly identity: string;
  readonly serial: string;
  /** ISO time of issue. */
  readonly issuedAt: string;
  /** ISO expiry. */
  readonly notAfter: string;
  /** How the caller authenticated (client certificate, token kind). */
  readonly via: string;
}

/** One refused request. */
export interface RefusedEntry {
  /** ISO time of the refusal. */
  readonly at: string;
  /** The `reason` label of citadel_csr_refused_total. */
  readonly reason: string;
  readonly caller: string;
  readonly requested: string;
  readonly message: string;
}

/** The log. */
export interface CertLog {
  issued(e: IssuedEntry): void;
  refused(e: RefusedEntry): void;
  /** Both lists, newest first. */
  view(): {
    readonly issued: readonly IssuedEntry[];
    readonly refused: readonly RefusedEntry[];
    readonly limit: number;
  };
}

/** A ring of the last `size` items. */
function ring<T>(size: number): { push(x: T): void; newestFirst(): T[] } {
  const items: T[] = [];
  let next = 0;
  return {
    push(x) {
      if (items.length < size) items.push(x);
      else items[next] = x;
      next = (next + 1) % size;
    },
    newestFirst() {
      const inOrder = items.length < size ? items : [...items.slice(next), ...items.slice(0, next)];
      return [...inOrder].reverse();
    },
  };
}

/** Creates a log keeping the last `size` (default {@link CERT_LOG_SIZE}) of each kind. */
export function createCertLog(size = CERT_LOG_SIZE): CertLog {
  const issued = ring<IssuedEntry>(size);
  const refused = ring<RefusedEntry>(size);
  return {
    issued: (e) => issued.push(e),
    refused: (e) => refused.push(e),
    view: () => ({ issued: issued.newestFirst(), refused: refused.newestFirst(), limit: size }),
  };
}
