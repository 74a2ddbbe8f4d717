/**
 * The directory source (`--config-dir`): every *.yaml, *.yml and *.json file below a directory,
 * watched.
 *
 * Changes are noticed through a recursive file watch and, as a safety net for missed events
 * (network filesystems, watch limits), a periodic rescan. Events are debounced: a scan runs
 * once the directory has been quiet for `debounceMs`. A file whose size or modification time
 * changes while it is being read is not used; it is read again on the next scan, so a file
 * caught half-written is never taken as truncated config. Editors' atomic saves (write a
 * temporary file, rename over) are seen as one change. Hidden files and directories (".x") and
 * backups ("x~") are ignored.
 *
 * Links are followed, but each directory is read once per scan (by device and inode): a link
 * that loops back, or leads to a directory already read, is skipped and reported. A scan reads
 * at most `maxFiles` files and directories and goes at most {@link maxDirDepth} directories
 * deep; a walk cut short by either limit, or by a directory that cannot be read, is not
 * delivered, so it never looks like deleted files: the last good config stays. Nor is a listing
 * whose files add up to more than `maxTotalBytes`, which is not even read.
 *
 * A Kubernetes ConfigMap or Secret volume (files in a hidden timestamped directory, `..data` a
 * link to it, and each visible name a link through `..data`) is read through the directory
 * `..data` points to when the scan starts, under the visible names. Kubernetes swaps a new
 * version in by renaming a new `..data` link over the old one, so a scan sees the old version
 * or the new one whole, never a mix, and a swap is one change.
 */
import { type FSWatcher, readFileSync, readlinkSync, realpathSync, statSync, watch } from "node:fs";
import { readdir } from "node:fs/promises";
import { join } from "node:path";
import { type Clock, systemClock, type Timer } from "../shared/clock.ts";
import { errorMessage } from "../shared/errors.ts";
import type { Logger } from "../shared/logger.ts";
import type {
  ConfigSource,
  OriginChange,
  OriginContent,
  OriginError,
  SinkVerdict,
  SourceSink,
} from "../runtime/config_source.ts";
import { defaultMaxBytes } from "./parse.ts";
import { totalBytesExcess } from "./store.ts";

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
  /** Most config files and directories one scan reads; default {@link defaultMaxFiles}. */
  maxFiles?: number;
  /**
   * A listing whose files add up to more bytes than this is not read at all (the store's bound
   * on total config would refuse it anyway); unlimited when unset.
   */
  maxTotalBytes?: number;
}

/** The default limit on config files and directories read by one scan. */
export const defaultMaxFiles = 10_000;

/** How many directories deep a walk goes below the config directory. */
export const maxDirDepth = 32;

/** One config file found by a walk. */
export interface ConfigFile {
  /** Its name in diagnostics and in the store: the path as the user sees it. */
  readonly origin: string;
  /** Where to read it: the same path, or the file inside the directory a `..data` link named. */
  readonly path: string;
}

/** What a walk of a config directory found. */
export interface ConfigListing {
  /** Config files, sorted by origin. */
  readonly files: readonly ConfigFile[];
  /** Directory links not followed because they loop or lead to a directory already read. */
  readonly skipped: readonly string[];
  /** Why the listing is not the directory's whole content, when it is not. */
  readonly incomplete?: string;
  /** A directory vanished while it was read: the listing may lack files; walk again. */
  readonly retry: boolean;
}

interface Fingerprint {
  size: number;
  mtimeMs: number;
  ino: number;
}

const CONFIG_FILE = /\.(ya?ml|json)$/i;
const DATA_LINK = "..data";

/**
 * Walks `dir` for config files: *.yaml, *.yml and *.json, skipping hidden entries (".x") and
 * backups ("x~"), following links while reading each directory once, reading ConfigMap volumes
 * through their `..data` link. Throws if `dir` itself cannot be read; stops early, saying why in
 * `incomplete`, past `maxFiles` files and directories or {@link maxDirDepth} levels.
 */
