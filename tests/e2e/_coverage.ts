/**
 * The API fields that the end-to-end tests drive with a real client, scenario by scenario, for
 * the field coverage table (scripts/field_coverage.ts, docs/field-coverage.md). A field belongs
 * here only when a test in this folder sets it in the config it serves and then checks, with a
 * real client, traffic that depends on it: config that is only delivered and decoded does not
 * count. Paths are schema paths: `Kind.spec.a.b`, `[]` for list items, `*` for map keys.
 * When a scenario changes, change its entry in the same edit.
 */

/** One end-to-end scenario and the fields whose effect its real client observes. */
export interface E2eCoverage {
  /** The test file. */
  readonly file: string;
  /** The test's name, or the describe block's when every test there shares the fields. */
  readonly scenario: string;
  /** The real client that carries the traffic. */
  readonly client: "grpc-js-xds" | "python-grpcio" | "curl, redis-cli and nc through node proxies";
  readonly fields: readonly string[];
}

/** The echo service, its backends and subsets that every proxyless gRPC scenario routes to. */
const ECHO_BASE = [
  "ServiceEntry.spec.hosts",
  "ServiceEntry.spec.ports[].number",
  "ServiceEntry.spec.ports[].name",
  "ServiceEntry.spec.ports[].protocol",
  "ServiceEntry.spec.location",
  "ServiceEntry.spec.resolution",
  "ServiceEntry.spec.workloadSelector.labels",
  "WorkloadEntry.spec.address",
  "WorkloadEntry.spec.ports",
  "WorkloadEntry.spec.labels",
  "DestinationRule.spec.host",
  "DestinationRule.spec.subsets[].name",
  "DestinationRule.spec.subsets[].labels",
  "VirtualService.spec.hosts",
  "VirtualService.spec.http[].route[].destination.host",
  "VirtualService.spec.http[].route[].destination.subset",
] as const;

/** The traffic scenarios of tests/e2e/_grpc_scenarios.ts, run by both clients. */
function grpcScenarios(file: string, client: E2eCoverage["client"], timeouts: boolean): E2eCoverage[] {
  const s = (scenario: string, fields: readonly string[]): E2eCoverage => ({
    file,
    scenario,
    client,
    fields: [...ECHO_BASE, ...fields],
  });
  return [
    s("weighted canary 90/10 splits calls within 3 percentage points", [
      "VirtualService.spec.http[].route[].weight",
    ]),
    s("header-based routing sends an end user's calls to v2 and the rest to v1", [
      "VirtualService.spec.http[].match[].headers.*.exact",
    ]),
    s("fault abort fails about half of the calls with the configured status, before they reach a backend", [
      "VirtualService.spec.http[].fault.abort.grpcStatus",
      "VirtualService.spec.http[].fault.abort.percentage.value",
    ]),
    s("fault delay holds about half of the calls back by the configured delay", [
      "VirtualService.spec.http[].fault.delay.fixedDelay",
      "VirtualService.spec.http[].fault.delay.percentage.value",
    ]),
    s("retries turn a failing backend's UNAVAILABLE into successes", [
      "VirtualService.spec.http[].retries.attempts",
      "VirtualService.spec.http[].retries.retryOn",
    ]),
    ...(timeouts
      ? [s("a per-route timeout ends slow calls with DEADLINE_EXCEEDED at the route's timeout", [
        "VirtualService.spec.http[].timeout",
        "VirtualService.spec.http[].match[].headers.*.exact",
      ])]
      : []),
    s("outlier detection ejects the failing endpoint", [
      "DestinationRule.spec.trafficPolicy.outlierDetection.consecutive5xxErrors",
      "DestinationRule.spec.trafficPolicy.outlierDetection.interval",
      "DestinationRule.spec.trafficPolicy.outlierDetection.baseEjectionTime",
      "DestinationRule.spec.trafficPolicy.outlierDetection.maxEjectionPercent",
      "VirtualService.spec.http[].retries.attempts",
    ]),
    s("a delegating VirtualService routes by the delegate's rules, merged under its own match", [
      "VirtualService.spec.http[].name",
      "VirtualService.spec.http[].match[].uri.prefix",
      "VirtualService.spec.http[].match[].headers.*.exact",
      "VirtualService.spec.http[].delegate.name",
      "VirtualService.spec.http[].delegate.namespace",
      "VirtualService.spec.exportTo",
    ]),
  ];
}

