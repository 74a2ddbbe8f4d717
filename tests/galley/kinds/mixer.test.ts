import { describe, expect, test } from "bun:test";
import { formatDiagnostic } from "../../../mod/api/resource.ts";
import { errorsOf, expectErrorOn, expectOneError, expectValid, resource } from "./_check.ts";

const handler = (spec: string) =>
  resource(
    { apiVersion: "config.istio.io/v1alpha2", kind: "handler", name: "h1", namespace: "istio-system" },
    spec,
  );
const instance = (spec: string) =>
  resource({
    apiVersion: "config.istio.io/v1alpha2",
    kind: "instance",
    name: "i1",
    namespace: "istio-system",
  }, spec);
const rule = (spec: string) =>
  resource(
    { apiVersion: "config.istio.io/v1alpha2", kind: "rule", name: "r1", namespace: "istio-system" },
    spec,
  );

describe("handler", () => {
  test("validateResource() accepts every compiled-in adapter with typical params", () => {
    expectValid(handler(`  compiledAdapter: denier
  params:
    status:
      code: 7
      message: Not allowed
    validDuration: 5s
    validUseCount: 1000
`));
    expectValid(handler(`  compiledAdapter: listchecker
  params:
    overrides: ["10.0.0.0/8", "192.168.0.1"]
    entryType: IP_ADDRESSES
    blacklist: true
`));
    expectValid(handler(`  compiledAdapter: memquota
  params:
    quotas:
    - name: requestcount.instance.istio-system
      maxAmount: 500
      validDuration: 1s
      overrides:
      - dimensions:
          destination: reviews
        maxAmount: 1
        validDuration: 5s
`));
    expectValid(handler(`  compiledAdapter: redisquota
  params:
    redisServerUrl: redis-release-master:6379
    connectionPoolSize: 10
    quotas:
    - name: requestcountquota.instance.istio-system
      maxAmount: 500
      validDuration: 1s
      bucketDuration: 500ms
      rateLimitAlgorithm: ROLLING_WINDOW
`));
    expectValid(handler(`  compiledAdapter: prometheus
  params:
    metrics:
    - name: requests_total
      instanceName: requestcount.instance.istio-system
      kind: COUNTER
      labelNames: [reporter, source_app]
    - name: request_duration_seconds
      instanceName: requestduration.instance.istio-system
      kind: DISTRIBUTION
      buckets:
        explicitBuckets:
          bounds: [0.005, 0.01, 0.1, 1, 10]
`));
    expectValid(handler(`  compiledAdapter: stdio
  params:
    outputAsJson: true
    logStream: STDERR
`));
    expectValid(handler(`  compiledAdapter: zipkin
  params:
    url: http://zipkin.istio-system:9411/api/v2/spans
`));
    expectValid(handler(`  adapter: mygrpcadapter
  connection:
    address: mygrpcadapterservice:44225
  params:
    anything: goes
`));
  });

  test("validateResource() rejects an unknown compiled adapter with a suggestion", () => {
    expectOneError(
      handler(`  compiledAdapter: prometeus\n`),
      "spec.compiledAdapter",
      7,
      'got "prometeus" (did you mean prometheus?)',
    );
  });

  test("validateResource() requires connection.address for out-of-process adapters", () => {
    expectOneError(
      handler(`  adapter: mygrpcadapter\n`),
      "spec.connection",
      6,
      "out-of-process adapters need connection.address",
    );
    expectOneError(
      handler(`  adapter: mygrpcadapter
  connection:
    address: no-port
`),
      "spec.connection.address",
      9,
      'address "no-port" must be host:port',
    );
  });

  test("validateResource() checks adapter params: unknown fields and types", () => {
    expectOneError(
      handler(`  compiledAdapter: denier
  params:
    statuss:
      code: 7
`),
      "spec.params.statuss",
      9,
      'unknown field "statuss" (did you mean "status"?)',
    );
    expectOneError(
      handler(`  compiledAdapter: denier
  params:
    status:
      code: "7"
`),
      "spec.params.status.code",
      10,
      "must be an integer, got the string",
    );
  });

  test("validateResource() compiles listchecker REGEX entries with RE2 and JavaScript", () => {
    const errors = errorsOf(handler(`  compiledAdapter: listchecker
  params:
    entryType: REGEX
    overrides:
    - "^/api/(?=v1)"
    - "(?i)admin"
    - "^/ok/[a-z]+$"
`));
    expect(errors.map((d) => [d.field, d.pos?.line])).toEqual([
      ["spec.params.overrides[0]", 11],
      ["spec.params.overrides[1]", 12],
    ]);
    expect(errors[0]!.message).toContain("invalid regex");
    expect(errors[1]!.message).toContain("valid RE2 but JavaScript cannot compile it");
  });

  test("validateResource() checks listchecker IP entries", () => {
    expectOneError(
      handler(`  compiledAdapter: listchecker
  params:
    entryType: IP_ADDRESSES
    overrides: ["10.0.0.256"]
`),
      "spec.params.overrides[0]",
      10,
      '"10.0.0.256" is not an IP address or CIDR block',
    );
  });

  test("validateResource() accepts listchecker providerUrl over http(s) and file:///", () => {
    for (const url of ["https://lists.example.com/allowed.txt", "file:///etc/meshd/lists/allowed.txt"]) {
      expectValid(handler(`  compiledAdapter: listchecker
  params:
    providerUrl: ${url}
    refreshInterval: 30s
    ttl: 5m
`));
    }
  });

  test("validateResource() rejects other listchecker providerUrl schemes and non-absolute file URLs", () => {
    const cases: [url: string, message: string][] = [
      [
        "ftp://lists.example.com/allowed.txt",
        'URL "ftp://lists.example.com/allowed.txt" must use http, https or file',
      ],
      ["file:lists/allowed.txt", 'file URL "file:lists/allowed.txt" must be file:///absolute/path'],
      ["file://lists/allowed.txt", 'file URL "file://lists/allowed.txt" must be file:///absolute/path'],
      ["file:///etc/allowed.txt?x=1", 'file URL "file:///etc/allowed.txt?x=1" must be file:///absolute/path'],
      ["lists/allowed.txt", '"lists/allowed.txt" is not a valid URL'],
    ];
    for (const [url, message] of cases) {
      const yaml = handler(`  compiledAdapter: listchecker
  params:
    overrides: [alice]
    providerUrl: ${url}
`);
      const d = expectOneError(yaml, "spec.params.providerUrl", 10, message);
      expect(formatDiagnostic(d)).toStartWith(
        "test.yaml:10:5: handler istio-system/h1: spec.params.providerUrl: ",
      );
    }
  });

  test("validateResource() checks quota, prometheus and stdio rules", () => {
    expectOneError(
      handler(`  compiledAdapter: redisquota
  params:
    redisServerUrl: redis:6379
    quotas:
    - name: q
      maxAmount: 10
      validDuration: 1s
      rateLimitAlgorithm: ROLLING_WINDOW
`),
      "spec.params.quotas[0].bucketDuration",
      11,
      "ROLLING_WINDOW quotas need bucketDuration",
    );
    expectOneError(
      handler(`  compiledAdapter: prometheus
  params:
    metrics:
    - name: request_duration_seconds
      instanceName: requestduration.instance.istio-system
      kind: DISTRIBUTION
`),
      "spec.params.metrics[0].buckets",
      10,
      "DISTRIBUTION metrics need buckets",
    );
    expectOneError(
      handler(`  compiledAdapter: stdio
  params:
    logStream: FILE
`),
      "spec.params.outputPath",
      8,
      "logStream FILE needs outputPath",
    );
    expectOneError(
      handler(`  compiledAdapter: memquota
  params:
    quotas:
    - name: q
      maxAmount: -1
`),
      "spec.params.quotas[0].maxAmount",
      11,
      "must not be negative",
    );
  });
});

