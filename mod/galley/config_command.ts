/**
 * `meshd config apply|get|delete|import`: config in etcd (`--store`), written and read the way
 * every replica then serves it.
 *
 * - `apply -f FILE|DIR|-` validates exactly as `meshd validate` does and writes nothing when
 *   anything is invalid. Each file's resources are written in one etcd transaction that holds
 *   only if none of them changed since it was read: the `metadata.resourceVersion` the document
 *   carries (as `config get` prints it), else the revision read just before writing. A resource
 *   changed by someone else is a conflict, reported, and nothing of that file is written
 *   (`--force` writes regardless).
 * - `import DIR` takes a `--config-dir` into etcd: it writes what etcd lacks, leaves what is equal,
 *   and reports as a conflict what etcd holds with other content (`--force` overwrites).
 * - `get [KIND [NS/NAME]]` prints resources as YAML or JSON, with their resourceVersion.
 * - `delete KIND NS/NAME` removes one resource.
 *
 * When etcd cannot be reached (or has lost its quorum) every command fails with UNAVAILABLE and
 * the reason, and writes nothing.
 *
 * @module
 */
import { readFileSync, statSync } from "node:fs";
import { stringify } from "yaml";
import type { Command, Invocation } from "../cli/command.ts";
import type { SettingSpec } from "../cli/setting.ts";
import { errorMessage, UsageError } from "../shared/errors.ts";
import type { KeyValue, Store, TxnCompare } from "../store/mod.ts";
import {
  configKey,
  configPrefix,
  encodeResource,
  kindPrefix,
  parseConfigKey,
  resourceConfigKey,
  STORE_SETTINGS,
} from "../store/mod.ts";
import { loadConfigPaths } from "./cli.ts";
import { type Diagnostic, formatDiagnostic, type Resource, resourceLabel } from "../api/resource.ts";
import { knownKinds } from "./validate.ts";

const SETTINGS: readonly SettingSpec[] = [
  ...STORE_SETTINGS,
  {
    name: "filename",
    short: "f",
    kind: { type: "string" },
    help: "apply: the file, directory (read recursively) or - (standard input) to apply",
    flagOnly: true,
  },
  {
    name: "force",
    kind: { type: "bool" },
    default: false,
    help: "apply, import, delete: write even over resources changed since they were read",
    flagOnly: true,
  },
  {
    name: "etcd-max-txn-ops",
    kind: { type: "int", min: 1 },
    default: 128,
    help: "apply, import: most resources one file may hold, as etcd's --max-txn-ops (default 128) " +
      "allows in one transaction; a larger file is refused before anything is written",
    flagOnly: true,
  },
  {
    name: "output",
    short: "o",
    kind: { type: "enum", values: ["yaml", "json"] },
    default: "yaml",
    help: "get: output format",
    flagOnly: true,
  },
];

const USAGE = "meshd config apply -f FILE|DIR|- [--force] | get [KIND [NS/NAME]] [-o yaml|json] | " +
  "delete KIND NS/NAME | import DIR  (each with --store etcd://HOST:PORT[,...][/PREFIX])";

/** One resource to write and what it must find in etcd. */
interface Planned {
  readonly resource: Resource;
  readonly key: string;
  readonly value: Uint8Array;
  /** The modification revision the write expects (0: absent); undefined with --force. */
  readonly expect?: number;
  readonly state: "created" | "configured" | "unchanged";
}

const decoder = new TextDecoder();

/** JSON text with object keys sorted, so that two encodings of one document compare equal. */
function canonical(value: unknown): string {
  return JSON.stringify(
    value,
    (_k, v: unknown) =>
      v !== null && typeof v === "object" && !Array.isArray(v)
        ? Object.fromEntries(
          Object.entries(v as Record<string, unknown>).sort(([a], [b]) => (a < b ? -1 : 1)),
        )
        : v,
  );
}

function sameDocument(stored: Uint8Array, wanted: Uint8Array): boolean {
  try {
    return canonical(JSON.parse(decoder.decode(stored))) === canonical(JSON.parse(decoder.decode(wanted)));
  } catch {
    return false;
  }
}

/** The failure message when etcd cannot be used, in the form every command prints it. */
function unavailable(inv: Invocation, sub: string, err: unknown, tail: string): number {
  inv.err(`meshd config ${sub}: UNAVAILABLE: ${errorMessage(err)}; ${tail}\n`);
  return 1;
}

