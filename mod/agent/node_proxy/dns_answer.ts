/**
 * The DNS proxy's own answers: which queries are about mesh host names and what to answer them,
 * decided from the view alone (no I/O). A name matches a mesh host exactly (case-insensitive,
 * trailing dot tolerated), or as `NAME.NAMESPACE` / `NAME.NAMESPACE.svc` short for a
 * `NAME.NAMESPACE.svc.DOMAIN` host. A mesh name gets its IPv4 addresses for A, its IPv6 ones for
 * AAAA, and NODATA (NOERROR, no answers) otherwise; other names are left to the upstreams.
 *
 * @module
 */
import * as packet from "dns-packet";
import { isIPv4, isIPv6 } from "node:net";
import type { NodeProxyView } from "./view.ts";

/** The cluster DNS domain of Kubernetes-style service hosts. */
export const DEFAULT_DOMAIN = "cluster.local";
/** Time to live of the proxy's answers, in seconds (Istio's DNS proxy uses 30). */
export const DEFAULT_TTL = 30;
/** Largest UDP answer for a client that sent no EDNS payload size. */
export const CLASSIC_UDP_SIZE = 512;
const RCODE_SERVFAIL = 2;

/** The mesh host a query name stands for, or undefined when it is not a mesh name. */
export function meshHost(
  dns: NodeProxyView["dns"],
  name: string,
  domain = DEFAULT_DOMAIN,
): string | undefined {
  const n = name.toLowerCase().replace(/\.$/, "");
  const labels = n.split(".");
  const candidates = [
    n,
    ...(labels.length === 2 ? [`${n}.svc.${domain}`] : []),
    ...(labels.length === 3 && labels[2] === "svc" ? [`${n}.${domain}`] : []),
  ];
  return candidates.find((c) => dns.has(c));
}

/** The largest UDP answer the query's sender takes (its EDNS payload size, at least 512). */
export function udpLimit(q: packet.Packet): number {
  const opt = q.additionals?.find((a) => a.type === "OPT") as packet.OptAnswer | undefined;
  return Math.max(CLASSIC_UDP_SIZE, opt?.udpPayloadSize ?? 0);
}

function responseFlags(q: packet.Packet, extra: number): number {
  const flags = q.flags ?? 0;
  return (flags & packet.RECURSION_DESIRED) | (flags & packet.CHECKING_DISABLED) |
    packet.RECURSION_AVAILABLE | extra;
}

/**
 * The answer to `q` when it asks about a mesh name (one question, class IN, opcode QUERY), or
 * undefined when it should be forwarded. Over UDP (`maxBytes` set) an answer that does not fit
 * is sent empty with TC set, so the client asks again over TCP.
 */
export function meshAnswer(
  q: packet.DecodedPacket,
  view: NodeProxyView,
  opts: { domain?: string; ttl?: number; maxBytes?: number } = {},
): Buffer | undefined {
  const question = q.questions?.[0];
  const opcode = (q as { opcode?: string }).opcode ?? "QUERY";
  if (q.questions?.length !== 1 || question === undefined || opcode !== "QUERY" || question.class !== "IN") {
    return undefined;
  }
  const host = meshHost(view.dns, question.name, opts.domain);
  if (host === undefined) return undefined;
  const addresses = view.dns.get(host) ?? [];
  const wanted = question.type === "A"
    ? addresses.filter((a) => isIPv4(a))
    : question.type === "AAAA"
    ? addresses.filter((a) => isIPv6(a))
    : [];
  const answers: packet.Answer[] = wanted.map((data) => ({
    type: question.type as "A" | "AAAA",
    class: "IN",
    name: question.name,
    ttl: opts.ttl ?? DEFAULT_TTL,
    data,
  }));
  const base = { id: q.id, type: "response" as const, questions: [question] };
  const full = packet.encode({ ...base, flags: responseFlags(q, packet.AUTHORITATIVE_ANSWER), answers });
  if (opts.maxBytes === undefined || full.length <= opts.maxBytes) return full;
  return packet.encode({
    ...base,
    flags: responseFlags(q, packet.AUTHORITATIVE_ANSWER | packet.TRUNCATED_RESPONSE),
    answers: [],
  });
}

/** SERVFAIL for `q` (every upstream failed). */
export function servfail(q: packet.DecodedPacket): Buffer {
  return packet.encode({
    id: q.id,
    type: "response",
    flags: responseFlags(q, RCODE_SERVFAIL),
    questions: q.questions ?? [],
  });
}
