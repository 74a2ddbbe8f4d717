/**
 * The physical floor for bench/xds.ts: a bare `node:http2` server (default settings, as meshd's
 * gRPC server) that holds the load generator's ADS streams and, when told, writes the same gRPC
 * frames meshd sent one stream during a push to every stream, with nothing computed per stream.
 * The clients ACK as they would ACK meshd; the server only drains what they send.
 *
 * Runs under Bun (`bun bench/xds_raw_server.ts`) or Node (bundled by bench/xds.ts).
 *
 * Protocol: JSON commands on stdin, JSON events on stdout, one per line.
 *   (on start) -> {ev:"listening", addr}
 *   {cmd:"push", frames: base64[]} -> {ev:"pushed", t0, t1, streams}: t0 before the first write,
 *                                     t1 after the last write was handed to http2
 *   {cmd:"stop"} -> exits
 */
import http2 from "node:http2";
import type { AddressInfo } from "node:net";
import { createInterface } from "node:readline";

const now = () => performance.timeOrigin + performance.now();
const emit = (ev: Record<string, unknown>) => process.stdout.write(JSON.stringify(ev) + "\n");

const streams = new Set<http2.ServerHttp2Stream>();
const server = http2.createServer();
server.on("stream", (stream) => {
  stream.respond({ ":status": 200, "content-type": "application/grpc" });
  streams.add(stream);
  stream.on("data", () => {});
  stream.on("error", () => {});
  stream.on("close", () => streams.delete(stream));
});
server.on("session", (s) => s.on("error", () => {}));
server.listen(0, "127.0.0.1", () => {
  const a = server.address() as AddressInfo;
  emit({ ev: "listening", addr: `${a.address}:${a.port}` });
});

createInterface({ input: process.stdin }).on("line", (line) => {
  if (line.trim() === "") return;
  const cmd = JSON.parse(line) as { cmd: string; frames?: string[] };
  if (cmd.cmd === "push") {
    const frames = (cmd.frames ?? []).map((f) => Buffer.from(f, "base64"));
    const t0 = now();
    for (const s of streams) for (const f of frames) s.write(f);
    emit({ ev: "pushed", t0, t1: now(), streams: streams.size });
  } else if (cmd.cmd === "stop") {
    process.exit(0);
  }
});
process.stdin.on("end", () => process.exit(0));
