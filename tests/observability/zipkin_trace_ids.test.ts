/**
 * Mixer's zipkin adapter joins the sidecars' traces: Envoy access-log entries carrying the
 * request's B3 or W3C trace headers go through mixer's dispatch (Istio's tracespan instance
 * expressions) to a real HTTP collector on loopback, and the spans it receives carry the trace
 * id, span id and parent the sidecars propagated.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { create } from "@bufbuild/protobuf";
import { HTTPAccessLogEntrySchema } from "#gen/envoy/data/accesslog/v3/accesslog_pb.ts";
import { traceContext } from "../../mod/mixer/adapters/zipkin.ts";
import { bagFromHttpLog } from "../../mod/mixer/attributes.ts";
import { type CoreHarness, coreHarness, docs, mixerYaml } from "../mixer/_harness.ts";

const TRACE = "463ac35c9f6413ad48485a3953bb6124";
const SPAN = "a2fb4a1d1a96d312";
const PARENT = "0020000000000001";

/** Istio's tracespan instance for Zipkin, reading the B3 headers, and a handler posting to `url`. */
const config = (url: string, traceId = 'request.headers["x-b3-traceid"]') =>
  docs(
    mixerYaml("handler", "zipkin", { compiledAdapter: "zipkin", params: { url } }),
    mixerYaml("instance", "span", {
      compiledTemplate: "tracespan",
      params: {
        traceId,
        spanId: '"x-b3-spanid" in request.headers ? request.headers["x-b3-spanid"] : ""',
        parentSpanId: '"x-b3-parentspanid" in request.headers ? request.headers["x-b3-parentspanid"] : ""',
        spanName: "request.path",
        startTime: "request.time",
        endTime: "response.time",
        clientSpan: "false",
        httpStatusCode: "response.code",
      },
    }),
    mixerYaml("rule", "tracing", { actions: [{ handler: "zipkin", instances: ["span"] }] }),
  );

/** An access-log entry of a request with `headers`, as a sidecar's ALS sends it. */
const entry = (headers: Record<string, string>) =>
  bagFromHttpLog(
    create(HTTPAccessLogEntrySchema, {
      commonProperties: {
        startTime: { seconds: 1_700_000_000n, nanos: 0 },
        duration: { seconds: 0n, nanos: 12_000_000 },
        upstreamCluster: "inbound|9080||",
      },
      request: { requestMethod: 1, path: "/reviews/1", authority: "reviews:9080", requestHeaders: headers },
      response: { responseCode: 200 },
    }),
    undefined,
  );

describe("zipkin spans from mixer share the sidecars' trace ids", () => {
  let collector: ReturnType<typeof Bun.serve>;
  let spans: Array<{ traceId: string; id: string; parentId?: string; name: string }> = [];
  let h: CoreHarness;
  let url: string;

  beforeAll(() => {
    collector = Bun.serve({
      port: 0,
      hostname: "127.0.0.1",
      async fetch(req) {
        spans.push(...((await req.json()) as typeof spans));
        return new Response(null, { status: 202 });
      },
    });
    url = `http://127.0.0.1:${collector.port}/api/v2/spans`;
    h = coreHarness();
  });
  afterAll(async () => {
    await h.close();
    collector.stop(true);
  });

  const flushSpans = async () => {
    // The handler batches for up to a second; closing it sends what it holds.
    h.load(docs(mixerYaml("handler", "other", { compiledAdapter: "denier" })));
    for (let i = 0; i < 100 && spans.length === 0; i++) await Bun.sleep(20);
  };

  test("B3 headers: x-b3-traceid, x-b3-spanid and x-b3-parentspanid become the span's ids", async () => {
    spans = [];
    h.load(config(url));
    await h.core.report("accesslog", [
      entry({ "x-b3-traceid": TRACE.toUpperCase(), "x-b3-spanid": SPAN, "x-b3-parentspanid": PARENT }),
    ]);
    await flushSpans();
    expect(spans).toHaveLength(1);
    expect(spans[0]).toMatchObject({ traceId: TRACE, id: SPAN, parentId: PARENT, name: "/reviews/1" });
  });

  test("a W3C traceparent header gives the trace and span ids", async () => {
    spans = [];
    h.load(config(url, '"traceparent" in request.headers ? request.headers["traceparent"] : ""'));
    await h.core.report("accesslog", [entry({ traceparent: `00-${TRACE}-${SPAN}-01` })]);
    await flushSpans();
    expect(spans).toHaveLength(1);
    expect(spans[0]).toMatchObject({ traceId: TRACE, id: SPAN });
    expect(spans[0]!.parentId).toBeUndefined();
  });

  test("a trace the header marks as not sampled is not reported", async () => {
    spans = [];
    h.load(config(url, '"traceparent" in request.headers ? request.headers["traceparent"] : ""'));
    await h.core.report("accesslog", [entry({ traceparent: `00-${TRACE}-${SPAN}-00` })]);
    await flushSpans();
    await Bun.sleep(100);
    expect(spans).toHaveLength(0);
  });

  test("traceContext() reads bare ids, traceparent and B3 single headers", () => {
    expect(traceContext(TRACE)).toEqual({ traceId: TRACE });
    expect(traceContext(`00-${TRACE}-${SPAN}-01`)).toEqual({ traceId: TRACE, spanId: SPAN, sampled: true });
    expect(traceContext(`${TRACE}-${SPAN}-1-${PARENT}`)).toEqual({
      traceId: TRACE,
      spanId: SPAN,
      parentId: PARENT,
      sampled: true,
    });
    expect(traceContext(`${TRACE.slice(16)}-${SPAN}-0`)).toEqual({
      traceId: TRACE.slice(16),
      spanId: SPAN,
      sampled: false,
    });
    expect(traceContext("ff-nonsense")).toEqual({ traceId: "ff-nonsense" });
  });
});
