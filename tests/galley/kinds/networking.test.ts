import { describe, expect, test } from "bun:test";
import { formatDiagnostic } from "../../../mod/api/resource.ts";
import { hostProblem } from "../../../mod/api/kinds/networking.ts";
import { diagnose, errorsOf, expectErrorOn, expectOneError, expectValid, resource } from "./_check.ts";

const vs = (spec: string) =>
  resource({ apiVersion: "networking.istio.io/v1", kind: "VirtualService", name: "reviews" }, spec);
const dr = (spec: string) =>
  resource({ apiVersion: "networking.istio.io/v1beta1", kind: "DestinationRule", name: "reviews" }, spec);
const gw = (spec: string, name = "bookinfo-gateway") =>
  resource({ apiVersion: "networking.istio.io/v1alpha3", kind: "Gateway", name }, spec);
const se = (spec: string) =>
  resource({ apiVersion: "networking.istio.io/v1", kind: "ServiceEntry", name: "external" }, spec);
const we = (spec: string) =>
  resource({ apiVersion: "networking.istio.io/v1", kind: "WorkloadEntry", name: "vm1" }, spec);
const wg = (spec: string) =>
  resource({ apiVersion: "networking.istio.io/v1", kind: "WorkloadGroup", name: "ratings" }, spec);
const sc = (spec: string) =>
  resource({ apiVersion: "networking.istio.io/v1", kind: "Sidecar", name: "default" }, spec);

