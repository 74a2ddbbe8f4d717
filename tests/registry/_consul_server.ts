/**
 * A test Consul HTTP API server: the part of Consul's wire behaviour the registry reads, written
 * from Consul's published HTTP API documentation (no Consul can be installed on test machines).
 *
 * - `GET /v1/catalog/services` (https://developer.hashicorp.com/consul/api-docs/catalog#list-services):
 *   an object of service names to the union of their tags.
 * - `GET /v1/health/service/:service` with `?passing`
 *   (https://developer.hashicorp.com/consul/api-docs/health#list-service-instances-for-service):
 *   an array of `{ Node, Service, Checks }`, the node's checks (serfHealth) included; `passing`
 *   keeps only entries whose checks all pass.
 * - Blocking queries (https://developer.hashicorp.com/consul/api-docs/features/blocking): `index=N`
 *   holds the request until the index of what it reads moves past N or `wait` (default 5m, at
 *   most 10m, plus up to wait/16 of jitter) passes; `index=0` or none answers at once; every answer
 *   carries `X-Consul-Index`; a snapshot restore wakes every held query and may move the index
 *   backwards. A bad `wait` is 400 "Invalid wait time".
 * - ACLs (https://developer.hashicorp.com/consul/api-docs/api-structure#authentication): the token
 *   comes in `X-Consul-Token`, `Authorization: Bearer` or `?token=`; an unknown token is 403
 *   "ACL not found"; no token is the anonymous token, which (default-deny) sees an empty result
 *   with `X-Consul-Results-Filtered-By-ACLs: true`.
 * - `?dc=` naming another datacenter: 500 "No path to datacenter".
 * - `PUT /v1/catalog/register` and `PUT /v1/catalog/deregister`
 *   (https://developer.hashicorp.com/consul/api-docs/catalog#register-entity) with the documented
 *   bodies, as well as the same operations as functions.
 *
 * Controls for tests: register, deregister, set a check's status, restart (close every
 * connection, listen again on the same port, optionally with a lower index), restore a snapshot
 * (the index goes backwards without a restart), answer slowly, answer 500; every request is logged.
 */
import { parseDuration } from "../../mod/shared/duration.ts";

/** A check, as the register API takes and the health API shows it. */
export interface ConsulCheck {
  readonly CheckID: string;
  readonly Name?: string;
  readonly Status: "passing" | "warning" | "critical";
  /** Empty or absent: a node check (it applies to every service on the node). */
  readonly ServiceID?: string;
  readonly Notes?: string;
  readonly Output?: string;
}

/** A service instance, as the register API's `Service` field. */
export interface ConsulServiceRegistration {
  readonly ID?: string;
  readonly Service: string;
  readonly Tags?: readonly string[];
  readonly Address?: string;
  readonly Port: number;
  readonly Meta?: Readonly<Record<string, string>>;
  readonly Weights?: { readonly Passing: number; readonly Warning: number };
}

/** The body of `PUT /v1/catalog/register`. */
export interface ConsulRegistration {
  readonly Node: string;
  readonly Address: string;
  readonly Datacenter?: string;
  readonly NodeMeta?: Readonly<Record<string, string>>;
  readonly Service?: ConsulServiceRegistration;
  readonly Check?: ConsulCheck;
  readonly Checks?: readonly ConsulCheck[];
}

/**
 * The example of Consul's "List Service Instances for Service" documentation, as a registration:
 * node foobar at 10.1.10.12 in dc1 (meta instance_type t2.medium) running redis on 8000, tagged
 * primary, meta redis_version 4.0, weights passing 10 / warning 1, a passing service check.
 */
export const DOCS_REDIS_REGISTRATION: ConsulRegistration = {
  Node: "foobar",
  Address: "10.1.10.12",
  Datacenter: "dc1",
  NodeMeta: { instance_type: "t2.medium" },
  Service: {
    ID: "redis",
    Service: "redis",
    Tags: ["primary"],
    Address: "10.1.10.12",
    Port: 8000,
    Meta: { redis_version: "4.0" },
    Weights: { Passing: 10, Warning: 1 },
  },
  Checks: [{
    CheckID: "service:redis",
    Name: "Service 'redis' check",
    Status: "passing",
    ServiceID: "redis",
  }],
};

