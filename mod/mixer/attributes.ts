/**
 * Istio attribute bags from what Envoy sends: ext_authz CheckRequests, rate-limit descriptors and
 * access-log entries. The vocabulary is the API layer's (`mod/api/attributes.ts`); the client library
 * builds bags for proxyless gRPC apps itself (`client/attributes.ts`).
 *
 * Where Envoy does not know an attribute, pilot can supply it: ext_authz `context_extensions`,
 * and the `meshd.attributes` namespace of ext_authz `metadata_context` or access-log entry
 * metadata, map attribute names to values (`destination.service.host: reviews.default.svc...`,
 * `source.labels.app: productpage` sets one label). Principals are the peers' SPIFFE URIs; a
 * principal's `/ns/NAMESPACE/` fills the namespace when nothing else does.
 *
 * Access-log entries: `destination.service.host` comes from the metadata, else the upstream
 * cluster (`outbound|PORT||HOST`), else the request's authority; whichever gives it,
 * `destination.service.name` and `.namespace` are its first two labels unless the metadata sets
 * them (none for an IP address). HTTP entries set `response.time` to the request's start plus its
 * duration, so Istio's tracespan (`endTime: response.time`) evaluates.
 *
 * @module
 */
import { X509Certificate } from "node:crypto";
import type { JsonObject, JsonValue } from "@bufbuild/protobuf";
import type { Address } from "#gen/envoy/config/core/v3/address_pb.ts";
import { RequestMethod } from "#gen/envoy/config/core/v3/base_pb.ts";
import {
  type AccessLogCommon,
  AccessLogType,
  type HTTPAccessLogEntry,
  type ResponseFlags,
  type TCPAccessLogEntry,
  type TLSProperties_CertificateProperties,
} from "#gen/envoy/data/accesslog/v3/accesslog_pb.ts";
import type { RateLimitDescriptor } from "#gen/envoy/extensions/common/ratelimit/v3/ratelimit_pb.ts";
import type { CheckRequest } from "#gen/envoy/service/auth/v3/external_auth_pb.ts";
import type { Node } from "#gen/envoy/config/core/v3/base_pb.ts";
import { parseIP } from "../api/schema.ts";
import { parseDuration } from "../shared/duration.ts";
import {
  type AttributeBag,
  attributeType,
  BadBagError,
  type BagLimits,
  DEFAULT_BAG_LIMITS,
} from "./client/wire.ts";

/** The metadata namespace whose fields are attributes. */
export const ATTRIBUTES_METADATA_NAMESPACE = "meshd.attributes";

/** Checks a bag built from Envoy's messages against the limits; throws {@link BadBagError}. */
export function checkBagLimits(bag: Readonly<AttributeBag>, limits: BagLimits = DEFAULT_BAG_LIMITS): void {
  const names = Object.keys(bag);
  if (names.length > limits.maxAttributes) {
    throw new BadBagError(`more than ${limits.maxAttributes} attributes`);
  }
  for (const name of names) {
    const v = bag[name];
    if (typeof v === "string" && v.length > limits.maxValueLength) {
      throw new BadBagError(`attribute ${name} is too long`);
    }
    if (typeof v === "object" && v !== null && !(v instanceof Date) && !(v instanceof Uint8Array)) {
      const entries = Object.entries(v as Record<string, unknown>);
      if (entries.length > limits.maxMapEntries) {
        throw new BadBagError(`attribute ${name} has too many entries`);
      }
      for (const [k, x] of entries) {
        if (k.length > limits.maxValueLength || String(x).length > limits.maxValueLength) {
          throw new BadBagError(`attribute ${name} has an entry that is too long`);
        }
      }
    }
  }
}

/** The namespace in a SPIFFE identity spiffe://TD/ns/NS/sa/SA. */
export function namespaceOfPrincipal(principal: string): string | undefined {
  const m = /\/ns\/([^/]+)\/sa\//.exec(principal);
  return m?.[1];
}

