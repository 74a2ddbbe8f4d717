/**
 * Attributes of Envoy access-log entries that tracing reads: `response.time` (start plus
 * duration, what Istio's tracespan instance takes as `endTime`), and the destination service's
 * name and namespace wherever its host comes from (upstream cluster, entry metadata, authority).
 */
import { describe, expect, test } from "bun:test";
import { create, type JsonObject } from "@bufbuild/protobuf";
import { NodeSchema } from "#gen/envoy/config/core/v3/base_pb.ts";
import {
  AccessLogType,
  HTTPAccessLogEntrySchema,
  TCPAccessLogEntrySchema,
} from "#gen/envoy/data/accesslog/v3/accesslog_pb.ts";
import {
  ATTRIBUTES_METADATA_NAMESPACE,
  bagFromHttpLog,
  bagFromTcpLog,
  serviceOfHost,
} from "../../mod/mixer/attributes.ts";
import { compileInstance, evalTree } from "../../mod/mixer/compile.ts";
import { parseConfig } from "../../mod/galley/parse.ts";
import type { InstanceSpec } from "../../mod/api/kinds/mixer.ts";
import type { Resource } from "../../mod/api/resource.ts";
import { mixerYaml } from "./_harness.ts";

const node = create(NodeSchema, {
  id: "sidecar~10.0.0.5~reviews-v1-abc.books~books.svc.cluster.local",
  metadata: { NAMESPACE: "books", WORKLOAD_NAME: "reviews-v1" },
});

/** An HTTP access-log entry: `cluster` upstream, `authority`, optional `meshd.attributes` metadata. */
function httpEntry(
  opts: { cluster?: string; authority?: string; attributes?: JsonObject; nanos?: number } = {},
) {
  return create(HTTPAccessLogEntrySchema, {
    commonProperties: {
      upstreamCluster: opts.cluster ?? "inbound|9080||",
      startTime: { seconds: 1_700_000_000n, nanos: opts.nanos ?? 250_000_000 },
      duration: { seconds: 1n, nanos: 500_000_000 },
      ...(opts.attributes
        ? { metadata: { filterMetadata: { [ATTRIBUTES_METADATA_NAMESPACE]: opts.attributes } } }
        : {}),
    },
    request: { requestMethod: 1, path: "/reviews/1", authority: opts.authority ?? "" },
    response: { responseCode: 200 },
  });
}

/** The attributes of the destination service in `bag`. */
const service = (bag: Record<string, unknown>) => ({
  host: bag["destination.service.host"],
  name: bag["destination.service.name"],
  namespace: bag["destination.service.namespace"],
});