describe("VirtualService", () => {
  test("validateResource() accepts a full bookinfo-style VirtualService", () => {
    expectValid(vs(`  hosts:
  - reviews
  - "*.example.com"
  gateways:
  - mesh
  - bookinfo/gateway
  http:
  - name: jason
    match:
    - headers:
        end-user:
          exact: jason
      uri:
        prefix: /api
    route:
    - destination:
        host: reviews
        subset: v2
  - route:
    - destination:
        host: reviews
        subset: v1
      weight: 75
    - destination:
        host: reviews
        subset: v3
        port:
          number: 9080
      weight: 25
    timeout: 10s
    retries:
      attempts: 3
      perTryTimeout: 2s
      retryOn: gateway-error,connect-failure,503,unavailable
    fault:
      delay:
        percentage:
          value: 10
        fixedDelay: 5s
      abort:
        percentage:
          value: 1.5
        httpStatus: 503
    mirror:
      host: reviews
      subset: v3
    mirrorPercentage:
      value: 50
    corsPolicy:
      allowOrigins:
      - exact: https://example.com
      - regex: "https://.*\\\\.example\\\\.com"
      allowMethods: [GET, POST]
      allowHeaders: [x-custom, "*"]
      maxAge: 24h
    headers:
      request:
        set:
          x-env: prod
      response:
        remove: [x-debug]
  tcp:
  - match:
    - port: 27017
    route:
    - destination:
        host: mongo.backend.svc.cluster.local
        port:
          number: 5555
`));
  });

  test("validateResource() allows a single destination without a weight", () => {
    expectValid(vs(`  hosts: [reviews]
  http:
  - route:
    - destination:
        host: reviews
`));
  });

  test("validateResource() reports a negative weight with the example's exact format", () => {
    const d = expectOneError(
      vs(`  hosts: [reviews]
  http:
  - route:
    - destination:
        host: reviews
        subset: v1
      weight: 50
    - destination:
        host: reviews
        subset: v2
      weight: -5
`),
      "spec.http[0].route[1].weight",
      17,
      "-5: must not be negative",
    );
    expect(formatDiagnostic(d)).toBe(
      "test.yaml:17:7: VirtualService default/reviews: spec.http[0].route[1].weight: -5: must not be negative",
    );
  });

  test("validateResource() takes weights as relative (any sum but 0), as Istio does", () => {
    expectValid(vs(`  hosts: [reviews]
  http:
  - route:
    - destination: {host: reviews, subset: v1}
      weight: 50
    - destination: {host: reviews, subset: v2}
      weight: 40
  tcp:
  - route:
    - destination: {host: reviews, subset: v1}
      weight: 3
    - destination: {host: reviews, subset: v2}
      weight: 1000
`));
    expectOneError(
      vs(`  hosts: [reviews]
  http:
  - route:
    - destination: {host: reviews, subset: v1}
      weight: 0
    - destination: {host: reviews, subset: v2}
`),
      "spec.http[0].route",
      9,
      "the route weights add up to 0; give at least one destination a weight " +
        "(destinations without a weight count as 0)",
    );
  });

  test("validateResource() rejects a string match with two of exact, prefix and regex", () => {
    expectOneError(
      vs(`  hosts: [reviews]
  http:
  - match:
    - uri:
        exact: /a
        prefix: /b
    route:
    - destination: {host: reviews}
`),
      "spec.http[0].match[0].uri.prefix",
      12,
      "only one of exact, prefix or regex may be set; found exact and prefix",
    );
  });

  test("validateResource() rejects an empty string match", () => {
    expectOneError(
      vs(`  hosts: [reviews]
  http:
  - match:
    - uri: {}
    route:
    - destination: {host: reviews}
`),
      "spec.http[0].match[0].uri",
      10,
      "exactly one of exact, prefix or regex must be set",
    );
  });

  test("validateResource() rejects a regex RE2 cannot compile", () => {
    expectOneError(
      vs(`  hosts: [reviews]
  http:
  - match:
    - uri:
        regex: "/api/(?=v1)"
    route:
    - destination: {host: reviews}
`),
      "spec.http[0].match[0].uri.regex",
      11,
      "invalid regex",
    );
  });

  test("validateResource() requires lower-case header names in matches", () => {
    expectOneError(
      vs(`  hosts: [reviews]
  http:
  - match:
    - headers:
        End-User:
          exact: jason
    route:
    - destination: {host: reviews}
`),
      'spec.http[0].match[0].headers["End-User"]',
      11,
      'header name "End-User" must be lower case',
    );
  });

  test("validateResource() rejects route together with redirect", () => {
    expectOneError(
      vs(`  hosts: [reviews]
  http:
  - redirect:
      uri: /v2
    route:
    - destination: {host: reviews}
`),
      "spec.http[0].redirect",
      9,
      "cannot have both route and redirect",
    );
  });

  test("validateResource() rejects directResponse together with route", () => {
    expectErrorOn(
      vs(`  hosts: [reviews]
  http:
  - directResponse:
      status: 503
    route:
    - destination: {host: reviews}
`),
      "spec.http[0].directResponse",
      "cannot have both route and directResponse",
    );
  });

  test("validateResource() checks retries: attempts and retryOn policies", () => {
    const errors = errorsOf(vs(`  hosts: [reviews]
  http:
  - route:
    - destination: {host: reviews}
    retries:
      attempts: -1
      retryOn: 5xx,bogus
`));
    expect(errors.map((d) => [d.field, d.pos?.line, d.message])).toEqual([
      ["spec.http[0].retries.attempts", 12, "-1: must not be negative"],
      [
        "spec.http[0].retries.retryOn",
        13,
        expect.stringContaining('"bogus" is not a valid retryOn policy') as unknown as string,
      ],
    ]);
  });

  test("validateResource() enforces Istio's duration rules (syntax, 1ms minimum)", () => {
    expectOneError(
      vs(`  hosts: [reviews]
  http:
  - route:
    - destination: {host: reviews}
    retries:
      attempts: 2
      perTryTimeout: 500us
`),
      "spec.http[0].retries.perTryTimeout",
      13,
      "duration must be at least 1ms",
    );
    expectOneError(
      vs(`  hosts: [reviews]
  http:
  - route:
    - destination: {host: reviews}
    timeout: "10"
`),
      "spec.http[0].timeout",
      11,
      'invalid duration "10"',
    );
  });

  test("validateResource() checks fault injection: status range, delay needs fixedDelay", () => {
    const errors = errorsOf(vs(`  hosts: [reviews]
  http:
  - route:
    - destination: {host: reviews}
    fault:
      delay:
        percentage: {value: 10}
      abort:
        httpStatus: 700
`));
    expect(errors.map((d) => [d.field, d.pos?.line, d.message])).toEqual([
      ["spec.http[0].fault.delay", 12, "delay needs fixedDelay"],
      ["spec.http[0].fault.abort.httpStatus", 15, "700: must be 200–599"],
    ]);
    expectOneError(
      vs(`  hosts: [reviews]
  http:
  - route:
    - destination: {host: reviews}
    fault:
      delay:
        percentage: {value: 10}
`),
      "spec.http[0].fault.delay",
      12,
      "delay needs fixedDelay",
    );
    expectOneError(
      vs(`  hosts: [reviews]
  http:
  - route:
    - destination: {host: reviews}
    fault:
      abort:
        percentage: {value: 101}
        grpcStatus: UNAVAILABLE
`),
      "spec.http[0].fault.abort.percentage.value",
      13,
      "101: must be 0–100",
    );
  });

  test("validateResource() rejects mirrorPercentage above 100", () => {
    expectOneError(
      vs(`  hosts: [reviews]
  http:
  - route:
    - destination: {host: reviews}
    mirror: {host: reviews-shadow}
    mirrorPercentage:
      value: 150
`),
      "spec.http[0].mirrorPercentage.value",
      13,
      "150: must be 0–100",
    );
  });

  test("validateResource() applies the host rules: '*' on the mesh, partial wildcards", () => {
    expectOneError(
      vs(`  hosts: ["*"]
  http:
  - route:
    - destination: {host: reviews}
`),
      "spec.hosts[0]",
      7,
      'wildcard host "*" is not allowed for virtual services bound to the mesh',
    );
    // Istio accepts a wildcard at the start of the first label of a VirtualService host.
    expectValid(vs(`  hosts: ["*foo.example.com", "*-bar.example.com"]
  http:
  - route:
    - destination: {host: "*baz.example.com"}
`));
    expectOneError(
      vs(`  hosts: ["f*o.example.com"]
  http:
  - route:
    - destination: {host: reviews}
`),
      "spec.hosts[0]",
      7,
      "partial wildcard",
    );
    expect(hostProblem("*foo.example.com")).toContain("partial wildcard");
    expect(hostProblem("*foo.example.com", { partialWildcard: true })).toBeUndefined();
    expect(hostProblem("*-foo.example.com", { partialWildcard: true })).toBeUndefined();
    expect(hostProblem("foo*.example.com", { partialWildcard: true })).toContain("partial wildcard");
    expect(hostProblem("a.*.example.com")).toContain("only allowed as the leading");
    expect(hostProblem("reviews")).toBeUndefined();
    expect(hostProblem("*.example.com")).toBeUndefined();
    expect(hostProblem("example.123")).toContain("all-numeric");
  });

  test("validateResource() reports unknown fields with a did-you-mean", () => {
    expectOneError(
      vs(`  hostss: [reviews]
  http:
  - route:
    - destination: {host: reviews}
`),
      "spec.hostss",
      7,
      'unknown field "hostss" (did you mean "hosts"?)',
    );
    expectOneError(
      vs(`  hosts: [reviews]
  export_to: ["."]
  http:
  - route:
    - destination: {host: reviews}
`),
      "spec.export_to",
      8,
      'unknown field "export_to" (did you mean "exportTo"?)',
    );
  });

  test("validateResource() requires some routes", () => {
    expectOneError(vs(`  hosts: [reviews]\n`), "spec", 6, "needs http, tcp or tls routes");
  });

  test("validateResource() checks CORS methods and direct response status", () => {
    expectOneError(
      vs(`  hosts: [reviews]
  http:
  - route:
    - destination: {host: reviews}
    corsPolicy:
      allowMethods: [GET, FETCH]
`),
      "spec.http[0].corsPolicy.allowMethods[1]",
      12,
      '"FETCH" is not an HTTP method',
    );
    expectOneError(
      vs(`  hosts: [reviews]
  http:
  - directResponse:
      status: 99
`),
      "spec.http[0].directResponse.status",
      10,
      "99: must be 200–599",
    );
  });
});

