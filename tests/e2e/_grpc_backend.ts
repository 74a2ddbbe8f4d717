/**
 * Test backends for end-to-end tests with real gRPC xDS clients: small @grpc/grpc-js servers
 * of the `meshd.test.Echo` service (tests/e2e/proto/echo.proto) on 127.0.0.1 with a port the
 * OS picks. Each answers with its own name; the test can make it fail with a status code (for
 * the next N calls or until told otherwise) or answer slowly.
 */
import * as grpc from "@grpc/grpc-js";
import * as protoLoader from "@grpc/proto-loader";
import { resolve } from "node:path";

/** Path of the test service's .proto file. */
export const ECHO_PROTO = resolve(import.meta.dir, "proto/echo.proto");
/** Full method path of the test service's only method. */
export const ECHO_METHOD = "/meshd.test.Echo/Call";

/** The loaded package definition of the test service. */
export function loadEcho(): grpc.GrpcObject {
  const def = protoLoader.loadSync(ECHO_PROTO, { keepCase: true, defaults: true });
  return grpc.loadPackageDefinition(def);
}

/** How a backend fails calls. */
export interface Failure {
  /** gRPC status code to fail with. */
  readonly code: grpc.status;
  /** Fail only this many calls, then answer again; unset: until cleared. */
  readonly count?: number;
}

/** A running backend. */
export interface Backend {
  readonly name: string;
  readonly port: number;
  /** Calls received (answered or failed). */
  readonly calls: number;
  /** Calls failed on purpose. */
  readonly failed: number;
  /** Fails calls from now on; undefined answers again. */
  fail(f: Failure | undefined): void;
  /** Delays every answer by `ms` (0: none). */
  delay(ms: number): void;
  /** Forgets the counters. */
  reset(): void;
  /** Stops at once (pending calls are cancelled). */
  close(): Promise<void>;
}

interface CallRequest {
  message: string;
}

/** Starts a backend named `name` on 127.0.0.1 with a port the OS picks. */
export async function startBackend(name: string): Promise<Backend> {
  const echo = loadEcho() as unknown as { meshd: { test: { Echo: grpc.ServiceClientConstructor } } };
  const server = new grpc.Server();
  let failure: Failure | undefined;
  let failuresLeft = Infinity;
  let delayMs = 0;
  let calls = 0;
  let failed = 0;
  server.addService(echo.meshd.test.Echo.service, {
    Call(call: grpc.ServerUnaryCall<CallRequest, unknown>, callback: grpc.sendUnaryData<unknown>) {
      calls++;
      const answer = () => {
        if (failure && failuresLeft > 0) {
          failuresLeft--;
          failed++;
          callback({ code: failure.code, details: `${name} fails on purpose` });
          return;
        }
        callback(null, { backend: name, message: call.request.message });
      };
      if (delayMs > 0) setTimeout(answer, delayMs);
      else answer();
    },
  });
  const port = await new Promise<number>((res, rej) =>
    server.bindAsync(
      "127.0.0.1:0",
      grpc.ServerCredentials.createInsecure(),
      (err, p) => (err ? rej(err) : res(p)),
    )
  );
  return {
    name,
    port,
    get calls() {
      return calls;
    },
    get failed() {
      return failed;
    },
    fail(f) {
      failure = f;
      failuresLeft = f?.count ?? Infinity;
    },
    delay(ms) {
      delayMs = ms;
    },
    reset() {
      calls = 0;
      failed = 0;
    },
    close() {
      server.forceShutdown();
      return Promise.resolve();
    },
  };
}