async function open(inv: Invocation): Promise<Store> {
  if (inv.settings.optionalString("store") === undefined) {
    throw new UsageError(
      "meshd config: --store etcd://HOST:PORT[,HOST:PORT...][/PREFIX] (or MESHD_STORE) is required",
    );
  }
  const { openStore } = await import("../store/lazy.ts");
  const { createLogger } = await import("../shared/logger.ts");
  return openStore(inv.settings, { logger: createLogger({ write: () => {} }) })!;
}

/** Plans one file's writes: what each key holds now and what the write expects. */
async function plan(
  store: Store,
  resources: readonly Resource[],
  mode: "apply" | "import",
  force: boolean,
): Promise<{ planned: Planned[]; conflicts: string[] }> {
  const planned: Planned[] = [];
  const conflicts: string[] = [];
  const keys = resources.map((r) => resourceConfigKey(store.prefix, r));
  const current = await Promise.all(keys.map((key) => store.client.get(key)));
  resources.forEach((r, i) => {
    const key = keys[i]!;
    const value = encodeResource(r);
    const now = current[i];
    const at = `${r.source.file}:${r.source.line}`;
    const state = now === undefined ? "created" : sameDocument(now.value, value) ? "unchanged" : "configured";
    let expect: number | undefined = now?.modRevision ?? 0;
    const rv = r.metadata.resourceVersion;
    if (force) expect = undefined;
    else if (mode === "import" && state === "configured") {
      conflicts.push(
        `${at}: ${resourceLabel(r)} is already in etcd with other content (revision ${now!.modRevision}); ` +
          "use meshd config apply, or --force to overwrite",
      );
    } else if (mode === "apply" && rv !== undefined && state !== "unchanged") {
      if (!/^\d+$/.test(rv)) {
        throw new UsageError(
          `${at}: ${resourceLabel(r)}: metadata.resourceVersion must be a revision number, got "${rv}"`,
        );
      }
      if (Number(rv) !== (now?.modRevision ?? 0)) {
        conflicts.push(
          `${at}: ${
            resourceLabel(r)
          } was changed by someone else since it was read (resourceVersion ${rv}, ` +
            `now ${now === undefined ? "deleted" : now.modRevision}); get it again, or use --force`,
        );
      }
      expect = Number(rv);
    }
    planned.push({ resource: r, key, value, expect, state });
  });
  return { planned, conflicts };
}

/** Writes one file's plan in one transaction; returns the lines to print, or the conflicts. */
async function write(
  store: Store,
  planned: readonly Planned[],
): Promise<{ lines: string[]; conflicts: string[] }> {
  const writes = planned.filter((p) => p.state !== "unchanged");
  const lines = (revision: number) =>
    planned.map((p) =>
      `${resourceLabel(p.resource)} ${p.state}${p.state === "unchanged" ? "" : ` (revision ${revision})`}`
    );
  if (writes.length === 0) return { lines: lines(0), conflicts: [] };
  const compares: TxnCompare[] = writes.flatMap((p) =>
    p.expect === undefined ? [] : [{ key: p.key, modRevision: p.expect }]
  );
  const res = await store.client.txn(compares, writes.map((p) => ({ put: p.key, value: p.value })));
  if (res.succeeded) return { lines: lines(res.revision), conflicts: [] };
  const now = new Map<string, KeyValue>(res.current.map((kv) => [kv.key, kv]));
  const conflicts = writes
    .filter((p) => p.expect !== undefined && (now.get(p.key)?.modRevision ?? 0) !== p.expect)
    .map((p) =>
      `${p.resource.source.file}:${p.resource.source.line}: ${
        resourceLabel(p.resource)
      } was changed by someone ` +
      `else while this was written (revision ${p.expect}, now ${
        now.get(p.key)?.modRevision ?? "deleted"
      }); ` +
      "try again, or use --force"
    );
  return { lines: [], conflicts };
}