/** The locality scenarios of tests/e2e/pilot_grpc_locality.test.ts (grpc-js only). */
const LOCALITY_BASE = [
  ...ECHO_BASE.filter((f) =>
    !f.startsWith("VirtualService") && !f.startsWith("DestinationRule.spec.subsets")
  ),
  "WorkloadEntry.spec.locality",
  "DestinationRule.spec.trafficPolicy.outlierDetection.consecutive5xxErrors",
  "DestinationRule.spec.trafficPolicy.outlierDetection.interval",
  "DestinationRule.spec.trafficPolicy.outlierDetection.baseEjectionTime",
  "DestinationRule.spec.trafficPolicy.loadBalancer.simple",
] as const;

/** Every end-to-end scenario with a real client, and the fields it drives. */
export const E2E_COVERAGE: readonly E2eCoverage[] = [
  ...grpcScenarios("tests/e2e/pilot_grpc.test.ts", "grpc-js-xds", true),
  ...grpcScenarios("tests/e2e/pilot_grpc_python.test.ts", "python-grpcio", false),
  {
    file: "tests/e2e/pilot_grpc_locality.test.ts",
    scenario: "failoverPriority sends every call to the backends sharing the client's region label",
    client: "grpc-js-xds",
    fields: [
      ...LOCALITY_BASE,
      "DestinationRule.spec.trafficPolicy.loadBalancer.localityLbSetting.failoverPriority",
    ],
  },
  {
    file: "tests/e2e/pilot_grpc_locality.test.ts",
    scenario: "failover moves calls to the next locality as the nearer backends go",
    client: "grpc-js-xds",
    fields: [
      ...LOCALITY_BASE,
      "DestinationRule.spec.trafficPolicy.loadBalancer.localityLbSetting.failover[].from",
      "DestinationRule.spec.trafficPolicy.loadBalancer.localityLbSetting.failover[].to",
    ],
  },
  {
    file: "tests/e2e/security_mtls.test.ts",
    scenario: "mTLS under STRICT PeerAuthentication with an AuthorizationPolicy allowing one identity",
    client: "grpc-js-xds",
    fields: [
      "ServiceEntry.spec.hosts",
      "ServiceEntry.spec.ports[].number",
      "ServiceEntry.spec.ports[].name",
      "ServiceEntry.spec.ports[].protocol",
      "ServiceEntry.spec.location",
      "ServiceEntry.spec.resolution",
      "ServiceEntry.spec.workloadSelector.labels",
      "WorkloadEntry.spec.address",
      "WorkloadEntry.spec.labels",
      "WorkloadEntry.spec.serviceAccount",
      "WorkloadEntry.spec.ports",
      "PeerAuthentication.spec.mtls.mode",
      "DestinationRule.spec.host",
      "DestinationRule.spec.trafficPolicy.tls.mode",
      "AuthorizationPolicy.spec.selector.matchLabels",
      "AuthorizationPolicy.spec.action",
      "AuthorizationPolicy.spec.rules[].from[].source.principals",
    ],
  },
  {
    file: "tests/e2e/node_proxy.test.ts",
    scenario: "node proxy across machines",
    client: "curl, redis-cli and nc through node proxies",
    fields: [
      "ServiceEntry.spec.hosts",
      "ServiceEntry.spec.ports[].number",
      "ServiceEntry.spec.ports[].name",
      "ServiceEntry.spec.ports[].protocol",
      "ServiceEntry.spec.location",
      "ServiceEntry.spec.resolution",
      "ServiceEntry.spec.workloadSelector.labels",
      "WorkloadGroup.spec.template.serviceAccount",
      "PeerAuthentication.spec.mtls.mode",
      "AuthorizationPolicy.spec.selector.matchLabels",
      "AuthorizationPolicy.spec.action",
      "AuthorizationPolicy.spec.rules[].from[].source.principals",
      "AuthorizationPolicy.spec.rules[].from[].source.namespaces",
    ],
  },
];
