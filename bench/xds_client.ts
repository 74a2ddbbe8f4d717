/**
 * The load generator of bench/xds.ts: many simulated Envoy sidecars, each one ADS stream
 * (envoy.service.discovery.v3.AggregatedDiscoveryService/StreamAggregatedResources, State of the
 * World) with its own node id and IP, multiplexed over a few HTTP/2 connections.
 *
 * Each stream subscribes as Envoy does: CDS and LDS wildcard at once (the node only in the first
 * request), then EDS for the EDS clusters named in CDS and RDS for the route names in LDS, and it
 * ACKs every response with its version and nonce, restating the subscribed names. A changed CDS
 * (LDS) first (re)subscribes EDS (RDS), then ACKs, as Envoy does.
 *
 * Kept cheap so that it is not the bottleneck: raw `node:http2`, gRPC framing by hand (5-byte
 * prefix) and hand-written protobuf for only the fields needed: requests carry version_info,
 * node (id, metadata NAMESPACE and LABELS as a Struct), resource_names, type_url and
 * response_nonce; responses are scanned for version_info, type_url, nonce and, for CDS and LDS,
 * the EDS service names of EDS clusters (Cluster.type = EDS, eds_cluster_config.service_name or
 * the name) and the RDS names of HTTP connection managers (in filter chains, the default filter
 * chain and API listeners). SotW versions are content hashes, so the names found in a CDS or
 * LDS response are cached by (type URL, version, size): 10k sidecars sharing one config scan it
 * once.
 *
 * No repository imports: bench/xds.ts bundles this file for Node (`bun build --target=node`),
 * which handles many streams per connection with less CPU than Bun (DESIGN.md), or runs it
 * under Bun.
 *
 * Protocol: JSON commands on stdin, JSON events on stdout, one per line.
 *   {cmd:"start", addr, count, offset, perConn, windowMiB, connWindowMiB, namespace, apps}
 *       -> {ev:"opened", t} when every stream has its response headers,
 *          {ev:"full", t, tFirst} when every stream has ACKed every type once
 *   {cmd:"arm", id, type:"CDS"|"EDS"|"LDS"|"RDS", mode:"changed"|"any"}
 *       -> {ev:"armed", id}; later {ev:"converged", id, tFirstRecv, tLastAck}: every stream has
 *          ACKed a response of that type (with a version other than the one ACKed at arm time,
 *          for "changed"). Responses of all types are counted from the arm, and the gRPC frames
 *          stream 0 receives are recorded.
 *   {cmd:"stats", id} -> {ev:"stats", id, responses, bytes, frames (base64), closed, errors}
 *   {cmd:"failover", id, addr}
 *       -> {ev:"armed", id}; later {ev:"failover", id, moved, tFirstBreak, tLastFull, byAddr} once every stream that was
 *          on `addr` has broken, connected elsewhere and ACKed every subscribed type again
 *          (at once, with moved 0, when none was there); byAddr counts streams per address then.
 *
 * Failover: given `addrs` in start (every server's address), sidecar I starts on addrs[I mod R]
 * and walks its own order of the others (every other sidecar the other way round, so the
 * sidecars of a lost server spread over the rest). When its stream breaks it waits a random
 * time below `jitterMs` (Envoy's first ADS retry waits a random time below its 500 ms base
 * interval), opens a new stream to the next address in its order and subscribes afresh.
 * Without `addrs`, a broken stream stays closed.
 *   {cmd:"status"} -> {ev:"status", opened, full, closed, errors}
 *   {cmd:"stop"} -> exits
 * Times are epoch milliseconds with fractions (performance.timeOrigin + performance.now()).
 */
import http2 from "node:http2";
import { createInterface } from "node:readline";

const T = "type.googleapis.com/";
const TYPES = {
  CDS: `${T}envoy.config.cluster.v3.Cluster`,
  EDS: `${T}envoy.config.endpoint.v3.ClusterLoadAssignment`,
  LDS: `${T}envoy.config.listener.v3.Listener`,
  RDS: `${T}envoy.config.route.v3.RouteConfiguration`,
} as const;
type Short = keyof typeof TYPES;
const SHORT: Record<string, Short> = Object.fromEntries(
  Object.entries(TYPES).map(([k, v]) => [v, k as Short]),
);
const HCM = "envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager";
const ADS_PATH = "/envoy.service.discovery.v3.AggregatedDiscoveryService/StreamAggregatedResources";

const now = () => performance.timeOrigin + performance.now();

