/**
 * Helpers for citadel's tests: temporary directories, openssl, CSRs, CA material made with
 * openssl (an offline root and an intermediate), and gRPC clients of the CA service over
 * plaintext, TLS and mutual TLS.
 */
import { IstioCertificateService } from "#gen/istio/v1/auth/ca_pb.ts";
import { type Client, createClient } from "@connectrpc/connect";
import { createGrpcTransport } from "@connectrpc/connect-node";
import { spawnSync } from "bun";
import { generateKeyPairSync, type KeyObject } from "node:crypto";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createCsr } from "../../mod/citadel/csr.ts";
import type { SubjectAltName } from "../../mod/citadel/x509.ts";

/** A temporary directory removed by `cleanup()`. */
export function tempDir(prefix = "citadel-"): { path: string; cleanup(): void } {
  const path = mkdtempSync(join(tmpdir(), prefix));
  return { path, cleanup: () => rmSync(path, { recursive: true, force: true }) };
}

/** Runs openssl; resolves with its exit code and output. */
export function openssl(args: string[], opts: { cwd?: string; stdin?: string } = {}) {
  const r = spawnSync(["/usr/bin/openssl", ...args], {
    cwd: opts.cwd,
    stdin: opts.stdin === undefined ? "ignore" : Buffer.from(opts.stdin),
    stdout: "pipe",
    stderr: "pipe",
  });
  return { code: r.exitCode, stdout: r.stdout.toString(), stderr: r.stderr.toString() };
}

/** Runs openssl and throws with its stderr when it fails. */
export function opensslOk(args: string[], opts: { cwd?: string; stdin?: string } = {}): string {
  const r = openssl(args, opts);
  if (r.code !== 0) throw new Error(`openssl ${args.join(" ")} failed: ${r.stderr}`);
  return r.stdout;
}

/** A fresh EC P-256 key pair. */
export function ecKey(): KeyObject {
  return generateKeyPairSync("ec", { namedCurve: "P-256" }).privateKey;
}

/** A CSR for `names` (a URI string is one URI SAN), with its key. */
export function csrFor(
  names: string | readonly SubjectAltName[],
  key = ecKey(),
): { csr: string; key: KeyObject } {
  const list = typeof names === "string" ? [{ type: "uri" as const, value: names }] : names;
  return { csr: createCsr({ key, names: list }), key };
}

/** The PEM of a private key. */
export function keyPem(key: KeyObject): string {
  return key.export({ format: "pem", type: "pkcs8" }) as string;
}

/**
 * Makes, with openssl, an offline root (root-key.pem, root-cert.pem) and an intermediate under
 * it, laid out as `--ca-dir` wants: ca-cert.pem, ca-key.pem, cert-chain.pem (intermediate then
 * root) and root-cert.pem.
 */
export function makeOfflineCa(
  dir: string,
  opts: { intermediateDays?: number; intermediateCa?: boolean } = {},
): void {
  const ext = join(dir, "ext.cnf");
  writeFileSync(
    ext,
    [
      "[req]",
      "distinguished_name=dn",
      "[dn]",
      "[root]",
      "basicConstraints=critical,CA:TRUE",
      "keyUsage=critical,keyCertSign,cRLSign",
      "subjectKeyIdentifier=hash",
      "[inter]",
      `basicConstraints=critical,CA:${opts.intermediateCa === false ? "FALSE" : "TRUE"}`,
      `keyUsage=critical,${opts.intermediateCa === false ? "digitalSignature" : "keyCertSign,cRLSign"}`,
      "subjectKeyIdentifier=hash",
      "authorityKeyIdentifier=keyid",
      "",
    ].join("\n"),
  );
  const ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes"];
  opensslOk(
    [
      "req",
      "-x509",
      ...ec,
      "-keyout",
      "root-key.pem",
      "-out",
      "root-cert.pem",
      "-days",
      "3650",
      "-subj",
      "/O=Example Offline Root",
      "-config",
      ext,
      "-extensions",
      "root",
    ],
    { cwd: dir },
  );
  opensslOk([
    "req",
    "-new",
    ...ec,
    "-keyout",
    "ca-key.pem",
    "-out",
    "ca.csr",
    "-subj",
    "/O=cluster.local/CN=meshd intermediate",
    "-config",
    ext,
  ], {
    cwd: dir,
  });
  opensslOk(
    [
      "x509",
      "-req",
      "-in",
      "ca.csr",
      "-CA",
      "root-cert.pem",
      "-CAkey",
      "root-key.pem",
      "-set_serial",
      "4242",
      "-days",
      String(opts.intermediateDays ?? 730),
      "-extfile",
      ext,
      "-extensions",
      "inter",
      "-out",
      "ca-cert.pem",
    ],
    { cwd: dir },
  );
  const read = (f: string) => readFileSync(join(dir, f), "utf8");
  writeFileSync(join(dir, "cert-chain.pem"), read("ca-cert.pem") + read("root-cert.pem"));
}

/** Options for caClient. */
export interface ClientTls {
  /** PEM roots that verify the server. */
  ca: string;
  /** Client certificate chain and key, for mutual TLS. */
  cert?: string;
  key?: string;
  /** Server name to verify (default localhost). */
  servername?: string;
}

/** A gRPC client of the CA service at `addr`: plaintext, or TLS when `tls` is given. */
export function caClient(addr: string, tls?: ClientTls): Client<typeof IstioCertificateService> {
  const baseUrl = `${tls ? "https" : "http"}://${addr}`;
  return createClient(
    IstioCertificateService,
    createGrpcTransport({
      baseUrl,
      nodeOptions: tls
        ? {
          ca: tls.ca,
          cert: tls.cert,
          key: tls.key,
          servername: tls.servername ?? "localhost",
          ALPNProtocols: ["h2"],
        }
        : {},
    }),
  );
}
