/**
 * The fetch listener's bodies: a body complete at once goes out with its content-length; a
 * body that comes in pieces is streamed, each piece reaching the client before the next is made;
 * a client that goes away cancels the body and aborts the request's signal.
 */
import { afterEach, describe, expect, test } from "bun:test";
import { DEFAULT_CONNECTION_LIMITS } from "../../mod/shared/conn_guard.ts";
import { type FetchListener, startFetchListener } from "../../mod/shared/fetch_listener.ts";
import { createLogger } from "../../mod/shared/logger.ts";

let listener: FetchListener | undefined;
afterEach(async () => {
  await listener?.stop();
  listener = undefined;
});

async function serve(fetch: (req: Request) => Response | Promise<Response>): Promise<string> {
  listener = await startFetchListener({
    name: "test",
    host: "127.0.0.1",
    port: 0,
    fetch,
    limits: DEFAULT_CONNECTION_LIMITS,
    logger: createLogger({ write: () => {} }),
  });
  return `http://127.0.0.1:${listener.port}`;
}

async function until(cond: () => boolean, what: string): Promise<void> {
  for (let i = 0; i < 500 && !cond(); i++) await Bun.sleep(10);
  if (!cond()) throw new Error(`timed out waiting for ${what}`);
}

describe("startFetchListener() response bodies", () => {
  test("a body complete at once is sent whole with its content-length, HEAD without a body", async () => {
    const base = await serve(() => Response.json({ hello: "world" }));
    const res = await fetch(base);
    expect(res.headers.get("content-length")).toBe("17");
    expect(await res.json()).toEqual({ hello: "world" });
    const head = await fetch(base, { method: "HEAD" });
    expect(head.headers.get("content-length")).toBe("17");
    expect(await head.text()).toBe("");
  });

  test("a body made in pieces reaches the client piece by piece", async () => {
    let made = 0;
    let release: () => void = () => {};
    const base = await serve(() =>
      new Response(
        new ReadableStream<Uint8Array>({
          async pull(c) {
            if (made === 2) return c.close();
            if (made === 1) await new Promise<void>((r) => (release = r));
            c.enqueue(new TextEncoder().encode(`piece ${++made}\n`));
          },
        }),
        { headers: { "content-type": "text/plain" } },
      )
    );
    const res = await fetch(base);
    expect(res.headers.get("content-length")).toBeNull();
    const reader = res.body!.getReader();
    // The first piece arrives while the second is not made yet.
    expect(new TextDecoder().decode((await reader.read()).value)).toBe("piece 1\n");
    expect(made).toBe(1);
    release();
    expect(new TextDecoder().decode((await reader.read()).value)).toBe("piece 2\n");
    expect((await reader.read()).done).toBe(true);
  });

  test("an event stream is sent at once; the client leaving cancels it and aborts the request", async () => {
    let cancelled = false;
    let aborted = false;
    const base = await serve((req) => {
      req.signal.addEventListener("abort", () => (aborted = true));
      return new Response(
        new ReadableStream<Uint8Array>({
          pull: () => new Promise(() => {}), // nothing to say yet
          cancel: () => {
            cancelled = true;
          },
        }),
        { headers: { "content-type": "text/event-stream" } },
      );
    });
    const gone = new AbortController();
    const res = await fetch(base, { signal: gone.signal });
    expect(res.status).toBe(200);
    expect(res.headers.get("content-type")).toBe("text/event-stream");
    gone.abort();
    await until(() => cancelled && aborted, "the body to be cancelled and the signal aborted");
  });

  test("a large body is streamed with backpressure and arrives whole", async () => {
    const piece = new Uint8Array(512 * 1024).fill(120);
    const pieces = 128; // 64 MiB: more than socket buffers and the client's read-ahead hold
    let pulls = 0;
    const base = await serve(() =>
      new Response(
        new ReadableStream<Uint8Array>({
          pull(c) {
            if (++pulls > pieces) return c.close();
            c.enqueue(piece);
          },
        }, { highWaterMark: 0 }),
      )
    );
    const res = await fetch(base);
    const reader = res.body!.getReader();
    const first = await reader.read();
    expect(first.done).toBe(false);
    // Not read further: the server has not made the whole body ahead of the client.
    await Bun.sleep(100);
    expect(pulls).toBeLessThan(pieces);
    let size = first.value!.length;
    for (let r = await reader.read(); !r.done; r = await reader.read()) size += r.value.length;
    expect(size).toBe(pieces * piece.length);
  });
});
