/**
 * Gateways that share proxies and contradict each other. Gateways whose selectors pick the same
 * workload (or where one selector's labels are all in the other, so the proxies the other picks
 * run both) configure one proxy together: a server on the same port
 * and bind as another gateway's, for the same host, makes which one serves that host undefined;
 * and two gateways serving the same certificate let HTTP/2 clients reuse one connection for the
 * other gateway's hosts, which that connection's server does not route (404).
 *
 * @module
 */

import { normalizeHost, selectorMatches, splitNamespacedHost } from "../../api/mod.ts";
import type { GatewaySpec, ServerTLSSettings } from "../../api/kinds/networking.ts";
import type { Resource } from "../../api/resource.ts";
import type { AnalysisContext } from "./_context.ts";
import { formatLabels } from "./_labels.ts";
import { defineAnalyzer } from "./_define.ts";

function name(r: Resource): string {
  return `${r.metadata.namespace}/${r.metadata.name}`;
}

/**
 * True when every label `some` requires, `more` requires too with the same value: then `some`
 * selects every workload `more` selects, whatever workloads exist.
 */
export function selectorIncludes(
  some: Readonly<Record<string, string>> | undefined,
  more: Readonly<Record<string, string>> | undefined,
): boolean {
  return Object.entries(some ?? {}).every(([k, v]) => more?.[k] === v);
}

/**
 * True when two gateways configure a common proxy: one selector's labels are all in the other
 * (equal selectors included), so every proxy the one with more labels selects runs both; or a workload
 * both select.
 */
export function shareProxies(
  ctx: AnalysisContext,
  a: Resource<GatewaySpec>,
  b: Resource<GatewaySpec>,
): boolean {
  if (
    selectorIncludes(a.spec.selector, b.spec.selector) || selectorIncludes(b.spec.selector, a.spec.selector)
  ) {
    return true;
  }
  return ctx.workloadsSelected(a.spec.selector).some((w) => selectorMatches(b.spec.selector, w.labels));
}

/** The hosts of a server, without their namespace part, lower case. */
function serverHosts(hosts: readonly string[]): string[] {
  return hosts.map((h) => normalizeHost(splitNamespacedHost(h).host));
}

/** MSH0145: no two gateways on one proxy serve the same host on the same port and bind. */
export const conflictingGateways = defineAnalyzer({
  code: "MSH0145",
  istioCode: "IST0145",
  name: "ConflictingGateways",
  severity: "error",
  description: "Two Gateways on the same proxies (a workload both select, or one selector's labels all in " +
    "the other's) have servers on the same port and bind for the same host; which one serves it is undefined.",
}, (ctx, report) => {
  const gateways = ctx.ofKind<GatewaySpec>("Gateway");
  for (const gw of gateways) {
    const rivals = gateways.filter((o) => o !== gw && shareProxies(ctx, gw, o));
    gw.spec.servers.forEach((server, i) => {
      const hosts = serverHosts(server.hosts);
      const clashes: string[] = [];
      let shared = "";
      for (const other of rivals) {
        for (const s of other.spec.servers) {
          if (s.port.number !== server.port.number || (s.bind ?? "") !== (server.bind ?? "")) continue;
          const common = serverHosts(s.hosts).find((h) => hosts.includes(h));
          if (common === undefined) continue;
          shared ||= common;
          if (!clashes.includes(name(other))) clashes.push(name(other));
        }
      }
      if (clashes.length === 0) return;
      report(
        gw,
        `spec.servers[${i}]`,
        `port ${server.port.number} host ${shared} is also served by Gateway ${clashes.join(", ")} on the ` +
          `same workloads (selector ${formatLabels(gw.spec.selector)}); which server applies is undefined`,
      );
    });
  }
});

/** The certificate a server's TLS settings name, as comparable keys. */
function certificateKeys(tls: ServerTLSSettings | undefined): string[] {
  if (!tls) return [];
  const out: string[] = [];
  if (tls.credentialName) out.push(`credentialName ${tls.credentialName}`);
  for (const c of tls.credentialNames ?? []) out.push(`credentialName ${c}`);
  if (tls.serverCertificate && tls.privateKey) {
    out.push(`serverCertificate ${tls.serverCertificate} with privateKey ${tls.privateKey}`);
  }
  for (const c of tls.tlsCertificates ?? []) {
    if (c.serverCertificate && c.privateKey) {
      out.push(`serverCertificate ${c.serverCertificate} with privateKey ${c.privateKey}`);
    }
  }
  return out;
}

/** MSH0138: gateways on one proxy do not serve the same certificate. */
export const gatewayDuplicateCertificate = defineAnalyzer({
  code: "MSH0138",
  istioCode: "IST0138",
  name: "GatewayDuplicateCertificate",
  severity: "warning",
  description: "Two Gateways on the same proxies (a workload both select, or one selector's labels all in " +
    "the other's) serve the same certificate; HTTP/2 clients reusing a connection across them get 404s.",
}, (ctx, report) => {
  const gateways = ctx.ofKind<GatewaySpec>("Gateway");
  for (const gw of gateways) {
    gw.spec.servers.forEach((server, i) => {
      const mine = certificateKeys(server.tls);
      if (mine.length === 0) return;
      const others: string[] = [];
      let cert = "";
      for (const other of gateways) {
        if (other === gw || !shareProxies(ctx, gw, other)) continue;
        const theirs = other.spec.servers.flatMap((s) => certificateKeys(s.tls));
        const common = mine.find((k) => theirs.includes(k));
        if (common === undefined) continue;
        cert ||= common;
        others.push(name(other));
      }
      if (others.length === 0) return;
      report(
        gw,
        `spec.servers[${i}].tls`,
        `${cert} is also served by Gateway ${others.join(", ")} on the same workloads; HTTP/2 clients ` +
          "reuse one connection for every host the certificate covers and get 404 for the other " +
          "gateway's hosts. Use one Gateway, or a certificate per Gateway",
      );
    });
  }
});
