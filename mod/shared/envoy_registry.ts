/**
 * A protobuf registry of every Envoy type meshd packs into Any, for JSON output (config dumps,
 * golden files). Loaded on demand: it pulls in many descriptors.
 */
import { createRegistry, type Registry } from "@bufbuild/protobuf";
import { file_envoy_config_cluster_v3_cluster } from "#gen/envoy/config/cluster/v3/cluster_pb.ts";
import { file_envoy_config_listener_v3_listener } from "#gen/envoy/config/listener/v3/listener_pb.ts";
import { file_envoy_config_route_v3_route } from "#gen/envoy/config/route/v3/route_pb.ts";
import { file_envoy_config_endpoint_v3_endpoint } from "#gen/envoy/config/endpoint/v3/endpoint_pb.ts";
import { file_envoy_extensions_access_loggers_file_v3_file } from "#gen/envoy/extensions/access_loggers/file/v3/file_pb.ts";
import { file_envoy_extensions_access_loggers_grpc_v3_als } from "#gen/envoy/extensions/access_loggers/grpc/v3/als_pb.ts";
import { file_envoy_extensions_clusters_aggregate_v3_cluster } from "#gen/envoy/extensions/clusters/aggregate/v3/cluster_pb.ts";
import { file_envoy_extensions_common_ratelimit_v3_ratelimit } from "#gen/envoy/extensions/common/ratelimit/v3/ratelimit_pb.ts";
import { file_envoy_extensions_filters_common_fault_v3_fault } from "#gen/envoy/extensions/filters/common/fault/v3/fault_pb.ts";
import { file_envoy_extensions_filters_http_cors_v3_cors } from "#gen/envoy/extensions/filters/http/cors/v3/cors_pb.ts";
import { file_envoy_extensions_filters_http_ext_authz_v3_ext_authz } from "#gen/envoy/extensions/filters/http/ext_authz/v3/ext_authz_pb.ts";
import { file_envoy_extensions_filters_http_fault_v3_fault } from "#gen/envoy/extensions/filters/http/fault/v3/fault_pb.ts";
import { file_envoy_extensions_filters_http_jwt_authn_v3_config } from "#gen/envoy/extensions/filters/http/jwt_authn/v3/config_pb.ts";
import { file_envoy_extensions_filters_http_ratelimit_v3_rate_limit } from "#gen/envoy/extensions/filters/http/ratelimit/v3/rate_limit_pb.ts";
import { file_envoy_extensions_filters_http_rbac_v3_rbac } from "#gen/envoy/extensions/filters/http/rbac/v3/rbac_pb.ts";
import { file_envoy_extensions_filters_http_router_v3_router } from "#gen/envoy/extensions/filters/http/router/v3/router_pb.ts";
import { file_envoy_extensions_filters_listener_http_inspector_v3_http_inspector } from "#gen/envoy/extensions/filters/listener/http_inspector/v3/http_inspector_pb.ts";
import { file_envoy_extensions_filters_listener_original_dst_v3_original_dst } from "#gen/envoy/extensions/filters/listener/original_dst/v3/original_dst_pb.ts";
import { file_envoy_extensions_filters_listener_tls_inspector_v3_tls_inspector } from "#gen/envoy/extensions/filters/listener/tls_inspector/v3/tls_inspector_pb.ts";
import { file_envoy_extensions_filters_network_http_connection_manager_v3_http_connection_manager } from "#gen/envoy/extensions/filters/network/http_connection_manager/v3/http_connection_manager_pb.ts";
import { file_envoy_extensions_filters_network_rbac_v3_rbac } from "#gen/envoy/extensions/filters/network/rbac/v3/rbac_pb.ts";
import { file_envoy_extensions_filters_network_tcp_proxy_v3_tcp_proxy } from "#gen/envoy/extensions/filters/network/tcp_proxy/v3/tcp_proxy_pb.ts";
import { file_envoy_extensions_load_balancing_policies_common_v3_common } from "#gen/envoy/extensions/load_balancing_policies/common/v3/common_pb.ts";
import { file_envoy_extensions_load_balancing_policies_least_request_v3_least_request } from "#gen/envoy/extensions/load_balancing_policies/least_request/v3/least_request_pb.ts";
import { file_envoy_extensions_load_balancing_policies_ring_hash_v3_ring_hash } from "#gen/envoy/extensions/load_balancing_policies/ring_hash/v3/ring_hash_pb.ts";
import { file_envoy_extensions_load_balancing_policies_round_robin_v3_round_robin } from "#gen/envoy/extensions/load_balancing_policies/round_robin/v3/round_robin_pb.ts";
import { file_envoy_extensions_load_balancing_policies_wrr_locality_v3_wrr_locality } from "#gen/envoy/extensions/load_balancing_policies/wrr_locality/v3/wrr_locality_pb.ts";
import { file_envoy_extensions_transport_sockets_tls_v3_common } from "#gen/envoy/extensions/transport_sockets/tls/v3/common_pb.ts";
import { file_envoy_extensions_transport_sockets_tls_v3_secret } from "#gen/envoy/extensions/transport_sockets/tls/v3/secret_pb.ts";
import { file_envoy_extensions_transport_sockets_tls_v3_tls } from "#gen/envoy/extensions/transport_sockets/tls/v3/tls_pb.ts";

/** Every Envoy type meshd emits. */
export const envoyRegistry: Registry = createRegistry(
  file_envoy_config_cluster_v3_cluster,
  file_envoy_config_listener_v3_listener,
  file_envoy_config_route_v3_route,
  file_envoy_config_endpoint_v3_endpoint,
  file_envoy_extensions_access_loggers_file_v3_file,
  file_envoy_extensions_access_loggers_grpc_v3_als,
  file_envoy_extensions_clusters_aggregate_v3_cluster,
  file_envoy_extensions_common_ratelimit_v3_ratelimit,
  file_envoy_extensions_filters_common_fault_v3_fault,
  file_envoy_extensions_filters_http_cors_v3_cors,
  file_envoy_extensions_filters_http_ext_authz_v3_ext_authz,
  file_envoy_extensions_filters_http_fault_v3_fault,
  file_envoy_extensions_filters_http_jwt_authn_v3_config,
  file_envoy_extensions_filters_http_ratelimit_v3_rate_limit,
  file_envoy_extensions_filters_http_rbac_v3_rbac,
  file_envoy_extensions_filters_http_router_v3_router,
  file_envoy_extensions_filters_listener_http_inspector_v3_http_inspector,
  file_envoy_extensions_filters_listener_original_dst_v3_original_dst,
  file_envoy_extensions_filters_listener_tls_inspector_v3_tls_inspector,
  file_envoy_extensions_filters_network_http_connection_manager_v3_http_connection_manager,
  file_envoy_extensions_filters_network_rbac_v3_rbac,
  file_envoy_extensions_filters_network_tcp_proxy_v3_tcp_proxy,
  file_envoy_extensions_load_balancing_policies_common_v3_common,
  file_envoy_extensions_load_balancing_policies_least_request_v3_least_request,
  file_envoy_extensions_load_balancing_policies_ring_hash_v3_ring_hash,
  file_envoy_extensions_load_balancing_policies_round_robin_v3_round_robin,
  file_envoy_extensions_load_balancing_policies_wrr_locality_v3_wrr_locality,
  file_envoy_extensions_transport_sockets_tls_v3_common,
  file_envoy_extensions_transport_sockets_tls_v3_secret,
  file_envoy_extensions_transport_sockets_tls_v3_tls,
);
