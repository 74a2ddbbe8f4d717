/**
 * The platform registry framework: `--registry` parsing, the collision rule between config and
 * registries, guarded reads of registries that fail, and what /debug/registryz and
 * `meshd proxy-status` show. The registries here are a small in-memory implementation of the
 * `PlatformRegistry` interface; the adapters have their own tests under tests/registry/.
 */
import { afterAll, describe, expect, test } from "bun:test";
import { mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createConfigStore } from "../../../mod/galley/store.ts";
import type { ConfigSnapshot } from "../../../mod/galley/mod.ts";
import { createPushContext, type PushContext } from "../../../mod/pilot/model/push_context.ts";
import type { RegistryState } from "../../../mod/pilot/model/registry.ts";
import type { Endpoint, Service } from "../../../mod/pilot/model/service.ts";
import { registryRows, table } from "../../../mod/pilot/cli.ts";
import {
  applyCollisionRule,
  createPlatformRegistries,
  createPlatformRegistrySet,
  guardedWatchers,
  parseRegistries,
  parseRegistry,
  type PlatformKind,
  type PlatformRegistry,
  registriesVersion,
  type RegistryStatus,
} from "../../../mod/pilot/registry/mod.ts";
import { debouncePushes } from "../../../mod/pilot/xds/debounce.ts";
import type { PushRequest } from "../../../mod/pilot/xds/push_request.ts";
import { createManualClock } from "../../../mod/shared/clock.ts";
import { UsageError } from "../../../mod/shared/errors.ts";
import { createLogger } from "../../../mod/shared/logger.ts";
import { type MeshdProcess, runMeshdCommand, startMeshd } from "../../e2e/_meshd.ts";

const quiet = createLogger({ write: () => {} });

/** A service and one endpoint per address, mapped as the adapters map theirs. */
function serviceState(source: string, host: string, addresses: readonly string[]): RegistryState {
  const port = { name: "http", number: 8080, protocol: "HTTP" as const };
  const service: Service = {
    hostname: host,
    namespace: "default",
    ports: [port],
    addresses: [],
    resolution: "STATIC",
    location: "MESH_INTERNAL",
    exportTo: ["*"],
    subjectAltNames: [],
    source,
  };
  const endpoints: Endpoint[] = addresses.map((address) => ({
    hostname: host,
    namespace: "default",
    servicePort: port,
    address,
    port: 8080,
    labels: {},
    weight: 1,
    healthy: true,
    tlsMode: "disabled",
    source,
  }));
  return { services: [service], endpoints, workloads: [] };
}

function merged(...states: RegistryState[]): RegistryState {
  return {
    services: states.flatMap((s) => s.services),
    endpoints: states.flatMap((s) => s.endpoints),
    workloads: states.flatMap((s) => s.workloads),
  };
}

/** An in-memory PlatformRegistry: its view is set by the test; `failing` makes state() throw. */
class MemoryRegistry implements PlatformRegistry {
  readonly kind: PlatformKind;
  readonly name: string;
  failing: Error | undefined;
  stopped = false;
  private current: RegistryState = { services: [], endpoints: [], workloads: [] };
  private readonly listeners = new Set<() => void>();
  constructor(kind: PlatformKind, name: string) {
    this.kind = kind;
    this.name = name;
  }
  set(state: RegistryState): void {
    this.current = state;
    for (const l of this.listeners) l();
  }
  state(): RegistryState {
    if (this.failing) throw this.failing;
    return this.current;
  }
  watch(listener: () => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }
  status(): RegistryStatus {
    return {
      name: this.name,
      kind: this.kind,
      address: this.name,
      synced: true,
      stale: false,
      services: this.current.services.length,
      endpoints: this.current.endpoints.length,
    };
  }
  stop(): Promise<void> {
    this.stopped = true;
    return Promise.resolve();
  }
}

/** Addresses of the pushed endpoints of `host` on `port` (service port), sorted. */
function addressesOf(push: PushContext, host: string, port: number): string[] {
  const services = push.services.filter((s) => s.hostname === host);
  return services.flatMap((s) => push.endpoints(s, port).map((e) => e.address)).sort();
}

