/**
 * A Eureka server for tests, on 127.0.0.1, implementing the wire behaviour of the operations on
 * Netflix's "Eureka REST operations" wiki page (https://github.com/Netflix/eureka/wiki/Eureka-REST-operations)
 * under a path prefix (`/eureka/v2` as there, `/eureka` as Spring Cloud serves it):
 *
 * - `POST {prefix}/apps/APP` registers an instance (`{"instance": {...}}`), 204; 400 when hostName,
 *   ipAddr, app or dataCenterInfo is missing or the app differs from the path.
 * - `DELETE {prefix}/apps/APP/ID` cancels, 200 (404 when unknown).
 * - `PUT {prefix}/apps/APP/ID` is a heartbeat, 200 or 404.
 * - `PUT {prefix}/apps/APP/ID/status?value=S` overrides the status, `DELETE` of it removes the
 *   override (status becomes `value`, UNKNOWN without one); `PUT .../metadata?k=v` updates metadata.
 * - `GET {prefix}/apps`, `{prefix}/apps/APP`, `{prefix}/apps/APP/ID`, `{prefix}/instances/ID`.
 * - `GET {prefix}/apps/delta`, which the wiki does not list but every Eureka client reads (wiki
 *   page "Understanding eureka client server communication"): the instances changed within the
 *   retention window (Eureka's recently-changed queue, three minutes by default), each with its
 *   `actionType`, and `apps__hashcode`, the reconcile hash code of the whole registry.
 *
 * Bodies are JSON in the shape of Eureka's Jackson codec (`EurekaJacksonCodec`: `applications`
 * with `versions__delta`, `apps__hashcode` and `application[].instance[]`, ports as
 * `{"$": 8080, "@enabled": "true"}`), or with `legacyJson` in the Jersey/Jettison shape of Eureka
 * 1.1 servers, where a one-element list is written as its element and numbers as strings. XML is
 * not served (leases do not expire either: tests cancel instances explicitly).
 *
 * Controls for failure tests: `fail(status)` answers every read with that status, `slow(ms)`
 * delays every answer, `loseNextChange()` applies the next change without queueing it for deltas
 * (the client's copy then drifts and its hash code stops matching), `replayApps(body)` answers
 * `GET /apps` with a fixed body, `down()` closes the listener and `up()` opens it again on the same
 * port (a restart: the registry kept, as a peer would replicate it back, or dropped).
 */

/** What a test registers: the instance fields a Eureka client sends. */
export interface TestInstance {
  readonly app: string;
  readonly instanceId: string;
  readonly hostName: string;
  readonly ipAddr: string;
  readonly status?: string;
  readonly port?: number;
  /** Enable the secure port at this number. */
  readonly securePort?: number;
  readonly metadata?: Record<string, string>;
  readonly vipAddress?: string;
  /** An AWS availability zone: registers an Amazon dataCenterInfo. */
  readonly availabilityZone?: string;
}

type Json = Record<string, unknown>;

/** Options for {@link startEurekaServer}. */
export interface EurekaServerOptions {
  /** Path prefix, default "/eureka/v2". */
  readonly prefix?: string;
  /** How long changes stay in the delta queue (default 180 s, Eureka's). */
  readonly retentionMs?: number;
  /** Emit the Jersey/Jettison JSON dialect. */
  readonly legacyJson?: boolean;
}

/** A running test server. */
export interface EurekaTestServer {
  /** http://127.0.0.1:PORT{prefix} */
  readonly baseUrl: string;
  /** The `--registry` value for it (extra query options appended). */
  registryUrl(query?: string): string;
  /** Registers over HTTP as a client would. */
  register(i: TestInstance): Promise<void>;
  /** Cancels over HTTP. */
  cancel(app: string, id: string): Promise<void>;
  /** Overrides an instance's status over HTTP. */
  setStatus(app: string, id: string, status: string): Promise<void>;
  /** Answer every read with `status` (null: answer normally). */
  fail(status: number | null): void;
  /** Delay every answer by `ms`. */
  slow(ms: number): void;
  /** The next change is applied but never appears in a delta. */
  loseNextChange(): void;
  /** Answer `GET /apps` with `body` (null: from the registry). */
  replayApps(body: unknown): void;
  /** Closes the listener (connections refused) until {@link up}. */
  down(): Promise<void>;
  /** Listens again on the same port, with the registry kept or dropped (the default). */
  up(opts?: { keepRegistry?: boolean }): Promise<void>;
  /** Reads served so far, by kind. */
  readonly reads: { apps: number; delta: number };
  /** The current reconcile hash code. */
  hashCode(): string;
  stop(): Promise<void>;
}

