/**
 * A tiny grpc-js app for mixer's tests: an echo server (bytes in, bytes out) with mixer's server
 * interceptor, and a client that calls it with metadata.
 */
import * as grpc from "@grpc/grpc-js";
import { mixerServerInterceptor, type ServerInterceptorOptions } from "../../mod/mixer/client/mod.ts";

const identity = (b: Buffer) => b;

/** The echo service: one unary method on raw bytes. */
export const ECHO_SERVICE: grpc.ServiceDefinition = {
  say: {
    path: "/test.Echo/Say",
    requestStream: false,
    responseStream: false,
    requestSerialize: identity,
    requestDeserialize: identity,
    responseSerialize: identity,
    responseDeserialize: identity,
    originalName: "say",
  },
};

/** A running echo app. */
export interface EchoApp {
  readonly addr: string;
  /** Calls Say with `metadata`; resolves with the status code (0 on success). */
  call(metadata?: Record<string, string>, client?: grpc.Client): Promise<number>;
  /** A client of the app with optional interceptors. */
  client(interceptors?: grpc.Interceptor[]): grpc.Client;
  close(): Promise<void>;
}

/** Starts the echo server on loopback with mixer's server interceptor. */
export async function startEchoApp(opts: ServerInterceptorOptions): Promise<EchoApp> {
  const server = new grpc.Server({ interceptors: [mixerServerInterceptor(opts)] });
  server.addService(ECHO_SERVICE, {
    say: (call: grpc.ServerUnaryCall<Buffer, Buffer>, cb: grpc.sendUnaryData<Buffer>) =>
      cb(null, call.request),
  });
  const port = await new Promise<number>((resolve, reject) =>
    server.bindAsync(
      "127.0.0.1:0",
      grpc.ServerCredentials.createInsecure(),
      (err, p) => (err ? reject(err) : resolve(p)),
    )
  );
  const addr = `127.0.0.1:${port}`;
  const clients: grpc.Client[] = [];
  const makeClient = (interceptors: grpc.Interceptor[] = []) => {
    const c = new grpc.Client(addr, grpc.credentials.createInsecure(), { interceptors });
    clients.push(c);
    return c;
  };
  const defaultClient = makeClient();
  return {
    addr,
    client: makeClient,
    call(metadata = {}, client = defaultClient) {
      const md = new grpc.Metadata();
      for (const [k, v] of Object.entries(metadata)) md.set(k, v);
      return new Promise<number>((resolve) => {
        client.makeUnaryRequest(
          "/test.Echo/Say",
          identity,
          identity,
          Buffer.from("hi"),
          md,
          { deadline: Date.now() + 5000 },
          (err) => resolve(err ? (err.code ?? 2) : 0),
        );
      });
    },
    async close() {
      for (const c of clients) c.close();
      await new Promise<void>((resolve) => server.tryShutdown(() => resolve()));
    },
  };
}
