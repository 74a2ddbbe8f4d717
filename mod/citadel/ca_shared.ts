/**
 * The CA shared by replicas through etcd (`--store`): one key, `PREFIX/ca/state`, holds the
 * whole CA as JSON, so every change is one transaction and every replica follows it by watching
 * that key.
 *
 * ```
 * {"mode": "self-signed", "signing": ID, "trusted": [ID, ...],          newest first
 *  "roots": {ID: {"cert": PEM, "key": SEALED}, ...}}
 * {"mode": "byo", "cert": PEM, "key": SEALED, "chain": [PEM, ...], "roots": [PEM, ...]}
 * ```
 *
 * SEALED is the PEM private key encrypted under the KEK (kek.ts) with `PREFIX/ca/state`, the
 * root's ID and its certificate's SHA-256 as associated data.
 *
 * - Creation: a replica that finds no state makes a root in memory and writes it only if the key
 *   is still absent; a replica that loses that race discards its root and takes the winner's. With
 *   `--ca-dir` the first replica imports its files the same way; a replica whose files differ
 *   from what etcd holds refuses to start, naming both.
 * - Rotation steps read the state, change it, and write it conditioned on the revision read, so
 *   two steps at two replicas cannot both apply. Every replica applies each new revision from its
 *   watch (a newer revision only), and keeps signing with the keys in memory while etcd is away.
 *
 * @module
 */
import { createHash } from "node:crypto";
import { type Clock, sleep } from "../shared/clock.ts";
import { errorMessage } from "../shared/errors.ts";
import type { Logger } from "../shared/logger.ts";
import { createIfAbsent, type Store } from "../store/mod.ts";
import {
  activatedState,
  type CaKeyType,
  CaLoadError,
  type CaMaterial,
  loadCaDir,
  makeRoot,
  parseCaKey,
  retiredState,
  type RootState,
  rotatedState,
  selfSignedMaterial,
} from "./ca_store.ts";
import { type Kek, openSecret, sealSecret } from "./kek.ts";

/** A self-signed CA as etcd holds it. */
interface SelfSignedRecord extends RootState {
  readonly mode: "self-signed";
  readonly roots: Readonly<Record<string, { readonly cert: string; readonly key: string }>>;
}

/** A `--ca-dir` CA as etcd holds it. */
interface ByoRecord {
  readonly mode: "byo";
  readonly cert: string;
  readonly key: string;
  readonly chain: readonly string[];
  readonly roots: readonly string[];
}

type CaRecord = SelfSignedRecord | ByoRecord;

/** Inputs to openSharedCa. */
export interface SharedCaOptions {
  readonly store: Store;
  readonly kek: Kek;
  readonly keyType: CaKeyType;
  /** `--ca-dir`: imported by the first replica, compared by the others. */
  readonly caDir?: string;
  readonly clock: Clock;
  readonly logger: Logger;
}

/** The CA in etcd as one replica holds it. */
export interface SharedCa {
  /** The material in force (the last revision applied). */
  current(): CaMaterial;
  /** The etcd revision of `current()`. */
  revision(): number;
  /** Rotation phase 1 (see CaStore.rotate), written to etcd; resolves with the new material. */
  rotate(trustDomain: string): Promise<CaMaterial>;
  /** Rotation phase 2. */
  activate(): Promise<CaMaterial>;
  /** Rotation phase 3. */
  retire(): Promise<CaMaterial>;
  /**
   * Watches the state and calls `onChange` after each newer revision another replica wrote is
   * applied. Until `close`.
   */
  follow(onChange: (m: CaMaterial) => void): void;
  close(): void;
}

/** The etcd key of the CA state under `prefix`. */
export function caStateKey(prefix: string): string {
  return `${prefix}/ca/state`;
}

const fingerprintOf = (pem: string) => createHash("sha256").update(pem.trim()).digest("hex");

function keyName(stateKey: string, id: string, certPem: string): string {
  return `${stateKey} root ${id} ${fingerprintOf(certPem)}`;
}

function parseRecord(stateKey: string, value: Uint8Array): CaRecord {
  let r: Partial<SelfSignedRecord> & Partial<Omit<ByoRecord, "roots">> & { roots?: unknown };
  try {
    r = JSON.parse(new TextDecoder().decode(value));
  } catch (err) {
    throw new CaLoadError(`etcd key ${stateKey}: not JSON: ${errorMessage(err)}`);
  }
  const str = (v: unknown) => typeof v === "string";
  if (r.mode === "self-signed") {
    const roots = r.roots as SelfSignedRecord["roots"] | undefined;
    if (
      !str(r.signing) || !Array.isArray(r.trusted) || !r.trusted.includes(r.signing!) ||
      typeof roots !== "object" || roots === null ||
      !r.trusted.every((id) => str(roots[id]?.cert) && str(roots[id]?.key))
    ) {
      throw new CaLoadError(
        `etcd key ${stateKey}: want {"mode": "self-signed", "signing": ID, "trusted": [ID, ...], "roots": {ID: {"cert", "key"}}}`,
      );
    }
    return r as SelfSignedRecord;
  }
  if (r.mode === "byo") {
    if (
      !str(r.cert) || !str(r.key) || !Array.isArray(r.chain) || !Array.isArray(r.roots) ||
      !r.chain.every(str) || !r.roots.every(str)
    ) {
      throw new CaLoadError(`etcd key ${stateKey}: want {"mode": "byo", "cert", "key", "chain", "roots"}`);
    }
    return r as unknown as ByoRecord;
  }
  throw new CaLoadError(`etcd key ${stateKey}: unknown mode ${JSON.stringify(r.mode)}`);
}