interface Stored {
  instance: Json;
  registeredAt: number;
  renewedAt: number;
}

interface Change {
  at: number;
  action: "ADDED" | "MODIFIED" | "DELETED";
  instance: Json;
}

/** The instance body a Eureka client posts, as the wiki's register schema lists its fields. */
export function instanceBody(i: TestInstance): Json {
  const dataCenterInfo = i.availabilityZone
    ? {
      "@class": "com.netflix.appinfo.AmazonInfo",
      name: "Amazon",
      metadata: {
        "availability-zone": i.availabilityZone,
        "instance-id": i.instanceId,
        "local-ipv4": i.ipAddr,
      },
    }
    : { "@class": "com.netflix.appinfo.InstanceInfo$DefaultDataCenterInfo", name: "MyOwn" };
  return {
    instanceId: i.instanceId,
    hostName: i.hostName,
    app: i.app.toUpperCase(),
    ipAddr: i.ipAddr,
    status: i.status ?? "UP",
    overriddenstatus: "UNKNOWN",
    port: {
      $: i.port ?? 8080,
      "@enabled": i.port === undefined && i.securePort !== undefined ? "false" : "true",
    },
    securePort: { $: i.securePort ?? 443, "@enabled": i.securePort !== undefined ? "true" : "false" },
    countryId: 1,
    dataCenterInfo,
    metadata: i.metadata ?? { "@class": "java.util.Collections$EmptyMap" },
    homePageUrl: `http://${i.hostName}:${i.port ?? 8080}/`,
    statusPageUrl: `http://${i.hostName}:${i.port ?? 8080}/info`,
    healthCheckUrl: `http://${i.hostName}:${i.port ?? 8080}/health`,
    vipAddress: i.vipAddress ?? i.app.toLowerCase(),
    secureVipAddress: i.vipAddress ?? i.app.toLowerCase(),
    isCoordinatingDiscoveryServer: "false",
  };
}

/** Eureka's reconcile hash code over instance objects. */
function hashOf(instances: Iterable<Json>): string {
  const counts = new Map<string, number>();
  for (const i of instances) counts.set(String(i.status), (counts.get(String(i.status)) ?? 0) + 1);
  return [...counts.keys()].sort().map((s) => `${s}_${counts.get(s)}_`).join("");
}

/** Jersey/Jettison: one-element lists as the element, numbers as strings. */
function legacy(v: unknown): unknown {
  if (Array.isArray(v)) return v.length === 1 ? legacy(v[0]) : v.map(legacy);
  if (typeof v === "number") return String(v);
  if (typeof v === "object" && v !== null) {
    return Object.fromEntries(Object.entries(v).map(([k, x]) => [k, legacy(x)]));
  }
  return v;
}