describe("DestinationRule", () => {
  test("validateResource() accepts a DestinationRule with policies and subsets", () => {
    expectValid(dr(`  host: reviews.bookinfo.svc.cluster.local
  trafficPolicy:
    loadBalancer:
      simple: LEAST_REQUEST
    connectionPool:
      tcp:
        maxConnections: 100
        connectTimeout: 30ms
      http:
        http2MaxRequests: 1000
        maxRequestsPerConnection: 10
    outlierDetection:
      consecutive5xxErrors: 7
      interval: 5m
      baseEjectionTime: 15m
      maxEjectionPercent: 50
    tls:
      mode: ISTIO_MUTUAL
    portLevelSettings:
    - port:
        number: 80
      loadBalancer:
        consistentHash:
          httpHeaderName: x-user
  subsets:
  - name: v1
    labels:
      version: v1
  - name: v2
    labels:
      version: v2
    trafficPolicy:
      loadBalancer:
        localityLbSetting:
          distribute:
          - from: us-west/zone1/*
            to:
              "us-west/zone1/*": 80
              "us-west/zone2/*": 20
`));
  });

  test("validateResource() rejects duplicate subset names and subsets without labels", () => {
    const errors = errorsOf(dr(`  host: reviews
  subsets:
  - name: v1
    labels: {version: v1}
  - name: v1
    labels: {version: v2}
  - name: v3
`));
    expect(errors.map((d) => [d.field, d.pos?.line, d.message])).toEqual([
      ["spec.subsets[2].labels", 13, "is required"],
    ]);
    expectOneError(
      dr(`  host: reviews
  subsets:
  - name: v1
    labels: {version: v1}
  - name: v1
    labels: {version: v2}
`),
      "spec.subsets[1].name",
      11,
      'duplicate subset name "v1"',
    );
    expectOneError(
      dr(`  host: reviews
  subsets:
  - name: "v*"
    labels: {version: v1}
`),
      "spec.subsets[0].name",
      9,
      'invalid subset name "v*"',
    );
  });

  test("validateResource() checks the load balancer: enum and simple vs consistentHash", () => {
    expectOneError(
      dr(`  host: reviews
  trafficPolicy:
    loadBalancer:
      simple: FASTEST
`),
      "spec.trafficPolicy.loadBalancer.simple",
      10,
      'must be one of UNSPECIFIED, LEAST_CONN, RANDOM, PASSTHROUGH, ROUND_ROBIN, LEAST_REQUEST; got "FASTEST"',
    );
    expectOneError(
      dr(`  host: reviews
  trafficPolicy:
    loadBalancer:
      simple: RANDOM
      consistentHash:
        useSourceIp: true
`),
      "spec.trafficPolicy.loadBalancer.consistentHash",
      11,
      "only one of simple, consistentHash or backendUtilization may be set",
    );
    expectOneError(
      dr(`  host: reviews
  trafficPolicy:
    loadBalancer:
      consistentHash: {}
`),
      "spec.trafficPolicy.loadBalancer.consistentHash",
      10,
      "exactly one of httpHeaderName, httpCookie, useSourceIp or httpQueryParameterName must be set",
    );
  });

  test("validateResource() checks locality distribution weights and distribute vs failover", () => {
    expectOneError(
      dr(`  host: reviews
  trafficPolicy:
    loadBalancer:
      localityLbSetting:
        distribute:
        - from: us-west/*
          to:
            "us-west/*": 50
            "us-east/*": 40
`),
      "spec.trafficPolicy.loadBalancer.localityLbSetting.distribute[0].to",
      13,
      "locality weights must add up to 100, got 90",
    );
    expectOneError(
      dr(`  host: reviews
  trafficPolicy:
    loadBalancer:
      localityLbSetting:
        distribute:
        - from: us-west/*
          to: {"us-west/*": 100}
        failover:
        - from: us-west
          to: us-east
    outlierDetection:
      consecutive5xxErrors: 3
`),
      "spec.trafficPolicy.loadBalancer.localityLbSetting.failover",
      14,
      "distribute and failover cannot both be set",
    );
  });

  test("validateResource() checks outlier detection and connection pool numbers", () => {
    expectOneError(
      dr(`  host: reviews
  trafficPolicy:
    outlierDetection:
      interval: -1s
`),
      "spec.trafficPolicy.outlierDetection.interval",
      10,
      "duration must be positive",
    );
    expectOneError(
      dr(`  host: reviews
  trafficPolicy:
    outlierDetection:
      maxEjectionPercent: 150
`),
      "spec.trafficPolicy.outlierDetection.maxEjectionPercent",
      10,
      "150: must be 0–100",
    );
    expectOneError(
      dr(`  host: reviews
  trafficPolicy:
    connectionPool:
      tcp:
        maxConnections: -5
`),
      "spec.trafficPolicy.connectionPool.tcp.maxConnections",
      11,
      "-5: must not be negative",
    );
  });

  test("validateResource() checks TLS modes and MUTUAL credentials", () => {
    expectOneError(
      dr(`  host: reviews
  trafficPolicy:
    tls:
      mode: MUTUAL
      caCertificates: /etc/certs/ca.pem
`),
      "spec.trafficPolicy.tls",
      9,
      "MUTUAL TLS needs clientCertificate and privateKey, or credentialName",
    );
    expectValid(dr(`  host: reviews
  trafficPolicy:
    tls:
      mode: MUTUAL
      credentialName: client-creds
`));
    expectOneError(
      dr(`  host: reviews
  trafficPolicy:
    tls:
      mode: STRICT
`),
      "spec.trafficPolicy.tls.mode",
      10,
      "must be one of DISABLE, SIMPLE, MUTUAL, ISTIO_MUTUAL",
    );
  });

  test("validateResource() requires a port in portLevelSettings and a non-empty traffic policy", () => {
    expectOneError(
      dr(`  host: reviews
  trafficPolicy:
    portLevelSettings:
    - loadBalancer:
        simple: RANDOM
`),
      "spec.trafficPolicy.portLevelSettings[0].port",
      10,
      "is required",
    );
    expectOneError(
      dr(`  host: reviews
  trafficPolicy: {}
`),
      "spec.trafficPolicy",
      8,
      "traffic policy must set at least one field",
    );
  });
});

