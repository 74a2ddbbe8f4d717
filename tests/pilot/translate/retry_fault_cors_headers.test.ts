import { describe, expect, test } from "bun:test";
import { HeaderValueOption_HeaderAppendAction } from "#gen/envoy/config/core/v3/base_pb.ts";
import { translateCors } from "../../../mod/pilot/translate/cors.ts";
import { grpcStatusCode, translateFault } from "../../../mod/pilot/translate/fault.ts";
import { headerChanges } from "../../../mod/pilot/translate/headers.ts";
import { DEFAULT_RETRY_ON, parseRetryOn, retryPolicy } from "../../../mod/pilot/translate/retry.ts";

describe("retryPolicy()", () => {
  test("retryPolicy() is Istio's default when unset and none with attempts 0", () => {
    const d = retryPolicy(undefined, false)!;
    expect(d.retryOn).toBe(DEFAULT_RETRY_ON);
    expect(d.numRetries).toBe(2);
    expect(d.retriableStatusCodes).toEqual([503]);
    expect(retryPolicy({ attempts: 0 }, false)).toBeUndefined();
  });

  test("retryPolicy() overrides attempts, conditions, per-try timeout and backoff", () => {
    const p = retryPolicy({
      attempts: 3,
      retryOn: "5xx,429,unavailable",
      perTryTimeout: "2s",
      backoff: "10ms",
    }, false)!;
    expect(p.numRetries).toBe(3);
    expect(p.retryOn).toBe("5xx,unavailable,retriable-status-codes");
    expect(p.retriableStatusCodes).toEqual([429]);
    expect(p.perTryTimeout?.seconds).toBe(2n);
    expect(p.retryBackOff?.baseInterval?.nanos).toBe(10_000_000);
  });

  test("parseRetryOn() keeps explicit retriable-status-codes once", () => {
    expect(parseRetryOn("retriable-status-codes,503")).toEqual({
      retryOn: "retriable-status-codes",
      codes: [503],
    });
  });
});

describe("translateFault()", () => {
  test("translateFault() keeps decimal percentages exact as parts per million", () => {
    const f = translateFault({ delay: { fixedDelay: "5s", percentage: { value: 0.001 } } })!;
    expect(f.delay?.percentage).toMatchObject({ numerator: 10, denominator: 2 });
    expect(f.delay?.faultDelaySecifier).toMatchObject({ case: "fixedDelay", value: { seconds: 5n } });
  });

  test("translateFault() aborts with HTTP or gRPC status and drops what Envoy cannot do", () => {
    expect(translateFault({ abort: { grpcStatus: "UNAVAILABLE" } })?.abort?.errorType).toEqual({
      case: "grpcStatus",
      value: 14,
    });
    expect(translateFault({ abort: { httpStatus: 404 } })?.abort?.errorType).toEqual({
      case: "httpStatus",
      value: 404,
    });
    expect(translateFault({ delay: { exponentialDelay: "1s" } })).toBeUndefined();
    expect(grpcStatusCode("unauthenticated")).toBe(16);
    expect(() => grpcStatusCode("NOPE")).toThrow("unknown gRPC status");
  });
});

describe("translateCors()", () => {
  test("translateCors() joins lists, converts max age and uses exact matches for allowOrigin", () => {
    const c = translateCors({
      allowOrigin: ["https://a"],
      allowHeaders: ["a", "b"],
      maxAge: "1m30s",
      unmatchedPreflights: "IGNORE",
    });
    expect(c.allowOriginStringMatch.map((m) => m.matchPattern)).toEqual([{
      case: "exact",
      value: "https://a",
    }]);
    expect(c.allowHeaders).toBe("a,b");
    expect(c.maxAge).toBe("90");
    expect(c.forwardNotMatchingPreflights).toBe(false);
    expect(c.filterEnabled?.defaultValue?.numerator).toBe(100);
  });
});

describe("headerChanges()", () => {
  test("headerChanges() overwrites set headers, appends added ones and turns :authority into a rewrite", () => {
    const h = headerChanges({
      request: {
        set: { b: "2", a: "1", ":authority": "x.example.com" },
        add: { c: "3" },
        remove: ["d", "host"],
      },
      response: { set: { e: "5" } },
    });
    expect(h.requestHeadersToAdd.map((o) => [o.header?.key, o.appendAction])).toEqual([
      ["a", HeaderValueOption_HeaderAppendAction.OVERWRITE_IF_EXISTS_OR_ADD],
      ["b", HeaderValueOption_HeaderAppendAction.OVERWRITE_IF_EXISTS_OR_ADD],
      ["c", HeaderValueOption_HeaderAppendAction.APPEND_IF_EXISTS_OR_ADD],
    ]);
    expect(h.requestHeadersToRemove).toEqual(["d"]);
    expect(h.responseHeadersToAdd.map((o) => o.header?.key)).toEqual(["e"]);
    expect(h.authority).toBe("x.example.com");
  });
});
