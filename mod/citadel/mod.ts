/**
 * Citadel: the mesh's certificate authority.
 *
 * - `istio.v1.auth.IstioCertificateService/CreateCertificate` on 15010 (plaintext; authenticate
 *   with `authorization: Bearer <bootstrap token>` from `meshd token create`) and on 15012 (TLS
 *   with a meshd-issued server certificate, verified against the trust bundle; renew with the
 *   current workload certificate as the client certificate, no token needed).
 * - The answer's `cert_chain`: the leaf, any intermediates, and as the last element the trust
 *   bundle (every trusted root in one PEM string, the signing root first, the oldest last).
 *   Agents write the leaf and intermediates to cert-chain.pem and the last element to
 *   root-cert.pem.
 * - Roots: self-signed under `--data-dir/ca` or bring-your-own with `--ca-dir`; rotated with
 *   `meshd ca rotate` / `activate` / `retire-root` (admin `POST /debug/ca/rotate`, `/activate`,
 *   `/retire`, each with `Authorization: Bearer` and the token in `--data-dir/admin-token`; `meshd
 *   ca --data-dir DIR` reads it). Temporary files an interrupted write left under `--data-dir/ca`
 *   are removed when the CA is loaded.
 * - The {@link CA} link: `trustBundle()`, `trustDomain()`, `onChange(fn)`.
 * - The names of 15012's certificate (`serverCertNames`), and the certificate itself kept in
 *   `--data-dir` (`SERVER_CERT_FILE`), so `meshd vm bundle` hands VMs only addresses it covers.
 *
 * @module
 */
export { citadelModule, TRUST_DOMAIN_FILE } from "./module.ts";
export { CA, type CertificateAuthority } from "./links.ts";
export { caCommand, tokenCommand } from "./cli.ts";
export { createCsr, createCsrDer, CsrError, type CsrOptions, parseCsr, type ParsedCsr } from "./csr.ts";
export {
  certificateIdentity,
  dnsSubdomainProblem,
  namespaceProblem,
  parseWorkloadIdentity,
  spiffeId,
  type WorkloadIdentity,
} from "./spiffe.ts";
export { certificateNames, parseCertificate } from "./x509.ts";
export {
  checkIpList,
  DEFAULT_SERVER_DNS_NAMES,
  namesCover,
  readServedNames,
  SERVER_CERT_FILE,
  serverCertNames,
  type ServerNames,
  serverNamesOf,
} from "./server_names.ts";
export type { SubjectAltName } from "./x509.ts";
export {
  type BootstrapClaims,
  createToken,
  loadOrCreateTokenKey,
  TOKEN_AUDIENCE,
  TOKEN_ISSUER,
  type TokenSigningKey,
  verifyToken,
} from "./token.ts";