/** The first URI SAN of a PEM certificate (URL-encoded PEM accepted, as Envoy sends it). */
export function uriSanOfPem(pem: string): string | undefined {
  if (pem === "") return undefined;
  try {
    const text = pem.includes("%") ? decodeURIComponent(pem) : pem;
    const san = new X509Certificate(text).subjectAltName ?? "";
    const m = /(?:^|,\s*)URI:([^,]+)/.exec(san);
    return m?.[1]?.trim();
  } catch {
    return undefined;
  }
}

function socket(a: Address | undefined): { ip?: Uint8Array; port?: number } {
  if (a?.address.case !== "socketAddress") return {};
  const s = a.address.value;
  const ip = parseIP(s.address);
  const port = s.portSpecifier.case === "portValue" ? s.portSpecifier.value : undefined;
  return { ip, port };
}

/**
 * Sets one attribute from text, converted to the vocabulary's type. `NAME.KEY`, where NAME is a
 * string-map attribute, sets one entry. Names outside the vocabulary are kept as strings. Returns
 * false when the text cannot be converted.
 */
export function setAttributeText(bag: AttributeBag, name: string, text: string): boolean {
  const type = attributeType(name);
  switch (type) {
    case undefined: {
      for (
        const map of [
          "source.labels",
          "destination.labels",
          "request.headers",
          "request.query_params",
          "request.auth.claims",
        ]
      ) {
        if (name.startsWith(map + ".") && name.length > map.length + 1) {
          const m = (bag[map] ??= {}) as Record<string, string>;
          m[name.slice(map.length + 1)] = text;
          return true;
        }
      }
      bag[name] = text;
      return true;
    }
    case "string":
    case "dyn":
      bag[name] = text;
      return true;
    case "int":
    case "double": {
      const n = Number(text);
      if (text.trim() === "" || !Number.isFinite(n) || (type === "int" && !Number.isInteger(n))) return false;
      bag[name] = n;
      return true;
    }
    case "bool":
      if (text !== "true" && text !== "false") return false;
      bag[name] = text === "true";
      return true;
    case "bytes": {
      const ip = parseIP(text);
      if (!ip) return false;
      bag[name] = ip;
      return true;
    }
    case "timestamp": {
      const ms = Date.parse(text);
      if (Number.isNaN(ms)) return false;
      bag[name] = new Date(ms);
      return true;
    }
    case "duration": {
      const ms = parseDuration(text);
      if (ms === undefined) return false;
      bag[name] = ms;
      return true;
    }
    case "string_map":
      return false;
  }
}

/** Sets attributes from a JSON object of attribute names (e.g. pilot's `meshd.attributes` metadata). */
export function setAttributesJson(bag: AttributeBag, obj: JsonObject | undefined): void {
  if (!obj) return;
  for (const [name, v] of Object.entries(obj)) setAttributeJson(bag, name, v);
}

function setAttributeJson(bag: AttributeBag, name: string, v: JsonValue): void {
  if (v === null) return;
  if (typeof v === "object" && !Array.isArray(v)) {
    if (attributeType(name) === "string_map") {
      const m = (bag[name] ??= {}) as Record<string, string>;
      for (const [k, x] of Object.entries(v)) if (typeof x === "string") m[k] = x;
    }
    return;
  }
  if (typeof v === "number" && (attributeType(name) === "int" || attributeType(name) === "double")) {
    bag[name] = v;
  } else if (typeof v === "boolean" && attributeType(name) === "bool") bag[name] = v;
  else if (typeof v === "string") setAttributeText(bag, name, v);
}

function fillNamespaces(bag: AttributeBag): void {
  for (const side of ["source", "destination"]) {
    const p = bag[`${side}.principal`];
    if (bag[`${side}.namespace`] === undefined && typeof p === "string") {
      const ns = namespaceOfPrincipal(p);
      if (ns) bag[`${side}.namespace`] = ns;
    }
  }
}

function protocolOf(headers: Readonly<Record<string, string>>): "grpc" | "http" {
  return (headers["content-type"] ?? "").startsWith("application/grpc") ? "grpc" : "http";
}

function urlParts(bag: AttributeBag, path: string): void {
  const q = path.indexOf("?");
  bag["request.url_path"] = q < 0 ? path : path.slice(0, q);
  if (q >= 0) {
    const params: Record<string, string> = {};
    for (const [k, v] of new URLSearchParams(path.slice(q + 1))) if (!(k in params)) params[k] = v;
    bag["request.query_params"] = params;
  }
}