// ---------------------------------------------------------------- protobuf, by hand

function varintBytes(n: number, out: number[]): void {
  while (n > 127) {
    out.push((n & 127) | 128);
    n = Math.floor(n / 128);
  }
  out.push(n);
}

/** A length-delimited field: tag, length, payload. */
function lenField(no: number, payload: Uint8Array): Buffer {
  const head: number[] = [];
  varintBytes((no << 3) | 2, head);
  varintBytes(payload.length, head);
  return Buffer.concat([Buffer.from(head), payload]);
}

const strField = (no: number, s: string) => lenField(no, Buffer.from(s, "utf8"));

/** google.protobuf.Struct of string values (and nested Structs). */
function structBytes(obj: Record<string, string | Record<string, string>>): Buffer {
  const entries: Buffer[] = [];
  for (const [k, v] of Object.entries(obj)) {
    // Value: string_value = 3, struct_value = 5.
    const value = typeof v === "string" ? strField(3, v) : lenField(5, structBytes(v));
    entries.push(lenField(1, Buffer.concat([strField(1, k), lenField(2, value)])));
  }
  return Buffer.concat(entries);
}

/** envoy.config.core.v3.Node as DiscoveryRequest field 2: id = 1, metadata = 3. */
function nodeField(id: string, metadata: Record<string, string | Record<string, string>>): Buffer {
  return lenField(2, Buffer.concat([strField(1, id), lenField(3, structBytes(metadata))]));
}

const typeFields: Record<Short, Buffer> = {
  CDS: strField(4, TYPES.CDS),
  EDS: strField(4, TYPES.EDS),
  LDS: strField(4, TYPES.LDS),
  RDS: strField(4, TYPES.RDS),
};

/** One gRPC-framed DiscoveryRequest. */
function request(
  type: Short,
  version: string,
  nonce: string,
  names: readonly string[],
  node?: Buffer,
): Buffer {
  const parts: Buffer[] = [Buffer.alloc(5)];
  if (version) parts.push(strField(1, version));
  if (node) parts.push(node);
  for (const n of names) parts.push(strField(3, n));
  parts.push(typeFields[type]);
  if (nonce) parts.push(strField(5, nonce));
  const msg = Buffer.concat(parts);
  msg.writeUInt32BE(msg.length - 5, 1);
  return msg;
}

/** The reader's position, shared by the scanning functions (no tuples allocated). */
let pos = 0;

function readVarint(b: Uint8Array): number {
  let x = 0;
  let mul = 1;
  for (;;) {
    const c = b[pos++]!;
    x += (c & 127) * mul;
    if (c < 128) return x;
    mul *= 128;
  }
}

/**
 * Calls `fn(field, start, end, varint)` for each field of the message in b[start, end):
 * start/end bound a length-delimited value; varint holds a varint value.
 */
function fields(
  b: Uint8Array,
  start: number,
  end: number,
  fn: (no: number, s: number, e: number, v: number) => void,
): void {
  pos = start;
  while (pos < end) {
    const tag = readVarint(b);
    const no = Math.floor(tag / 8);
    switch (tag & 7) {
      case 0: {
        const v = readVarint(b);
        const p = pos;
        fn(no, 0, 0, v);
        pos = p;
        break;
      }
      case 1:
        pos += 8;
        break;
      case 2: {
        const len = readVarint(b);
        const s = pos;
        pos = s + len;
        fn(no, s, s + len, 0);
        pos = s + len;
        break;
      }
      case 5:
        pos += 4;
        break;
      default:
        throw new Error(`wire type ${tag & 7} not handled (field ${no})`);
    }
  }
}

const text = (b: Buffer, s: number, e: number) => b.toString("utf8", s, e);

/** google.protobuf.Any: returns [typeUrlStart, typeUrlEnd, valueStart, valueEnd]. */
function any(b: Buffer, s: number, e: number): [string, number, number] {
  let url = "";
  let vs = 0;
  let ve = 0;
  fields(b, s, e, (no, fs, fe) => {
    if (no === 1) url = text(b, fs, fe);
    else if (no === 2) (vs = fs), (ve = fe);
  });
  return [url, vs, ve];
}

/** The EDS service name of a Cluster (type = 2 is EDS = 3; eds_cluster_config = 3 -> service_name = 2). */
function edsNameOf(b: Buffer, s: number, e: number): string | undefined {
  let name = "";
  let type = 0;
  let service = "";
  fields(b, s, e, (no, fs, fe, v) => {
    if (no === 1) name = text(b, fs, fe);
    else if (no === 2) type = v;
    else if (no === 3) fields(b, fs, fe, (n2, s2, e2) => n2 === 2 && (service = text(b, s2, e2)));
  });
  return type === 3 ? service || name : undefined;
}

