/**
 * The directory source (`--config-dir`): every *.yaml, *.yml and *.json file below a directory,
 * watched.
 *
 * Changes are noticed through a recursive file watch and, as a safety net for missed events
 * (network filesystems, watch limits), a periodic rescan. Events are debounced: a scan runs
 * once the directory has been quiet for `debounceMs`. A file whose size or modification time
 * changes while it is being read is not used; it is read again on the next scan, so a file
 * caught half-written is never taken as truncated config. Editors' atomic saves (write a
 * temporary file, rename over) and Kubernetes ConfigMap symlink swaps are seen as one change.
 * Hidden files and directories (".x") and backups ("x~") are ignored.
 */
import { type FSWatcher, readFileSync, statSync, watch } from "node:fs";
import { readdir } from "node:fs/promises";
import { join } from "node:path";
import { type Clock, systemClock, type Timer } from "../shared/clock.ts";
import { errorMessage } from "../shared/errors.ts";
import type { Logger } from "../shared/logger.ts";
import type { ConfigSource, OriginChange, OriginContent, OriginError, SourceSink } from "./source.ts";

/** Options for createDirSource. */
export interface DirSourceOptions {
  dir: string;
  logger: Logger;
  clock?: Clock;
  /** Quiet time after the last event before scanning. */
  debounceMs?: number;
  /** Longest a scan waits while events keep coming. */
  maxDelayMs?: number;
  /** Full rescan interval, for events the watch missed; 0 disables. */
  rescanMs?: number;
  /** Files larger than this are refused without being read. */
  maxBytes?: number;
}

interface Fingerprint {
  size: number;
  mtimeMs: number;
  ino: number;
}

const CONFIG_FILE = /\.(ya?ml|json)$/i;

/**
 * Lists the config files below `dir`, recursively and sorted: *.yaml, *.yml and *.json, skipping
 * hidden entries (".x") and backups ("x~"), following symbolic links. Throws if `dir` itself
 * cannot be read.
 */
export async function listConfigFiles(dir: string): Promise<string[]> {
  const out: string[] = [];
  await walk(dir, out, true);
  return out.sort();
}

async function walk(dir: string, out: string[], top: boolean): Promise<void> {
  let entries;
  try {
    entries = await readdir(dir, { withFileTypes: true });
  } catch (err) {
    if (top) throw err;
    return; // a subdirectory vanished mid-scan; the next scan sees the result
  }
  for (const e of entries) {
    if (e.name.startsWith(".") || e.name.endsWith("~")) continue;
    const p = join(dir, e.name);
    let isDir = e.isDirectory();
    let isFile = e.isFile();
    if (e.isSymbolicLink()) {
      try {
        const st = statSync(p);
        isDir = st.isDirectory();
        isFile = st.isFile();
      } catch {
        continue; // dangling link
      }
    }
    if (isDir) await walk(p, out, false);
    else if (isFile && CONFIG_FILE.test(e.name)) out.push(p);
  }
}

