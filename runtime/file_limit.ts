/**
 * The start-up check that the listeners of `meshd serve`, each full to --max-connections, fit in
 * the process's open file limit.
 */
import type { GrpcListenerLimits } from "../mod/grpc/server.ts";
import { openFileLimit } from "../mod/shared/conn_guard.ts";
import type { Logger } from "../mod/shared/logger.ts";

/** File descriptors kept for everything but connections (files, the store, outgoing calls). */
const RESERVED_FDS = 256;

/**
 * Warns when `listeners` listeners full to --max-connections would need more file descriptors
 * than the process may open (`ulimit -n`).
 */
export function checkFileLimit(limits: GrpcListenerLimits, listeners: number, logger: Logger): void {
  const fdLimit = openFileLimit();
  if (fdLimit === undefined) return;
  const needed = limits.maxConnections * listeners + RESERVED_FDS;
  if (needed <= fdLimit) return;
  logger.warn("--max-connections exceeds what the open file limit allows", {
    maxConnections: limits.maxConnections,
    listeners,
    needed,
    openFileLimit: fdLimit,
    fix: `raise ulimit -n (LimitNOFILE) to at least ${needed} or lower --max-connections`,
  });
}