describe("instance", () => {
  test("validateResource() accepts templates whose params are valid CEL", () => {
    expectValid(instance(`  compiledTemplate: metric
  params:
    value: "1"
    dimensions:
      source: source.workload.name
      destination: destination.service.name
      response_code: response.code
      user: request.headers["x-user"]
    monitoredResourceType: '"UNSPECIFIED"'
`));
    expectValid(instance(`  compiledTemplate: checknothing\n`));
    expectValid(instance(`  compiledTemplate: logentry
  params:
    severity: '"warning"'
    timestamp: request.time
    variables:
      latency: response.duration
      source: 'has(source.workload.name) ? source.workload.name : "unknown"'
`));
    expectValid(instance(`  compiledTemplate: tracespan
  params:
    traceId: request.headers["x-b3-traceid"]
    spanId: request.headers["x-b3-spanid"]
    spanName: destination.service.host
    startTime: request.time
    endTime: response.time
    httpStatusCode: response.code
    clientSpan: context.reporter.kind == "outbound"
    sourceIp: source.ip
`));
    expectValid(instance(`  compiledTemplate: listentry
  params:
    value: source.labels["app"]
`));
  });

  test("validateResource() reports bad CEL at the field with the expression position", () => {
    expectOneError(
      instance(`  compiledTemplate: metric
  params:
    value: "1"
    dimensions:
      source: source.labels[
`),
      "spec.params.dimensions.source",
      11,
      "invalid CEL expression: syntax error at column 14",
    );
  });

  test("validateResource() checks template result types", () => {
    expectOneError(
      instance(`  compiledTemplate: logentry
  params:
    severity: "1"
`),
      "spec.params.severity",
      9,
      "expression must produce a string, but it produces an int",
    );
    expectOneError(
      instance(`  compiledTemplate: tracespan
  params:
    traceId: request.id
    spanId: request.id
    spanName: '"x"'
    startTime: request.time
    endTime: response.size
`),
      "spec.params.endTime",
      13,
      "expression must produce a timestamp, but it produces an int",
    );
  });

  test("validateResource() rejects unknown attributes, missing required params and params of empty templates", () => {
    expectOneError(
      instance(`  compiledTemplate: listentry
  params:
    value: source.lables["app"]
`),
      "spec.params.value",
      9,
      'undeclared reference to "source.lables" (did you mean "source.labels"?)',
    );
    const missing = errorsOf(instance(`  compiledTemplate: tracespan\n  params: {}\n`));
    expect(missing.map((d) => [d.field, d.pos?.line, d.message])).toEqual(
      ["traceId", "spanId", "spanName", "startTime", "endTime"].map((
        f,
      ) => [`spec.params.${f}`, 8, "is required"]),
    );
    expectOneError(
      instance(`  compiledTemplate: checknothing
  params:
    foo: bar
`),
      "spec.params.foo",
      9,
      'unknown field "foo"',
    );
    expectOneError(
      instance(`  compiledTemplate: metrik\n`),
      "spec.compiledTemplate",
      7,
      "(did you mean metric?)",
    );
  });
});

