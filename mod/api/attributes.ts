/**
 * Attribute vocabularies: the names and types of the values that CEL expressions in mesh config
 * can read. Istio's names contain dots (`source.labels`, `request.auth.claims`); each full name is
 * one attribute, and {@link compileExpression} in `cel.ts` resolves `a.b.c` chains against them.
 *
 * @module
 */

/**
 * The type of an attribute. `bytes` holds IP addresses (4 or 16 bytes); `string_map` holds labels,
 * headers and claims; `dyn` is any value.
 */
export type AttributeType =
  | "string"
  | "int"
  | "double"
  | "bool"
  | "timestamp"
  | "duration"
  | "bytes"
  | "string_map"
  | "dyn";

/** One attribute of a vocabulary. */
export interface AttributeInfo {
  readonly name: string;
  readonly type: AttributeType;
  readonly description: string;
}

/** A set of attributes by name. */
export type AttributeVocabulary = ReadonlyMap<string, AttributeInfo>;

/** Builds a vocabulary from `[name, type, description]` rows. */
export function defineVocabulary(
  rows: readonly (readonly [name: string, type: AttributeType, description: string])[],
): AttributeVocabulary {
  return new Map(rows.map(([name, type, description]) => [name, { name, type, description }]));
}

const workloadRows = (
  side: "source" | "destination",
): (readonly [string, AttributeType, string])[] => [
  [`${side}.uid`, "string", `Platform-specific unique identifier of the ${side} workload instance.`],
  [`${side}.ip`, "bytes", `IP address of the ${side} workload instance.`],
  [`${side}.labels`, "string_map", `Labels of the ${side} workload instance.`],
  [`${side}.name`, "string", `Name of the ${side} workload instance.`],
  [`${side}.namespace`, "string", `Namespace of the ${side} workload instance.`],
  [`${side}.principal`, "string", `Authenticated identity (SPIFFE principal) of the ${side} workload.`],
  [`${side}.owner`, "string", `Reference to the controller of the ${side} workload instance.`],
  [`${side}.workload.uid`, "string", `Unique identifier of the ${side} workload.`],
  [`${side}.workload.name`, "string", `Name of the ${side} workload.`],
  [`${side}.workload.namespace`, "string", `Namespace of the ${side} workload.`],
];

/**
 * Istio's attribute vocabulary as the Mixer model defines it: what `rule.match`, instance
 * parameters and policy conditions can refer to.
 */
export const istioAttributes: AttributeVocabulary = defineVocabulary([
  ...workloadRows("source"),
  ...workloadRows("destination"),
  ["destination.port", "int", "Recipient port on the destination IP address."],
  ["destination.service.host", "string", "Destination host address (FQDN of the service)."],
  ["destination.service.name", "string", "Destination service short name."],
  ["destination.service.namespace", "string", "Namespace of the destination service."],
  ["destination.service.uid", "string", "Unique identifier of the destination service."],
  ["request.headers", "string_map", "HTTP request headers with lower-case keys."],
  ["request.id", "string", "An ID for the request with a statistically low probability of collision."],
  ["request.path", "string", "The HTTP URL path including the query string."],
  ["request.url_path", "string", "The HTTP URL path with the query string stripped."],
  ["request.query_params", "string_map", "Query parameters extracted from the HTTP URL."],
  ["request.host", "string", "HTTP/1.x host header or HTTP/2 authority header value."],
  ["request.method", "string", "The HTTP method."],
  ["request.reason", "string", "The request reason used by auditing systems."],
  ["request.referer", "string", "The HTTP referer header."],
  ["request.scheme", "string", "URI scheme of the request."],
  ["request.size", "int", "Size of the request in bytes (the body for HTTP)."],
  ["request.total_size", "int", "Total size of the HTTP request in bytes, headers and body included."],
  ["request.time", "timestamp", "The timestamp when the destination receives the request."],
  ["request.useragent", "string", "The HTTP User-Agent header."],
  ["request.api_key", "string", "The API key used for the request."],
  ["request.auth.principal", "string", "The authenticated principal of the request (JWT iss/sub)."],
  ["request.auth.audiences", "string", "The intended audience(s) of the authentication information."],
  ["request.auth.presenter", "string", "The authorized presenter of the credential."],
  ["request.auth.claims", "string_map", "All raw string claims from the origin JWT."],
  ["response.headers", "string_map", "HTTP response headers with lower-case keys."],
  ["response.size", "int", "Size of the response body in bytes."],
  ["response.total_size", "int", "Total size of the HTTP response in bytes, headers and body included."],
  ["response.time", "timestamp", "The timestamp when the destination produced the response."],
  ["response.duration", "duration", "The amount of time the response took to generate."],
  ["response.code", "int", "The response's HTTP status code."],
  ["response.grpc_status", "string", "The response's gRPC status."],
  ["response.grpc_message", "string", "The response's gRPC status message."],
  ["connection.id", "string", "An ID for a TCP connection."],
  ["connection.event", "string", "Status of a TCP connection: open, continue or close."],
  ["connection.received.bytes", "int", "Bytes received by the destination since the last report."],
  ["connection.sent.bytes", "int", "Bytes sent by the destination since the last report."],
  ["connection.duration", "duration", "Total time the TCP connection has been open."],
  ["connection.mtls", "bool", "Whether the request arrived over mutual TLS."],
  ["connection.requested_server_name", "string", "The requested server name (SNI) of the connection."],
  ["context.protocol", "string", "Protocol of the request or connection (http, https, grpc, tcp)."],
  ["context.time", "timestamp", "The timestamp of the Mixer operation."],
  ["context.reporter.kind", "string", "Whether the reporter is the inbound or outbound proxy."],
  ["api.service", "string", "The public service name, distinct from the mesh service identity."],
  ["api.version", "string", "The API version."],
  ["api.operation", "string", "A unique string identifying the operation being invoked."],
  ["api.protocol", "string", "The protocol type of the API call (http, https, grpc)."],
]);

