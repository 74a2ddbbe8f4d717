/**
 * SPIFFE identities of meshd workloads: `spiffe://TRUST_DOMAIN/ns/NAMESPACE/sa/SERVICE_ACCOUNT`,
 * checked against the SPIFFE ID syntax and Kubernetes' naming rules for the two names.
 *
 * @module
 */

/** A workload identity, parsed. */
export interface WorkloadIdentity {
  /** The whole URI. */
  readonly uri: string;
  readonly trustDomain: string;
  readonly namespace: string;
  readonly serviceAccount: string;
}

const DNS_LABEL = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/;
const TRUST_DOMAIN = /^[a-z0-9._-]+$/;

/** Why `td` is not a usable trust domain (a lower-case DNS-like name), or undefined. */
export function trustDomainProblem(td: string): string | undefined {
  if (td.length === 0 || td.length > 255) return "a trust domain has 1 to 255 characters";
  if (!TRUST_DOMAIN.test(td)) {
    return `trust domain ${JSON.stringify(td)} may hold only lower-case letters, digits, ".", "-" and "_"`;
  }
  return undefined;
}

/** Why `ns` is not a namespace name (a DNS-1123 label), or undefined. */
export function namespaceProblem(ns: string): string | undefined {
  if (ns.length === 0 || ns.length > 63 || !DNS_LABEL.test(ns)) {
    return `namespace ${
      JSON.stringify(ns)
    } must be a DNS-1123 label (lower-case letters, digits and "-", at most 63)`;
  }
  return undefined;
}

/** Why `name` is not a DNS-1123 subdomain (how Kubernetes names most objects), or undefined. */
export function dnsSubdomainProblem(what: string, name: string): string | undefined {
  if (name.length === 0 || name.length > 253 || !name.split(".").every((l) => DNS_LABEL.test(l))) {
    return `${what} ${
      JSON.stringify(name)
    } must be a DNS-1123 subdomain (lower-case letters, digits, "-" and ".")`;
  }
  return undefined;
}

/** Why `sa` is not a service account name (a DNS-1123 subdomain), or undefined. */
export function serviceAccountProblem(sa: string): string | undefined {
  return dnsSubdomainProblem("service account", sa);
}

/** Builds a workload's SPIFFE ID. Throws when a part is malformed. */
export function spiffeId(trustDomain: string, namespace: string, serviceAccount: string): string {
  const problem = trustDomainProblem(trustDomain) ?? namespaceProblem(namespace) ??
    serviceAccountProblem(serviceAccount);
  if (problem) throw new Error(problem);
  return `spiffe://${trustDomain}/ns/${namespace}/sa/${serviceAccount}`;
}

/**
 * Parses a meshd workload identity. Returns a string saying what is wrong when `uri` is not of
 * the form `spiffe://TRUST_DOMAIN/ns/NAMESPACE/sa/SERVICE_ACCOUNT`.
 */
export function parseWorkloadIdentity(uri: string): WorkloadIdentity | string {
  if (uri.length > 2048) return "a SPIFFE ID has at most 2048 characters";
  if (!uri.startsWith("spiffe://")) return `${JSON.stringify(uri)} is not a spiffe:// URI`;
  const rest = uri.slice(9);
  const slash = rest.indexOf("/");
  if (slash < 0) return `${JSON.stringify(uri)} has no path; want spiffe://TRUST_DOMAIN/ns/NS/sa/SA`;
  const trustDomain = rest.slice(0, slash);
  const segments = rest.slice(slash + 1).split("/");
  const problem = trustDomainProblem(trustDomain);
  if (problem) return problem;
  if (segments.length !== 4 || segments[0] !== "ns" || segments[2] !== "sa") {
    return `${JSON.stringify(uri)} is not of the form spiffe://TRUST_DOMAIN/ns/NS/sa/SA`;
  }
  const [, namespace, , serviceAccount] = segments as [string, string, string, string];
  const p = namespaceProblem(namespace) ?? serviceAccountProblem(serviceAccount);
  if (p) return p;
  return { uri, trustDomain, namespace, serviceAccount };
}

/**
 * The workload identity a client certificate presents: its single URI SAN, parsed. Returns what is
 * wrong, as a sentence about the client certificate, when it carries no URI SAN, several, or one
 * that is not a meshd workload identity.
 */
export function certificateIdentity(uris: readonly string[]): WorkloadIdentity | string {
  if (uris.length !== 1) return "client certificate must carry exactly one URI SAN";
  const id = parseWorkloadIdentity(uris[0]!);
  return typeof id === "string" ? `client certificate identity: ${id}` : id;
}
