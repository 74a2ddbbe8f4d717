/**
 * Platform registries: services and instances that already live in Consul, Eureka or Kubernetes,
 * behind pilot's `ServiceRegistry` seam. Each adapter keeps its last good view when its server
 * fails, restarts or answers slowly, and says so through `status()` (shown by /debug/registryz and
 * proxy-status); a failing registry never blocks another one or a push.
 *
 * @module
 */
import type { ServiceRegistry } from "../model/registry.ts";

/** The platforms meshd reads services from. */
export type PlatformKind = "consul" | "eureka" | "kubernetes";

/** How a registry's sync stands, for /debug/registryz. */
export interface RegistryStatus {
  /** The registry's name (its `--registry` value without credentials). */
  readonly name: string;
  readonly kind: PlatformKind;
  /** The server it reads (host:port or URL without credentials). */
  readonly address: string;
  /** True once a first full view was read. */
  readonly synced: boolean;
  /** True when the last attempt failed and the view shown is the last good one. */
  readonly stale: boolean;
  /** When the view last changed or was confirmed (ms since the epoch). */
  readonly lastSyncMs?: number;
  /** The last failure, while it lasts. */
  readonly lastError?: string;
  readonly lastErrorMs?: number;
  /** Sizes of the current view. */
  readonly services: number;
  readonly endpoints: number;
  /** Hosts this registry declares that an earlier registry (or config) already declares. */
  readonly shadowed?: readonly string[];
}

/** A registry backed by a platform's API. */
export interface PlatformRegistry extends ServiceRegistry {
  readonly kind: PlatformKind;
  status(): RegistryStatus;
  /** Stops watching; the state stays as it was. */
  stop(): Promise<void>;
}

/** A `--registry` value's text without user info, for messages and status. */
export function registryDisplayName(url: URL): string {
  if (url.username === "" && url.password === "") return url.href;
  const copy = new URL(url.href);
  copy.username = "";
  copy.password = "";
  return copy.href;
}