/**
 * Envoy's attribute vocabulary: what the CEL expressions Envoy evaluates (Telemetry access-log
 * filters) can refer to.
 */
export const envoyAttributes: AttributeVocabulary = defineVocabulary([
  ["request.path", "string", "The path portion of the URL."],
  ["request.url_path", "string", "The path portion of the URL without the query string."],
  ["request.host", "string", "The host portion of the URL."],
  ["request.scheme", "string", "The scheme portion of the URL."],
  ["request.method", "string", "Request method."],
  ["request.headers", "string_map", "All request headers indexed by lower-cased header name."],
  ["request.referer", "string", "Referer request header."],
  ["request.useragent", "string", "User agent request header."],
  ["request.time", "timestamp", "Time of the first byte received."],
  ["request.id", "string", "Request ID corresponding to the x-request-id header."],
  ["request.protocol", "string", "Request protocol (HTTP/1.0, HTTP/1.1, HTTP/2, HTTP/3)."],
  ["request.query", "string", "The query portion of the URL."],
  ["request.duration", "duration", "Total duration of the request."],
  ["request.size", "int", "Size of the request body."],
  ["request.total_size", "int", "Total size of the request including the headers."],
  ["response.code", "int", "Response HTTP status code."],
  ["response.code_details", "string", "Internal response code details."],
  ["response.flags", "int", "Additional details about the response beyond the standard response code."],
  ["response.grpc_status", "int", "Response gRPC status code."],
  ["response.headers", "string_map", "All response headers indexed by lower-cased header name."],
  ["response.trailers", "string_map", "All response trailers indexed by lower-cased trailer name."],
  ["response.size", "int", "Size of the response body."],
  ["response.total_size", "int", "Total size of the response including the headers and trailers."],
  [
    "response.backend_latency",
    "duration",
    "Duration between the first byte sent upstream and the first byte received.",
  ],
  ["source.address", "string", "Downstream connection remote address."],
  ["source.port", "int", "Downstream connection remote port."],
  ["destination.address", "string", "Downstream connection local address."],
  ["destination.port", "int", "Downstream connection local port."],
  ["connection.id", "int", "Downstream connection ID."],
  [
    "connection.mtls",
    "bool",
    "Whether TLS is applied to the downstream connection and the peer presented a certificate.",
  ],
  ["connection.requested_server_name", "string", "Requested server name in the downstream TLS connection."],
  ["connection.tls_version", "string", "TLS version of the downstream TLS connection."],
  [
    "connection.subject_local_certificate",
    "string",
    "Subject of the local certificate in the downstream TLS connection.",
  ],
  [
    "connection.subject_peer_certificate",
    "string",
    "Subject of the peer certificate in the downstream TLS connection.",
  ],
  [
    "connection.uri_san_peer_certificate",
    "string",
    "The first URI entry in the SAN field of the peer certificate.",
  ],
  [
    "connection.dns_san_peer_certificate",
    "string",
    "The first DNS entry in the SAN field of the peer certificate.",
  ],
  ["connection.termination_details", "string", "The termination details of the connection."],
  ["upstream.address", "string", "Upstream connection remote address."],
  ["upstream.port", "int", "Upstream connection remote port."],
  ["upstream.tls_version", "string", "TLS version of the upstream TLS connection."],
  ["upstream.transport_failure_reason", "string", "The upstream transport failure reason."],
  ["upstream.request_attempt_count", "int", "The count of requests sent upstream, retries included."],
  ["xds.cluster_name", "string", "Upstream cluster name."],
  ["xds.route_name", "string", "Route name."],
  ["filter_state", "dyn", "Filter state data by key."],
]);