describe("Gateway", () => {
  test("validateResource() accepts an ingress gateway with HTTP and HTTPS servers", () => {
    expectValid(gw(`  selector:
    istio: ingressgateway
  servers:
  - port: {number: 80, name: http, protocol: HTTP}
    hosts: ["bookinfo/*.example.com", "uk.bookinfo.com"]
    tls: {httpsRedirect: true}
  - port: {number: 443, name: https, protocol: HTTPS}
    hosts: ["*/reviews.example.com"]
    tls: {mode: SIMPLE, credentialName: reviews-cert}
`));
  });

  test("validateResource() requires tls on HTTPS servers", () => {
    expectOneError(
      gw(`  servers:
  - port: {number: 443, name: https, protocol: HTTPS}
    hosts: ["*"]
`),
      "spec.servers[0].tls",
      8,
      "servers with protocol HTTPS need tls settings",
    );
  });

  test("validateResource() checks server ports, protocols and host forms", () => {
    expectOneError(
      gw(`  servers:
  - port: {number: 70000, name: http, protocol: HTTP}
    hosts: ["*"]
`),
      "spec.servers[0].port.number",
      8,
      "70000: must be 1–65535",
    );
    expectOneError(
      gw(`  servers:
  - port: {number: 80, name: http, protocol: HTTPX}
    hosts: ["*"]
`),
      "spec.servers[0].port.protocol",
      8,
      'unsupported protocol "HTTPX"',
    );
    expectOneError(
      gw(`  servers:
  - port: {number: 80, name: http, protocol: HTTP}
    hosts: ["bookinfo/reviews"]
`),
      "spec.servers[0].hosts[0]",
      9,
      "short name",
    );
  });

  test("validateResource() rejects duplicate port names, SIMPLE without a certificate and dotted names", () => {
    expectOneError(
      gw(`  servers:
  - port: {number: 80, name: web, protocol: HTTP}
    hosts: ["*"]
  - port: {number: 8080, name: web, protocol: HTTP}
    hosts: ["*"]
`),
      "spec.servers[1].port.name",
      10,
      'port name "web" is already used by spec.servers[0]',
    );
    expectOneError(
      gw(`  servers:
  - port: {number: 443, name: https, protocol: HTTPS}
    hosts: ["*"]
    tls: {mode: SIMPLE}
`),
      "spec.servers[0].tls",
      10,
      "SIMPLE TLS needs serverCertificate and privateKey, or credentialName",
    );
    expectOneError(
      gw(
        `  servers:
  - port: {number: 80, name: http, protocol: HTTP}
    hosts: ["*"]
`,
        "my.gateway",
      ),
      "metadata.name",
      4,
      "must be a DNS-1123 label (no dots)",
    );
  });
});