/** RDS names in an Any holding an HttpConnectionManager (rds = 3 -> route_config_name = 2). */
function rdsOfAny(b: Buffer, s: number, e: number, out: Set<string>): void {
  const [url, vs, ve] = any(b, s, e);
  if (!url.endsWith(HCM)) return;
  fields(b, vs, ve, (no, fs, fe) => {
    if (no === 3) fields(b, fs, fe, (n2, s2, e2) => n2 === 2 && out.add(text(b, s2, e2)));
  });
}

/** RDS names of a Listener: filter_chains = 3, default_filter_chain = 25, api_listener = 19. */
function rdsNamesOf(b: Buffer, s: number, e: number, out: Set<string>): void {
  const chain = (cs: number, ce: number) =>
    fields(b, cs, ce, (no, fs, fe) => {
      // FilterChain.filters = 3; Filter.typed_config = 4.
      if (no === 3) fields(b, fs, fe, (n2, s2, e2) => n2 === 4 && rdsOfAny(b, s2, e2, out));
    });
  fields(b, s, e, (no, fs, fe) => {
    if (no === 3 || no === 25) chain(fs, fe);
    else if (no === 19) fields(b, fs, fe, (n2, s2, e2) => n2 === 1 && rdsOfAny(b, s2, e2, out));
  });
}

interface Response {
  version: string;
  typeUrl: string;
  nonce: string;
  /** [start, end) of each resource (an Any). */
  resources: number[];
}

/** Scans a DiscoveryResponse: version_info = 1, resources = 2, type_url = 4, nonce = 5. */
function decodeResponse(b: Buffer, s: number, e: number): Response {
  const r: Response = { version: "", typeUrl: "", nonce: "", resources: [] };
  fields(b, s, e, (no, fs, fe) => {
    if (no === 1) r.version = text(b, fs, fe);
    else if (no === 2) r.resources.push(fs, fe);
    else if (no === 4) r.typeUrl = text(b, fs, fe);
    else if (no === 5) r.nonce = text(b, fs, fe);
  });
  return r;
}

/** Names CDS or LDS responses lead to (EDS or RDS subscriptions), cached by type, version and size. */
const namesCache = new Map<string, { names: string[]; key: string }>();

function namesOf(
  type: "CDS" | "LDS",
  r: Response,
  b: Buffer,
  size: number,
): { names: string[]; key: string } {
  const cacheKey = `${type}\u0000${r.version}\u0000${size}`;
  let hit = namesCache.get(cacheKey);
  if (hit) return hit;
  const set = new Set<string>();
  for (let i = 0; i < r.resources.length; i += 2) {
    const [, vs, ve] = any(b, r.resources[i]!, r.resources[i + 1]!);
    if (type === "CDS") {
      const n = edsNameOf(b, vs, ve);
      if (n !== undefined) set.add(n);
    } else {
      rdsNamesOf(b, vs, ve, set);
    }
  }
  const names = [...set].sort();
  hit = { names, key: names.join("\u0000") };
  namesCache.set(cacheKey, hit);
  return hit;
}

// ---------------------------------------------------------------- streams

interface Sub {
  /** Last response's version and nonce (what an ACK or a re-subscription carries). */
  version: string;
  nonce: string;
  names: string[];
  namesKey: string;
  subscribed: boolean;
  acked?: string;
}

interface Sidecar {
  readonly index: number;
  stream?: http2.ClientHttp2Stream;
  /** Failover: this sidecar's order of server addresses, and the position of the current one. */
  order: readonly string[];
  at: number;
  /** Received parts of an incomplete message, their size, and the complete size (0: not known yet). */
  parts: Buffer[];
  partsBytes: number;
  need: number;
  node: Buffer;
  opened: boolean;
  full: boolean;
  closed: boolean;
  subs: Record<Short, Sub>;
  /** Arm state: the ACKed version of the armed type when armed, and whether it converged. */
  baseline?: string;
  converged: boolean;
}

const sub = (): Sub => ({ version: "", nonce: "", names: [], namesKey: "", subscribed: false });

const emit = (ev: Record<string, unknown>) => process.stdout.write(JSON.stringify(ev) + "\n");