/** apply and import: validate every file, then write file by file. */
async function applyPaths(inv: Invocation, sub: "apply" | "import", path: string): Promise<number> {
  const result = await loadConfigPaths([path], () => readFileSync(0, "utf8"));
  const errors = result.diagnostics.filter((d: Diagnostic) => d.severity === "error");
  for (const d of result.diagnostics) inv.err(formatDiagnostic(d) + "\n");
  if (errors.length > 0) {
    inv.err(
      `meshd config ${sub}: ${errors.length} error${
        errors.length === 1 ? "" : "s"
      } in ${path}; nothing was written\n`,
    );
    return 1;
  }
  const byFile = new Map<string, Resource[]>();
  for (const r of result.valid) byFile.set(r.source.file, [...(byFile.get(r.source.file) ?? []), r]);
  const maxOps = inv.settings.number("etcd-max-txn-ops");
  const tooLarge = [...byFile].filter(([, resources]) => resources.length > maxOps);
  for (const [file, resources] of tooLarge) {
    inv.err(
      `${file}: ${resources.length} resources, but one file is written in one etcd transaction and etcd ` +
        `takes at most ${maxOps} operations in one (its --max-txn-ops); split the file, or raise etcd's ` +
        `--max-txn-ops and pass the same --etcd-max-txn-ops\n`,
    );
  }
  if (tooLarge.length > 0) {
    inv.err(`meshd config ${sub}: nothing was written\n`);
    return 1;
  }
  const store = await open(inv);
  const force = inv.settings.bool("force");
  let failed = false;
  try {
    for (const [file, resources] of byFile) {
      try {
        const { planned, conflicts } = await plan(store, resources, sub, force);
        const outcome = conflicts.length > 0 ? { lines: [], conflicts } : await write(store, planned);
        for (const line of outcome.lines) inv.out(line + "\n");
        if (outcome.conflicts.length > 0) {
          failed = true;
          for (const c of outcome.conflicts) inv.err(`conflict: ${c}\n`);
          inv.err(`meshd config ${sub}: nothing from ${file} was written\n`);
        }
      } catch (err) {
        if (err instanceof UsageError) throw err;
        const { StoreUnavailableError } = await import("../store/mod.ts");
        if (err instanceof StoreUnavailableError) {
          return unavailable(inv, sub, err, `nothing more was written (stopped at ${file})`);
        }
        throw err;
      }
    }
  } finally {
    store.close();
  }
  return failed ? 1 : 0;
}

/** The kind a command-line word names: "VirtualService", "virtualservice", "rule.config.istio.io". */
function findKindArg(word: string): { group: string; kind: string } {
  const lower = word.toLowerCase();
  const matches = knownKinds.filter((k) =>
    k.kind.toLowerCase() === lower || `${k.kind}.${k.group}`.toLowerCase() === lower
  );
  if (matches.length === 1) return matches[0]!;
  if (matches.length > 1) {
    throw new UsageError(
      `meshd config: kind ${word} is ambiguous; say one of ${
        matches.map((k) => `${k.kind}.${k.group}`).join(", ")
      }`,
    );
  }
  throw new UsageError(
    `meshd config: unknown kind ${word}; known kinds: ${knownKinds.map((k) => k.kind).join(", ")}`,
  );
}

function splitName(word: string): { namespace: string; name: string } {
  const m = /^([^/]+)\/([^/]+)$/.exec(word);
  if (m === null) throw new UsageError(`meshd config: want NAMESPACE/NAME, got ${word}`);
  return { namespace: m[1]!, name: m[2]! };
}

/** A stored value as a document carrying its resourceVersion, or undefined when it is unreadable. */
function documentOf(kv: KeyValue): Record<string, unknown> | undefined {
  try {
    const doc = JSON.parse(decoder.decode(kv.value)) as Record<string, unknown>;
    const metadata = {
      ...(doc.metadata as Record<string, unknown>),
      resourceVersion: String(kv.modRevision),
    };
    return { ...doc, metadata };
  } catch {
    return undefined;
  }
}