/** Creates a directory source. */
export function createDirSource(opts: DirSourceOptions): ConfigSource {
  const clock = opts.clock ?? systemClock;
  const debounceMs = opts.debounceMs ?? 100;
  const maxDelayMs = opts.maxDelayMs ?? 1000;
  const maxBytes = opts.maxBytes ?? 8 * 1024 * 1024;
  const log = opts.logger;
  /** What each file looked like when last delivered (or refused). */
  const known = new Map<string, Fingerprint>();
  let sink: SourceSink | undefined;
  let watcher: FSWatcher | undefined;
  let debounce: Timer | undefined;
  let firstEventAt: number | undefined;
  let rescanTimer: Timer | undefined;
  let scanning: Promise<void> | undefined;
  let again = false;
  let stopped = false;

  function fingerprint(path: string): Fingerprint | undefined {
    try {
      const st = statSync(path);
      return { size: st.size, mtimeMs: st.mtimeMs, ino: st.ino };
    } catch {
      return undefined;
    }
  }

  const same = (a: Fingerprint | undefined, b: Fingerprint | undefined) =>
    a !== undefined && b !== undefined && a.size === b.size && a.mtimeMs === b.mtimeMs && a.ino === b.ino;

  /** Reads one file; undefined when it changed while being read (try again later). */
  function readStable(path: string, before: Fingerprint): OriginContent | OriginError | undefined {
    if (before.size > maxBytes) {
      return { origin: path, error: `file is ${before.size} bytes; the limit is ${maxBytes} bytes` };
    }
    let content: Uint8Array;
    try {
      content = readFileSync(path);
    } catch (err) {
      return fingerprint(path) === undefined
        ? undefined
        : { origin: path, error: `cannot read: ${errorMessage(err)}` };
    }
    const after = fingerprint(path);
    if (!same(before, after) || content.length !== before.size) return undefined;
    return { origin: path, content };
  }

  async function scan(initial: boolean): Promise<void> {
    const files = await listConfigFiles(opts.dir);
    const changes: Array<OriginContent | OriginError> = [];
    const listed = new Set(files);
    let unstable = false;
    for (const path of files) {
      const fp = fingerprint(path);
      if (fp === undefined) continue;
      if (same(known.get(path), fp)) continue;
      const got = readStable(path, fp);
      if (got === undefined) {
        unstable = true;
        continue;
      }
      known.set(path, fp);
      changes.push(got);
    }
    if (stopped || sink === undefined) return;
    const deleted: OriginChange[] = [];
    for (const path of [...known.keys()]) {
      if (!listed.has(path)) {
        known.delete(path);
        deleted.push({ origin: path, deleted: true });
      }
    }
    if (initial) {
      sink.replace(changes);
    } else if (changes.length + deleted.length > 0) {
      log.debug("config files changed", {
        changed: changes.map((c) => c.origin),
        deleted: deleted.map((d) => d.origin),
      });
      sink.update([...changes, ...deleted]);
    }
    if (unstable) schedule();
  }

  function runScan(): void {
    if (stopped) return;
    if (scanning) {
      again = true;
      return;
    }
    scanning = scan(false)
      .catch((err) => log.warn("config directory scan failed", { dir: opts.dir, err: errorMessage(err) }))
      .finally(() => {
        scanning = undefined;
        if (again) {
          again = false;
          schedule();
        }
      });
  }

  function schedule(): void {
    if (stopped) return;
    const now = clock.now();
    firstEventAt ??= now;
    debounce?.cancel();
    const wait = Math.min(debounceMs, Math.max(0, firstEventAt + maxDelayMs - now));
    debounce = clock.setTimer(wait, () => {
      debounce = undefined;
      firstEventAt = undefined;
      runScan();
    });
  }

  function armRescan(): void {
    if (!opts.rescanMs || stopped) return;
    rescanTimer = clock.setTimer(opts.rescanMs, () => {
      runScan();
      armRescan();
    });
  }

  let initialDone = false;
  return {
    name: `dir:${opts.dir}`,
    synced: () => initialDone,
    async start(s) {
      sink = s;
      try {
        if (!statSync(opts.dir).isDirectory()) throw new Error("not a directory");
      } catch (err) {
        throw new Error(`config directory ${opts.dir}: ${errorMessage(err)}`);
      }
      try {
        watcher = watch(opts.dir, { recursive: true }, () => schedule());
        watcher.on(
          "error",
          (err) => log.warn("config directory watch failed; relying on rescans", { err: errorMessage(err) }),
        );
      } catch (err) {
        log.warn("cannot watch config directory; relying on rescans", {
          dir: opts.dir,
          err: errorMessage(err),
        });
      }
      await scan(true);
      initialDone = true;
      armRescan();
    },
    async stop() {
      stopped = true;
      watcher?.close();
      debounce?.cancel();
      rescanTimer?.cancel();
      await scanning;
    },
  };
}
