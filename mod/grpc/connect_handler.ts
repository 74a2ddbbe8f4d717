/**
 * The request handler for methods served through Connect, with gRPC's status codes for bad
 * input: a request message that does not decode is the client's error, INVALID_ARGUMENT, as it is
 * on the methods served straight on HTTP/2 (raw.ts). Connect itself reports it as INTERNAL.
 */
import { Code, createConnectRouter } from "@connectrpc/connect";
import type { UniversalHandler, UniversalServerResponse } from "@connectrpc/connect/protocol";
import {
  compressionBrotli,
  compressionGzip,
  type ConnectNodeAdapterOptions,
  universalRequestFromNodeRequest,
  universalResponseToNodeResponse,
} from "@connectrpc/connect-node";
import type { Http2ServerRequest, Http2ServerResponse } from "node:http2";
import type { Logger } from "../shared/logger.ts";

/** A Connect router as a node:http2 request listener, and the method paths it serves. */
export interface ConnectHandler {
  readonly handle: (req: Http2ServerRequest, res: Http2ServerResponse) => void;
  /** "/package.Service/Method" of every method served. */
  readonly paths: readonly string[];
}

/**
 * Connect's message for a request that does not decode ("parse binary: ..."); its code is the
 * only thing changed on the way out.
 */
const PARSE_FAILURE = /^parse(%20| )binary/;

/** Builds the handler for `options.routes` (gRPC only; unknown paths get 404). */
export function createConnectHandler(
  options: Omit<ConnectNodeAdapterOptions, "fallback" | "requestPathPrefix">,
  logger: Logger,
): ConnectHandler {
  const router = createConnectRouter({
    acceptCompression: [compressionGzip, compressionBrotli],
    ...options,
  });
  options.routes(router);
  const paths = new Map<string, UniversalHandler>();
  for (const h of router.handlers) paths.set(h.requestPath, h);
  return {
    paths: [...paths.keys()].sort(),
    handle(req, res) {
      const h = paths.get((req.url ?? "").split("?", 1)[0]!);
      if (!h) {
        res.writeHead(404);
        res.end();
        return;
      }
      const uReq = universalRequestFromNodeRequest(req, res, undefined, options.contextValues?.(req));
      h(uReq)
        .then((uRes) => universalResponseToNodeResponse(withClientErrors(uRes), res))
        .catch((err: unknown) => {
          logger.debug("gRPC call failed", { method: h.requestPath, err: String(err) });
        });
    },
  };
}

/** The response with a failure to decode the request reported as INVALID_ARGUMENT. */
function withClientErrors(res: UniversalServerResponse): UniversalServerResponse {
  const body = res.body;
  const trailer = res.trailer;
  if (!body || !trailer || !(Symbol.asyncIterator in body)) return res;
  const fix = () => {
    if (
      trailer.get("grpc-status") === String(Code.Internal) &&
      PARSE_FAILURE.test(trailer.get("grpc-message") ?? "")
    ) {
      trailer.set("grpc-status", String(Code.InvalidArgument));
    }
  };
  return {
    ...res,
    body: (async function* () {
      try {
        yield* body as AsyncIterable<Uint8Array>;
      } finally {
        fix();
      }
    })(),
  };
}
