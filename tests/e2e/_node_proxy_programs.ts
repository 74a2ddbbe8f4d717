/**
 * Small programs the node proxy's end-to-end test runs inside its test machines, each its own
 * process (`bun _node_proxy_programs.ts NAME ARGS`):
 *
 * - `dns HOST:PORT NAME=IP[,NAME=IP...]`: a test DNS server (UDP and TCP, wire format by
 *   dns-packet) answering A queries for the names given and NXDOMAIN for every other name; it
 *   prints `{"listening":true}`, then one JSON line per query (`{"name":...,"type":...}`).
 * - `pinger HOST PORT INTERVAL_MS`: one TCP connection to a Redis server, a `PING` every
 *   INTERVAL_MS, each answer checked; on SIGTERM (or the first failure) it prints one JSON
 *   summary (`{"ok":N,"failed":N,"error":...}`) and exits. It stands for an application with a
 *   long-lived connection across certificate renewals and root rotations.
 *
 * @module
 */
import * as dnsPacket from "dns-packet";
import { createSocket } from "node:dgram";
import { connect, createServer } from "node:net";

function splitHostPort(addr: string): [string, number] {
  const i = addr.lastIndexOf(":");
  return [addr.slice(0, i).replace(/^\[|\]$/g, ""), Number(addr.slice(i + 1))];
}

/** The answer of the test DNS server for one query packet. */
function answer(query: dnsPacket.Packet, table: ReadonlyMap<string, string>): Buffer {
  const q = query.questions?.[0];
  const name = (q?.name ?? "").toLowerCase().replace(/\.$/, "");
  const ip = table.get(name);
  const known = ip !== undefined;
  return dnsPacket.encode({
    type: "response",
    id: query.id,
    flags: dnsPacket.RECURSION_DESIRED | dnsPacket.RECURSION_AVAILABLE | (known ? 0 : 3 /* NXDOMAIN */),
    questions: query.questions,
    answers: known && q?.type === "A" ? [{ type: "A", name: q.name, ttl: 30, data: ip }] : [],
  });
}

function runDns(addr: string, spec: string): void {
  const [host, port] = splitHostPort(addr);
  const table = new Map(
    spec.split(",").filter(Boolean).map((kv) => kv.split("=") as [string, string]).map((
      [k, v],
    ) => [k.toLowerCase(), v]),
  );
  const note = (p: dnsPacket.Packet, via: string) => {
    const q = p.questions?.[0];
    process.stdout.write(JSON.stringify({ name: q?.name, type: q?.type, via }) + "\n");
  };
  const udp = createSocket("udp4");
  udp.on("message", (msg, rinfo) => {
    let p: dnsPacket.Packet;
    try {
      p = dnsPacket.decode(msg);
    } catch {
      return;
    }
    note(p, "udp");
    udp.send(answer(p, table), rinfo.port, rinfo.address);
  });
  const tcp = createServer((s) => {
    let buf = Buffer.alloc(0);
    s.on("data", (c: Buffer) => {
      buf = Buffer.concat([buf, c]);
      while (buf.length >= 2 && buf.length >= 2 + buf.readUInt16BE(0)) {
        const len = buf.readUInt16BE(0);
        const msg = buf.subarray(2, 2 + len);
        buf = buf.subarray(2 + len);
        try {
          const p = dnsPacket.decode(msg);
          note(p, "tcp");
          const a = answer(p, table);
          const head = Buffer.alloc(2);
          head.writeUInt16BE(a.length);
          s.write(Buffer.concat([head, a]));
        } catch {
          s.destroy();
        }
      }
    });
    s.on("error", () => {});
  });
  let bound = 0;
  const up = () => {
    if (++bound === 2) process.stdout.write(JSON.stringify({ listening: true }) + "\n");
  };
  udp.bind(port, host, up);
  tcp.listen(port, host, up);
  process.on("SIGTERM", () => process.exit(0));
}

function runPinger(host: string, port: number, intervalMs: number): void {
  const r = { ok: 0, failed: 0, error: undefined as string | undefined, connected: false };
  let pending = 0;
  let buf = "";
  let done = false;
  const finish = (error?: string) => {
    if (done) return;
    done = true;
    if (error !== undefined) {
      r.failed++;
      r.error = error;
    }
    process.stdout.write(JSON.stringify(r) + "\n");
    process.exit(0);
  };
  const s = connect(port, host, () => {
    r.connected = true;
    process.stdout.write(JSON.stringify({ connected: true }) + "\n");
  });
  s.setNoDelay(true);
  s.on("data", (c: Buffer) => {
    buf += c.toString("latin1");
    let nl: number;
    while ((nl = buf.indexOf("\r\n")) >= 0) {
      const line = buf.slice(0, nl);
      buf = buf.slice(nl + 2);
      pending--;
      if (line === "+PONG") r.ok++;
      else finish(`unexpected answer ${JSON.stringify(line)}`);
    }
  });
  s.on("error", (e) => finish(`${(e as NodeJS.ErrnoException).code ?? ""} ${e.message}`));
  s.on("close", () => finish("connection closed"));
  const timer = setInterval(() => {
    if (!r.connected) return;
    // An answer outstanding for 20 intervals means the connection stalled.
    if (pending > 20) finish(`${pending} pings unanswered`);
    pending++;
    s.write("PING\r\n");
  }, intervalMs);
  process.on("SIGTERM", () => {
    clearInterval(timer);
    s.removeAllListeners("close");
    finish();
  });
}

if (import.meta.main) {
  const [mode, ...args] = process.argv.slice(2);
  if (mode === "dns") runDns(args[0]!, args[1] ?? "");
  else if (mode === "pinger") runPinger(args[0]!, Number(args[1]), Number(args[2] ?? 100));
  else {
    process.stderr.write(`unknown program ${JSON.stringify(mode)}: want dns or pinger\n`);
    process.exit(2);
  }
}
