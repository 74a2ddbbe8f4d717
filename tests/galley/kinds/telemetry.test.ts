import { describe, test } from "bun:test";
import { expectOneError, expectValid, resource } from "./_check.ts";

const tel = (spec: string) =>
  resource({
    apiVersion: "telemetry.istio.io/v1alpha1",
    kind: "Telemetry",
    name: "mesh-default",
    namespace: "istio-system",
  }, spec);

describe("Telemetry", () => {
  test("validateResource() accepts tracing, metrics and access logging", () => {
    expectValid(tel(`  selector:
    matchLabels: {app: ratings}
  tracing:
  - providers: [{name: zipkin}]
    randomSamplingPercentage: 10.5
    customTags:
      env:
        literal: {value: prod}
  metrics:
  - providers: [{name: prometheus}]
    overrides:
    - match:
        metric: REQUEST_COUNT
        mode: CLIENT_AND_SERVER
      tagOverrides:
        request_host:
          operation: REMOVE
        cluster:
          value: "'east'"
  accessLogging:
  - providers: [{name: envoy}]
    filter:
      expression: response.code >= 400 || request.headers["x-debug"] == "true"
`));
  });

  test("validateResource() rejects randomSamplingPercentage above 100", () => {
    expectOneError(
      tel(`  tracing:
  - randomSamplingPercentage: 101
`),
      "spec.tracing[0].randomSamplingPercentage",
      8,
      "101: must be 0–100",
    );
  });

  test("validateResource() compiles access-log filters as CEL and reports type errors at the field", () => {
    expectOneError(
      tel(`  accessLogging:
  - providers: [{name: envoy}]
    filter:
      expression: response.code >= "400"
`),
      "spec.accessLogging[0].filter.expression",
      10,
      "invalid CEL filter: operator >= cannot be applied to (int, string)",
    );
    expectOneError(
      tel(`  accessLogging:
  - filter:
      expression: reponse.code >= 400
`),
      "spec.accessLogging[0].filter.expression",
      9,
      'undeclared reference to "reponse.code" (did you mean "response.code"?)',
    );
    expectOneError(
      tel(`  accessLogging:
  - filter:
      expression: request.path
`),
      "spec.accessLogging[0].filter.expression",
      9,
      "expression must produce a bool, but it produces a string",
    );
  });

  test("validateResource() checks metric names, tag override operations and providers", () => {
    expectOneError(
      tel(`  metrics:
  - overrides:
    - match:
        metric: REQUEST_COUNTS
`),
      "spec.metrics[0].overrides[0].match.metric",
      10,
      "(did you mean REQUEST_COUNT?)",
    );
    expectOneError(
      tel(`  metrics:
  - overrides:
    - tagOverrides:
        request_host:
          operation: UPSERT
`),
      "spec.metrics[0].overrides[0].tagOverrides.request_host.value",
      10,
      "value is required when operation is UPSERT",
    );
    expectOneError(
      tel(`  tracing:
  - providers: [{}]
`),
      "spec.tracing[0].providers[0].name",
      8,
      "is required",
    );
  });
});