let sidecars: Sidecar[] = [];
const sessions: http2.ClientHttp2Session[] = [];
/** Failover: the session new streams to each address join while it has room, and its streams. */
const pools = new Map<string, { session: http2.ClientHttp2Session; streams: number }>();
let failoverSettings:
  | { perConn: number; window: number; connWindowMiB: number; jitterMs: number }
  | undefined;
let opened = 0;
let full = 0;
let closed = 0;
let tFirstFull = 0;
const errors: string[] = [];

/** The current arm (measuring one change). */
let arm:
  | {
    id: string;
    type: Short;
    mode: "changed" | "any";
    converged: number;
    tFirstRecv: number;
    tLastAck: number;
    responses: Record<string, number>;
    bytes: number;
    frames: Buffer[];
  }
  | undefined;

function noteError(msg: string): void {
  if (errors.length < 20) errors.push(msg);
}

function send(sc: Sidecar, msg: Buffer): void {
  if (!sc.closed) sc.stream!.write(msg);
}

/** The failover being watched: streams that were on `addr` and are not yet fully served elsewhere. */
let failover:
  | { id: string; addr: string; pending: Set<Sidecar>; moved: number; tFirstBreak: number; tLastFull: number }
  | undefined;

function failoverDone(): void {
  const f = failover!;
  const byAddr: Record<string, number> = {};
  for (const sc of sidecars) {
    const a = sc.order[sc.at] ?? "";
    byAddr[a] = (byAddr[a] ?? 0) + 1;
  }
  emit({
    ev: "failover",
    id: f.id,
    moved: f.moved,
    tFirstBreak: f.tFirstBreak,
    tLastFull: f.tLastFull,
    byAddr,
  });
  failover = undefined;
}

function checkFull(sc: Sidecar): void {
  if (sc.full) return;
  const s = sc.subs;
  if (s.CDS.acked === undefined || s.LDS.acked === undefined) return;
  if (s.EDS.names.length > 0 && s.EDS.acked === undefined) return;
  if (s.RDS.names.length > 0 && s.RDS.acked === undefined) return;
  sc.full = true;
  if (++full === 1) tFirstFull = now();
  if (full === sidecars.length && tFirstFull !== -1) {
    emit({ ev: "full", t: now(), tFirst: tFirstFull });
    // Reported once: later a stream that fails over becomes full again.
    tFirstFull = -1;
  }
  const f = failover;
  if (f && sc.order[sc.at] !== f.addr && f.pending.delete(sc)) {
    f.moved++;
    f.tLastFull = now();
    if (f.pending.size === 0) failoverDone();
  }
}

function acked(sc: Sidecar, type: Short, version: string): void {
  sc.subs[type].acked = version;
  checkFull(sc);
  const a = arm;
  if (!a || a.type !== type || sc.converged) return;
  if (a.mode === "changed" && version === sc.baseline) return;
  sc.converged = true;
  a.tLastAck = now();
  if (++a.converged === sidecars.length) {
    emit({ ev: "converged", id: a.id, tFirstRecv: a.tFirstRecv, tLastAck: a.tLastAck });
  }
}

function onMessage(sc: Sidecar, b: Buffer, s: number, e: number): void {
  const r = decodeResponse(b, s, e);
  const type = SHORT[r.typeUrl];
  if (!type) {
    noteError(`stream ${sc.index}: response of unexpected type ${r.typeUrl}`);
    return;
  }
  const a = arm;
  if (a) {
    a.responses[type] = (a.responses[type] ?? 0) + 1;
    a.bytes += e - s + 5;
    if (sc.index === sidecars[0]!.index) a.frames.push(Buffer.from(b.subarray(s - 5, e)));
    if (a.type === type && !a.tFirstRecv && (a.mode === "any" || r.version !== sc.baseline)) {
      a.tFirstRecv = now();
    }
  }
  const st = sc.subs[type];
  st.version = r.version;
  st.nonce = r.nonce;
  if (type === "CDS" || type === "LDS") {
    const dep = sc.subs[type === "CDS" ? "EDS" : "RDS"];
    const found = namesOf(type, r, b, e - s);
    if (found.key !== dep.namesKey && (found.names.length > 0 || dep.subscribed)) {
      dep.names = found.names;
      dep.namesKey = found.key;
      dep.subscribed = true;
      send(sc, request(type === "CDS" ? "EDS" : "RDS", dep.version, dep.nonce, dep.names));
    }
    send(sc, request(type, r.version, r.nonce, []));
  } else {
    send(sc, request(type, r.version, r.nonce, st.names));
  }
  acked(sc, type, r.version);
}