export async function walkConfigDir(dir: string, opts: { maxFiles?: number } = {}): Promise<ConfigListing> {
  const maxFiles = opts.maxFiles ?? defaultMaxFiles;
  const files: ConfigFile[] = [];
  const skipped: string[] = [];
  const walked = new Set<string>();
  let count = 0;
  let incomplete: string | undefined;
  let retry = false;
  const tooMany = () => `more than ${maxFiles} files and directories under ${dir} (--config-max-files)`;

  async function visit(path: string, origin: string, depth: number, top: boolean): Promise<void> {
    let id: string;
    try {
      const st = statSync(path, { bigint: true });
      id = `${st.dev}:${st.ino}`;
    } catch (err) {
      if (top) throw err;
      retry = true; // vanished mid-scan
      return;
    }
    if (walked.has(id)) {
      skipped.push(origin);
      return;
    }
    walked.add(id);
    if (depth > maxDirDepth) {
      incomplete = `${origin} is more than ${maxDirDepth} directories below ${dir}`;
      return;
    }
    if (++count > maxFiles) {
      incomplete = tooMany();
      return;
    }
    let entries;
    try {
      entries = await readdir(path, { withFileTypes: true });
    } catch (err) {
      if (top) throw err;
      const code = (err as NodeJS.ErrnoException).code;
      if (code === "ENOENT" || code === "ENOTDIR") retry = true;
      else incomplete = `cannot read directory ${origin}: ${errorMessage(err)}`;
      return;
    }
    entries.sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
    let volume: string | undefined;
    if (entries.some((e) => e.name === DATA_LINK && e.isSymbolicLink())) {
      try {
        volume = realpathSync(join(path, DATA_LINK));
      } catch {
        retry = true; // swapped or removed under us
      }
    }
    if (volume !== undefined) await visit(volume, origin, depth, false);
    for (const e of entries) {
      if (incomplete !== undefined) return;
      if (e.name.startsWith(".") || e.name.endsWith("~")) continue;
      const p = join(path, e.name);
      let isDir = e.isDirectory();
      let isFile = e.isFile();
      if (e.isSymbolicLink()) {
        if (volume !== undefined && throughDataLink(p)) continue; // read through ..data above
        try {
          const st = statSync(p);
          isDir = st.isDirectory();
          isFile = st.isFile();
        } catch {
          continue; // dangling link
        }
      }
      if (isDir) await visit(p, join(origin, e.name), depth + 1, false);
      else if (isFile && CONFIG_FILE.test(e.name)) {
        if (++count > maxFiles) {
          incomplete = tooMany();
          return;
        }
        files.push({ origin: join(origin, e.name), path: p });
      }
    }
  }

  await visit(dir, dir, 0, true);
  files.sort((a, b) => (a.origin < b.origin ? -1 : a.origin > b.origin ? 1 : 0));
  return { files, skipped, incomplete, retry };
}

/** True for a link whose target is `..data` or below it: a ConfigMap volume's visible name. */
function throughDataLink(path: string): boolean {
  try {
    const target = readlinkSync(path);
    return target === DATA_LINK || target.startsWith(DATA_LINK + "/");
  } catch {
    return false;
  }
}

/**
 * Lists the config files below `dir` as {@link walkConfigDir} finds them, by the names the user
 * sees, sorted. Throws if `dir` cannot be read or the walk was cut short.
 */
export async function listConfigFiles(dir: string, opts: { maxFiles?: number } = {}): Promise<string[]> {
  const listing = await walkConfigDir(dir, opts);
  if (listing.incomplete !== undefined) throw new Error(listing.incomplete);
  return listing.files.map((f) => f.origin);
}

