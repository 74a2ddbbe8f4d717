/**
 * Property: for any mesh meshd's own validation accepts, translation gives every proxy kind
 * (sidecar, gateway router, proxyless gRPC client) a resource set Envoy's field rules and
 * semantic checks accept. fast-check generates random meshes (ServiceEntries with ports,
 * protocols and resolutions; DestinationRules with subsets and traffic policies; VirtualServices
 * with http, tcp and tls routes using every match and action; Gateways; Sidecars;
 * PeerAuthentication, AuthorizationPolicy, RequestAuthentication); the config store validates
 * them and keeps the valid ones; the PushContext is built as the golden tests build it.
 *
 * The seed is fixed per run and printed by fast-check on failure with the shrunk mesh; such a
 * mesh is kept as a regression case in `regressions/<name>.yaml` (the config documents), which
 * this file also runs.
 */
import { describe, expect, test } from "bun:test";
import { existsSync, readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import fc from "fast-check";
import { stringify } from "yaml";
import {
  checkEnvoySet,
  configuredSecretNames,
  proxyKindOf,
  type Violation,
} from "../../../mod/pilot/check/mod.ts";
import { createConfigStore } from "../../../mod/galley/store.ts";
import { createPushContext, type PushContext } from "../../../mod/pilot/model/push_context.ts";
import { type Proxy, proxyFromNode } from "../../../mod/pilot/model/proxy.ts";
import {
  buildGrpcClusters,
  buildGrpcEndpoints,
  buildGrpcListeners,
  buildGrpcRoutes,
} from "../../../mod/pilot/translate/grpc/mod.ts";
import {
  buildClusters,
  buildEndpoints,
  buildListeners,
  buildRoutes,
} from "../../../mod/pilot/translate/mod.ts";
import { createLogger } from "../../../mod/shared/logger.ts";

const NAMESPACES = ["app", "web"] as const;
const SEED = 1789;
const NUM_RUNS = Number(process.env.PROPERTY_RUNS ?? 1000);

// ---------------------------------------------------------------- arbitraries

interface Port {
  number: number;
  name: string;
  protocol: string;
}

interface Service {
  name: string;
  namespace: string;
  host: string;
  ports: Port[];
  resolution: "STATIC" | "DNS" | "NONE";
  location: "MESH_INTERNAL" | "MESH_EXTERNAL";
}

type Doc = Record<string, unknown>;

const PROTOCOLS = ["HTTP", "HTTP2", "GRPC", "TCP", "TLS", "HTTPS"] as const;
const PORT_NUMBERS = [80, 443, 8080, 9000, 9080, 5432];
const duration = fc.constantFrom("1s", "250ms", "3s", "0.5s", "30s", "1m");
const headerName = fc.constantFrom("x-user", "x-canary", "end-user", "x-request-id");
const headerValue = fc.constantFrom("jason", "1", "beta", "a b");
const stringMatch = fc.oneof(
  headerValue.map((v) => ({ exact: v })),
  headerValue.map((v) => ({ prefix: v })),
  fc.constantFrom("^j.*n$", "[0-9]+", "a|b").map((v) => ({ regex: v })),
);
const uriMatch = fc.oneof(
  fc.constantFrom("/", "/api", "/v1/users").map((v) => ({ exact: v })),
  fc.constantFrom("/", "/api/", "/static").map((v) => ({ prefix: v })),
  fc.constantFrom("^/users/[0-9]+$", "/items/.*").map((v) => ({ regex: v })),
);

const portsArb: fc.Arbitrary<Port[]> = fc.uniqueArray(fc.constantFrom(...PORT_NUMBERS), {
  minLength: 1,
  maxLength: 3,
})
  .chain((numbers) =>
    fc.tuple(...numbers.map((n) => fc.constantFrom(...PROTOCOLS).map((p) => ({ number: n, protocol: p }))))
  )
  .map((ps) => ps.map((p) => ({ ...p, name: `${p.protocol.toLowerCase()}-${p.number}` })));

const servicesArb: fc.Arbitrary<Service[]> = fc.integer({ min: 1, max: 3 }).chain((n) =>
  fc.tuple(
    ...Array.from({ length: n }, (_, i) =>
      fc.record({
        namespace: fc.constantFrom(...NAMESPACES),
        ports: portsArb,
        resolution: fc.constantFrom("STATIC" as const, "STATIC" as const, "DNS" as const, "NONE" as const),
        location: fc.constantFrom("MESH_INTERNAL" as const, "MESH_EXTERNAL" as const),
      }).map((s) => ({ ...s, name: `svc${i}`, host: `svc${i}.${s.namespace}.svc.cluster.local` }))),
  )
);

function serviceEntry(s: Service, index: number): Doc {
  const endpoints = s.resolution === "STATIC"
    ? [
      { address: `10.1.${index}.1`, labels: { app: s.name, version: "v1" }, serviceAccount: s.name },
      { address: `10.1.${index}.2`, labels: { app: s.name, version: "v2" }, serviceAccount: s.name },
    ]
    : s.resolution === "DNS"
    ? [{ address: `${s.name}.backend.example`, labels: { app: s.name, version: "v1" } }]
    : undefined;
  return {
    apiVersion: "networking.istio.io/v1",
    kind: "ServiceEntry",
    metadata: { name: s.name, namespace: s.namespace },
    spec: {
      hosts: [s.host],
      location: s.location,
      resolution: s.resolution,
      ports: s.ports,
      ...(endpoints ? { endpoints } : {}),
    },
  };
}

const trafficPolicyArb = fc.record({
  loadBalancer: fc.oneof(
    fc.constantFrom("ROUND_ROBIN", "LEAST_REQUEST", "RANDOM", "PASSTHROUGH").map((simple) => ({ simple })),
    fc.oneof(
      headerName.map((h) => ({ httpHeaderName: h })),
      fc.record({ httpCookie: fc.record({ name: fc.constantFrom("session", "user"), ttl: duration }) }),
      fc.constant({ useSourceIp: true }),
      fc.constantFrom("q", "id").map((q) => ({ httpQueryParameterName: q })),
    ).map((consistentHash) => ({ consistentHash })),
  ),
  connectionPool: fc.record({
    tcp: fc.record({ maxConnections: fc.integer({ min: 1, max: 1000 }), connectTimeout: duration }, {
      requiredKeys: [],
    }),
    http: fc.record({
      http1MaxPendingRequests: fc.integer({ min: 1, max: 1000 }),
      http2MaxRequests: fc.integer({ min: 1, max: 1000 }),
      maxRequestsPerConnection: fc.integer({ min: 1, max: 100 }),
      maxRetries: fc.integer({ min: 0, max: 10 }),
      idleTimeout: duration,
    }, { requiredKeys: [] }),
  }, { requiredKeys: [] }).filter((pool) => Object.keys(pool).length > 0),
  outlierDetection: fc.record({
    consecutive5xxErrors: fc.integer({ min: 1, max: 10 }),
    interval: duration,
    baseEjectionTime: duration,
    maxEjectionPercent: fc.integer({ min: 1, max: 100 }),
  }, { requiredKeys: [] }),
  tls: fc.oneof(
    fc.constantFrom("DISABLE", "ISTIO_MUTUAL").map((mode) => ({ mode })),
    fc.constant({ mode: "SIMPLE", sni: "backend.example" }),
  ),
}, { requiredKeys: [] });

function destinationRuleArb(s: Service): fc.Arbitrary<Doc> {
  return fc.record({
    trafficPolicy: trafficPolicyArb,
    subsets: fc.constant([
      { name: "v1", labels: { version: "v1" } },
      { name: "v2", labels: { version: "v2" } },
    ]),
    subsetPolicy: fc.option(trafficPolicyArb, { nil: undefined }),
    portPolicy: fc.option(trafficPolicyArb, { nil: undefined }),
  }, { requiredKeys: ["subsets"] }).map((r) => ({
    apiVersion: "networking.istio.io/v1",
    kind: "DestinationRule",
    metadata: { name: s.name, namespace: s.namespace },
    spec: {
      host: s.host,
      ...(r.trafficPolicy || r.portPolicy
        ? {
          trafficPolicy: {
            ...(r.trafficPolicy ?? {}),
            ...(r.portPolicy && Object.keys(portPolicyParts(r.portPolicy)).length > 0
              ? {
                portLevelSettings: [{
                  port: { number: s.ports[0]!.number },
                  ...portPolicyParts(r.portPolicy),
                }],
              }
              : {}),
          },
        }
        : {}),
      subsets: r.subsets.map((
        sub,
        i,
      ) => (i === 0 && r.subsetPolicy ? { ...sub, trafficPolicy: r.subsetPolicy } : sub)),
    },
  }));
}

/** The parts of a traffic policy a port-level setting may hold, unset ones left out. */
function portPolicyParts(policy: Record<string, unknown>): Record<string, unknown> {
  const { loadBalancer, connectionPool, outlierDetection, tls } = policy;
  const out = { loadBalancer, connectionPool, outlierDetection, tls };
  return Object.fromEntries(Object.entries(out).filter(([, v]) => v !== undefined));
}

const isHttp = (p: Port) => ["HTTP", "HTTP2", "GRPC"].includes(p.protocol);

function destinationArb(services: Service[], want: (p: Port) => boolean): fc.Arbitrary<Doc | undefined> {
  const targets = services.flatMap((s) => s.ports.filter(want).map((p) => ({ s, p })));
  if (targets.length === 0) return fc.constant(undefined);
  return fc.record({
    t: fc.constantFrom(...targets),
    subset: fc.constantFrom(undefined, "v1", "v2"),
  }).map(({ t, subset }) => ({
    host: t.s.host,
    port: { number: t.p.number },
    ...(subset ? { subset } : {}),
  }));
}

function weightedArb(services: Service[], want: (p: Port) => boolean): fc.Arbitrary<Doc[] | undefined> {
  return fc.array(destinationArb(services, want), { minLength: 1, maxLength: 3 }).chain(
    (ds): fc.Arbitrary<Doc[] | undefined> => {
      const dests = ds.filter((d): d is Doc => d !== undefined);
      if (dests.length === 0) return fc.constant(undefined);
      if (dests.length === 1) return fc.constant([{ destination: dests[0]! }]);
      return fc.integer({ min: 0, max: 100 }).map((w) => {
        const weights = dests.length === 2 ? [w, 100 - w] : [w, 0, 100 - w];
        return dests.map((d, i) => ({ destination: d, weight: weights[i]! }));
      });
    },
  );
}

const httpMatchArb = fc.record({
  uri: uriMatch,
  headers: fc.dictionary(headerName, stringMatch, { maxKeys: 2 }),
  queryParams: fc.dictionary(fc.constantFrom("q", "debug"), stringMatch, { maxKeys: 1 }),
  method: fc.constantFrom("GET", "POST").map((m) => ({ exact: m })),
  authority: fc.constantFrom("api.example.com", "api").map((a) => ({ prefix: a })),
  ignoreUriCase: fc.boolean(),
  withoutHeaders: fc.dictionary(fc.constantFrom("x-skip"), stringMatch, { minKeys: 1, maxKeys: 1 }),
  sourceLabels: fc.constant({ app: "svc0" }),
  name: fc.constantFrom("m1", "m2"),
}, { requiredKeys: [] });

const headersArb = fc.record({
  request: fc.record({
    set: fc.dictionary(headerName, headerValue, { maxKeys: 2 }),
    add: fc.dictionary(headerName, headerValue, { maxKeys: 2 }),
    remove: fc.uniqueArray(headerName, { maxLength: 2 }),
  }, { requiredKeys: [] }),
  response: fc.record({
    set: fc.dictionary(headerName, headerValue, { maxKeys: 2 }),
    remove: fc.uniqueArray(headerName, { maxLength: 2 }),
  }, { requiredKeys: [] }),
}, { requiredKeys: [] });

function httpRouteArb(services: Service[]): fc.Arbitrary<Doc> {
  const action = fc.oneof(
    weightedArb(services, isHttp).map((route) => (route ? { route } : { directResponse: { status: 503 } })),
    fc.record({
      uri: fc.constantFrom("/new", "/"),
      authority: fc.constantFrom("api.example.com"),
      redirectCode: fc.constantFrom(301, 302, 308),
      scheme: fc.constantFrom("https", "http"),
    }, { requiredKeys: [] }).filter((r) =>
      r.uri !== undefined || r.authority !== undefined || r.scheme !== undefined
    )
      .map((redirect) => ({ redirect })),
    fc.record({
      status: fc.constantFrom(200, 404, 410, 503),
      body: fc.constantFrom({ string: "gone\n" }, { bytes: "SSdtIGEgdGVhcG90" }),
    }, { requiredKeys: ["status"] }).map((directResponse) => ({ directResponse })),
  );
  return fc.record({
    name: fc.constantFrom("r1", "r2", "main"),
    match: fc.array(httpMatchArb, { maxLength: 2 }),
    action,
    timeout: duration,
    retries: fc.oneof(
      fc.constant({ attempts: 0 }),
      fc.record({
        attempts: fc.integer({ min: 1, max: 5 }),
        perTryTimeout: duration,
        retryOn: fc.constantFrom("5xx", "gateway-error,connect-failure", "reset,retriable-status-codes,503"),
      }, { requiredKeys: ["attempts"] }),
    ),
    fault: fc.record({
      delay: fc.record({
        fixedDelay: duration,
        percentage: fc.record({ value: fc.double({ min: 0, max: 100, noNaN: true }) }),
      }),
      abort: fc.oneof(
        fc.record({
          httpStatus: fc.constantFrom(400, 503),
          percentage: fc.record({ value: fc.constantFrom(0.1, 50, 100) }),
        }),
        fc.record({ grpcStatus: fc.constantFrom("UNAVAILABLE", "DEADLINE_EXCEEDED") }),
      ),
    }, { requiredKeys: [] }).filter((f) => Object.keys(f).length > 0),
    rewrite: fc.oneof(
      fc.record({ uri: fc.constantFrom("/", "/v2/"), authority: fc.constantFrom("api.internal") }, {
        requiredKeys: [],
      })
        .filter((r) => Object.keys(r).length > 0),
      fc.constant({ uriRegexRewrite: { match: "^/a/(.*)$", rewrite: "/b/\\1" } }),
    ),
    mirror: destinationArb(services, isHttp),
    mirrorPercentage: fc.constantFrom(0, 10, 100).map((value) => ({ value })),
    corsPolicy: fc.record({
      allowOrigins: fc.constant([{ exact: "https://a.example" }, { regex: "https://.*\\.b\\.example" }]),
      allowMethods: fc.constant(["GET", "POST"]),
      allowHeaders: fc.constant(["x-user"]),
      maxAge: fc.constantFrom("1s", "30s", "1m"),
      allowCredentials: fc.boolean(),
    }, { requiredKeys: [] }),
    headers: headersArb,
  }, { requiredKeys: ["action"] }).map((r) => {
    const { action: a, mirror, mirrorPercentage, ...rest } = r;
    const isRoute = "route" in a;
    // Istio: rewrite, mirror, fault, retries, timeout, CORS only with a route; not with redirect or direct response.
    if (!isRoute) {
      const { name, match, headers } = rest;
      return {
        ...(name ? { name } : {}),
        ...(match ? { match } : {}),
        ...a,
        ...(headers ? { headers } : {}),
      };
    }
    return {
      ...rest,
      ...a,
      ...(mirror ? { mirror, ...(mirrorPercentage ? { mirrorPercentage } : {}) } : {}),
    };
  });
}

function tcpRoutesArb(services: Service[]): fc.Arbitrary<Doc[]> {
  const tcp = (p: Port) => p.protocol === "TCP";
  return fc.array(
    fc.record({
      port: fc.constantFrom(...PORT_NUMBERS),
      subnet: fc.constantFrom(undefined, "10.0.0.0/8"),
      route: weightedArb(services, tcp),
    }),
    { maxLength: 2 },
  ).map((rs) =>
    rs.filter((r) => r.route).map((r) => ({
      match: [{ port: r.port, ...(r.subnet ? { destinationSubnets: [r.subnet] } : {}) }],
      route: r.route,
    }))
  );
}

function tlsRoutesArb(services: Service[], hosts: string[]): fc.Arbitrary<Doc[]> {
  const tls = (p: Port) => p.protocol === "TLS" || p.protocol === "HTTPS";
  return fc.array(
    fc.record({ port: fc.constantFrom(443, 9000), route: weightedArb(services, tls) }),
    { maxLength: 2 },
  ).map((rs) =>
    rs.filter((r) => r.route).map((r) => ({ match: [{ port: r.port, sniHosts: hosts }], route: r.route }))
  );
}

function virtualServiceArb(services: Service[], s: Service, gateway: boolean): fc.Arbitrary<Doc> {
  const hosts = gateway ? ["*.example.com", "shop.example.com"] : [s.host];
  return fc.record({
    http: fc.array(httpRouteArb(services), { minLength: 1, maxLength: 3 }),
    tcp: gateway ? fc.constant([]) : tcpRoutesArb(services),
    tls: gateway ? fc.constant([]) : tlsRoutesArb(services, [s.host]),
  }).map((r) => ({
    apiVersion: "networking.istio.io/v1",
    kind: "VirtualService",
    metadata: { name: gateway ? `${s.name}-gw` : s.name, namespace: gateway ? "web" : s.namespace },
    spec: {
      hosts: gateway ? [hosts[0]] : hosts,
      ...(gateway ? { gateways: ["web/ingress"] } : {}),
      ...(r.http.length ? { http: r.http } : {}),
      ...(r.tcp.length ? { tcp: r.tcp } : {}),
      ...(r.tls.length ? { tls: r.tls } : {}),
    },
  }));
}

const gatewayArb: fc.Arbitrary<Doc> = fc.record({
  http: fc.boolean(),
  https: fc.constantFrom("SIMPLE", "MUTUAL", "ISTIO_MUTUAL", "PASSTHROUGH"),
  tcp: fc.boolean(),
}).map((g) => ({
  apiVersion: "networking.istio.io/v1",
  kind: "Gateway",
  metadata: { name: "ingress", namespace: "web" },
  spec: {
    selector: { istio: "ingressgateway" },
    servers: [
      ...(g.http ? [{ port: { number: 80, name: "http", protocol: "HTTP" }, hosts: ["*.example.com"] }] : []),
      {
        port: { number: 443, name: "https", protocol: g.https === "PASSTHROUGH" ? "TLS" : "HTTPS" },
        hosts: ["*.example.com"],
        tls: g.https === "SIMPLE" || g.https === "MUTUAL"
          ? { mode: g.https, credentialName: "shop-cert" }
          : { mode: g.https },
      },
      ...(g.tcp ? [{ port: { number: 9000, name: "tcp", protocol: "TCP" }, hosts: ["*"] }] : []),
    ],
  },
}));

const sidecarArb: fc.Arbitrary<Doc> = fc.record({
  hosts: fc.constantFrom(["./*"], ["./*", "web/*"], ["*/*"]),
  outbound: fc.constantFrom("REGISTRY_ONLY", "ALLOW_ANY"),
}).map((s) => ({
  apiVersion: "networking.istio.io/v1",
  kind: "Sidecar",
  metadata: { name: "default", namespace: "app" },
  spec: { egress: [{ hosts: s.hosts }], outboundTrafficPolicy: { mode: s.outbound } },
}));

const peerAuthArb: fc.Arbitrary<Doc> = fc.record({
  mode: fc.constantFrom("STRICT", "PERMISSIVE", "DISABLE"),
  port: fc.option(
    fc.record({ port: fc.constantFrom(...PORT_NUMBERS), mode: fc.constantFrom("STRICT", "DISABLE") }),
    { nil: undefined },
  ),
}).map((p) => ({
  apiVersion: "security.istio.io/v1",
  kind: "PeerAuthentication",
  metadata: { name: "mtls", namespace: "app" },
  spec: {
    mtls: { mode: p.mode },
    ...(p.port
      ? {
        selector: { matchLabels: { app: "svc0" } },
        portLevelMtls: { [String(p.port.port)]: { mode: p.port.mode } },
      }
      : {}),
  },
}));

const authzRuleArb = fc.record({
  from: fc.array(
    fc.oneof(
      fc.constant({ source: { principals: ["cluster.local/ns/web/sa/client"] } }),
      fc.constant({ source: { namespaces: ["web"], notIpBlocks: ["10.9.0.0/16"] } }),
      fc.constant({ source: { requestPrincipals: ["issuer.example/*"] } }),
    ),
    { minLength: 1, maxLength: 1 },
  ),
  to: fc.array(
    fc.record({
      operation: fc.record({
        methods: fc.constant(["GET"]),
        paths: fc.constantFrom(["/api/*"], ["/exact"], ["*/suffix"]),
        ports: fc.constant(["80", "9080"]),
        notPaths: fc.constant(["/admin"]),
        hosts: fc.constant(["api.example.com"]),
      }, { requiredKeys: [] }),
    }),
    { minLength: 1, maxLength: 1 },
  ),
  when: fc.array(
    fc.oneof(
      fc.constant({ key: "request.headers[x-user]", values: ["jason"] }),
      fc.constant({ key: "source.ip", values: ["10.0.0.0/8"] }),
      fc.constant({ key: "request.auth.claims[groups]", values: ["admin"] }),
    ),
    { minLength: 1, maxLength: 1 },
  ),
}, { requiredKeys: [] });

const authzArb = (index: number): fc.Arbitrary<Doc> =>
  fc.record({
    action: fc.constantFrom("ALLOW", "DENY", "AUDIT"),
    rules: fc.array(authzRuleArb, { minLength: 1, maxLength: 2 }),
  }).map((a) => ({
    apiVersion: "security.istio.io/v1",
    kind: "AuthorizationPolicy",
    metadata: { name: `authz-${index}`, namespace: "app" },
    spec: { action: a.action, rules: a.rules },
  }));

const requestAuthArb: fc.Arbitrary<Doc> = fc.record({
  forward: fc.boolean(),
  fromHeader: fc.boolean(),
}).map((r) => ({
  apiVersion: "security.istio.io/v1",
  kind: "RequestAuthentication",
  metadata: { name: "jwt", namespace: "web" },
  spec: {
    selector: { matchLabels: { istio: "ingressgateway" } },
    jwtRules: [{
      issuer: "issuer.example",
      jwksUri: "https://issuer.example/jwks.json",
      forwardOriginalToken: r.forward,
      ...(r.fromHeader ? { fromHeaders: [{ name: "x-jwt", prefix: "Bearer " }] } : {}),
    }],
  },
}));

/** A random mesh: the config documents of one Istio mesh. */
const meshArb: fc.Arbitrary<Doc[]> = servicesArb.chain((services) =>
  fc.record({
    drs: fc.tuple(...services.map((s) => fc.option(destinationRuleArb(s), { nil: undefined }))),
    vss: fc.tuple(
      ...services.map((s) => fc.option(virtualServiceArb(services, s, false), { nil: undefined })),
    ),
    gatewayVs: fc.option(virtualServiceArb(services, services[0]!, true), { nil: undefined }),
    gateway: fc.option(gatewayArb, { nil: undefined }),
    sidecar: fc.option(sidecarArb, { nil: undefined }),
    peer: fc.option(peerAuthArb, { nil: undefined }),
    authz: fc.tuple(fc.option(authzArb(0), { nil: undefined }), fc.option(authzArb(1), { nil: undefined })),
    reqAuth: fc.option(requestAuthArb, { nil: undefined }),
  }).map((m) => [
    ...services.map(serviceEntry),
    ...[...m.drs, ...m.vss, m.gatewayVs, m.gateway, m.sidecar, m.peer, ...m.authz, m.reqAuth]
      .filter((d): d is Doc => d !== undefined),
  ])
);

// ---------------------------------------------------------------- the pipeline

/** The proxies every mesh is translated for. */
const PROXIES: readonly Proxy[] = [
  proxyFromNode({
    id: "sidecar~10.1.0.1~svc0-v1.app~app.svc.cluster.local",
    metadata: { NAMESPACE: "app", LABELS: { app: "svc0", version: "v1" }, SERVICE_ACCOUNT: "svc0" },
  }),
  proxyFromNode({
    id: "router~10.9.0.1~ingress-1.web~web.svc.cluster.local",
    metadata: { NAMESPACE: "web", LABELS: { istio: "ingressgateway" } },
  }),
  proxyFromNode({
    id: "proxyless~10.9.0.2~client-1.app~app.svc.cluster.local",
    metadata: { NAMESPACE: "app", LABELS: { app: "client" }, GENERATOR: "grpc" },
  }),
];

interface Loaded {
  readonly push: PushContext;
  readonly secretNames: Set<string>;
  readonly accepted: number;
  readonly rejected: string[];
}

/** Config documents (YAML text) through galley's store: the valid ones form the PushContext. */
function load(yamlText: string): Loaded {
  const store = createConfigStore({ logger: createLogger({ write: () => {} }) });
  store.sink("property").replace([{ origin: "mesh.yaml", content: yamlText }]);
  const status = store.status();
  const rejected = [
    ...status.resources.filter((r) => r.state === "rejected").flatMap((r) => r.errors),
    ...status.origins.flatMap((o) => o.errors),
  ];
  const snapshot = store.snapshot();
  return {
    push: createPushContext({ config: snapshot }),
    secretNames: configuredSecretNames(snapshot),
    accepted: status.resources.length - status.resources.filter((r) => r.state === "rejected").length,
    rejected,
  };
}

/** Every violation of every proxy's translated set. */
function violations(loaded: Loaded): Violation[] {
  const out: Violation[] = [];
  for (const proxy of PROXIES) {
    const proxyKind = proxyKindOf(proxy);
    const set = proxyKind === "proxyless"
      ? {
        clusters: buildGrpcClusters(loaded.push, proxy),
        endpoints: buildGrpcEndpoints(loaded.push, proxy, "*"),
        listeners: buildGrpcListeners(loaded.push, proxy, "*"),
        routes: buildGrpcRoutes(loaded.push, proxy, "*"),
      }
      : {
        clusters: buildClusters(loaded.push, proxy),
        endpoints: buildEndpoints(loaded.push, proxy),
        listeners: buildListeners(loaded.push, proxy),
        routes: buildRoutes(loaded.push, proxy),
      };
    out.push(...checkEnvoySet(set, { proxyKind, secretNames: loaded.secretNames }));
  }
  return out;
}

/** Documents as YAML for the store; JSON is YAML and much faster to write than block style. */
const toYaml = (docs: Doc[]) => docs.map((d) => JSON.stringify(d)).join("\n---\n");
/** Documents as block-style YAML, for people reading a failure. */
const readable = (docs: Doc[]) => docs.map((d) => stringify(d)).join("---\n");
const show = (vs: Violation[]) => vs.map((v) => `${v.rule} ${v.resource} ${v.path}: ${v.message}`).join("\n");

const REGRESSIONS = join(import.meta.dir, "regressions");

describe("translation meets Envoy's rules for random valid meshes", () => {
  const files = existsSync(REGRESSIONS) ? readdirSync(REGRESSIONS) : [];
  for (const file of files.filter((f) => f.endsWith(".yaml")).sort()) {
    test(`regression ${file}: no violations`, () => {
      const loaded = load(readFileSync(join(REGRESSIONS, file), "utf8"));
      expect(loaded.rejected).toEqual([]);
      expect(show(violations(loaded))).toBe("");
    });
  }

  test(`${NUM_RUNS} random meshes: zero violations for a sidecar, a gateway and a proxyless client`, () => {
    const started = performance.now();
    let accepted = 0;
    let rejected = 0;
    const reasons = new Map<string, number>();
    fc.assert(
      fc.property(meshArb, (docs) => {
        const loaded = load(toYaml(docs));
        accepted += loaded.accepted;
        rejected += loaded.rejected.length;
        for (const r of loaded.rejected) {
          const reason = r.replace(/^[^ ]+ [^ ]+ /, "");
          reasons.set(reason, (reasons.get(reason) ?? 0) + 1);
        }
        const vs = violations(loaded);
        if (vs.length > 0) throw new Error(`${show(vs)}\n--- mesh:\n${readable(docs)}`);
      }),
      { seed: SEED, numRuns: NUM_RUNS, endOnFailure: false },
    );
    if (process.env.PROPERTY_VERBOSE) {
      const seconds = ((performance.now() - started) / 1000).toFixed(1);
      console.log(`${NUM_RUNS} meshes in ${seconds} s; documents accepted ${accepted}, rejected ${rejected}`);
      console.log(
        [...reasons].sort((a, b) => b[1] - a[1]).slice(0, 20).map(([r, n]) => `${n} ${r}`).join("\n"),
      );
    }
    // The generator aims at valid meshes: most documents must pass validation, or the property
    // would test little.
    expect(rejected).toBeLessThan(accepted / 10);
  }, 300_000);
});
