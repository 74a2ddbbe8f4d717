/**
 * Every message type translation packs into an `Any` (and the four resource types), so that
 * Any values can be unpacked and resources printed as proto3 JSON (`toJson(..., { registry })`)
 * exactly as Envoy's own protos decode them: config dumps, golden files, debug endpoints.
 *
 * @module
 */
import { createRegistry, type Registry } from "@bufbuild/protobuf";
import { ClusterSchema } from "#gen/envoy/config/cluster/v3/cluster_pb.ts";
import { ClusterLoadAssignmentSchema } from "#gen/envoy/config/endpoint/v3/endpoint_pb.ts";
import { ListenerSchema } from "#gen/envoy/config/listener/v3/listener_pb.ts";
import { RouteConfigurationSchema } from "#gen/envoy/config/route/v3/route_pb.ts";
import { FileAccessLogSchema } from "#gen/envoy/extensions/access_loggers/file/v3/file_pb.ts";
import { HttpGrpcAccessLogConfigSchema } from "#gen/envoy/extensions/access_loggers/grpc/v3/als_pb.ts";
import { CorsPolicySchema, CorsSchema } from "#gen/envoy/extensions/filters/http/cors/v3/cors_pb.ts";
import { ExtAuthzSchema } from "#gen/envoy/extensions/filters/http/ext_authz/v3/ext_authz_pb.ts";
import { JwtAuthenticationSchema } from "#gen/envoy/extensions/filters/http/jwt_authn/v3/config_pb.ts";
import { RateLimitSchema } from "#gen/envoy/extensions/filters/http/ratelimit/v3/rate_limit_pb.ts";
import { RBACSchema as HttpRbacSchema } from "#gen/envoy/extensions/filters/http/rbac/v3/rbac_pb.ts";
import { RBACSchema as NetworkRbacSchema } from "#gen/envoy/extensions/filters/network/rbac/v3/rbac_pb.ts";
import { HTTPFaultSchema } from "#gen/envoy/extensions/filters/http/fault/v3/fault_pb.ts";
import { RouterSchema } from "#gen/envoy/extensions/filters/http/router/v3/router_pb.ts";
import { OriginalDstSchema } from "#gen/envoy/extensions/filters/listener/original_dst/v3/original_dst_pb.ts";
import { TlsInspectorSchema } from "#gen/envoy/extensions/filters/listener/tls_inspector/v3/tls_inspector_pb.ts";
import { HttpConnectionManagerSchema } from "#gen/envoy/extensions/filters/network/http_connection_manager/v3/http_connection_manager_pb.ts";
import { TcpProxySchema } from "#gen/envoy/extensions/filters/network/tcp_proxy/v3/tcp_proxy_pb.ts";
import { ExtAuthzSchema as NetworkExtAuthzSchema } from "#gen/envoy/extensions/filters/network/ext_authz/v3/ext_authz_pb.ts";
import { PreviousHostsPredicateSchema } from "#gen/envoy/extensions/retry/host/previous_hosts/v3/previous_hosts_pb.ts";
import { PreviousPrioritiesConfigSchema } from "#gen/envoy/extensions/retry/priority/previous_priorities/v3/previous_priorities_config_pb.ts";
import {
  DownstreamTlsContextSchema,
  UpstreamTlsContextSchema,
} from "#gen/envoy/extensions/transport_sockets/tls/v3/tls_pb.ts";
import { ProxyProtocolUpstreamTransportSchema } from "#gen/envoy/extensions/transport_sockets/proxy_protocol/v3/upstream_proxy_protocol_pb.ts";
import { RawBufferSchema } from "#gen/envoy/extensions/transport_sockets/raw_buffer/v3/raw_buffer_pb.ts";
import { HttpProtocolOptionsSchema } from "#gen/envoy/extensions/upstreams/http/v3/http_protocol_options_pb.ts";

import { DnsFilterConfigSchema } from "#gen/envoy/extensions/filters/udp/dns_filter/v3/dns_filter_pb.ts";
import { ZipkinConfigSchema } from "#gen/envoy/config/trace/v3/zipkin_pb.ts";

/** The registry of every type translation packs in an Any, plus the resource types. */
export const TRANSLATE_REGISTRY: Registry = createRegistry(
  ClusterSchema,
  ListenerSchema,
  RouteConfigurationSchema,
  ClusterLoadAssignmentSchema,
  HttpConnectionManagerSchema,
  TcpProxySchema,
  RouterSchema,
  HTTPFaultSchema,
  CorsSchema,
  CorsPolicySchema,
  UpstreamTlsContextSchema,
  DownstreamTlsContextSchema,
  ProxyProtocolUpstreamTransportSchema,
  RawBufferSchema,
  HttpProtocolOptionsSchema,
  PreviousHostsPredicateSchema,
  PreviousPrioritiesConfigSchema,
  TlsInspectorSchema,
  OriginalDstSchema,
  FileAccessLogSchema,
  HttpRbacSchema,
  NetworkRbacSchema,
  ExtAuthzSchema,
  NetworkExtAuthzSchema,
  RateLimitSchema,
  HttpGrpcAccessLogConfigSchema,
  JwtAuthenticationSchema,
  DnsFilterConfigSchema,
  ZipkinConfigSchema,
);