describe("rule", () => {
  test("validateResource() accepts a rule with a boolean match and actions", () => {
    expectValid(rule(`  match: destination.labels["app"] == "ratings" && source.labels["version"] == "v3"
  actions:
  - handler: denyreviewsv3handler
    instances: [denyreviewsv3request]
`));
    expectValid(rule(`  actions:
  - handler: keyval.istio-system
    instances: [keyval]
    name: x
  requestHeaderOperations:
  - name: user-group
    values: [x.output.value]
`));
    expectValid(rule(`  match: ""
  actions:
  - handler: h
    instances: [i]
`));
  });

  test("validateResource() requires the match to be a boolean CEL expression", () => {
    expectOneError(
      rule(`  match: source.labels["app"]
  actions:
  - handler: h
    instances: [i]
`),
      "spec.match",
      7,
      "expression must produce a bool, but it produces a string",
    );
    expectOneError(
      rule(`  match: destination.port == "9080"
  actions:
  - handler: h
    instances: [i]
`),
      "spec.match",
      7,
      "operator == cannot be applied to (int, string)",
    );
  });

  test("validateResource() requires action handlers and instances", () => {
    expectOneError(rule(`  actions:\n  - instances: [i]\n`), "spec.actions[0].handler", 8, "is required");
    expectOneError(rule(`  actions:\n  - handler: h\n`), "spec.actions[0].instances", 8, "is required");
    expectErrorOn(
      rule(`  actions:
  - handler: "Bad_Handler"
    instances: [i]
`),
      "spec.actions[0].handler",
      'invalid handler reference "Bad_Handler"',
    );
  });

  test("validateResource() checks header operation values as CEL strings", () => {
    expectOneError(
      rule(`  actions:
  - handler: h
    instances: [i]
  responseHeaderOperations:
  - name: x-size
    values: [response.size]
`),
      "spec.responseHeaderOperations[0].values[0]",
      12,
      "expression must produce a string, but it produces an int",
    );
  });
});