function snapshot(...yaml: string[]): ConfigSnapshot {
  const store = createConfigStore({ logger: quiet });
  store.sink("test").replace(yaml.map((content, i) => ({ origin: `input-${i}.yaml`, content })));
  return store.snapshot();
}

const CONSUL_WEB_ENTRY = `
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: { name: web, namespace: default }
spec:
  hosts: [web.service.consul]
  location: MESH_INTERNAL
  resolution: STATIC
  ports: [{ number: 80, name: http, protocol: HTTP }]
  endpoints: [{ address: 10.9.9.9 }]
`;

describe("parseRegistry()", () => {
  test("reads the three kinds and names each without credentials", () => {
    const consul = parseRegistry("consul://127.0.0.1:8500?dc=dc1&token-file=/etc/consul/token");
    expect(consul.kind).toBe("consul");
    expect(consul.url.hostname).toBe("127.0.0.1");
    expect(consul.url.searchParams.get("dc")).toBe("dc1");
    expect(consul.name).toBe("consul://127.0.0.1:8500?dc=dc1&token-file=/etc/consul/token");
    const eureka = parseRegistry("eureka://eureka.local:8761/eureka");
    expect([eureka.kind, eureka.url.pathname]).toEqual(["eureka", "/eureka"]);
    expect(parseRegistry("kubernetes")).toMatchObject({ kind: "kubernetes", name: "kubernetes" });
    const kube = parseRegistry("kubernetes://?kubeconfig=/root/.kube/config");
    expect(kube.kind).toBe("kubernetes");
    expect(kube.url.searchParams.get("kubeconfig")).toBe("/root/.kube/config");
    expect(parseRegistry("consul://[::1]:8500").url.hostname).toBe("[::1]");
    expect(parseRegistry("consul://user@h:8500").name).toBe("consul://h:8500");
  });

  test("bad values are usage errors naming the flag and the value", () => {
    const cases: Array<[string, RegExp]> = [
      ["zookeeper://h:2181", /unknown registry kind "zookeeper"/],
      ["consul", /not a registry URL/],
      ["consul://", /no host given/],
      ["consul:h:8500", /want consul:\/\//],
      ["eureka:///eureka", /no host given/],
      ["consul://u:secret@h:8500", /credentials do not belong in the URL/],
      ["consul://h:8500/v1", /has no path/],
      ["consul://h:8500?dc=", /dc= needs a value/],
      ["kubernetes://10.0.0.1:6443", /service account or from \?kubeconfig/],
      ["kubernetes://?kubeconfig=", /kubeconfig= needs a file path/],
      ["consul://h:99999", /not a registry URL/],
    ];
    for (const [value, why] of cases) {
      let err: unknown;
      try {
        parseRegistry(value);
      } catch (e) {
        err = e;
      }
      expect(err, value).toBeInstanceOf(UsageError);
      const message = (err as Error).message;
      expect(message, value).toStartWith(`--registry ${JSON.stringify(value)}: `);
      expect(message, value).toMatch(why);
    }
  });

  test("the same registry twice is refused; the order given is kept", () => {
    expect(() => parseRegistries(["consul://a:8500", "consul://a:8500"])).toThrow(/given twice/);
    expect(parseRegistries(["eureka://e:8761/eureka", "consul://a:8500", "kubernetes"]).map((t) => t.kind))
      .toEqual(["eureka", "consul", "kubernetes"]);
  });
});

describe("applyCollisionRule()", () => {
  test("config wins over every registry; the first registry wins over later ones", () => {
    const consul = merged(
      serviceState("consul:c/web", "web.service.consul", ["10.0.0.1"]),
      serviceState("consul:c/api", "api.shared", ["10.0.0.2"]),
    );
    const eureka = merged(
      serviceState("eureka:e/api", "api.shared", ["10.1.0.2"]),
      serviceState("eureka:e/orders", "orders", ["10.1.0.3"]),
    );
    const [c, e] = applyCollisionRule(new Set(["web.service.consul"]), [consul, eureka]);
    expect(c!.shadowed).toEqual(["web.service.consul"]);
    expect(c!.state.services.map((s) => s.hostname)).toEqual(["api.shared"]);
    expect(c!.state.endpoints.map((x) => x.address)).toEqual(["10.0.0.2"]);
    expect(e!.shadowed).toEqual(["api.shared"]);
    expect(e!.state.services.map((s) => s.hostname)).toEqual(["orders"]);
    expect(e!.state.endpoints.map((x) => x.address)).toEqual(["10.1.0.3"]);
  });

  test("a registry that loses nothing is passed on as the same object", () => {
    const s = serviceState("consul:c/web", "web.service.consul", ["10.0.0.1"]);
    const [c] = applyCollisionRule(new Set(), [s]);
    expect(c!.state).toBe(s);
    expect(c!.shadowed).toEqual([]);
  });

  test("a host an earlier registry shadowed by config still belongs to config, not the later one", () => {
    const a = serviceState("consul:a/web", "web", ["10.0.0.1"]);
    const b = serviceState("eureka:b/web", "web", ["10.0.0.2"]);
    const out = applyCollisionRule(new Set(["web"]), [a, b]);
    expect(out.map((o) => o.shadowed)).toEqual([["web"], ["web"]]);
    expect(out.flatMap((o) => o.state.endpoints)).toEqual([]);
  });
});

describe("createPlatformRegistrySet()", () => {
  test("pushes config's endpoints for a host config declares, and reports the registry's as shadowed", () => {
    const consul = new MemoryRegistry("consul", "consul://c:8500");
    const eureka = new MemoryRegistry("eureka", "eureka://e:8761/eureka");
    consul.set(merged(
      serviceState("consul:c/web", "web.service.consul", ["10.0.0.1"]),
      serviceState("consul:c/api", "api.shared", ["10.0.0.2"]),
    ));
    eureka.set(serviceState("eureka:e/api", "api.shared", ["10.1.0.2"]));
    const set = createPlatformRegistrySet([consul, eureka], { logger: quiet, clock: createManualClock() });
    const config = snapshot(CONSUL_WEB_ENTRY);
    const push = createPushContext({ config, registries: set.states(config) });
    const addresses = (host: string, port: number) => addressesOf(push, host, port);
    expect(addresses("web.service.consul", 80)).toEqual(["10.9.9.9"]);
    expect(addresses("web.service.consul", 8080)).toEqual([]);
    expect(addresses("api.shared", 8080)).toEqual(["10.0.0.2"]);
    const status = set.statuses();
    expect(status.map((s) => [s.name, s.shadowed])).toEqual([
      ["consul://c:8500", ["web.service.consul"]],
      ["eureka://e:8761/eureka", ["api.shared"]],
    ]);
  });

  test("a registry whose state() throws keeps its last good view, reported stale; the others go on", () => {
    const clock = createManualClock(1_000);
    const broken = new MemoryRegistry("consul", "consul://c:8500");
    const healthy = new MemoryRegistry("eureka", "eureka://e:8761/eureka");
    broken.set(serviceState("consul:c/web", "web.service.consul", ["10.0.0.1"]));
    healthy.set(serviceState("eureka:e/orders", "orders", ["10.1.0.3"]));
    const set = createPlatformRegistrySet([broken, healthy], { logger: quiet, clock });
    const config = snapshot();
    set.states(config);

    broken.failing = new Error("cache corrupted");
    healthy.set(serviceState("eureka:e/orders", "orders", ["10.1.0.3", "10.1.0.4"]));
    const push = createPushContext({ config, registries: set.states(config) });
    expect(addressesOf(push, "web.service.consul", 8080)).toEqual(["10.0.0.1"]);
    expect(addressesOf(push, "orders", 8080)).toEqual(["10.1.0.3", "10.1.0.4"]);
    const [b] = set.statuses();
    expect(b).toMatchObject({
      stale: true,
      lastError: "state() failed: cache corrupted",
      lastErrorMs: 1_000,
    });

    broken.failing = undefined;
    set.states(config);
    expect(set.statuses()[0]!.stale).toBe(false);
    expect(set.statuses()[0]!.lastError).toBeUndefined();
  });

  test("a registry that throws before its first view contributes nothing and the push still builds", () => {
    const broken = new MemoryRegistry("kubernetes", "kubernetes");
    broken.failing = new Error("no view yet");
    const set = createPlatformRegistrySet([broken], { logger: quiet, clock: createManualClock() });
    const config = snapshot();
    const states = set.states(config);
    expect(states).toEqual([{ services: [], endpoints: [], workloads: [] }]);
    expect(() => createPushContext({ config, registries: states })).not.toThrow();
  });

  test("a registry whose status() throws is still listed, stale, with the error", () => {
    const r = new MemoryRegistry("eureka", "eureka://e:8761/eureka");
    r.status = () => {
      throw new Error("boom");
    };
    const set = createPlatformRegistrySet([r], { logger: quiet, clock: createManualClock() });
    expect(set.statuses()[0]).toMatchObject({
      name: "eureka://e:8761/eureka",
      kind: "eureka",
      stale: true,
      lastError: "status() failed: boom",
    });
  });

  test("stop() stops every registry", async () => {
    const a = new MemoryRegistry("consul", "a");
    const b = new MemoryRegistry("eureka", "b");
    await createPlatformRegistrySet([a, b], { logger: quiet, clock: createManualClock() }).stop();
    expect([a.stopped, b.stopped]).toEqual([true, true]);
  });
});

describe("pushes from registries", () => {
  test("a registry change reaches a debounced push even while another registry throws", () => {
    const clock = createManualClock();
    const broken = new MemoryRegistry("consul", "consul://c:8500");
    const live = new MemoryRegistry("eureka", "eureka://e:8761/eureka");
    live.set(serviceState("eureka:e/orders", "orders", ["10.1.0.3"]));
    broken.watch = () => {
      throw new Error("watch refused");
    };
    broken.failing = new Error("down");
    const set = createPlatformRegistrySet([broken, live], { logger: quiet, clock });
    const config = snapshot();
    const pushes: Array<{ request: PushRequest; endpoints: string[] }> = [];
    const debouncer = debouncePushes({
      clock,
      quietMs: 100,
      maxMs: 1_000,
      store: { subscribe: () => () => {} },
      registries: guardedWatchers(set.registries, quiet),
      push(request) {
        const states = set.states(config);
        const push = createPushContext({
          config,
          registries: states,
          registryVersion: registriesVersion(states),
        });
        pushes.push({ request, endpoints: addressesOf(push, "orders", 8080) });
      },
    });
    live.set(serviceState("eureka:e/orders", "orders", ["10.1.0.3", "10.1.0.4"]));
    clock.advance(100);
    expect(pushes.map((p) => p.endpoints)).toEqual([["10.1.0.3", "10.1.0.4"]]);
    expect(pushes[0]!.request.full).toBe(true);
    debouncer.stop();
  });

  test("registriesVersion() changes with a registry's content and not with a copy of the same state", () => {
    const a = serviceState("consul:c/web", "web", ["10.0.0.1"]);
    const b = serviceState("consul:c/web", "web", ["10.0.0.2"]);
    expect(registriesVersion([a])).toBe(registriesVersion([{ ...a }]));
    expect(registriesVersion([a])).not.toBe(registriesVersion([b]));
  });
});

describe("createPlatformRegistries()", () => {
  test("builds one registry per value in order through each kind's factory", async () => {
    const seen: string[] = [];
    const factory = (kind: PlatformKind) => (opts: { url: URL }) => {
      seen.push(opts.url.href);
      return new MemoryRegistry(kind, opts.url.href);
    };
    const built = await createPlatformRegistries(
      parseRegistries(["eureka://e:8761/eureka", "consul://c:8500"]),
      {
        clock: createManualClock(),
        logger: quiet,
        factories: { consul: factory("consul"), eureka: factory("eureka") },
      },
    );
    expect(built.map((r) => r.kind)).toEqual(["eureka", "consul"]);
    expect(seen).toEqual(["eureka://e:8761/eureka", "consul://c:8500"]);
  });

  test("a factory refusing its URL is a usage error naming the value; those built are stopped", async () => {
    const first = new MemoryRegistry("consul", "consul://c:8500");
    const err = await createPlatformRegistries(
      parseRegistries(["consul://c:8500", "eureka://e:8761/eureka?bogus=1"]),
      {
        clock: createManualClock(),
        logger: quiet,
        factories: {
          consul: () => first,
          eureka: () => {
            throw new Error("unknown parameter bogus");
          },
        },
      },
    ).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(UsageError);
    expect((err as Error).message).toBe(
      '--registry "eureka://e:8761/eureka?bogus=1": unknown parameter bogus',
    );
    expect(first.stopped).toBe(true);
  });
});

describe("meshd proxy-status: registries", () => {
  test("registryRows() shows sync state, sizes and shadowed hosts", () => {
    const text = table(registryRows([
      {
        name: "consul://c:8500",
        kind: "consul",
        address: "c:8500",
        synced: true,
        stale: true,
        lastError: "GET /v1/catalog/services: HTTP 500",
        lastSyncMs: Date.UTC(2025, 0, 1),
        services: 3,
        endpoints: 7,
        shadowed: ["a.service.consul", "b.service.consul", "c.service.consul", "d.service.consul"],
      },
      {
        name: "kubernetes",
        kind: "kubernetes",
        address: "-",
        synced: false,
        stale: false,
        services: 0,
        endpoints: 0,
      },
    ]));
    const lines = text.trimEnd().split("\n");
    expect(lines[0]).toMatch(/^REGISTRY\s+KIND\s+SYNC\s+SERVICES\s+ENDPOINTS\s+LAST SYNC\s+SHADOWED$/);
    expect(lines[1]).toContain("STALE (GET /v1/catalog/services: HTTP 500)");
    expect(lines[1]).toContain("2025-01-01T00:00:00.000Z");
    expect(lines[1]).toContain("4 (a.service.consul, b.service.consul, c.service.consul, ...)");
    expect(lines[2]).toMatch(/^kubernetes\s+kubernetes\s+NOT SYNCED\s+0\s+0\s+-\s+-$/);
  });
});

describe("meshd serve --registry", () => {
  let meshd: MeshdProcess | undefined;
  afterAll(async () => {
    await meshd?.stop();
  });

  test("a bad --registry stops meshd serve with exit code 2 and names the value", async () => {
    const proc = Bun.spawn(
      [
        process.execPath,
        "main.ts",
        "serve",
        "--registry=consul://",
        "--admin-addr=127.0.0.1:0",
        "--grpc-addr=127.0.0.1:0",
        "--grpc-tls-addr=127.0.0.1:0",
        "--webhook-addr=127.0.0.1:0",
        `--data-dir=${mkdtempSync(join(tmpdir(), "meshd-registry-"))}`,
      ],
      { cwd: `${import.meta.dir}/../../..`, stdout: "pipe", stderr: "pipe", stdin: "ignore" },
    );
    const [stderr, code] = await Promise.all([new Response(proc.stderr).text(), proc.exited]);
    expect(code).toBe(2);
    expect(stderr).toContain('--registry "consul://": want consul://HOST:PORT (no host given)');
  });

  test("without --registry, /debug/registryz is an empty list and proxy-status -o json has registries: []", async () => {
    meshd = await startMeshd();
    const res = await fetch(`http://${meshd.adminAddr}/debug/registryz`);
    expect(res.status).toBe(200);
    expect(await res.json()).toEqual([]);
    const out = await runMeshdCommand(["proxy-status", `--admin-addr=${meshd.adminAddr}`, "-o", "json"]);
    expect(out.code).toBe(0);
    expect(JSON.parse(out.stdout).registries).toEqual([]);
  });
});
