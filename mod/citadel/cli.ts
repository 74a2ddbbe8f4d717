/**
 * `meshd token create` (bootstrap tokens, offline, from the data directory's signing key) and
 * `meshd ca status|rotate|activate|retire-root` (root rotation on a running daemon, through its
 * admin server, authenticated with the admin token in the daemon's data directory).
 *
 * @module
 */
import { existsSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { readAdminToken } from "../admin/mod.ts";
import type { Command } from "../cli/command.ts";
import type { Settings } from "../cli/flags.ts";
import type { TokenSigningKey } from "./token.ts";
import { errorMessage, UsageError } from "../shared/errors.ts";
import { STORE_SETTINGS } from "../store/mod.ts";

/** `meshd token`: bootstrap tokens for new workloads. */
export const tokenCommand: Command = {
  name: "token",
  summary: "create bootstrap tokens that let a new workload get its first certificate",
  usage:
    "meshd token create --namespace NS --service-account SA [--workload-group NAME] [--ttl 1h] [--single-use] " +
    "[--data-dir DIR | --store etcd://... --ca-kek-file FILE]",
  description:
    "Prints an ES256 JWT for spiffe://TRUST_DOMAIN/ns/NS/sa/SA, signed with <data-dir>/token-signing-key.pem " +
    "(created when missing; the daemon with the same --data-dir verifies it). The trust domain is --trust-domain, " +
    "else the one the daemon recorded in <data-dir>/trust-domain, else cluster.local. The agent sends the token as " +
    "`authorization: Bearer <token>` to CreateCertificate on 15010. A --single-use token is redeemed once. " +
    "With --store the token is signed with the key the replicas share in etcd (sealed under --ca-kek-file).",
  settings: () => [
    { name: "namespace", kind: { type: "string" }, help: "namespace of the workload (required)" },
    { name: "service-account", kind: { type: "string" }, help: "service account of the workload (required)" },
    {
      name: "workload-group",
      kind: { type: "string" },
      help: "WorkloadGroup the workload joins (the wg claim)",
    },
    {
      name: "ttl",
      kind: { type: "duration", min: 1000 },
      default: 3600_000,
      help: "how long the token is valid",
    },
    {
      name: "single-use",
      kind: { type: "bool" },
      default: false,
      help: "the token may be redeemed once only",
    },
    {
      name: "data-dir",
      kind: { type: "path" },
      default: "/var/lib/meshd",
      help: "the daemon's data directory (holds the token signing key)",
    },
    { name: "trust-domain", kind: { type: "string" }, help: "trust domain of the identity (see above)" },
    ...STORE_SETTINGS,
    {
      name: "ca-kek-file",
      kind: { type: "path" },
      help: "with --store: the key-encryption key the replicas use (--ca-kek-file of meshd serve)",
    },
  ],
  args: { min: 1, max: 1, name: "create" },
  async run(inv) {
    if (inv.args[0] !== "create") {
      throw new UsageError(`meshd token: unknown subcommand ${inv.args[0]}; usage: ${this.usage}`);
    }
    const s = inv.settings;
    const namespace = s.optionalString("namespace");
    const serviceAccount = s.optionalString("service-account");
    if (!namespace || !serviceAccount) {
      throw new UsageError("meshd token create: --namespace and --service-account are required");
    }
    const dataDir = s.string("data-dir");
    const recorded = join(dataDir, "trust-domain");
    const trustDomain = s.optionalString("trust-domain") ??
      (existsSync(recorded) ? readFileSync(recorded, "utf8").trim() : undefined) ?? "cluster.local";
    const { createToken, loadOrCreateTokenKey } = await import("./token.ts");
    const warn = (msg: string) => inv.err(`warning: ${msg}\n`);
    const key = s.optionalString("store") === undefined
      ? loadOrCreateTokenKey(dataDir, warn)
      : await sharedTokenKey(inv.settings, warn);
    const now = Date.now();
    let token: string;
    try {
      token = createToken(key, {
        trustDomain,
        namespace,
        serviceAccount,
        workloadGroup: s.optionalString("workload-group"),
        ttlMs: s.number("ttl"),
        singleUse: s.bool("single-use"),
        now,
      });
    } catch (err) {
      throw new UsageError(`meshd token create: ${(err as Error).message}`);
    }
    inv.out(token + "\n");
    inv.err(
      `token for spiffe://${trustDomain}/ns/${namespace}/sa/${serviceAccount}, valid until ${
        new Date(now + s.number("ttl")).toISOString()
      }${s.bool("single-use") ? ", single use" : ""}\n`,
    );
    return 0;
  },
};

/** The token key the replicas share in etcd (`meshd token create --store`). */
async function sharedTokenKey(settings: Settings, warn: (msg: string) => void): Promise<TokenSigningKey> {
  const kekFile = settings.optionalString("ca-kek-file");
  if (kekFile === undefined) throw new UsageError("meshd token create: --store needs --ca-kek-file FILE");
  const { readKekFile } = await import("./kek.ts");
  const { openStore } = await import("../store/lazy.ts");
  const { createLogger } = await import("../shared/logger.ts");
  const { loadOrCreateSharedTokenKey } = await import("./token_shared.ts");
  const kek = readKekFile(kekFile, warn);
  const store = openStore(settings, { logger: createLogger({ write: () => {} }) })!;
  try {
    return await loadOrCreateSharedTokenKey(store, kek);
  } catch (err) {
    throw new Error(`meshd token create: ${errorMessage(err)}`);
  } finally {
    store.close();
  }
}

const CA_ACTIONS: Record<string, { method: string; path: string }> = {
  status: { method: "GET", path: "/debug/ca" },
  rotate: { method: "POST", path: "/debug/ca/rotate" },
  activate: { method: "POST", path: "/debug/ca/activate" },
  "retire-root": { method: "POST", path: "/debug/ca/retire" },
};

/** `meshd ca`: inspect and rotate the roots of a running daemon. */
export const caCommand: Command = {
  name: "ca",
  summary: "show the CA's roots, rotate to a new root, or retire the old one (on a running meshd)",
  usage:
    "meshd ca status|rotate|activate|retire-root [--admin-addr HOST:PORT] [--data-dir DIR] | meshd ca kek create --out FILE",
  description:
    "Talks to the daemon's admin server (127.0.0.1 only by default), authenticated with the token the daemon " +
    "keeps in <data-dir>/admin-token (readable only by the user meshd runs as; run this command as that user). " +
    "rotate adds a new root to the trust " +
    "bundle while the old one keeps signing; once every workload has renewed, activate makes the new root sign; " +
    "once every leaf has been re-issued, retire-root drops the old roots. " +
    "A --ca-dir CA is rotated by replacing its files instead. Exit status 1 when the daemon refuses. " +
    "With --store any replica takes the step and every other follows it. " +
    "`kek create` writes a new key-encryption key (32 random bytes, mode 0600) for --ca-kek-file; it never overwrites a file.",
  settings: () => [
    {
      name: "admin-addr",
      kind: { type: "addr" },
      default: "127.0.0.1:15014",
      help: "admin address of the daemon",
    },
    {
      name: "data-dir",
      kind: { type: "path" },
      default: "/var/lib/meshd",
      help: "the daemon's data directory (holds the admin token)",
    },
    { name: "out", kind: { type: "path" }, help: "kek create: the file to write" },
  ],
  args: { min: 1, max: 2, name: "status|rotate|activate|retire-root|kek create" },
  async run(inv) {
    if (inv.args[0] === "kek") {
      if (inv.args[1] !== "create") {
        throw new UsageError(`meshd ca kek: want "kek create"; usage: ${this.usage}`);
      }
      const out = inv.settings.optionalString("out");
      if (out === undefined) throw new UsageError("meshd ca kek create: --out FILE is required");
      const { createKekFile } = await import("./kek.ts");
      createKekFile(out);
      inv.err(`wrote a new key-encryption key to ${out}; give it to every replica with --ca-kek-file\n`);
      return 0;
    }
    if (inv.args.length > 1) throw new UsageError(`meshd ca ${inv.args[0]}: unexpected ${inv.args[1]}`);
    const action = CA_ACTIONS[inv.args[0]!];
    if (!action) throw new UsageError(`meshd ca: unknown subcommand ${inv.args[0]}; usage: ${this.usage}`);
    const addr = inv.settings.string("admin-addr");
    const token = readAdminToken(inv.settings.string("data-dir"));
    let res: Response;
    try {
      res = await fetch(`http://${addr}${action.path}`, {
        method: action.method,
        headers: { authorization: `Bearer ${token}` },
        signal: AbortSignal.timeout(60_000),
      });
    } catch (err) {
      throw new Error(`cannot reach the daemon's admin server at ${addr}: ${(err as Error).message}`);
    }
    const text = await res.text();
    let body: unknown = text;
    try {
      body = JSON.parse(text);
    } catch {
      // not JSON: printed as it came
    }
    if (!res.ok) {
      const msg = (body as { error?: string })?.error ?? text;
      inv.err(`meshd ca ${inv.args[0]}: ${msg} (HTTP ${res.status})\n`);
      return 1;
    }
    inv.out(JSON.stringify(body, null, 2) + "\n");
    return 0;
  },
};