async function get(inv: Invocation, store: Store): Promise<number> {
  const [, kindWord, nameWord] = inv.args;
  const kind = kindWord === undefined ? undefined : findKindArg(kindWord);
  const docs: Record<string, unknown>[] = [];
  if (kind !== undefined && nameWord !== undefined) {
    const key = configKey(store.prefix, { ...kind, ...splitName(nameWord) });
    const kv = await store.client.get(key);
    if (kv === undefined) {
      inv.err(`meshd config get: ${kind.kind} ${nameWord} not found (no key ${key})\n`);
      return 1;
    }
    const doc = documentOf(kv);
    if (doc === undefined) {
      inv.err(`meshd config get: ${key} does not hold a JSON document\n`);
      return 1;
    }
    docs.push(doc);
  } else {
    const prefix = kind === undefined
      ? configPrefix(store.prefix)
      : kindPrefix(store.prefix, kind.group, kind.kind);
    for (const kv of (await store.client.list(prefix)).kvs) {
      const doc = parseConfigKey(store.prefix, kv.key) === undefined ? undefined : documentOf(kv);
      if (doc === undefined) inv.err(`warning: ${kv.key} is not a config resource; left out\n`);
      else docs.push(doc);
    }
  }
  const single = nameWord !== undefined;
  if (inv.settings.string("output") === "json") {
    inv.out(
      JSON.stringify(single ? docs[0] : { apiVersion: "v1", kind: "List", items: docs }, null, 2) + "\n",
    );
  } else {
    inv.out(docs.map((d) => stringify(d)).join("---\n"));
  }
  return 0;
}

async function remove(inv: Invocation, store: Store): Promise<number> {
  const [, kindWord, nameWord] = inv.args;
  if (kindWord === undefined || nameWord === undefined) {
    throw new UsageError(`meshd config delete: want KIND NAMESPACE/NAME; usage: ${USAGE}`);
  }
  const kind = findKindArg(kindWord);
  const key = configKey(store.prefix, { ...kind, ...splitName(nameWord) });
  const now = await store.client.get(key);
  if (now === undefined) {
    inv.err(`meshd config delete: ${kind.kind} ${nameWord} not found (no key ${key})\n`);
    return 1;
  }
  const compares = inv.settings.bool("force") ? [] : [{ key, modRevision: now.modRevision }];
  const res = await store.client.txn(compares, [{ delete: key }]);
  if (!res.succeeded) {
    inv.err(
      `meshd config delete: conflict: ${kind.kind} ${nameWord} changed while it was deleted; try again\n`,
    );
    return 1;
  }
  inv.out(`${kind.kind} ${nameWord} deleted (revision ${res.revision})\n`);
  return 0;
}

/** `meshd config`. */
export const configCommand: Command = {
  name: "config",
  summary: "write, read and delete config in etcd (--store): apply, get, delete, import",
  usage: USAGE,
  description:
    "apply validates as meshd validate does and writes nothing when anything is invalid; each file's " +
    "resources are written in one transaction, refused as a conflict when one of them changed since it was read " +
    "(its metadata.resourceVersion, as get prints it); --force overrides. import DIR writes a --config-dir's " +
    "resources that etcd lacks and reports those it holds with other content. Exit status: 0 done, 1 invalid, " +
    "conflict, not found or UNAVAILABLE (etcd unreachable or without quorum), 2 usage error.",
  settings: () => SETTINGS,
  args: { min: 1, max: 3, name: "apply|get|delete|import" },
  async run(inv) {
    const sub = inv.args[0]!;
    switch (sub) {
      case "apply": {
        const path = inv.settings.optionalString("filename");
        if (path === undefined) throw new UsageError(`meshd config apply: -f FILE|DIR|- is required`);
        if (inv.args.length > 1) {
          throw new UsageError(`meshd config apply: unexpected argument ${inv.args[1]}`);
        }
        return await applyPaths(inv, "apply", path);
      }
      case "import": {
        const dir = inv.args[1];
        if (dir === undefined || inv.args.length > 2) {
          throw new UsageError("meshd config import: want one DIR");
        }
        let isDir = false;
        try {
          isDir = statSync(dir).isDirectory();
        } catch {
          // reported below
        }
        if (!isDir) throw new UsageError(`meshd config import: ${dir} is not a directory`);
        return await applyPaths(inv, "import", dir);
      }
      case "get":
      case "delete": {
        const store = await open(inv);
        try {
          return sub === "get" ? await get(inv, store) : await remove(inv, store);
        } catch (err) {
          const { StoreUnavailableError } = await import("../store/mod.ts");
          if (err instanceof StoreUnavailableError) {
            return unavailable(inv, sub, err, sub === "delete" ? "nothing was deleted" : "nothing was read");
          }
          throw err;
        } finally {
          store.close();
        }
      }
      default:
        throw new UsageError(`meshd config: unknown subcommand ${sub}; usage: ${USAGE}`);
    }
  },
};