describe("ServiceEntry", () => {
  test("validateResource() accepts DNS and STATIC service entries", () => {
    expectValid(se(`  hosts: [api.example.com]
  location: MESH_EXTERNAL
  ports:
  - {number: 443, name: https, protocol: TLS}
  resolution: DNS
`));
    expectValid(se(`  hosts: [db.internal]
  addresses: [10.1.0.0/16]
  ports:
  - {number: 5432, name: tcp-pg, protocol: TCP}
  resolution: STATIC
  endpoints:
  - address: 10.1.2.3
    ports: {tcp-pg: 5433}
  - address: 2001:db8::1
`));
  });

  test("validateResource() requires hosts", () => {
    expectOneError(se(`  resolution: NONE\n`), "spec.hosts", 6, "is required");
  });

  test("validateResource() accepts STATIC without endpoints (Istio does) and wants IP addresses", () => {
    expectValid(se(`  hosts: [db.internal]
  ports: [{number: 5432, name: pg, protocol: TCP}]
  resolution: STATIC
`));
    expectOneError(
      se(`  hosts: [db.internal]
  ports: [{number: 5432, name: pg, protocol: TCP}]
  resolution: STATIC
  endpoints:
  - address: db1.internal
`),
      "spec.endpoints[0].address",
      11,
      'address "db1.internal" must be an IP address or a unix:// path',
    );
  });

  test("validateResource() rejects wildcard hosts with DNS resolution", () => {
    expectOneError(
      se(`  hosts: ["*.example.com"]
  ports: [{number: 443, name: https, protocol: TLS}]
  resolution: DNS
`),
      "spec.hosts[0]",
      7,
      'wildcard host "*.example.com" cannot be resolved with resolution DNS',
    );
  });

  test("validateResource() checks addresses, exclusivity and port uniqueness", () => {
    expectOneError(
      se(`  hosts: [db.internal]
  addresses: [10.0.0.300]
  resolution: NONE
`),
      "spec.addresses[0]",
      8,
      '"10.0.0.300" is not an IP address or CIDR block',
    );
    expectOneError(
      se(`  hosts: [db.internal]
  ports: [{number: 80, name: http, protocol: HTTP}]
  resolution: STATIC
  workloadSelector:
    labels: {app: db}
  endpoints:
  - address: 10.0.0.1
`),
      "spec.endpoints",
      12,
      "only one of workloadSelector or endpoints may be set",
    );
    const errors = errorsOf(se(`  hosts: [api.example.com]
  ports:
  - {number: 80, name: http, protocol: HTTP}
  - {number: 80, name: http, protocol: HTTP}
  resolution: DNS
`));
    expect(errors.map((d) => [d.field, d.message])).toEqual([
      ["spec.ports[1].number", "port 80 is already defined at spec.ports[0]"],
      ["spec.ports[1].name", 'port name "http" is already defined at spec.ports[0]'],
    ]);
  });

  test("validateResource() rejects an unknown resolution with a suggestion", () => {
    expectOneError(
      se(`  hosts: [api.example.com]
  resolution: STATC
`),
      "spec.resolution",
      8,
      'must be one of NONE, STATIC, DNS, DNS_ROUND_ROBIN, DYNAMIC_DNS; got "STATC" (did you mean STATIC?)',
    );
  });
});

