/**
 * Harnesses that drive each ConfigSource through real changes, for the contract suite.
 */
import { mkdirSync, mkdtempSync, renameSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { createDirSource } from "../../mod/galley/dir_source.ts";
import { MCP_COLLECTIONS } from "../../mod/galley/links.ts";
import { createMcpProvider } from "../../mod/galley/mcp.ts";
import type { ConfigSource } from "../../mod/runtime/config_source.ts";
import { createConfigStore } from "../../mod/galley/store.ts";
import { createXdsSource } from "../../mod/galley/xds_source.ts";
import { createGrpcServer } from "../../mod/grpc/server.ts";
import { createLogger } from "../../mod/shared/logger.ts";
import { createAdsServer } from "../../mod/xds/server.ts";

/** A quiet logger for tests. */
export const quiet = createLogger({ write: () => {} });

/** A source under test plus ways to change what it watches. */
export interface SourceHarness {
  readonly name: string;
  /** Builds a new source over the current state. */
  source(): ConfigSource;
  /** Creates or replaces a unit of config (a file, an upstream origin). */
  put(name: string, yaml: string): Promise<void>;
  remove(name: string): Promise<void>;
  close(): Promise<void>;
}

/** The directory source over a temporary directory; writes are atomic renames. */
export function dirHarness(): SourceHarness {
  const dir = mkdtempSync(join(tmpdir(), "meshd-dir-"));
  return {
    name: "directory",
    source: () => createDirSource({ dir, logger: quiet, debounceMs: 20, rescanMs: 0 }),
    put(name, yaml) {
      const p = join(dir, name);
      mkdirSync(dirname(p), { recursive: true });
      writeFileSync(p + ".tmp~", yaml);
      renameSync(p + ".tmp~", p);
      return Promise.resolve();
    },
    remove(name) {
      rmSync(join(dir, name));
      return Promise.resolve();
    },
    close() {
      rmSync(dir, { recursive: true, force: true });
      return Promise.resolve();
    },
  };
}

/**
 * The xDS (MCP) source against a real upstream galley store served over gRPC on loopback;
 * `maxResponseBytes` is handed to the source.
 */
export async function xdsHarness(opts: { maxResponseBytes?: number } = {}): Promise<SourceHarness> {
  const upstream = createConfigStore({ logger: quiet });
  const sink = upstream.sink("upstream");
  sink.replace([]);
  const contents = new Map<string, string>();
  const grpc = createGrpcServer({ logger: quiet });
  const ads = createAdsServer({ logger: quiet });
  ads.addProvider(createMcpProvider(upstream, MCP_COLLECTIONS));
  ads.register(grpc);
  const addr = await grpc.listen("127.0.0.1:0");
  return {
    name: "xds",
    source: () =>
      createXdsSource({
        url: `xds://127.0.0.1:${addr.port}`,
        collections: MCP_COLLECTIONS,
        logger: quiet,
        minBackoffMs: 20,
        maxBackoffMs: 200,
        maxResponseBytes: opts.maxResponseBytes,
      }),
    put(name, yaml) {
      contents.set(name, yaml);
      sink.update([{ origin: name, content: yaml }]);
      return Promise.resolve();
    },
    remove(name) {
      contents.delete(name);
      sink.update([{ origin: name, deleted: true }]);
      return Promise.resolve();
    },
    close: () => grpc.shutdown(100),
  };
}