/** Creates a directory source. */
export function createDirSource(opts: DirSourceOptions): ConfigSource {
  const clock = opts.clock ?? systemClock;
  const debounceMs = opts.debounceMs ?? 100;
  const maxDelayMs = opts.maxDelayMs ?? 1000;
  const maxBytes = opts.maxBytes ?? defaultMaxBytes;
  const log = opts.logger;
  /** What each origin looked like when last delivered (or refused). */
  const known = new Map<string, Fingerprint>();
  let sink: SourceSink | undefined;
  let watcher: FSWatcher | undefined;
  let debounce: Timer | undefined;
  let firstEventAt: number | undefined;
  let rescanTimer: Timer | undefined;
  let scanning: Promise<void> | undefined;
  let again = false;
  let stopped = false;
  /** The sink refused the last change: deliver the next one as a full listing. */
  let relist = false;
  /** What was last logged about skipped links and withheld listings, so each is logged once. */
  let loggedSkipped = "";
  let loggedWithheld = "";

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
  function readStable(f: ConfigFile, before: Fingerprint): OriginContent | OriginError | undefined {
    if (before.size > maxBytes) {
      return { origin: f.origin, error: `file is ${before.size} bytes; the limit is ${maxBytes} bytes` };
    }
    let content: Uint8Array;
    try {
      content = readFileSync(f.path);
    } catch (err) {
      return fingerprint(f.path) === undefined
        ? undefined
        : { origin: f.origin, error: `cannot read: ${errorMessage(err)}` };
    }
    const after = fingerprint(f.path);
    if (!same(before, after) || content.length !== before.size) return undefined;
    return { origin: f.origin, content };
  }

  /** Reports the walk's problems to the sink, and logs each new set of them once. */
  function report(s: SourceSink, skipped: readonly string[], withheld?: string): void {
    const shown = skipped.slice(0, 20).map((p) =>
      `skipped ${p}: a directory link that loops or leads to a directory already read`
    );
    if (skipped.length > shown.length) shown.push(`and ${skipped.length - shown.length} more links skipped`);
    s.report({ withheld, warnings: shown });
    const skippedKey = skipped.join("\n");
    if (skippedKey !== loggedSkipped && skipped.length > 0) {
      log.warn("config directory links skipped: they loop or lead to a directory already read", {
        dir: opts.dir,
        links: skipped.slice(0, 20),
        count: skipped.length,
      });
    }
    loggedSkipped = skippedKey;
    if (withheld !== undefined && withheld !== loggedWithheld) {
      log.warn("config directory listing not used; keeping the last good config", {
        dir: opts.dir,
        reason: withheld,
      });
    }
    loggedWithheld = withheld ?? "";
  }

  async function scan(initial: boolean): Promise<void> {
    let listing = await walkConfigDir(opts.dir, { maxFiles: opts.maxFiles });
    for (let tries = 0; initial && listing.retry && tries < 5; tries++) {
      listing = await walkConfigDir(opts.dir, { maxFiles: opts.maxFiles });
    }
    if (stopped || sink === undefined) return;
    if (listing.incomplete !== undefined) {
      report(sink, listing.skipped, `${listing.incomplete}; keeping the last good config`);
      if (initial) throw new Error(`config directory ${opts.dir}: ${listing.incomplete}`);
      return;
    }
    report(sink, listing.skipped);
    if (listing.retry && !initial) {
      schedule();
      return;
    }
    const fingerprints = new Map<string, Fingerprint>();
    let unstable = false;
    let dirty = false;
    for (const f of listing.files) {
      const fp = fingerprint(f.path);
      if (fp === undefined) {
        unstable = true; // vanished since the walk
        continue;
      }
      fingerprints.set(f.origin, fp);
      if (!same(known.get(f.origin), fp)) dirty = true;
    }
    if (opts.maxTotalBytes !== undefined) {
      let total = 0;
      // A file over maxBytes is refused alone, unread, so it does not count.
      for (const fp of fingerprints.values()) if (fp.size <= maxBytes) total += fp.size;
      if (total > opts.maxTotalBytes) {
        const why = `the files under ${opts.dir} add up to ${totalBytesExcess(total, opts.maxTotalBytes)}`;
        report(sink, listing.skipped, `${why}; keeping the last good config`);
        if (initial) throw new Error(`config directory ${opts.dir}: ${why}`);
        return;
      }
    }
    const listed = new Set(listing.files.map((f) => f.origin));
    const deleted: OriginChange[] = [...known.keys()].filter((o) => !listed.has(o)).map((origin) => ({
      origin,
      deleted: true,
    }));
    if (!initial && !dirty && deleted.length === 0) {
      if (unstable) schedule();
      return;
    }
    const full = initial || relist;
    if (full && unstable && !initial) {
      schedule(); // a full listing must not leave out a file that exists
      return;
    }
    const changes: Array<OriginContent | OriginError> = [];
    const read = new Map<string, Fingerprint>();
    for (const f of listing.files) {
      const fp = fingerprints.get(f.origin);
      if (fp === undefined || (!full && same(known.get(f.origin), fp))) continue;
      const got = readStable(f, fp);
      if (got === undefined) {
        unstable = true;
        if (full && !initial) {
          schedule();
          return;
        }
        continue;
      }
      read.set(f.origin, fp);
      changes.push(got);
    }
    if (stopped) return;
    for (const d of deleted) known.delete(d.origin);
    for (const [origin, fp] of read) known.set(origin, fp);
    let verdict: SinkVerdict;
    if (full) {
      verdict = sink.replace(changes);
      if (initial && !verdict.applied) throw new Error(`config directory ${opts.dir}: ${verdict.reason}`);
    } else {
      log.debug("config files changed", {
        changed: changes.map((c) => c.origin),
        deleted: deleted.map((d) => d.origin),
      });
      verdict = sink.update([...changes, ...deleted]);
    }
    relist = !verdict.applied;
    if (unstable) schedule();
  }

  function runScan(): void {
    if (stopped) return;
    if (scanning) {
      again = true;
      return;
    }
    scanning = scan(false)
      .catch((err) => {
        log.warn("config directory scan failed; keeping the last good config", {
          dir: opts.dir,
          err: errorMessage(err),
        });
        if (!stopped) {
          sink?.report({ withheld: `cannot read ${opts.dir}: ${errorMessage(err)}`, warnings: [] });
        }
      })
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
      try {
        await scan(true);
      } catch (err) {
        watcher?.close();
        debounce?.cancel();
        throw err;
      }
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
