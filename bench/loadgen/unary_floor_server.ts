/**
 * The floor for bench/mixer.ts's server-side latency: a bare `node:http2` server (default
 * settings, as meshd's gRPC server) on the same runtime as meshd that answers every unary call
 * with an empty message and grpc-status 0, computing nothing. What the load generator measures
 * against it is the runtime's HTTP/2 stack, its garbage collector and the machine.
 *
 * Prints `{"addr": "127.0.0.1:PORT"}` on stdout once listening; runs until killed.
 */
import http2 from "node:http2";
import type { AddressInfo } from "node:net";

const EMPTY_MESSAGE = new Uint8Array(5);
const server = http2.createServer();
server.on("stream", (stream) => {
  stream.on("error", () => {});
  stream.on("data", () => {});
  stream.on("end", () => {
    stream.respond({ ":status": 200, "content-type": "application/grpc" }, { waitForTrailers: true });
    stream.once("wantTrailers", () => stream.sendTrailers({ "grpc-status": "0" }));
    stream.end(EMPTY_MESSAGE);
  });
});
server.on("session", (s) => s.on("error", () => {}));
server.listen(0, "127.0.0.1", () => {
  const a = server.address() as AddressInfo;
  process.stdout.write(JSON.stringify({ addr: `${a.address}:${a.port}` }) + "\n");
});
