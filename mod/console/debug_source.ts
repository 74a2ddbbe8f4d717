/**
 * A ConsoleSource over what the daemon holds: its debug handlers, called in process with a
 * request built here (no socket, no HTTP), its readiness, galley's store, the analyzers and the
 * metrics registry.
 *
 * @module
 */
import type { ConfigStore, Diagnostic, Resource } from "../galley/mod.ts";
import type { DebugHandler } from "../runtime/module.ts";
import type { MetricsRegistry } from "../shared/metrics.ts";
import type { ConsoleSource } from "./source.ts";

/** What the daemon hands over. */
export interface DaemonParts {
  /** The debug handlers registered so far (read at each call: modules may add more). */
  debugHandlers(): readonly DebugHandler[];
  /** The modules requested, those not ready, and whether shutdown began. */
  readiness(): { notReady: string[]; stopping: boolean };
  readonly modules: readonly string[];
  readonly config?: ConfigStore;
  readonly analyze?: (resources: readonly Resource[]) => readonly Diagnostic[];
  readonly metrics?: MetricsRegistry;
  readonly now?: () => number;
}

/** Calls a read-only debug handler in process and parses its JSON; undefined when absent or failing. */
async function callDebug(
  handlers: readonly DebugHandler[],
  path: string,
  query: Readonly<Record<string, string>> | undefined,
): Promise<unknown> {
  const h = handlers.find((d) => d.path === path && !d.mutates);
  if (h === undefined) return undefined;
  const qs = query ? `?${new URLSearchParams(query as Record<string, string>)}` : "";
  try {
    const res = await h.handle(new Request(`http://console.invalid/debug/${path}${qs}`));
    return await res.json();
  } catch {
    return undefined;
  }
}

/** The console's view of the daemon. */
export function daemonConsoleSource(parts: DaemonParts): ConsoleSource {
  return {
    readiness: () => ({ modules: parts.modules, ...parts.readiness() }),
    debug: (path, query) => callDebug(parts.debugHandlers(), path, query),
    config: parts.config,
    analyze: parts.analyze,
    metrics: parts.metrics,
    now: parts.now ?? Date.now,
  };
}