/** Starts a test Eureka server on 127.0.0.1 with an OS-chosen port. */
export function startEurekaServer(opts: EurekaServerOptions = {}): Promise<EurekaTestServer> {
  const prefix = (opts.prefix ?? "/eureka/v2").replace(/\/+$/, "");
  const retentionMs = opts.retentionMs ?? 180_000;
  let registry = new Map<string, Stored>(); // key APP/ID
  let changes: Change[] = [];
  let version = 0;
  let failStatus: number | null = null;
  let delayMs = 0;
  let loseNext = false;
  let replay: unknown = null;
  const reads = { apps: 0, delta: 0 };

  const key = (app: string, id: string) => `${app.toUpperCase()}/${id}`;

  function decorate(s: Stored): Json {
    return {
      ...s.instance,
      leaseInfo: {
        renewalIntervalInSecs: 30,
        durationInSecs: 90,
        registrationTimestamp: s.registeredAt,
        lastRenewalTimestamp: s.renewedAt,
        evictionTimestamp: 0,
        serviceUpTimestamp: s.registeredAt,
      },
      lastUpdatedTimestamp: String(s.renewedAt),
      lastDirtyTimestamp: String(s.renewedAt),
    };
  }

  function record(action: Change["action"], s: Stored): void {
    version++;
    if (loseNext) {
      loseNext = false;
      return;
    }
    changes.push({ at: Date.now(), action, instance: decorate(s) });
  }

  function appsDoc(instances: Json[]): Json {
    const byApp = new Map<string, Json[]>();
    for (const i of instances) {
      const app = String(i.app);
      byApp.set(app, [...(byApp.get(app) ?? []), i]);
    }
    return {
      applications: {
        versions__delta: String(version),
        apps__hashcode: hashOf([...registry.values()].map((s) => s.instance)),
        application: [...byApp.entries()].map(([name, instance]) => ({ name, instance })),
      },
    };
  }

  function json(body: unknown, status = 200): Response {
    return new Response(JSON.stringify(opts.legacyJson ? legacy(body) : body), {
      status,
      headers: { "content-type": "application/json" },
    });
  }

  function deltaDoc(): Json {
    const since = Date.now() - retentionMs;
    changes = changes.filter((c) => c.at >= since);
    const latest = new Map<string, Json>();
    for (const c of changes) {
      latest.set(key(String(c.instance.app), String(c.instance.instanceId)), {
        ...c.instance,
        actionType: c.action,
      });
    }
    return appsDoc([...latest.values()]);
  }

  async function register(app: string, req: Request): Promise<Response> {
    let body: unknown;
    try {
      body = await req.json();
    } catch {
      return new Response("body is not JSON", { status: 400 });
    }
    const inst = (body as Json)?.instance as Json | undefined;
    if (typeof inst !== "object" || inst === null) return new Response("Missing instance", { status: 400 });
    for (const f of ["hostName", "ipAddr", "app", "dataCenterInfo"]) {
      if (inst[f] === undefined || inst[f] === "") return new Response(`Missing ${f}`, { status: 400 });
    }
    if (String(inst.app).toUpperCase() !== app.toUpperCase()) {
      return new Response("Mismatched appName", { status: 400 });
    }
    const id = String(inst.instanceId ?? inst.hostName);
    const now = Date.now();
    const old = registry.get(key(app, id));
    const stored: Stored = {
      instance: { ...inst, instanceId: id, app: app.toUpperCase() },
      registeredAt: old?.registeredAt ?? now,
      renewedAt: now,
    };
    registry.set(key(app, id), stored);
    record("ADDED", stored);
    return new Response(null, { status: 204 });
  }

  async function handle(req: Request): Promise<Response> {
    if (delayMs > 0) await Bun.sleep(delayMs);
    const url = new URL(req.url);
    if (!url.pathname.startsWith(prefix + "/")) return new Response("not found", { status: 404 });
    const parts = url.pathname.slice(prefix.length + 1).split("/").map(decodeURIComponent);
    if (req.method === "GET" && failStatus !== null) {
      return new Response("failing on purpose", { status: failStatus });
    }
    if (parts[0] === "instances" && parts.length === 2 && req.method === "GET") {
      const found = [...registry.values()].find((s) => s.instance.instanceId === parts[1]);
      return found ? json({ instance: decorate(found) }) : new Response("not found", { status: 404 });
    }
    if (parts[0] !== "apps") return new Response("not found", { status: 404 });
    const [, app, id, sub] = parts;
    if (req.method === "GET" && app === undefined) {
      reads.apps++;
      return replay !== null ? json(replay) : json(appsDoc([...registry.values()].map(decorate)));
    }
    if (req.method === "GET" && app === "delta" && id === undefined) {
      reads.delta++;
      return json(deltaDoc());
    }
    if (app === undefined) return new Response("method not allowed", { status: 405 });
    if (req.method === "POST" && id === undefined) return await register(app, req);
    if (req.method === "GET" && id === undefined) {
      const list = [...registry.values()].filter((s) => s.instance.app === app.toUpperCase()).map(decorate);
      return list.length > 0
        ? json({ application: { name: app.toUpperCase(), instance: list } })
        : new Response("not found", { status: 404 });
    }
    const stored = id !== undefined ? registry.get(key(app, id)) : undefined;
    if (stored === undefined) return new Response("not found", { status: 404 });
    if (sub === undefined) {
      if (req.method === "GET") return json({ instance: decorate(stored) });
      if (req.method === "PUT") {
        stored.renewedAt = Date.now();
        return new Response(null, { status: 200 });
      }
      if (req.method === "DELETE") {
        registry.delete(key(app, id!));
        record("DELETED", stored);
        return new Response(null, { status: 200 });
      }
    }
    if (sub === "status" && (req.method === "PUT" || req.method === "DELETE")) {
      const value = url.searchParams.get("value");
      if (req.method === "PUT" && !value) return new Response("missing value", { status: 500 });
      stored.instance = {
        ...stored.instance,
        status: value ?? "UNKNOWN",
        overriddenstatus: req.method === "PUT" ? value : "UNKNOWN",
      };
      stored.renewedAt = Date.now();
      record("MODIFIED", stored);
      return new Response(null, { status: 200 });
    }
    if (sub === "metadata" && req.method === "PUT") {
      const md = { ...(stored.instance.metadata as Json) };
      delete md["@class"];
      for (const [k, v] of url.searchParams) md[k] = v;
      stored.instance = { ...stored.instance, metadata: md };
      stored.renewedAt = Date.now();
      record("MODIFIED", stored);
      return new Response(null, { status: 200 });
    }
    return new Response("method not allowed", { status: 405 });
  }

  let server = Bun.serve({ hostname: "127.0.0.1", port: 0, fetch: handle });
  const port = server.port;
  const baseUrl = `http://127.0.0.1:${port}${prefix}`;

  async function expectOk(res: Response, what: string): Promise<void> {
    if (res.status !== 200 && res.status !== 204) {
      throw new Error(`${what}: HTTP ${res.status} ${await res.text()}`);
    }
  }

  return Promise.resolve({
    baseUrl,
    registryUrl: (query?: string) => `eureka://127.0.0.1:${port}${prefix}${query ? `?${query}` : ""}`,
    async register(i) {
      const res = await fetch(`${baseUrl}/apps/${i.app.toUpperCase()}`, {
        method: "POST",
        headers: { "content-type": "application/json" },
        body: JSON.stringify({ instance: instanceBody(i) }),
      });
      await expectOk(res, `register ${i.app}/${i.instanceId}`);
    },
    async cancel(app, id) {
      await expectOk(
        await fetch(`${baseUrl}/apps/${app.toUpperCase()}/${id}`, { method: "DELETE" }),
        `cancel ${app}/${id}`,
      );
    },
    async setStatus(app, id, status) {
      const res = await fetch(`${baseUrl}/apps/${app.toUpperCase()}/${id}/status?value=${status}`, {
        method: "PUT",
      });
      await expectOk(res, `status ${app}/${id}`);
    },
    fail(status) {
      failStatus = status;
    },
    slow(ms) {
      delayMs = ms;
    },
    loseNextChange() {
      loseNext = true;
    },
    replayApps(body) {
      replay = body;
    },
    async down() {
      await server.stop(true);
    },
    up(o = {}) {
      if (!o.keepRegistry) registry = new Map();
      changes = [];
      server = Bun.serve({ hostname: "127.0.0.1", port, fetch: handle });
      return Promise.resolve();
    },
    reads,
    hashCode: () => hashOf([...registry.values()].map((s) => s.instance)),
    async stop() {
      await server.stop(true);
    },
  });
}