/** The service name and namespace a host names: its first two labels; nothing for an IP address. */
export function serviceOfHost(host: string): { readonly name?: string; readonly namespace?: string } {
  if (host === "" || host.startsWith("[") || parseIP(host)) return {};
  const labels = host.split(".");
  return { name: labels[0]!, ...(labels.length > 1 ? { namespace: labels[1]! } : {}) };
}

/** Fills `destination.service.name` and `.namespace` from `destination.service.host` where unset. */
function fillServiceNames(bag: AttributeBag): void {
  const host = bag["destination.service.host"];
  if (typeof host !== "string") return;
  const { name, namespace } = serviceOfHost(host);
  if (name !== undefined) bag["destination.service.name"] ??= name;
  if (namespace !== undefined) bag["destination.service.namespace"] ??= namespace;
}

function hostOnly(authority: string): string {
  if (authority.startsWith("[")) return authority.slice(0, authority.indexOf("]") + 1);
  const colon = authority.lastIndexOf(":");
  return colon > 0 && /^\d+$/.test(authority.slice(colon + 1)) ? authority.slice(0, colon) : authority;
}

/**
 * The attributes of an ext_authz CheckRequest, as seen by the destination's sidecar
 * (`context.reporter.kind` "inbound" unless the context extensions say otherwise).
 */
export function bagFromExtAuthz(req: CheckRequest): AttributeBag {
  const bag: AttributeBag = { "context.reporter.kind": "inbound" };
  const a = req.attributes;
  if (!a) return bag;
  const src = socket(a.source?.address);
  if (src.ip) bag["source.ip"] = src.ip;
  if (src.port !== undefined) bag["source.port"] = src.port;
  const dst = socket(a.destination?.address);
  if (dst.ip) bag["destination.ip"] = dst.ip;
  if (dst.port !== undefined) bag["destination.port"] = dst.port;
  const sp = a.source?.principal || uriSanOfPem(a.source?.certificate ?? "");
  if (sp) bag["source.principal"] = sp;
  const dp = a.destination?.principal || uriSanOfPem(a.destination?.certificate ?? "");
  if (dp) bag["destination.principal"] = dp;
  bag["connection.mtls"] = Boolean(a.source?.principal || a.source?.certificate);
  if (a.source?.labels && Object.keys(a.source.labels).length > 0) {
    bag["source.labels"] = { ...a.source.labels };
  }
  if (a.destination?.labels && Object.keys(a.destination.labels).length > 0) {
    bag["destination.labels"] = { ...a.destination.labels };
  }
  if (a.tlsSession?.sni) bag["connection.requested_server_name"] = a.tlsSession.sni;
  const time = a.request?.time;
  if (time) bag["request.time"] = new Date(Number(time.seconds) * 1000 + time.nanos / 1_000_000);
  const http = a.request?.http;
  if (http) {
    const headers: Record<string, string> = {};
    for (const [k, v] of Object.entries(http.headers)) headers[k.toLowerCase()] = v;
    for (const h of http.headerMap?.headers ?? []) {
      const v = h.value || new TextDecoder().decode(h.rawValue);
      headers[h.key.toLowerCase()] = headers[h.key.toLowerCase()] === undefined
        ? v
        : `${headers[h.key.toLowerCase()]},${v}`;
    }
    bag["request.headers"] = headers;
    if (http.method) bag["request.method"] = http.method;
    if (http.path) {
      bag["request.path"] = http.path;
      urlParts(bag, http.path);
    }
    if (http.host) {
      bag["request.host"] = http.host;
      bag["destination.service.host"] = hostOnly(http.host);
    }
    if (http.scheme) bag["request.scheme"] = http.scheme;
    if (http.id) bag["request.id"] = http.id;
    if (http.size >= 0n && http.size <= BigInt(Number.MAX_SAFE_INTEGER)) {
      bag["request.size"] = Number(http.size);
    }
    if (headers["user-agent"]) bag["request.useragent"] = headers["user-agent"];
    if (headers["referer"]) bag["request.referer"] = headers["referer"];
    bag["context.protocol"] = protocolOf(headers);
    bag["api.protocol"] = bag["context.protocol"];
  }
  for (const [k, v] of Object.entries(a.contextExtensions)) setAttributeText(bag, k, v);
  setAttributesJson(bag, a.metadataContext?.filterMetadata[ATTRIBUTES_METADATA_NAMESPACE]);
  fillNamespaces(bag);
  return bag;
}

