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
 *   `meshd ca rotate` / `retire-root` (admin `POST /debug/ca/rotate`, `/debug/ca/retire`).
 * - The {@link CA} link: `trustBundle()`, `trustDomain()`, `onChange(fn)`.
 *
 * @module
 */
export { citadelModule, TRUST_DOMAIN_FILE } from "./module.ts";
export { CA, type CertificateAuthority } from "./links.ts";
export { caCommand, tokenCommand } from "./cli.ts";
export { createCsr, createCsrDer, CsrError, type CsrOptions, parseCsr, type ParsedCsr } from "./csr.ts";
export { parseWorkloadIdentity, spiffeId, type WorkloadIdentity } from "./spiffe.ts";
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