describe("access-log attributes for tracing", () => {
  test("bagFromHttpLog() sets response.time to the request's start plus its duration", () => {
    const bag = bagFromHttpLog(httpEntry(), node);
    expect(bag["request.time"]).toEqual(new Date(1_700_000_000_250));
    expect(bag["response.duration"]).toBe(1500);
    expect(bag["response.time"]).toEqual(new Date(1_700_000_001_750));
    const noStart = httpEntry();
    noStart.commonProperties!.startTime = undefined;
    expect(bagFromHttpLog(noStart, node)["response.time"]).toBeUndefined();
    const noDuration = httpEntry();
    noDuration.commonProperties!.duration = undefined;
    expect(bagFromHttpLog(noDuration, node)["response.time"]).toBeUndefined();
  });

  test("sub-millisecond start and duration add before rounding", () => {
    const entry = httpEntry({ nanos: 900_000 }); // 0.9 ms + 0.2 ms: 1 ms once added, 0 ms if the start were rounded first
    entry.commonProperties!.duration = { $typeName: "google.protobuf.Duration", seconds: 0n, nanos: 200_000 };
    expect(bagFromHttpLog(entry, node)["response.time"]).toEqual(new Date(1_700_000_000_001));
  });

  test("Istio's tracespan instance (endTime: response.time) evaluates on an access-log bag", () => {
    const yaml = mixerYaml("instance", "span", {
      compiledTemplate: "tracespan",
      params: {
        traceId: 'request.headers["x-b3-traceid"]',
        spanName: "destination.service.name",
        startTime: "request.time",
        endTime: "response.time",
        clientSpan: 'context.reporter.kind == "outbound"',
        httpStatusCode: "response.code",
      },
    });
    const instance = parseConfig(yaml, "span.yaml").resources[0] as Resource<InstanceSpec>;
    const entry = httpEntry({ authority: "reviews.books:9080" });
    entry.request!.requestHeaders = { "x-b3-traceid": "463ac35c9f6413ad" };
    const out = evalTree(compileInstance(instance).tree, bagFromHttpLog(entry, node));
    expect(out).toEqual({
      ok: true,
      value: {
        traceId: "463ac35c9f6413ad",
        spanName: "reviews",
        startTime: new Date(1_700_000_000_250),
        endTime: new Date(1_700_000_001_750),
        clientSpan: false,
        httpStatusCode: 200,
      },
    });
  });

  test("the service name and namespace follow a host from the entry's metadata", () => {
    const bag = bagFromHttpLog(
      httpEntry({ attributes: { "destination.service.host": "reviews.books.svc.cluster.local" } }),
      node,
    );
    expect(service(bag)).toEqual({
      host: "reviews.books.svc.cluster.local",
      name: "reviews",
      namespace: "books",
    });
  });

  test("a metadata host replaces the cluster's, and the name and namespace go with it unless set too", () => {
    const cluster = "outbound|9080||reviews.books.svc.cluster.local";
    const moved = bagFromHttpLog(
      httpEntry({ cluster, attributes: { "destination.service.host": "ratings.shop.svc.cluster.local" } }),
      node,
    );
    expect(service(moved)).toEqual({
      host: "ratings.shop.svc.cluster.local",
      name: "ratings",
      namespace: "shop",
    });
    const named = bagFromHttpLog(
      httpEntry({
        cluster,
        attributes: {
          "destination.service.host": "ratings.shop.svc.cluster.local",
          "destination.service.name": "r",
        },
      }),
      node,
    );
    expect(service(named)).toEqual({ host: "ratings.shop.svc.cluster.local", name: "r", namespace: "shop" });
    expect(service(bagFromHttpLog(httpEntry({ cluster }), node))).toEqual({
      host: "reviews.books.svc.cluster.local",
      name: "reviews",
      namespace: "books",
    });
  });

  test("the service name and namespace follow a host from the authority; an IP authority gives neither", () => {
    expect(service(bagFromHttpLog(httpEntry({ authority: "ratings.books:9080" }), node))).toEqual({
      host: "ratings.books",
      name: "ratings",
      namespace: "books",
    });
    expect(service(bagFromHttpLog(httpEntry({ authority: "ratings" }), node))).toEqual({
      host: "ratings",
      name: "ratings",
      namespace: undefined,
    });
    for (
      const [authority, host] of [["10.0.0.7:9080", "10.0.0.7"], ["[2001:db8::7]:9080", "[2001:db8::7]"]]
    ) {
      expect(service(bagFromHttpLog(httpEntry({ authority }), node))).toEqual({
        host,
        name: undefined,
        namespace: undefined,
      });
    }
  });

  test("bagFromTcpLog() fills the service from a metadata host and sets no response.time", () => {
    const bag = bagFromTcpLog(
      create(TCPAccessLogEntrySchema, {
        commonProperties: {
          upstreamCluster: "inbound|5432||",
          accessLogType: AccessLogType.TcpConnectionEnd,
          startTime: { seconds: 1_700_000_000n, nanos: 0 },
          duration: { seconds: 2n, nanos: 0 },
          metadata: {
            filterMetadata: {
              [ATTRIBUTES_METADATA_NAMESPACE]: { "destination.service.host": "db.data.svc.cluster.local" },
            },
          },
        },
      }),
      node,
    );
    expect(service(bag)).toEqual({ host: "db.data.svc.cluster.local", name: "db", namespace: "data" });
    expect(bag["connection.duration"]).toBe(2000);
    expect(bag["response.time"]).toBeUndefined();
  });

  test("serviceOfHost() takes the first two labels of a name, nothing of an address", () => {
    expect(serviceOfHost("reviews.books.svc.cluster.local")).toEqual({ name: "reviews", namespace: "books" });
    expect(serviceOfHost("reviews")).toEqual({ name: "reviews" });
    expect(serviceOfHost("192.0.2.1")).toEqual({});
    expect(serviceOfHost("[::1]")).toEqual({});
    expect(serviceOfHost("")).toEqual({});
  });
});
