/**
 * Bootstrap tokens shared by replicas through etcd (`--store`): the signing key and the ledger
 * of redeemed single-use tokens.
 *
 * ```
 * PREFIX/tokens/signing-key   {"key": SEALED}   the EC P-256 key (PKCS#8 PEM) sealed under the KEK,
 *                                               with this etcd key's name as associated data
 * PREFIX/tokens/used/JTI      {"exp": SECONDS}  one per redeemed single-use token (JTI URI-encoded),
 *                                               on a lease that ends when the token expires
 * ```
 *
 * The first replica (or `meshd token create --store`) makes the key and writes it only if absent;
 * the others take it. Redeeming writes the ledger key only if absent: a token redeemed at one
 * replica is refused at every other, and when etcd cannot be reached the redemption fails closed.
 *
 * @module
 */
import { generateKeyPairSync } from "node:crypto";
import type { Clock } from "../shared/clock.ts";
import { createIfAbsent, type Store } from "../store/mod.ts";
import { type Kek, openSecret, sealSecret } from "./kek.ts";
import { keyFromPem, TOKEN_CLOCK_SKEW_S, type TokenSigningKey } from "./token.ts";

/** The etcd key of the token signing key under `prefix`. */
function tokenKeyEtcdKey(prefix: string): string {
  return `${prefix}/tokens/signing-key`;
}

/** The ledger key of a redeemed single-use token. */
function usedTokenEtcdKey(prefix: string, jti: string): string {
  return `${prefix}/tokens/used/${encodeURIComponent(jti)}`;
}

/**
 * Loads the token signing key from etcd, creating it when absent (two replicas creating it at
 * once end up with the same key). Throws KekError for a KEK that does not open it, and
 * StoreUnavailableError when etcd cannot be reached.
 */
export async function loadOrCreateSharedTokenKey(store: Store, kek: Kek): Promise<TokenSigningKey> {
  const key = tokenKeyEtcdKey(store.prefix);
  let kv = await store.client.get(key);
  if (kv === undefined) {
    const { privateKey } = generateKeyPairSync("ec", { namedCurve: "P-256" });
    const pem = privateKey.export({ format: "pem", type: "pkcs8" }) as string;
    const value = new TextEncoder().encode(
      JSON.stringify({ key: sealSecret(kek, new TextEncoder().encode(pem), key) }),
    );
    kv = (await createIfAbsent(store.client, key, value)).kv;
    if (kv === undefined) throw new Error(`etcd key ${key}: created and deleted at once; try again`);
  }
  let sealed: unknown;
  try {
    sealed = (JSON.parse(new TextDecoder().decode(kv.value)) as { key?: unknown }).key;
  } catch {
    sealed = undefined;
  }
  if (typeof sealed !== "string") throw new Error(`etcd key ${key}: want {"key": SEALED}`);
  const pem = openSecret(kek, sealed, key, "the token signing key in etcd");
  return keyFromPem(new TextDecoder().decode(pem), `etcd key ${key}`);
}

/** The single-use ledger in etcd. */
export interface SharedLedger {
  /**
   * Records `jti` (valid until `exp`, epoch seconds) as redeemed. Resolves true when this call
   * recorded it, false when it was redeemed before; rejects when etcd cannot record it.
   */
  claim(jti: string, exp: number): Promise<boolean>;
}

/** The ledger under the store's prefix. */
export function sharedLedger(store: Store, clock: Clock): SharedLedger {
  return {
    async claim(jti, exp) {
      const key = usedTokenEtcdKey(store.prefix, jti);
      // The key outlives the token (with the clock skew), then etcd drops it with the lease.
      const ttl = Math.max(1, Math.ceil(exp + TOKEN_CLOCK_SKEW_S - clock.now() / 1000));
      const lease = await store.client.grantLease(ttl);
      const value = new TextEncoder().encode(JSON.stringify({ exp }));
      return (await createIfAbsent(store.client, key, value, lease)).created;
    },
  };
}
