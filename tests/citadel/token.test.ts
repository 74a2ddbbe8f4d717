import { afterEach, describe, expect, test } from "bun:test";
import { createHmac, sign } from "node:crypto";
import { statSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { tokenCommand } from "../../mod/citadel/cli.ts";
import {
  createToken,
  loadOrCreateTokenKey,
  openUsedTokens,
  TokenError,
  type TokenFailure,
  tokenKeyPath,
  type TokenSigningKey,
  verifyToken,
} from "../../mod/citadel/token.ts";
import { runCli } from "../../mod/cli/run.ts";
import { tempDir } from "./_ca.ts";

const dirs: Array<{ cleanup(): void }> = [];
afterEach(() => dirs.splice(0).forEach((d) => d.cleanup()));
function dir() {
  const d = tempDir();
  dirs.push(d);
  return d.path;
}

const NOW = Date.UTC(2026, 5, 1, 12, 0, 0);
const base = {
  trustDomain: "cluster.local",
  namespace: "app",
  serviceAccount: "web",
  ttlMs: 3600_000,
  now: NOW,
};
const b64 = (v: unknown) => Buffer.from(JSON.stringify(v)).toString("base64url");

/** Signs arbitrary header and claims with `key` (ES256). */
function forge(
  key: TokenSigningKey,
  header: Record<string, unknown>,
  claims: Record<string, unknown>,
): string {
  const input = `${b64(header)}.${b64(claims)}`;
  const sig = sign("sha256", Buffer.from(input), { key: key.privateKey, dsaEncoding: "ieee-p1363" });
  return `${input}.${sig.toString("base64url")}`;
}

function goodClaims(over: Record<string, unknown> = {}) {
  const iat = NOW / 1000;
  return {
    iss: "meshd",
    aud: "meshd-ca",
    sub: "spiffe://cluster.local/ns/app/sa/web",
    ns: "app",
    sa: "web",
    iat,
    nbf: iat,
    exp: iat + 3600,
    jti: "0123456789abcdef",
    ...over,
  };
}

function failure(key: TokenSigningKey, token: string, now = NOW): TokenFailure | "ok" {
  try {
    verifyToken(key, token, now);
    return "ok";
  } catch (err) {
    expect(err).toBeInstanceOf(TokenError);
    return (err as TokenError).failure;
  }
}

describe("bootstrap tokens", () => {
  test("createToken() makes an ES256 JWT with kid and meshd's claims, and verifyToken() accepts it", () => {
    const key = loadOrCreateTokenKey(dir());
    const token = createToken(key, { ...base, workloadGroup: "web-vms", singleUse: true });
    const [h, c] = token.split(".").slice(0, 2).map((p) =>
      JSON.parse(Buffer.from(p, "base64url").toString())
    ) as [
      Record<string, unknown>,
      Record<string, unknown>,
    ];
    expect(h).toEqual({ alg: "ES256", typ: "JWT", kid: key.kid });
    expect(c).toMatchObject({
      iss: "meshd",
      aud: "meshd-ca",
      sub: "spiffe://cluster.local/ns/app/sa/web",
      ns: "app",
      sa: "web",
      wg: "web-vms",
      single_use: true,
      iat: NOW / 1000,
      nbf: NOW / 1000,
      exp: NOW / 1000 + 3600,
    });
    expect(String(c.jti).length).toBeGreaterThanOrEqual(16);
    const v = verifyToken(key, token, NOW + 1000);
    expect(v.identity.uri).toBe("spiffe://cluster.local/ns/app/sa/web");
    expect(v.claims.wg).toBe("web-vms");
    expect(createToken(key, base)).not.toBe(createToken(key, base));
  });

  test("exp and nbf are checked with 60 s of clock skew", () => {
    const key = loadOrCreateTokenKey(dir());
    const token = createToken(key, base);
    expect(failure(key, token, NOW + 3600_000 + 59_000)).toBe("ok");
    expect(failure(key, token, NOW + 3600_000 + 61_000)).toBe("expired");
    expect(failure(key, token, NOW - 59_000)).toBe("ok");
    expect(failure(key, token, NOW - 61_000)).toBe("not_yet_valid");
  });

  test("only ES256 with meshd's key is accepted: another key, alg none and HS256 are refused", () => {
    const key = loadOrCreateTokenKey(dir());
    const other = loadOrCreateTokenKey(dir());
    expect(failure(key, createToken(other, base))).toBe("key");
    expect(failure(key, forge(other, { alg: "ES256", kid: key.kid }, goodClaims()))).toBe("signature");
    expect(failure(key, forge(other, { alg: "ES256" }, goodClaims()))).toBe("signature");
    expect(failure(key, `${b64({ alg: "none" })}.${b64(goodClaims())}.`)).toBe("algorithm");
    const pub = key.publicKey.export({ format: "pem", type: "spki" }) as string;
    const input = `${b64({ alg: "HS256", typ: "JWT" })}.${b64(goodClaims())}`;
    const hs = `${input}.${createHmac("sha256", pub).update(input).digest("base64url")}`;
    expect(failure(key, hs)).toBe("algorithm");
    expect(failure(key, forge(key, { alg: "ES256", crit: ["exp"] }, goodClaims()))).toBe("malformed");
  });

  test("tampered, mis-addressed and malformed tokens are refused", () => {
    const key = loadOrCreateTokenKey(dir());
    const [h, , s] = createToken(key, base).split(".");
    expect(
      failure(
        key,
        `${h}.${b64(goodClaims({ sa: "admin", sub: "spiffe://cluster.local/ns/app/sa/admin" }))}.${s}`,
      ),
    )
      .toBe("signature");
    expect(failure(key, forge(key, { alg: "ES256" }, goodClaims({ aud: "someone-else" })))).toBe("claims");
    expect(failure(key, forge(key, { alg: "ES256" }, goodClaims({ aud: ["x", "meshd-ca"] })))).toBe("ok");
    expect(failure(key, forge(key, { alg: "ES256" }, goodClaims({ iss: "evil" })))).toBe("claims");
    expect(failure(key, forge(key, { alg: "ES256" }, goodClaims({ sa: "db" })))).toBe("claims");
    expect(failure(key, forge(key, { alg: "ES256" }, goodClaims({ sub: "spiffe://cluster.local/app/web" }))))
      .toBe("claims");
    expect(failure(key, forge(key, { alg: "ES256" }, goodClaims({ exp: "tomorrow" })))).toBe("claims");
    expect(failure(key, forge(key, { alg: "ES256" }, goodClaims({ jti: "x" })))).toBe("claims");
    expect(failure(key, "a.b")).toBe("malformed");
    expect(failure(key, "a.b.c!")).toBe("malformed");
    expect(failure(key, `${b64("str")}.${b64({})}.AAAA`)).toBe("malformed");
    expect(failure(key, "x".repeat(10_000))).toBe("malformed");
  });

  test("the signing key is made once, mode 0600, and shared by every loader of the data directory", () => {
    const d = dir();
    const keys = [loadOrCreateTokenKey(d), loadOrCreateTokenKey(d)];
    expect(keys[0]!.kid).toBe(keys[1]!.kid);
    expect(statSync(tokenKeyPath(d)).mode & 0o777).toBe(0o600);
    writeFileSync(tokenKeyPath(d), "junk");
    expect(() => loadOrCreateTokenKey(d)).toThrow(`${tokenKeyPath(d)}: not a PEM private key`);
  });
});

describe("openUsedTokens()", () => {
  test("records redeemed tokens durably and forgets them after they expire", () => {
    const file = join(dir(), "used-tokens.json");
    let now = NOW;
    const used = openUsedTokens(file, () => now);
    used.add("jti-one-xxxx", NOW / 1000 + 60);
    expect(used.has("jti-one-xxxx")).toBe(true);
    expect(openUsedTokens(file, () => now).has("jti-one-xxxx")).toBe(true);
    expect(statSync(file).mode & 0o777).toBe(0o600);
    now = NOW + 200_000;
    expect(openUsedTokens(file, () => now).has("jti-one-xxxx")).toBe(false);
  });

  test("refuses an unreadable record, and add() throws when it cannot persist", () => {
    const d = dir();
    writeFileSync(join(d, "bad.json"), "[1,2");
    expect(() => openUsedTokens(join(d, "bad.json"), () => NOW)).toThrow(
      `${join(d, "bad.json")}: cannot read`,
    );
    writeFileSync(join(d, "a-file"), "");
    const used = openUsedTokens(join(d, "a-file", "used-tokens.json"), () => NOW);
    expect(() => used.add("jti-two-xxxx", NOW / 1000 + 60)).toThrow();
    expect(used.has("jti-two-xxxx")).toBe(false);
  });
});

describe("meshd token create", () => {
  async function run(args: string[]) {
    let out = "";
    let err = "";
    const code = await runCli([tokenCommand], ["token", ...args], {
      env: {},
      out: (t) => (out += t),
      err: (t) => (err += t),
      signal: new AbortController().signal,
    });
    return { code, out, err };
  }

  test("prints a token the data directory's key verifies, for the trust domain the daemon recorded", async () => {
    const d = dir();
    writeFileSync(join(d, "trust-domain"), "example.org\n");
    const r = await run([
      "create",
      "--namespace",
      "app",
      "--service-account",
      "web",
      "--ttl",
      "10m",
      "--single-use",
      "--data-dir",
      d,
    ]);
    expect(r.code).toBe(0);
    const v = verifyToken(loadOrCreateTokenKey(d), r.out.trim(), Date.now());
    expect(v.identity.uri).toBe("spiffe://example.org/ns/app/sa/web");
    expect(v.claims.single_use).toBe(true);
    expect(v.claims.exp - v.claims.iat).toBe(600);
    expect(r.err).toContain("single use");
    const flagged = await run([
      "create",
      "--namespace=app",
      "--service-account=web",
      "--trust-domain=td.example",
      `--data-dir=${d}`,
    ]);
    expect(verifyToken(loadOrCreateTokenKey(d), flagged.out.trim(), Date.now()).identity.trustDomain).toBe(
      "td.example",
    );
  });

  test("refuses missing or malformed names with exit code 2", async () => {
    const d = dir();
    expect((await run(["create", "--namespace", "app", "--data-dir", d])).code).toBe(2);
    const bad = await run(["create", "--namespace", "Bad_NS", "--service-account", "web", "--data-dir", d]);
    expect(bad.code).toBe(2);
    expect(bad.err).toContain("DNS-1123");
    expect((await run(["revoke", "--data-dir", d])).code).toBe(2);
  });
});
