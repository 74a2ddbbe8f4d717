/**
 * The admin token: a random secret in `<data-dir>/admin-token` (mode 0600, readable only by the
 * user the daemon runs as) that every state-changing admin request must carry as
 * `Authorization: Bearer <token>`. The daemon makes it on its first start and keeps it; `meshd
 * ca` reads it from the same `--data-dir`.
 *
 * @module
 */
import { createHash, randomBytes, timingSafeEqual } from "node:crypto";
import { existsSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { errorMessage } from "../shared/errors.ts";
import { createFileExclusive, isGroupOrWorldReadable } from "../shared/state_files.ts";

/** The token's file name under `--data-dir`. */
const ADMIN_TOKEN_FILE = "admin-token";

/** Where the admin token lives under a data directory. */
function adminTokenPath(dataDir: string): string {
  return join(dataDir, ADMIN_TOKEN_FILE);
}

function parseToken(text: string, file: string): string {
  const token = text.trim();
  if (!/^[A-Za-z0-9_-]{32,}$/.test(token)) {
    throw new Error(`${file}: not an admin token (want 32 or more URL-safe base64 characters)`);
  }
  return token;
}

/**
 * Loads the admin token of `dataDir`, creating the file (32 random bytes, base64url, mode 0600)
 * when missing; two processes creating it at once end up with the same token. `warn` hears about
 * a file that others can read. Throws, naming the file, when it cannot be made or read.
 */
export function loadOrCreateAdminToken(dataDir: string, warn?: (msg: string) => void): string {
  const file = adminTokenPath(dataDir);
  try {
    if (!existsSync(file)) createFileExclusive(file, randomBytes(32).toString("base64url") + "\n", 0o600);
    if (warn && isGroupOrWorldReadable(file)) warn(`${file} is readable by group or others; chmod 600 it`);
    return parseToken(readFileSync(file, "utf8"), file);
  } catch (err) {
    throw new Error(
      `--data-dir ${dataDir}: cannot make or read the admin token ${file}: ${errorMessage(err)}`,
    );
  }
}

/**
 * Reads the admin token a daemon made in `dataDir` (for the CLI). Throws one line naming
 * `--data-dir` when the file is missing or unreadable.
 */
export function readAdminToken(dataDir: string): string {
  const file = adminTokenPath(dataDir);
  let text: string;
  try {
    text = readFileSync(file, "utf8");
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    const why = code === "ENOENT"
      ? "does not exist"
      : code === "EACCES"
      ? "is not readable by this user (run as the user meshd serve runs as)"
      : `cannot be read: ${errorMessage(err)}`;
    throw new Error(`the admin token ${file} ${why}; give the --data-dir of the running meshd serve`);
  }
  return parseToken(text, file);
}

/**
 * True when `authorization` (the request's header) is `Bearer <token>`. The comparison takes the
 * same time whatever the header holds.
 */
export function bearerMatches(authorization: string | null | undefined, token: string): boolean {
  const presented = /^Bearer +(\S+) *$/i.exec(authorization ?? "")?.[1] ?? "";
  const digest = (s: string) => createHash("sha256").update(s).digest();
  return timingSafeEqual(digest(presented), digest(token));
}
