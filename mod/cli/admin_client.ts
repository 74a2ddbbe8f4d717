/**
 * Reading a running daemon's admin server (`--admin-addr`, 127.0.0.1:15014 by default) from a
 * command-line tool.
 *
 * @module
 */

/** An answer of the admin server. */
export interface AdminAnswer<T> {
  readonly status: number;
  readonly body: T;
}

/** Options for getAdminJson. */
export interface AdminRequestOptions {
  /** How long to wait for the whole answer (default 10 s). */
  readonly timeoutMs?: number;
}

/**
 * GETs `path` from the admin server at `addr` and parses the JSON body, whatever the status.
 * Throws an Error saying `cannot reach meshd at ADDR: ...` when there is no answer, or that
 * the answer is not JSON.
 */
export async function getAdminJson<T>(
  addr: string,
  path: string,
  opts: AdminRequestOptions = {},
): Promise<AdminAnswer<T>> {
  let res: Response;
  try {
    res = await fetch(`http://${addr}${path}`, { signal: AbortSignal.timeout(opts.timeoutMs ?? 10_000) });
  } catch (err) {
    throw new Error(`cannot reach meshd at ${addr}: ${(err as Error).message}`);
  }
  const text = await res.text();
  try {
    return { status: res.status, body: JSON.parse(text) as T };
  } catch {
    throw new Error(
      `meshd at ${addr} answered ${path} with HTTP ${res.status} and no JSON: ${text.slice(0, 200)}`,
    );
  }
}