describe("WorkloadEntry and WorkloadGroup", () => {
  test("validateResource() accepts a WorkloadEntry", () => {
    expectValid(we(`  address: 10.0.0.5
  ports: {http: 8080}
  labels: {app: ratings, version: v1}
  serviceAccount: ratings
`));
  });

  test("validateResource() requires an address unless a network is set", () => {
    expectOneError(
      we(`  ports: {http: 8080}\n`),
      "spec.address",
      6,
      "address is required (unless network is set)",
    );
    expectValid(we(`  network: vpc-1\n`));
  });

  test("validateResource() checks WorkloadEntry ports and addresses", () => {
    expectOneError(
      we(`  address: 10.0.0.5\n  ports: {http: 0}\n`),
      "spec.ports.http",
      8,
      "0: must be 1–65535",
    );
    expectOneError(
      we(`  address: "bad host!"\n`),
      "spec.address",
      7,
      "is not an IP address, a host name or a unix:// path",
    );
  });

  test("validateResource() accepts a WorkloadGroup with a probe", () => {
    expectValid(wg(`  metadata:
    labels: {app: ratings}
  template:
    ports: {http: 8080}
    serviceAccount: ratings
  probe:
    periodSeconds: 5
    httpGet:
      path: /ready
      port: 8080
`));
  });

  test("validateResource() rejects a template address, two probe methods and a missing template", () => {
    expectOneError(
      wg(`  template:
    address: 10.0.0.1
`),
      "spec.template.address",
      8,
      "template.address must not be set",
    );
    expectOneError(
      wg(`  template: {}
  probe:
    httpGet: {port: 8080}
    tcpSocket: {port: 8080}
`),
      "spec.probe.tcpSocket",
      10,
      "only one of httpGet, tcpSocket, exec or grpc may be set",
    );
    expectOneError(wg(`  probe:\n    exec: {command: [cat, /ready]}\n`), "spec.template", 6, "is required");
  });
});