/**
 * The material a record describes, its keys decrypted with the KEK. `ownCa` loads the replica's
 * `--ca-dir`.
 */
function materialOf(
  record: CaRecord,
  stateKey: string,
  opts: SharedCaOptions,
  ownCa: () => CaMaterial,
): CaMaterial {
  // A --ca-dir CA is served from the replica's own files, which checkSameCa compared with etcd.
  if (record.mode === "byo") return ownCa();
  return selfSignedMaterial(record, {
    cert(id) {
      return { text: record.roots[id]!.cert, where: `etcd key ${stateKey} root ${id} certificate` };
    },
    key(id) {
      const where = `etcd key ${stateKey} root ${id} key`;
      const root = record.roots[id]!;
      const pem = openSecret(opts.kek, root.key, keyName(stateKey, id, root.cert), "the CA key in etcd");
      return { key: parseCaKey(new TextDecoder().decode(pem), where), where };
    },
  }, opts);
}

function describeByo(signingCertPem: string, roots: readonly string[]): string {
  return `signing certificate sha256 ${fingerprintOf(signingCertPem).slice(0, 16)}, roots ${
    roots.map((r) => fingerprintOf(r).slice(0, 16)).join(",")
  }`;
}

/** A new record for the CA this replica brings: its `--ca-dir` files, or a new root. */
async function newRecord(
  stateKey: string,
  opts: SharedCaOptions,
  trustDomain: string,
  ownCa: () => CaMaterial,
): Promise<CaRecord> {
  const enc = new TextEncoder();
  if (opts.caDir !== undefined) {
    const m = ownCa();
    const keyPem = m.signingKey.export({ format: "pem", type: "pkcs8" }) as string;
    return {
      mode: "byo",
      cert: m.signingCertPem,
      key: sealSecret(opts.kek, enc.encode(keyPem), keyName(stateKey, "byo", m.signingCertPem)),
      chain: m.chain,
      roots: m.roots,
    };
  }
  const root = await makeRoot(opts.keyType, trustDomain, opts.clock.now());
  const key = sealSecret(opts.kek, enc.encode(root.keyPem), keyName(stateKey, root.id, root.certPem));
  return {
    mode: "self-signed",
    signing: root.id,
    trusted: [root.id],
    roots: { [root.id]: { cert: root.certPem, key } },
  };
}

/** Checks that the replica's `--ca-dir` (or its absence) agrees with the CA etcd holds. */
function checkSameCa(
  record: CaRecord,
  stateKey: string,
  opts: SharedCaOptions,
  ownCa: () => CaMaterial,
): void {
  if (opts.caDir === undefined && record.mode === "byo") {
    throw new CaLoadError(
      `etcd key ${stateKey} holds a --ca-dir CA another replica imported; start this replica with the same --ca-dir`,
    );
  }
  if (opts.caDir === undefined) return;
  const theirs = record.mode === "byo" ? describeByo(record.cert, record.roots) : "a self-signed CA";
  const own = ownCa();
  const ours = describeByo(own.signingCertPem, own.roots);
  if (record.mode !== "byo" || theirs !== ours) {
    throw new CaLoadError(
      `--ca-dir ${opts.caDir} (${ours}) differs from the CA in etcd key ${stateKey} (${theirs}); ` +
        "every replica must use the same CA",
    );
  }
  // The key in etcd must open with this KEK too: it is what another replica would sign with.
  openSecret(opts.kek, record.key, keyName(stateKey, "byo", record.cert), "the CA key in etcd");
}

/**
 * Loads the CA from etcd, creating it (a new root, or the `--ca-dir` files) when etcd holds
 * none. `trustDomain` is asked only when a root is made. Throws CaLoadError for a state that is
 * unusable or a `--ca-dir` that differs, KekError for a KEK that does not open the key, and
 * StoreUnavailableError when etcd cannot be reached.
 */
