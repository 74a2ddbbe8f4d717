/**
 * The node proxy's TLS material: a SecureContext built from the agent's current certificate
 * bundle (chain, key, mesh roots), rebuilt when the bundle changes (renewal, root rotation), and
 * the peer's SPIFFE identity read from a TLS socket. Every new TLS connection takes the context
 * current when it starts; an established one keeps the one it was made with, so renewal never
 * closes a connection.
 *
 * @module
 */
import { createSecureContext, type SecureContext, type SecureContextOptions, type TLSSocket } from "node:tls";
import type { CertBundle } from "../certs.ts";

/** The material in force at one moment. */
export interface TlsSnapshot {
  readonly bundle: CertBundle;
  readonly context: SecureContext;
  /** The options the context was built from (for `server.setSecureContext`). */
  readonly options: SecureContextOptions;
  /** Increases with every change of bundle. */
  readonly generation: number;
}

/** The current TLS material, following the certificate source. */
export interface TlsMaterial {
  /** The material for a new connection; throws when there is no certificate yet. */
  current(): TlsSnapshot;
  /** The workload identity of the current certificate, if any. */
  identity(): string | undefined;
  /**
   * Reads the source again and, when the chain, key or roots changed, rebuilds the context and
   * calls the listeners. Returns whether it changed.
   */
  refresh(): boolean;
  /** Calls `fn` after each change; returns a function that removes it. */
  onChange(fn: (s: TlsSnapshot) => void): () => void;
}

/** Creates the material over `source` (the cert manager's current bundle). */
export function createTlsMaterial(source: () => CertBundle | undefined): TlsMaterial {
  let snap: TlsSnapshot | undefined;
  let generation = 0;
  const listeners = new Set<(s: TlsSnapshot) => void>();
  const build = (b: CertBundle): TlsSnapshot => {
    const options: SecureContextOptions = { cert: b.chainPem, key: b.keyPem, ca: b.rootPem };
    return { bundle: b, context: createSecureContext(options), options, generation: ++generation };
  };
  const same = (a: CertBundle, b: CertBundle) =>
    a.chainPem === b.chainPem && a.keyPem === b.keyPem && a.rootPem === b.rootPem;
  const refresh = (): boolean => {
    const b = source();
    if (!b || (snap && same(snap.bundle, b))) return false;
    snap = build(b);
    for (const fn of listeners) fn(snap);
    return true;
  };
  return {
    current() {
      refresh();
      if (!snap) throw new Error("node proxy: no workload certificate yet for mutual TLS");
      return snap;
    },
    identity: () => source()?.identity,
    refresh,
    onChange(fn) {
      listeners.add(fn);
      return () => listeners.delete(fn);
    },
  };
}

/** What the node proxy reads from a peer's certificate. */
export interface PeerCertificateInfo {
  /** The SPIFFE identity (URI SAN), if the certificate has one. */
  readonly identity?: string;
  /** The certificate's serial number (hex), if known. */
  readonly serial?: string;
}

/**
 * The peer certificate facts of each TLS socket, read once: a connection's peer certificate is
 * fixed by its handshake, and decoding it is the costliest step of opening a tunnelled stream.
 */
const peerInfoBySocket = new WeakMap<TLSSocket, PeerCertificateInfo>();

/**
 * The identity and serial of the peer's certificate on a TLS socket; empty when the socket has
 * no peer certificate (yet). Read once per socket and remembered.
 */
export function peerCertificateInfo(socket: TLSSocket): PeerCertificateInfo {
  const known = peerInfoBySocket.get(socket);
  if (known) return known;
  const cert = socket.getPeerCertificate?.();
  if (!cert || Object.keys(cert).length === 0) return {};
  const identity = spiffeFromSubjectAltName(cert.subjectaltname ?? "");
  const info: PeerCertificateInfo = {
    ...(identity !== undefined ? { identity } : {}),
    ...(cert.serialNumber ? { serial: cert.serialNumber } : {}),
  };
  peerInfoBySocket.set(socket, info);
  return info;
}

/** The SPIFFE URI SAN of the peer's certificate on a TLS socket, if it has one. */
export function peerIdentity(socket: TLSSocket): string | undefined {
  return peerCertificateInfo(socket).identity;
}

/** The first `URI:spiffe://...` entry of a subjectaltname string (`URI:a, DNS:b`). */
export function spiffeFromSubjectAltName(san: string): string | undefined {
  for (const part of san.split(/,\s*/)) {
    if (part.startsWith("URI:spiffe://")) return part.slice(4);
  }
  return undefined;
}
