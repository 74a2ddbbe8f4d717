import { describe, expect, test } from "bun:test";
import { create } from "@bufbuild/protobuf";
import { HttpFilterSchema } from "#gen/envoy/extensions/filters/network/http_connection_manager/v3/http_connection_manager_pb.ts";
import {
  buildHttpFilters,
  corsFilter,
  faultFilter,
  HTTP_FILTER_CONFIGURERS,
  type HttpFilterConfigurer,
  type HttpFilterContext,
  MIXER_HTTP_FILTER_CONFIGURERS,
  mixerAuthzFilter,
  mixerRateLimitFilter,
  rbacFilter,
  routerFilter,
} from "../../../mod/pilot/translate/http_filters.ts";
import { jwtFilter } from "../../../mod/pilot/translate/jwt.ts";
import { pushFrom, sidecar } from "../_push.ts";

const ctx: HttpFilterContext = {
  push: pushFrom(),
  proxy: sidecar("10.0.0.1", "a"),
  direction: "outbound",
  port: 80,
};

describe("buildHttpFilters()", () => {
  test("buildHttpFilters() runs fault, CORS, then the router", () => {
    expect(HTTP_FILTER_CONFIGURERS).toEqual([jwtFilter, rbacFilter, faultFilter, corsFilter, routerFilter]);
    expect(MIXER_HTTP_FILTER_CONFIGURERS).toEqual([
      jwtFilter,
      rbacFilter,
      mixerAuthzFilter,
      mixerRateLimitFilter,
      faultFilter,
      corsFilter,
      routerFilter,
    ]);
    expect(buildHttpFilters(ctx).map((f) => f.name)).toEqual([
      "envoy.filters.http.fault",
      "envoy.filters.http.cors",
      "envoy.filters.http.router",
    ]);
  });

  test("buildHttpFilters() takes extra configurers in order, such as security filters first", () => {
    const rbac: HttpFilterConfigurer = (c) =>
      c.direction === "inbound" ? [create(HttpFilterSchema, { name: "envoy.filters.http.rbac" })] : [];
    const list = [rbac, ...HTTP_FILTER_CONFIGURERS];
    expect(buildHttpFilters({ ...ctx, direction: "inbound" }, list)[0]!.name).toBe("envoy.filters.http.rbac");
    expect(buildHttpFilters(ctx, list)[0]!.name).toBe("envoy.filters.http.fault");
  });

  test("buildHttpFilters() refuses a chain that does not end with the router", () => {
    expect(() => buildHttpFilters(ctx, [routerFilter, faultFilter])).toThrow(
      "must be envoy.filters.http.router",
    );
  });
});