function onData(sc: Sidecar, chunk: Buffer): void {
  let b = chunk;
  if (sc.parts.length > 0) {
    // A large message arrives in many DATA frames: gather them, join once it is complete.
    sc.parts.push(chunk);
    sc.partsBytes += chunk.length;
    if (sc.need === 0) {
      if (sc.partsBytes < 5) return;
      const joined = Buffer.concat(sc.parts, sc.partsBytes);
      sc.parts = [joined];
      sc.need = 5 + joined.readUInt32BE(1);
    }
    if (sc.partsBytes < sc.need) return;
    b = Buffer.concat(sc.parts, sc.partsBytes);
    sc.parts = [];
    sc.partsBytes = 0;
    sc.need = 0;
  }
  let p = 0;
  while (b.length - p >= 5) {
    const len = b.readUInt32BE(p + 1);
    if (b.length - p - 5 < len) break;
    onMessage(sc, b, p + 5, p + 5 + len);
    p += 5 + len;
  }
  if (p < b.length) {
    const rest = b.subarray(p);
    sc.parts = [rest];
    sc.partsBytes = rest.length;
    sc.need = rest.length >= 5 ? 5 + rest.readUInt32BE(1) : 0;
  }
}

/** A session to `addr` with room for one more stream (failover mode). */
function pooledSession(addr: string): http2.ClientHttp2Session {
  const f = failoverSettings!;
  const p = pools.get(addr);
  if (p && p.streams < f.perConn && !p.session.closed && !p.session.destroyed) {
    p.streams++;
    return p.session;
  }
  const session = connect(addr, f.perConn, f.window, f.connWindowMiB);
  pools.set(addr, { session, streams: 1 });
  session.on("close", () => {
    if (pools.get(addr)?.session === session) pools.delete(addr);
  });
  return session;
}

/** After a break: a new stream to the sidecar's next address, after a random wait below the jitter. */
function reconnect(sc: Sidecar): void {
  if (sc.full) {
    sc.full = false;
    full--;
  }
  if (sc.opened) {
    sc.opened = false;
    opened--;
  }
  const f = failover;
  if (f && sc.order[sc.at] === f.addr && f.pending.has(sc) && f.tFirstBreak === 0) f.tFirstBreak = now();
  sc.at = (sc.at + 1) % sc.order.length;
  sc.subs = { CDS: sub(), EDS: sub(), LDS: sub(), RDS: sub() };
  sc.parts = [];
  sc.partsBytes = 0;
  sc.need = 0;
  setTimeout(() => {
    sc.closed = false;
    openStream(pooledSession(sc.order[sc.at]!), sc);
  }, Math.random() * failoverSettings!.jitterMs);
}

function openStream(session: http2.ClientHttp2Session, sc: Sidecar): void {
  const stream = session.request({
    ":method": "POST",
    ":path": ADS_PATH,
    "content-type": "application/grpc",
    te: "trailers",
  });
  sc.stream = stream;
  stream.on("response", () => {
    sc.opened = true;
    if (++opened === sidecars.length) emit({ ev: "opened", t: now() });
  });
  stream.on("data", (chunk: Buffer) => onData(sc, chunk));
  const end = (why: string) => {
    if (sc.closed || sc.stream !== stream) return;
    sc.closed = true;
    if (failoverSettings) {
      reconnect(sc);
      return;
    }
    closed++;
    noteError(`stream ${sc.index}: ${why}`);
  };
  stream.on("trailers", (t) => end(`ended: grpc-status ${t["grpc-status"]} ${t["grpc-message"] ?? ""}`));
  stream.on("error", (err) => end(`error: ${err.message}`));
  stream.on("close", () => end(`closed (rst code ${stream.rstCode})`));
  send(sc, request("CDS", "", "", [], sc.node));
  send(sc, request("LDS", "", "", []));
}

interface StartCommand {
  addr: string;
  count: number;
  offset: number;
  perConn: number;
  /** Receive window of each stream (SETTINGS_INITIAL_WINDOW_SIZE). */
  windowMiB: number;
  /** Receive window of each connection (setLocalWindowSize). */
  connWindowMiB: number;
  namespace: string;
  apps: number;
  /** Failover: every server's address (see the header). */
  addrs?: string[];
  /** Failover: the longest random wait before reconnecting, in milliseconds. */
  jitterMs?: number;
}