/** Envoy's descriptor keys for its built-in rate-limit actions, and the attributes they fill. */
const DESCRIPTOR_KEYS: Readonly<Record<string, (bag: AttributeBag, value: string) => void>> = {
  remote_address: (bag, v) => {
    const ip = parseIP(v);
    if (ip) bag["source.ip"] = ip;
  },
  source_cluster: (bag, v) => {
    bag["source.workload.name"] = v;
  },
  destination_cluster: (bag, v) => {
    const parts = v.split("|");
    const host = parts.length === 4 ? parts[3]! : v;
    if (host !== "") {
      bag["destination.service.host"] = host;
      fillServiceNames(bag);
    }
    if (parts.length === 4 && /^\d+$/.test(parts[1]!)) bag["destination.port"] = Number(parts[1]);
  },
};

/**
 * The attributes of one rate-limit descriptor. An entry whose key is an attribute name sets it
 * (converted to its type; `destination.labels.app` sets one label; `request.path` also fills
 * `request.url_path` and `request.query_params`, as for ext_authz); Envoy's `remote_address`,
 * `source_cluster` and `destination_cluster` fill source.ip, source.workload.name and the
 * destination service (host, name, namespace and port of `outbound|PORT||HOST`; only the port
 * of `inbound|PORT||`). Other entries are returned as unused. The actions pilot gives sidecars
 * (`mod/pilot/translate/rate_limit.ts`) produce only keys handled here.
 */
export function bagFromDescriptor(d: RateLimitDescriptor): { bag: AttributeBag; unused: string[] } {
  const bag: AttributeBag = { "context.reporter.kind": "inbound" };
  const unused: string[] = [];
  for (const e of d.entries) {
    const builtin = DESCRIPTOR_KEYS[e.key];
    if (builtin) builtin(bag, e.value);
    else if (
      !/^[a-z][a-z0-9_.-]*$/i.test(e.key) || !(attributeType(e.key) !== undefined || e.key.includes("."))
    ) {
      unused.push(e.key);
    } else if (!setAttributeText(bag, e.key, e.value)) unused.push(e.key);
    else if (e.key === "request.path") urlParts(bag, e.value);
  }
  return { bag, unused };
}

const FLAG_CODES: ReadonlyArray<readonly [keyof ResponseFlags, string]> = [
  ["failedLocalHealthcheck", "LH"],
  ["noHealthyUpstream", "UH"],
  ["upstreamRequestTimeout", "UT"],
  ["localReset", "LR"],
  ["upstreamRemoteReset", "UR"],
  ["upstreamConnectionFailure", "UF"],
  ["upstreamConnectionTermination", "UC"],
  ["upstreamOverflow", "UO"],
  ["noRouteFound", "NR"],
  ["delayInjected", "DI"],
  ["faultInjected", "FI"],
  ["rateLimited", "RL"],
  ["unauthorizedDetails", "UAEX"],
  ["rateLimitServiceError", "RLSE"],
  ["downstreamConnectionTermination", "DC"],
  ["upstreamRetryLimitExceeded", "URX"],
  ["streamIdleTimeout", "SI"],
  ["invalidEnvoyRequestHeaders", "IH"],
  ["downstreamProtocolError", "DPE"],
  ["upstreamMaxStreamDurationReached", "UMSDR"],
  ["responseFromCacheFilter", "RFCF"],
  ["noFilterConfigFound", "NFCF"],
  ["durationTimeout", "DT"],
  ["upstreamProtocolError", "UPE"],
  ["noClusterFound", "NC"],
  ["overloadManager", "OM"],
  ["dnsResolutionFailure", "DF"],
  ["downstreamRemoteReset", "DR"],
];

/** Envoy's short response flags ("UH,URX"), or "-" when none is set. */
export function responseFlagsText(f: ResponseFlags | undefined): string {
  if (!f) return "-";
  const codes = FLAG_CODES.filter(([k]) => Boolean(f[k])).map(([, c]) => c);
  return codes.length > 0 ? codes.join(",") : "-";
}