export async function openSharedCa(
  opts: SharedCaOptions,
  trustDomain: () => Promise<string>,
): Promise<SharedCa> {
  const client = opts.store.client;
  const stateKey = caStateKey(opts.store.prefix);
  const log = opts.logger;
  const encode = (r: CaRecord) => new TextEncoder().encode(JSON.stringify(r));
  /** The replica's `--ca-dir`, read once. */
  let own: CaMaterial | undefined;
  const ownCa = () => (own ??= loadCaDir(opts.caDir!, { now: opts.clock.now(), logger: opts.logger }));

  let kv = await client.get(stateKey);
  if (kv === undefined) {
    const mine = await newRecord(stateKey, opts, await trustDomain(), ownCa);
    const value = encode(mine);
    const res = await createIfAbsent(client, stateKey, value);
    if (res.created) {
      log.info(mine.mode === "byo" ? "imported --ca-dir into etcd" : "created a self-signed root in etcd", {
        key: stateKey,
      });
    } else {
      log.info("another replica created the CA first; using it", { key: stateKey });
    }
    kv = res.kv;
    if (kv === undefined) {
      throw new CaLoadError(`etcd key ${stateKey}: created and deleted at once; start again`);
    }
  }
  const record = parseRecord(stateKey, kv.value);
  checkSameCa(record, stateKey, opts, ownCa);
  let current = materialOf(record, stateKey, opts, ownCa);
  let revision = kv.modRevision;
  const abort = new AbortController();

  /** Applies a state read from etcd when it is newer than what is in force. */
  const apply = (value: Uint8Array, rev: number): boolean => {
    if (rev <= revision) return false;
    current = materialOf(parseRecord(stateKey, value), stateKey, opts, ownCa);
    revision = rev;
    return true;
  };

  /** Writes `next` if the state is still at the revision read; applies it here at once. */
  const write = async (what: string, change: (r: CaRecord) => Promise<CaRecord> | CaRecord) => {
    let read;
    try {
      read = await client.get(stateKey);
    } catch (err) {
      throw new Error(`cannot ${what}: the store is unreachable (${errorMessage(err)})`);
    }
    if (read === undefined) throw new Error(`cannot ${what}: etcd key ${stateKey} is gone`);
    const before = parseRecord(stateKey, read.value);
    if (before.mode === "byo") {
      throw new Error("the CA comes from --ca-dir; rotate it by replacing the files there and restarting");
    }
    const value = encode(await change(before));
    let res;
    try {
      res = await client.txn([{ key: stateKey, modRevision: read.modRevision }], [{ put: stateKey, value }]);
    } catch (err) {
      throw new Error(`cannot ${what}: the store is unreachable (${errorMessage(err)})`);
    }
    if (!res.succeeded) {
      throw new Error(`cannot ${what}: the CA changed at another replica meanwhile; look again and retry`);
    }
    apply(value, res.revision);
    return current;
  };

  const selfSigned = (r: CaRecord) => r as SelfSignedRecord;
  return {
    current: () => current,
    revision: () => revision,
    rotate(td) {
      return write("rotate the CA root", async (r) => {
        const s = selfSigned(r);
        rotatedState(s, "");
        const root = await makeRoot(opts.keyType, td, opts.clock.now());
        const key = sealSecret(
          opts.kek,
          new TextEncoder().encode(root.keyPem),
          keyName(stateKey, root.id, root.certPem),
        );
        return {
          ...s,
          ...rotatedState(s, root.id),
          roots: { ...s.roots, [root.id]: { cert: root.certPem, key } },
        };
      });
    },
    activate() {
      return write(
        "activate the new CA root",
        (r) => ({ ...selfSigned(r), ...activatedState(selfSigned(r)) }),
      );
    },
    retire() {
      return write("retire the old CA roots", (r) => {
        const s = selfSigned(r);
        const next = retiredState(s);
        return { ...s, ...next, roots: { [s.signing]: s.roots[s.signing]! } };
      });
    },
    follow(onChange) {
      const run = async () => {
        // Retries back off from 1 s to 30 s while etcd stays away, and start over once it answers.
        let delayMs = 1_000;
        while (!abort.signal.aborted) {
          try {
            const listed = await client.list(stateKey);
            delayMs = 1_000;
            const now = listed.kvs.find((k) => k.key === stateKey);
            if (now && apply(now.value, now.modRevision)) onChange(current);
            for await (const batch of client.watch(stateKey, listed.revision + 1, abort.signal)) {
              for (const e of batch.events) {
                if (e.kv.key !== stateKey || e.type !== "put") continue;
                if (apply(e.kv.value, e.kv.modRevision)) {
                  log.info("applied a CA change from etcd", { revision: e.kv.modRevision });
                  onChange(current);
                }
              }
            }
          } catch (err) {
            if (abort.signal.aborted) return;
            log.warn("the CA watch on etcd failed; retrying (signing goes on with the keys in memory)", {
              err: errorMessage(err),
              retryInMs: delayMs,
            });
          }
          if (abort.signal.aborted) return;
          await sleep(opts.clock, delayMs, abort.signal);
          delayMs = Math.min(30_000, delayMs * 2);
        }
      };
      void run();
    },
    close() {
      abort.abort();
    },
  };
}
