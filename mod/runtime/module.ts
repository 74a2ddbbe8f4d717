/**
 * The one interface every meshd module implements, and what the daemon hands it. Adding a
 * module means adding a ModuleDefinition to the catalogue in modules.ts; main.ts does not change.
 */
import type { DescService } from "@bufbuild/protobuf";
import type { ServiceImpl } from "@connectrpc/connect";
import type { Settings } from "../cli/flags.ts";
import type { GrpcStreamHandler } from "../grpc/raw.ts";
import type { ServiceOptions } from "../grpc/server.ts";
import type { SettingSpec } from "../cli/setting.ts";
import type { Clock } from "../shared/clock.ts";
import type { Logger } from "../shared/logger.ts";
import type { MetricsRegistry } from "../shared/metrics.ts";
import type { Links } from "./links.ts";

/** Answers one `/debug/<path>` request on the admin server. */
export interface DebugHandler {
  /** Path below /debug/, e.g. "configz". */
  readonly path: string;
  /** One line shown in the /debug/ listing. */
  readonly description: string;
  /**
   * True when the handler changes state. The admin server then passes it only POST requests
   * that carry the admin token; otherwise only GET and HEAD, so reading never changes anything.
   */
  readonly mutates?: boolean;
  /** Handles the request (after the admin server checked its method); may read query parameters. */
  handle(req: Request): Response | Promise<Response>;
}

/** Registers gRPC services on the shared ports. Only valid while modules are being created. */
export interface GrpcRegistrar {
  service<S extends DescService>(service: S, impl: Partial<ServiceImpl<S>>, opts?: ServiceOptions<S>): void;
  /** Serves one method by path straight on HTTP/2 streams (mod/grpc/raw.ts). */
  stream(path: string, handler: GrpcStreamHandler): void;
}

/** Everything a module gets from the daemon. */
export interface ModuleContext {
  /** The settings of `meshd serve`, including every module's own. */
  readonly settings: Settings;
  /** A logger that tags lines with the module's name. */
  readonly logger: Logger;
  readonly metrics: MetricsRegistry;
  readonly clock: Clock;
  readonly grpc: GrpcRegistrar;
  /** Adds a handler under /debug/ on the admin server. */
  debug(handler: DebugHandler): void;
  /** Interfaces modules offer each other (a ConfigStore, a CertSigner). */
  readonly links: Links;
}

/** A running module. */
export interface Module {
  /**
   * Starts background work once the shared servers listen. Resolves when started, which may be
   * before the module is ready; rejects if the module cannot run at all.
   */
  start(): Promise<void>;
  /** True once the module serves correctly (config loaded, CA loaded, ...). Cheap; polled. */
  ready(): boolean;
  /**
   * Stops background work and releases resources. Called once, in reverse start order, after
   * the gRPC server stopped accepting; must resolve promptly when `signal` aborts (grace over).
   */
  stop(signal: AbortSignal): Promise<void>;
}

/** A module as the catalogue lists it. */
export interface ModuleDefinition {
  /** Name used by `--modules`. */
  readonly name: string;
  /** One line for help and the README. */
  readonly summary: string;
  /** Modules that must run in the same process when this one does (added automatically). */
  readonly requires?: readonly string[];
  /** The module's own settings; they join `meshd serve`'s flags. */
  readonly settings: readonly SettingSpec[];
  /**
   * Builds the module: registers gRPC services, debug handlers and metrics, and offers or looks
   * up links. Modules are created in catalogue order, so a module can look up links offered by
   * modules listed before it.
   */
  create(ctx: ModuleContext): Module | Promise<Module>;
}
