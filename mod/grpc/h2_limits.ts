/**
 * Per-connection rules of an HTTP/2 server behind a connection guard (mod/shared/conn_guard.ts):
 * the handshake counts as complete once the client's SETTINGS arrive after its preface, open
 * streams keep a connection from being idle (so long-lived xDS streams are never cut), an idle
 * connection is closed with GOAWAY, and keepalive is enforced as gRPC servers do: a client that
 * pings more often than the permitted minimum collects strikes and, past two, gets GOAWAY
 * ENHANCE_YOUR_CALM with "too_many_pings" and is disconnected. The server pings its clients
 * itself every keepalive time and drops those that do not answer within the keepalive timeout.
 *
 * The cap on concurrent streams is the SETTINGS_MAX_CONCURRENT_STREAMS the server advertises
 * (`http2Settings`); the runtime's HTTP/2 layer refuses streams beyond it with REFUSED_STREAM.
 */
import http2 from "node:http2";
import type { ConnectionGuard } from "../shared/conn_guard.ts";

/** HTTP/2 and gRPC keepalive limits of a listener. */
export interface Http2Limits {
  /** SETTINGS_MAX_CONCURRENT_STREAMS: streams one connection may have open at once. */
  readonly maxConcurrentStreams: number;
  /** Shortest interval between client pings that is not a strike. */
  readonly keepaliveMinTimeMs: number;
  /** Whether clients may ping at that rate while they have no calls open (otherwise every 2 h). */
  readonly keepalivePermitWithoutCalls: boolean;
  /** Interval of the server's own pings; 0 disables them. */
  readonly keepaliveTimeMs: number;
  /** How long the server waits for a ping's answer before it drops the connection. */
  readonly keepaliveTimeoutMs: number;
}

/** Strikes a client may collect before it is sent away (gRPC's servers allow two). */
const MAX_PING_STRIKES = 2;
/** The minimum ping interval without calls when that is not permitted (as gRPC's servers). */
const PING_INTERVAL_WITHOUT_CALLS_MS = 2 * 60 * 60 * 1000;
/**
 * Bytes the server may write between two client pings without having sent a response: the ping's
 * own acknowledgement (17) and a few WINDOW_UPDATE or SETTINGS frames. More means the server sent
 * headers or data, which (as in gRPC's servers) clears the strikes: clients that probe bandwidth
 * ping after every burst of data they receive, and an xDS push is such a burst.
 */
const CONTROL_BYTES_BETWEEN_PINGS = 64;
/** Time for a GOAWAY to leave before the connection is torn down. */
const GOAWAY_FLUSH_MS = 200;

/** The settings an HTTP/2 server advertises under these limits. */
export function http2Settings(limits: Http2Limits): http2.Settings {
  return { maxConcurrentStreams: limits.maxConcurrentStreams };
}

/**
 * Applies `limits` to every session of `server`, whose connections `guard` admitted. `now` is
 * the clock for ping intervals.
 */
export function applyHttp2Limits(
  server: http2.Http2Server | http2.Http2SecureServer,
  guard: ConnectionGuard,
  opts: { readonly limits: Http2Limits; readonly now?: () => number },
): void {
  const { limits } = opts;
  const now = opts.now ?? Date.now;
  server.on("session", (session: http2.ServerHttp2Session) => {
    const conn = guard.of(session.socket);
    if (!conn) return;
    let open = 0;
    let lastPing: number | undefined;
    let strikes = 0;
    let writtenAtPing = 0;
    let timer: ReturnType<typeof setInterval> | undefined;
    session.once("remoteSettings", () => conn.established());
    conn.onIdle(() => {
      if (!session.closed && !session.destroyed) session.close();
    });
    session.on("stream", (stream: http2.ServerHttp2Stream) => {
      open++;
      strikes = 0;
      conn.busy(1);
      stream.once("close", () => {
        open--;
        conn.busy(-1);
      });
    });
    session.on("ping", () => {
      const t = now();
      const written = session.socket?.bytesWritten ?? 0;
      const answered = written - writtenAtPing > CONTROL_BYTES_BETWEEN_PINGS;
      writtenAtPing = written;
      if (answered) {
        strikes = 0;
        lastPing = t;
        return;
      }
      const min = open > 0 || limits.keepalivePermitWithoutCalls
        ? limits.keepaliveMinTimeMs
        : Math.max(limits.keepaliveMinTimeMs, PING_INTERVAL_WITHOUT_CALLS_MS);
      const early = lastPing !== undefined && t - lastPing < min;
      lastPing = t;
      if (!early || ++strikes <= MAX_PING_STRIKES) return;
      guard.hit("too_many_pings", conn.source, { minTimeMs: min });
      sendAway(session, http2.constants.NGHTTP2_ENHANCE_YOUR_CALM, "too_many_pings");
    });
    if (limits.keepaliveTimeMs > 0) {
      timer = setInterval(() => {
        if (session.closed || session.destroyed) return;
        let answered = false;
        const deadline = setTimeout(() => {
          if (answered || session.destroyed) return;
          guard.hit("keepalive_timeout", conn.source, { timeoutMs: limits.keepaliveTimeoutMs });
          session.destroy();
        }, limits.keepaliveTimeoutMs);
        deadline.unref?.();
        try {
          session.ping((err) => {
            answered = !err;
            if (answered) clearTimeout(deadline);
          });
        } catch {
          // The session is going away; its close clears the timer.
        }
      }, limits.keepaliveTimeMs);
      timer.unref?.();
    }
    session.once("close", () => {
      if (timer) clearInterval(timer);
    });
  });
}

/** Sends GOAWAY with `code` and `debug` as its debug data, then tears the connection down. */
function sendAway(session: http2.ServerHttp2Session, code: number, debug: string): void {
  if (session.closed || session.destroyed) return;
  try {
    // Streams the server already took keep running until the teardown; later ones were not processed.
    const last = (session.state as { lastProcStreamID?: number } | undefined)?.lastProcStreamID ?? 0;
    session.goaway(code, last, Buffer.from(debug));
  } catch {
    // Already going away.
  }
  setTimeout(() => session.destroy(), GOAWAY_FLUSH_MS).unref?.();
}
