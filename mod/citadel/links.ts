/**
 * What citadel offers other modules: the CA's trust bundle and trust domain, and word of their
 * changes (for pilot's validation contexts and an in-process agent).
 *
 * @module
 */
import { linkKey } from "../runtime/links.ts";

/** The certificate authority as other modules see it. */
export interface CertificateAuthority {
  /**
   * PEM of every trusted root, concatenated: the signing root first, the oldest last. During a
   * root rotation it holds the old and the new root. Empty before the CA has started.
   */
  trustBundle(): string;
  /** The trust domain workload identities are issued in (`--trust-domain`, else MeshConfig). */
  trustDomain(): string;
  /**
   * Calls `fn` after the trusted roots, the signing root or the trust domain changed,
   * synchronously and in registration order; `fn` must not throw (a throw is logged). Returns a
   * function that unsubscribes.
   */
  onChange(fn: () => void): () => void;
}

/** Citadel's CA, offered once the module is created (its bundle fills in at start). */
export const CA = linkKey<CertificateAuthority>("citadel.ca");