describe("Sidecar", () => {
  test("validateResource() accepts a Sidecar with ingress and egress listeners", () => {
    expectValid(sc(`  workloadSelector:
    labels: {app: ratings}
  ingress:
  - port: {number: 9080, protocol: HTTP, name: somename}
    defaultEndpoint: 127.0.0.1:8080
  egress:
  - port: {number: 3306, protocol: MYSQL, name: egressmysql}
    hosts: ["*/mysql.foo.com"]
  - hosts: ["./*", "istio-system/*", "~/*"]
  outboundTrafficPolicy: {mode: REGISTRY_ONLY}
`));
  });

  test("validateResource() allows only one egress listener without a port", () => {
    const errors = errorsOf(sc(`  egress:
  - hosts: ["./*"]
  - hosts: ["istio-system/*"]
`));
    expect(errors.map((d) => [d.field, d.pos?.line, d.message])).toEqual([
      ["spec.egress[0]", 8, "the egress listener without a port must be the last one"],
      ["spec.egress[1]", 9, "only one egress listener may omit the port; spec.egress[0] already does"],
    ]);
  });

  test("validateResource() requires namespace/host egress hosts", () => {
    expectOneError(
      sc(`  egress:
  - hosts: ["reviews.default.svc.cluster.local"]
`),
      "spec.egress[0].hosts[0]",
      8,
      "must be of the form namespace/dnsName",
    );
    expectOneError(sc(`  egress:\n  - hosts: ["./reviews"]\n`), "spec.egress[0].hosts[0]", 8, "short name");
  });

  test("validateResource() checks outboundTrafficPolicy.mode and rejects an empty Sidecar", () => {
    expectOneError(
      sc(`  outboundTrafficPolicy: {mode: DENY}\n`),
      "spec.outboundTrafficPolicy.mode",
      7,
      "must be one of REGISTRY_ONLY, ALLOW_ANY",
    );
    expectOneError(
      sc(`  workloadSelector:\n    labels: {app: x}\n`),
      "spec",
      6,
      "sidecar configuration is empty",
    );
  });
});

test("validateResource() accepts every networking version (v1, v1beta1, v1alpha3)", () => {
  for (const version of ["v1", "v1beta1", "v1alpha3"]) {
    expect(
      diagnose(
        resource(
          { apiVersion: `networking.istio.io/${version}`, kind: "WorkloadEntry" },
          "  address: 10.0.0.1\n",
        ),
      ),
    )
      .toEqual([]);
  }
});
