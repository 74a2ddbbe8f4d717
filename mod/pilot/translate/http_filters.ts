/**
 * The HTTP filter chain of every HTTP connection manager, built from an ordered list of
 * configurers. Each configurer returns the filters it contributes (possibly none) for a
 * listener; the router is always last.
 *
 * Security filters (JWT authentication, ext_authz, RBAC) are configurers too: they go at the
 * start of {@link HTTP_FILTER_CONFIGURERS}, before fault injection, so a denied request is
 * never delayed or aborted with a misleading status. Their per-route settings, like fault and
 * CORS, travel in `typed_per_filter_config`.
 *
 * @module
 */
import { create } from "@bufbuild/protobuf";
import {
  type HttpFilter,
  HttpFilterSchema,
} from "#gen/envoy/extensions/filters/network/http_connection_manager/v3/http_connection_manager_pb.ts";
import { CorsSchema } from "#gen/envoy/extensions/filters/http/cors/v3/cors_pb.ts";
import { HTTPFaultSchema } from "#gen/envoy/extensions/filters/http/fault/v3/fault_pb.ts";
import { RouterSchema } from "#gen/envoy/extensions/filters/http/router/v3/router_pb.ts";
import type { PushContext } from "../model/push_context.ts";
import type { Proxy } from "../model/proxy.ts";
import { typedConfig } from "./conversion.ts";
import { buildRbac, rbacHttpFilters } from "./authz.ts";
import { CORS_FILTER } from "./cors.ts";
import { FAULT_FILTER } from "./fault.ts";

/** The HTTP filter name of the router. */
export const ROUTER_FILTER = "envoy.filters.http.router";

/** Where an HTTP connection manager sits. */
export type TrafficDirection = "outbound" | "inbound" | "gateway";

/** What a filter configurer may read. */
export interface HttpFilterContext {
  readonly push: PushContext;
  readonly proxy: Proxy;
  readonly direction: TrafficDirection;
  /** The listener port. */
  readonly port: number;
}

/** Contributes zero or more HTTP filters, in order, for one connection manager. */
export type HttpFilterConfigurer = (ctx: HttpFilterContext) => HttpFilter[];

/**
 * Authorization (AuthorizationPolicy → RBAC) on inbound and gateway connection managers: one
 * RBAC filter per action (AUDIT, DENY, ALLOW, in that order) for the policies selecting the
 * proxy's workload; none where no policy applies and on outbound connection managers.
 */
export const rbacFilter: HttpFilterConfigurer = (ctx) =>
  ctx.direction === "outbound"
    ? []
    : rbacHttpFilters(buildRbac(ctx.push.authorizationPolicies(ctx.proxy), "http"));

/** Fault injection, configured per route; a no-op where no route asks for faults. */
export const faultFilter: HttpFilterConfigurer = () => [
  create(HttpFilterSchema, {
    name: FAULT_FILTER,
    configType: { case: "typedConfig", value: typedConfig(HTTPFaultSchema, create(HTTPFaultSchema, {})) },
  }),
];

/** CORS, configured per route; a no-op where no route has a CORS policy. */
export const corsFilter: HttpFilterConfigurer = () => [
  create(HttpFilterSchema, {
    name: CORS_FILTER,
    configType: { case: "typedConfig", value: typedConfig(CorsSchema, create(CorsSchema, {})) },
  }),
];

/** The router: sends the request upstream. Must be last. */
export const routerFilter: HttpFilterConfigurer = () => [
  create(HttpFilterSchema, {
    name: ROUTER_FILTER,
    configType: { case: "typedConfig", value: typedConfig(RouterSchema, create(RouterSchema, {})) },
  }),
];

/** The configurers every connection manager runs, in filter order: RBAC, fault, CORS, router. */
export const HTTP_FILTER_CONFIGURERS: readonly HttpFilterConfigurer[] = [
  rbacFilter,
  faultFilter,
  corsFilter,
  routerFilter,
];

/**
 * The HTTP filters of one connection manager: each configurer's filters in list order. Throws
 * when the last filter is not the router (a request would never leave Envoy).
 */
export function buildHttpFilters(
  ctx: HttpFilterContext,
  configurers: readonly HttpFilterConfigurer[] = HTTP_FILTER_CONFIGURERS,
): HttpFilter[] {
  const filters = configurers.flatMap((c) => c(ctx));
  if (filters.at(-1)?.name !== ROUTER_FILTER) {
    throw new Error(
      `translate: the last HTTP filter must be ${ROUTER_FILTER}, got ${filters.at(-1)?.name ?? "none"}`,
    );
  }
  return filters;
}