/** What a node's Istio metadata says about its workload. */
interface NodeWorkload {
  readonly namespace?: string;
  readonly name?: string;
  readonly labels?: Record<string, string>;
  readonly ip?: Uint8Array;
}

/** The workload of an Envoy node: NAMESPACE, LABELS, WORKLOAD_NAME metadata and the node id. */
export function nodeWorkload(node: Node | undefined): NodeWorkload {
  if (!node) return {};
  const md = (node.metadata ?? {}) as Record<string, JsonValue>;
  const parts = node.id.split("~");
  const idName = parts.length === 4 ? parts[2]!.split(".")[0] : undefined;
  const idNs = parts.length === 4 ? parts[3]!.split(".")[0] : undefined;
  const labels: Record<string, string> = {};
  if (typeof md.LABELS === "object" && md.LABELS !== null && !Array.isArray(md.LABELS)) {
    for (const [k, v] of Object.entries(md.LABELS)) if (typeof v === "string") labels[k] = v;
  }
  const str = (v: JsonValue | undefined) => (typeof v === "string" && v !== "" ? v : undefined);
  return {
    namespace: str(md.NAMESPACE) ?? idNs,
    name: str(md.WORKLOAD_NAME) ?? labels["app"] ?? idName,
    labels: Object.keys(labels).length > 0 ? labels : undefined,
    ip: parts.length === 4 ? parseIP(parts[1]!) : undefined,
  };
}

function commonAttributes(bag: AttributeBag, c: AccessLogCommon | undefined, node: NodeWorkload): void {
  const cluster = c?.upstreamCluster ?? "";
  const outbound = cluster.startsWith("outbound|");
  bag["context.reporter.kind"] = outbound ? "outbound" : "inbound";
  const self = outbound ? "source" : "destination";
  const peer = outbound ? "destination" : "source";
  if (node.name) bag[`${self}.workload.name`] = node.name;
  if (node.namespace) {
    bag[`${self}.workload.namespace`] = node.namespace;
    bag[`${self}.namespace`] = node.namespace;
  }
  if (node.labels) bag[`${self}.labels`] = node.labels;
  if (node.ip) bag[`${self}.ip`] = node.ip;
  const parts = cluster.split("|");
  if (parts.length === 4 && parts[3]) bag["destination.service.host"] = parts[3];
  if (!c) return;
  const remote = socket(c.downstreamRemoteAddress);
  const local = socket(c.downstreamLocalAddress);
  if (!outbound) {
    if (remote.ip) bag["source.ip"] = remote.ip;
    if (local.ip) bag["destination.ip"] = local.ip;
    if (local.port !== undefined) bag["destination.port"] = local.port;
  } else {
    const up = socket(c.upstreamRemoteAddress);
    if (up.ip) bag["destination.ip"] = up.ip;
    if (up.port !== undefined) bag["destination.port"] = up.port;
    if (parts.length === 4 && /^\d+$/.test(parts[1]!) && up.port === undefined) {
      bag["destination.port"] = Number(parts[1]);
    }
  }
  const tls = c.tlsProperties;
  const sanUri = (p: TLSProperties_CertificateProperties | undefined): string | undefined => {
    const san = p?.subjectAltName.find((x) => x.san.case === "uri")?.san;
    return san?.case === "uri" ? san.value : undefined;
  };
  const peerUri = sanUri(tls?.peerCertificateProperties);
  const localUri = sanUri(tls?.localCertificateProperties);
  if (peerUri) bag[`${peer}.principal`] = peerUri;
  if (localUri) bag[`${self}.principal`] = localUri;
  bag["connection.mtls"] = Boolean(tls?.peerCertificateProperties && !outbound);
  if (tls?.tlsSniHostname) bag["connection.requested_server_name"] = tls.tlsSniHostname;
  const startMs = c.startTime && Number(c.startTime.seconds) * 1000 + c.startTime.nanos / 1_000_000;
  if (startMs !== undefined) bag["request.time"] = new Date(startMs);
  const d = c.duration ?? c.timeToLastDownstreamTxByte;
  const durationMs = d && Number(d.seconds) * 1000 + d.nanos / 1_000_000;
  if (durationMs !== undefined) bag["response.duration"] = durationMs;
  if (startMs !== undefined && durationMs !== undefined) {
    bag["response.time"] = new Date(startMs + durationMs);
  }
  bag["context.proxy_error_code"] = responseFlagsText(c.responseFlags);
  setAttributesJson(bag, c.metadata?.filterMetadata[ATTRIBUTES_METADATA_NAMESPACE]);
  fillNamespaces(bag);
}