/** Sidecar `i`'s order of the `addrs`: from addrs[i mod R], forwards or (every other one) backwards. */
function addressOrder(i: number, addrs: readonly string[]): string[] {
  const r = addrs.length;
  const step = Math.floor(i / r) % 2 === 0 ? 1 : r - 1;
  return addrs.map((_, k) => addrs[(i + k * step) % r]!);
}

function connect(
  addr: string,
  perConn: number,
  window: number,
  connWindowMiB: number,
): http2.ClientHttp2Session {
  const session = http2.connect(`http://${addr}`, {
    peerMaxConcurrentStreams: perConn,
    maxSessionMemory: 1024,
    settings: { initialWindowSize: window, enablePush: false },
  });
  session.on("connect", () => session.setLocalWindowSize(connWindowMiB * 1024 * 1024));
  session.on("error", (err) => {
    if (!failoverSettings) noteError(`session: ${err.message}`);
  });
  session.on("goaway", (code) => {
    if (!failoverSettings) noteError(`session: GOAWAY ${code}`);
  });
  sessions.push(session);
  return session;
}

function start(c: StartCommand): void {
  const window = c.windowMiB * 1024 * 1024;
  const addrs = c.addrs && c.addrs.length > 0 ? c.addrs : undefined;
  if (addrs) {
    failoverSettings = {
      perConn: c.perConn,
      window,
      connWindowMiB: c.connWindowMiB,
      jitterMs: c.jitterMs ?? 500,
    };
  }
  sidecars = [];
  for (let k = 0; k < c.count; k++) {
    const i = c.offset + k;
    const ip = `10.${100 + ((i >> 16) & 127)}.${(i >> 8) & 255}.${i & 255}`;
    const id = `sidecar~${ip}~bench-${i}.${c.namespace}~${c.namespace}.svc.cluster.local`;
    const labels = { app: `bench-app-${i % c.apps}`, version: "v1" };
    sidecars.push({
      index: i,
      order: addrs ? addressOrder(i, addrs) : [c.addr],
      at: 0,
      node: nodeField(id, { NAMESPACE: c.namespace, LABELS: labels }),
      opened: false,
      full: false,
      closed: false,
      converged: false,
      parts: [],
      partsBytes: 0,
      need: 0,
      subs: { CDS: sub(), EDS: sub(), LDS: sub(), RDS: sub() },
    });
  }
  if (addrs) {
    for (const sc of sidecars) openStream(pooledSession(sc.order[0]!), sc);
    return;
  }
  for (let first = 0; first < sidecars.length; first += c.perConn) {
    const session = connect(c.addr, c.perConn, window, c.connWindowMiB);
    for (const sc of sidecars.slice(first, first + c.perConn)) openStream(session, sc);
  }
}

function stats(id: string): Record<string, unknown> {
  const a = arm?.id === id ? arm : undefined;
  return {
    ev: "stats",
    id,
    responses: a?.responses ?? {},
    bytes: a?.bytes ?? 0,
    frames: a?.frames.map((f) => f.toString("base64")) ?? [],
    converged: a?.converged ?? 0,
    opened,
    full,
    closed,
    errors,
  };
}

createInterface({ input: process.stdin }).on("line", (line) => {
  if (line.trim() === "") return;
  const cmd = JSON.parse(line) as { cmd: string; id?: string } & Record<string, unknown>;
  switch (cmd.cmd) {
    case "start":
      start(cmd as unknown as StartCommand);
      break;
    case "arm": {
      const type = cmd.type as Short;
      arm = {
        id: cmd.id!,
        type,
        mode: cmd.mode === "any" ? "any" : "changed",
        converged: 0,
        tFirstRecv: 0,
        tLastAck: 0,
        responses: {},
        bytes: 0,
        frames: [],
      };
      for (const sc of sidecars) {
        sc.baseline = sc.subs[type].acked;
        sc.converged = false;
      }
      emit({ ev: "armed", id: cmd.id });
      break;
    }
    case "stats":
      emit(stats(cmd.id!));
      break;
    case "failover": {
      const addr = cmd.addr as string;
      const pending = new Set(sidecars.filter((sc) => sc.order[sc.at] === addr));
      failover = { id: cmd.id!, addr, pending, moved: 0, tFirstBreak: 0, tLastFull: 0 };
      emit({ ev: "armed", id: cmd.id });
      if (pending.size === 0) failoverDone();
      break;
    }
    case "status":
      emit({ ev: "status", opened, full, closed, errors });
      break;
    case "stop":
      for (const s of sessions) s.destroy();
      process.exit(0);
  }
});
process.stdin.on("end", () => process.exit(0));
