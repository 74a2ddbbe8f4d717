/**
 * The HTTP filters gRPC clients and servers understand: the fault filter (clients only, gRFC
 * A33) and the router, which must come last (gRFC A39).
 *
 * @module
 */
import { create } from "@bufbuild/protobuf";
import { anyPack } from "@bufbuild/protobuf/wkt";
import { HTTPFaultSchema } from "#gen/envoy/extensions/filters/http/fault/v3/fault_pb.ts";
import { RouterSchema } from "#gen/envoy/extensions/filters/http/router/v3/router_pb.ts";
import {
  type HttpFilter,
  HttpFilterSchema,
} from "#gen/envoy/extensions/filters/network/http_connection_manager/v3/http_connection_manager_pb.ts";

/** Name of the fault filter; routes key their fault overrides (typed_per_filter_config) by it. */
export const FAULT_FILTER = "envoy.filters.http.fault";
/** Name of the router filter. */
export const ROUTER_FILTER = "envoy.filters.http.router";

/** The router filter. */
export function routerFilter(): HttpFilter {
  return create(HttpFilterSchema, {
    name: ROUTER_FILTER,
    configType: { case: "typedConfig", value: anyPack(RouterSchema, create(RouterSchema)) },
  });
}

/** The fault filter with no faults of its own: routes override it per route. */
export function faultFilter(): HttpFilter {
  return create(HttpFilterSchema, {
    name: FAULT_FILTER,
    configType: { case: "typedConfig", value: anyPack(HTTPFaultSchema, create(HTTPFaultSchema)) },
  });
}

/** The client HTTP filter chain: fault filter when some route injects faults, then the router. */
export function clientFilters(withFaults: boolean): HttpFilter[] {
  return withFaults ? [faultFilter(), routerFilter()] : [routerFilter()];
}