/** One logged request. */
export interface LoggedRequest {
  readonly method: string;
  readonly path: string;
  readonly query: Readonly<Record<string, string>>;
  readonly token?: string;
  readonly at: number;
}

/** Options of {@link startConsulServer}. */
export interface ConsulServerOptions {
  /** The server's datacenter (default "dc1"). */
  readonly datacenter?: string;
  /** ACL tokens that exist; none: ACLs off (every request sees everything). */
  readonly tokens?: readonly string[];
  /** The first index (default 1). */
  readonly index?: number;
}

/** A running test Consul. */
export interface ConsulTestServer {
  /** e.g. "consul://127.0.0.1:41234". */
  readonly url: string;
  readonly port: number;
  /** The current Raft index. */
  index(): number;
  register(reg: ConsulRegistration): void;
  /** Removes one service instance (and its checks). */
  deregister(node: string, serviceId: string): void;
  /** Sets a check's status (a node check when it has no ServiceID). */
  setCheck(node: string, checkId: string, status: ConsulCheck["Status"]): void;
  /** Delays every answer by `ms` more (0 to stop). */
  slow(ms: number): void;
  /** Answers every request with this status and message (undefined to stop). */
  fail(status: number | undefined, message?: string): void;
  /**
   * A snapshot restore: every held query answers at once, and the index becomes `index`
   * (lower than before, as after restoring an older snapshot); the data stays.
   */
  restore(index: number): void;
  /**
   * Closes every connection, stays down `downMs` (default 0), then listens on the same port
   * again with its data; the index restarts at `index` (default 1, as a new cluster would).
   */
  restart(opts?: { index?: number; downMs?: number }): Promise<void>;
  /** Every request so far. */
  readonly requests: readonly LoggedRequest[];
  close(): Promise<void>;
}

interface Instance {
  readonly node: string;
  readonly service:
    & Required<Pick<ConsulServiceRegistration, "ID" | "Service" | "Port">>
    & ConsulServiceRegistration;
  readonly createIndex: number;
  modifyIndex: number;
}

interface NodeRecord {
  Address: string;
  Meta: Record<string, string>;
  readonly createIndex: number;
  modifyIndex: number;
}

interface CheckRecord {
  readonly node: string;
  check: ConsulCheck;
  readonly createIndex: number;
  modifyIndex: number;
}

const DEFAULT_WAIT_MS = 5 * 60_000;
const MAX_WAIT_MS = 10 * 60_000;

function truthyFlag(q: URLSearchParams, key: string): boolean {
  if (!q.has(key)) return false;
  const v = q.get(key)!;
  return v === "" || v === "true" || v === "1";
}