const safeNumber = (
  n: bigint,
) => (n <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(n) : Number.MAX_SAFE_INTEGER);

/** The attributes of an HTTP access-log entry reported by `node`. */
export function bagFromHttpLog(e: HTTPAccessLogEntry, node: Node | undefined): AttributeBag {
  const bag: AttributeBag = {};
  const req = e.request;
  const res = e.response;
  const headers: Record<string, string> = {};
  for (const [k, v] of Object.entries(req?.requestHeaders ?? {})) headers[k.toLowerCase()] = v;
  if (req) {
    if (req.requestMethod !== RequestMethod.METHOD_UNSPECIFIED) {
      bag["request.method"] = RequestMethod[req.requestMethod];
    }
    if (req.scheme) bag["request.scheme"] = req.scheme;
    if (req.authority) bag["request.host"] = req.authority;
    if (req.path) {
      bag["request.path"] = req.path;
      urlParts(bag, req.path);
    }
    if (req.userAgent) bag["request.useragent"] = req.userAgent;
    if (req.referer) bag["request.referer"] = req.referer;
    if (req.requestId) bag["request.id"] = req.requestId;
    bag["request.headers"] = headers;
    bag["request.size"] = safeNumber(req.requestBodyBytes);
    bag["request.total_size"] = safeNumber(req.requestBodyBytes + req.requestHeadersBytes);
  }
  if (res) {
    if (res.responseCode !== undefined) bag["response.code"] = res.responseCode;
    bag["response.size"] = safeNumber(res.responseBodyBytes);
    bag["response.total_size"] = safeNumber(res.responseBodyBytes + res.responseHeadersBytes);
    const rh: Record<string, string> = {};
    for (const [k, v] of Object.entries(res.responseHeaders)) rh[k.toLowerCase()] = v;
    bag["response.headers"] = rh;
    const grpc = res.responseTrailers["grpc-status"] ?? rh["grpc-status"];
    if (grpc !== undefined) bag["response.grpc_status"] = grpc;
  }
  const protocol = protocolOf(headers);
  bag["context.protocol"] = protocol;
  bag["api.protocol"] = protocol;
  commonAttributes(bag, e.commonProperties, nodeWorkload(node));
  if (bag["destination.service.host"] === undefined && typeof bag["request.host"] === "string") {
    bag["destination.service.host"] = hostOnly(bag["request.host"]);
  }
  fillServiceNames(bag);
  return bag;
}

/** The attributes of a TCP access-log entry reported by `node`. */
export function bagFromTcpLog(e: TCPAccessLogEntry, node: Node | undefined): AttributeBag {
  const bag: AttributeBag = { "context.protocol": "tcp", "api.protocol": "tcp" };
  const c = e.commonProperties;
  const type = c?.accessLogType ?? AccessLogType.NotSet;
  bag["connection.event"] = type === AccessLogType.TcpUpstreamConnected
    ? "open"
    : type === AccessLogType.TcpPeriodic || (type === AccessLogType.NotSet && c?.intermediateLogEntry)
    ? "continue"
    : "close";
  if (e.connectionProperties) {
    bag["connection.received.bytes"] = safeNumber(e.connectionProperties.receivedBytes);
    bag["connection.sent.bytes"] = safeNumber(e.connectionProperties.sentBytes);
  }
  if (c?.streamId) bag["connection.id"] = c.streamId;
  commonAttributes(bag, c, nodeWorkload(node));
  fillServiceNames(bag);
  if (bag["response.duration"] !== undefined) bag["connection.duration"] = bag["response.duration"];
  delete bag["response.duration"];
  delete bag["response.time"];
  return bag;
}