/** Starts a test Consul on 127.0.0.1 (a free port). */
export function startConsulServer(opts: ConsulServerOptions = {}): Promise<ConsulTestServer> {
  const dc = opts.datacenter ?? "dc1";
  const tokens = opts.tokens ? new Set(opts.tokens) : undefined;
  let raft = opts.index ?? 1;
  let catalogIndex = raft;
  const serviceIndex = new Map<string, number>();
  const nodes = new Map<string, NodeRecord>();
  const instances = new Map<string, Instance>();
  const checks = new Map<string, CheckRecord>();
  /** `checks` by node, in `checks`' order; dropped on every change to `checks`. */
  let checksByNode: Map<string, CheckRecord[]> | undefined;
  const nodeChecks = (node: string): readonly CheckRecord[] => {
    if (!checksByNode) {
      checksByNode = new Map();
      for (const c of checks.values()) {
        const list = checksByNode.get(c.node);
        if (list) list.push(c);
        else checksByNode.set(c.node, [c]);
      }
    }
    return checksByNode.get(node) ?? [];
  };
  const requests: LoggedRequest[] = [];
  let slowMs = 0;
  let failure: { status: number; message: string } | undefined;
  let epoch = 0;
  let wake: () => void = () => {};
  let changed = new Promise<void>((r) => (wake = r));

  const signalChange = () => {
    const w = wake;
    changed = new Promise<void>((r) => (wake = r));
    w();
  };
  const instanceKey = (node: string, id: string) => `${node}/${id}`;
  const bump = (services: Iterable<string>, catalog: boolean) => {
    raft++;
    if (catalog) catalogIndex = raft;
    for (const s of services) serviceIndex.set(s, raft);
    signalChange();
  };
  const servicesOnNode = (node: string) =>
    [...instances.values()].filter((i) => i.node === node).map((i) => i.service.Service);

  function register(reg: ConsulRegistration): void {
    if (reg.Datacenter !== undefined && reg.Datacenter !== dc) throw new Error(`No path to datacenter`);
    const touched = new Set<string>();
    let catalog = false;
    const next = raft + 1;
    const node = nodes.get(reg.Node);
    if (!node) {
      nodes.set(reg.Node, {
        Address: reg.Address,
        Meta: { ...reg.NodeMeta },
        createIndex: next,
        modifyIndex: next,
      });
      checksByNode = undefined;
      checks.set(`${reg.Node}/serfHealth`, {
        node: reg.Node,
        check: { CheckID: "serfHealth", Name: "Serf Health Status", Status: "passing", ServiceID: "" },
        createIndex: next,
        modifyIndex: next,
      });
    } else {
      node.Address = reg.Address;
      node.Meta = { ...node.Meta, ...reg.NodeMeta };
      node.modifyIndex = next;
      for (const s of servicesOnNode(reg.Node)) touched.add(s);
    }
    if (reg.Service) {
      const id = reg.Service.ID ?? reg.Service.Service;
      const key = instanceKey(reg.Node, id);
      const old = instances.get(key);
      if (old && old.service.Service !== reg.Service.Service) touched.add(old.service.Service);
      instances.set(key, {
        node: reg.Node,
        service: { ...reg.Service, ID: id },
        createIndex: old?.createIndex ?? next,
        modifyIndex: next,
      });
      touched.add(reg.Service.Service);
      catalog = true;
    }
    for (const c of [...(reg.Check ? [reg.Check] : []), ...(reg.Checks ?? [])]) {
      const key = `${reg.Node}/${c.CheckID}`;
      checksByNode = undefined;
      checks.set(key, {
        node: reg.Node,
        check: { ServiceID: "", ...c },
        createIndex: checks.get(key)?.createIndex ?? next,
        modifyIndex: next,
      });
      if (c.ServiceID) {
        const inst = instances.get(instanceKey(reg.Node, c.ServiceID));
        if (inst) touched.add(inst.service.Service);
      } else {
        for (const s of servicesOnNode(reg.Node)) touched.add(s);
      }
    }
    bump(touched, catalog || !node);
  }

  function deregister(node: string, serviceId: string): void {
    const key = instanceKey(node, serviceId);
    const inst = instances.get(key);
    if (!inst) return;
    instances.delete(key);
    checksByNode = undefined;
    for (const [k, c] of checks) if (c.node === node && c.check.ServiceID === serviceId) checks.delete(k);
    bump([inst.service.Service], true);
  }

  function setCheck(node: string, checkId: string, status: ConsulCheck["Status"]): void {
    const rec = checks.get(`${node}/${checkId}`);
    if (!rec) throw new Error(`test consul: no check ${checkId} on node ${node}`);
    rec.check = { ...rec.check, Status: status };
    rec.modifyIndex = raft + 1;
    const affected = rec.check.ServiceID
      ? [...instances.values()].filter((i) => i.node === node && i.service.ID === rec.check.ServiceID).map((
        i,
      ) => i.service.Service)
      : servicesOnNode(node);
    bump(affected, false);
  }

  /** `/v1/catalog/services` as the docs' example shows it. */
  function catalogServices(): Record<string, string[]> {
    const out: Record<string, string[]> = {};
    for (const i of instances.values()) {
      const tags = new Set([...(out[i.service.Service] ?? []), ...(i.service.Tags ?? [])]);
      out[i.service.Service] = [...tags].sort();
    }
    return out;
  }

  function checksOf(node: string, serviceId: string) {
    return nodeChecks(node)
      .filter((c) => !c.check.ServiceID || c.check.ServiceID === serviceId)
      .map((c) => {
        const inst = c.check.ServiceID ? instances.get(instanceKey(node, c.check.ServiceID)) : undefined;
        return {
          Node: node,
          CheckID: c.check.CheckID,
          Name: c.check.Name ?? c.check.CheckID,
          Status: c.check.Status,
          Notes: c.check.Notes ?? "",
          Output: c.check.Output ?? "",
          ServiceID: c.check.ServiceID ?? "",
          ServiceName: inst?.service.Service ?? "",
          ServiceTags: inst?.service.Tags ?? [],
          Type: "",
          Namespace: "default",
          CreateIndex: c.createIndex,
          ModifyIndex: c.modifyIndex,
        };
      });
  }

  /** `/v1/health/service/:service` entries as the docs' example shows them. */
  function healthService(name: string, passing: boolean) {
    const out = [];
    for (const i of [...instances.values()].filter((x) => x.service.Service === name)) {
      const node = nodes.get(i.node)!;
      const entryChecks = checksOf(i.node, i.service.ID);
      if (passing && entryChecks.some((c) => c.Status !== "passing")) continue;
      const address = i.service.Address ?? "";
      out.push({
        Node: {
          ID: "",
          Node: i.node,
          Address: node.Address,
          Datacenter: dc,
          TaggedAddresses: { lan: node.Address, wan: node.Address },
          Meta: node.Meta,
          CreateIndex: node.createIndex,
          ModifyIndex: node.modifyIndex,
        },
        Service: {
          ID: i.service.ID,
          Service: i.service.Service,
          Tags: i.service.Tags ?? [],
          Address: address,
          TaggedAddresses: address
            ? {
              lan_ipv4: { Address: address, Port: i.service.Port },
              wan_ipv4: { Address: address, Port: i.service.Port },
            }
            : {},
          Meta: i.service.Meta ?? {},
          Port: i.service.Port,
          Weights: i.service.Weights ?? { Passing: 1, Warning: 1 },
          EnableTagOverride: false,
          Namespace: "default",
          CreateIndex: i.createIndex,
          ModifyIndex: i.modifyIndex,
        },
        Checks: entryChecks,
      });
    }
    return out.sort((a, b) => (a.Node.Node + a.Service.ID < b.Node.Node + b.Service.ID ? -1 : 1));
  }

  const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

  function headers(index: number, filtered: boolean): Record<string, string> {
    return {
      "content-type": "application/json",
      "x-consul-index": String(index),
      "x-consul-knownleader": "true",
      "x-consul-lastcontact": "0",
      ...(filtered ? { "x-consul-results-filtered-by-acls": "true" } : {}),
    };
  }

  /** Answers a read, blocking while `index()` has not moved past the query's index. */
  async function blockingRead(
    q: URLSearchParams,
    indexOf: () => number,
    read: () => unknown,
    empty: unknown,
    anonymous: boolean,
  ): Promise<Response> {
    const min = Number(q.get("index") ?? "0");
    let waitMs = DEFAULT_WAIT_MS;
    if (q.has("wait")) {
      const w = parseDuration(q.get("wait")!);
      if (w === undefined || w < 0) return new Response("Invalid wait time", { status: 400 });
      waitMs = Math.min(w, MAX_WAIT_MS);
    }
    if (!Number.isFinite(min) || min < 0) return new Response("Invalid index", { status: 400 });
    if (min > 0) {
      const deadline = Date.now() + waitMs + Math.random() * (waitMs / 16);
      const startEpoch = epoch;
      while (indexOf() <= min && epoch === startEpoch && failure === undefined && !closing) {
        const left = deadline - Date.now();
        if (left <= 0) break;
        await Promise.race([changed, sleep(left)]);
      }
    }
    if (slowMs > 0) await sleep(slowMs);
    if (failure) return new Response(failure.message, { status: failure.status });
    return new Response(JSON.stringify(anonymous ? empty : read()), {
      headers: headers(Math.max(1, indexOf()), anonymous),
    });
  }

  async function handle(req: Request): Promise<Response> {
    const url = new URL(req.url);
    const q = url.searchParams;
    const bearer = req.headers.get("authorization")?.replace(/^Bearer\s+/i, "");
    const token = req.headers.get("x-consul-token") ?? bearer ?? q.get("token") ?? undefined;
    requests.push({
      method: req.method,
      path: url.pathname,
      query: Object.fromEntries(q),
      ...(token !== undefined ? { token } : {}),
      at: Date.now(),
    });
    if (failure && req.method !== "GET") return new Response(failure.message, { status: failure.status });
    if (tokens && token !== undefined && !tokens.has(token)) {
      return new Response("ACL not found", { status: 403 });
    }
    const anonymous = tokens !== undefined && token === undefined;
    if (q.has("dc") && q.get("dc") !== dc) return new Response("No path to datacenter", { status: 500 });

    if (req.method === "GET" && url.pathname === "/v1/catalog/services") {
      return blockingRead(q, () => catalogIndex, catalogServices, {}, anonymous);
    }
    const health = /^\/v1\/health\/service\/([^/]+)$/.exec(url.pathname);
    if (req.method === "GET" && health) {
      const name = decodeURIComponent(health[1]!);
      return blockingRead(
        q,
        () => serviceIndex.get(name) ?? catalogIndex,
        () => healthService(name, truthyFlag(q, "passing")),
        [],
        anonymous,
      );
    }
    if (
      req.method === "PUT" &&
      (url.pathname === "/v1/catalog/register" || url.pathname === "/v1/catalog/deregister")
    ) {
      if (anonymous) return new Response("Permission denied", { status: 403 });
      let body: Record<string, unknown>;
      try {
        body = await req.json() as Record<string, unknown>;
      } catch {
        return new Response("Request decode failed", { status: 400 });
      }
      try {
        if (url.pathname.endsWith("/register")) register(body as unknown as ConsulRegistration);
        else deregister(String(body.Node), String(body.ServiceID));
      } catch (e) {
        return new Response(e instanceof Error ? e.message : String(e), { status: 500 });
      }
      return new Response("true", { headers: { "content-type": "application/json" } });
    }
    return new Response(`Invalid URL path: not a recognized HTTP API endpoint`, { status: 404 });
  }

  let closing = false;
  const listen = (port: number) => Bun.serve({ hostname: "127.0.0.1", port, fetch: handle, idleTimeout: 0 });
  let server = listen(0);
  const port = server.port!;

  return Promise.resolve({
    url: `consul://127.0.0.1:${port}`,
    port,
    index: () => raft,
    register,
    deregister,
    setCheck,
    slow(ms) {
      slowMs = ms;
    },
    fail(status, message = "No cluster leader") {
      failure = status === undefined ? undefined : { status, message };
      signalChange();
    },
    restore(index) {
      raft = index;
      catalogIndex = index;
      for (const k of serviceIndex.keys()) serviceIndex.set(k, index);
      epoch++;
      signalChange();
    },
    async restart(o = {}) {
      closing = true;
      signalChange();
      await server.stop(true);
      if (o.downMs) await sleep(o.downMs);
      raft = o.index ?? 1;
      catalogIndex = raft;
      for (const k of serviceIndex.keys()) serviceIndex.set(k, raft);
      closing = false;
      server = listen(port);
    },
    requests,
    async close() {
      closing = true;
      signalChange();
      await server.stop(true);
    },
  });
}
