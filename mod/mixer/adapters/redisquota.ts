/**
 * The redisquota adapter: the same quota semantics as memquota, counted in Redis so that several
 * meshd replicas share one limit. Each allocation is one Lua script (EVALSHA, falling back to
 * EVAL when Redis does not have the script cached), so it is atomic however many replicas ask at
 * once. Time is Redis's own clock (`TIME`), so replicas whose clocks differ still agree on windows.
 *
 * Algorithms: FIXED_WINDOW (the window starts at the first allocation and resets when it ends)
 * and ROLLING_WINDOW (allocations are grouped into `bucketDuration` buckets that age out of the
 * `validDuration` window one by one). When Redis cannot be reached, the mesh's
 * `mixer.failOpen` decides: grant (fail open) or answer UNAVAILABLE (fail closed).
 *
 * Needs Redis 5 or later (scripts that read TIME before writing).
 *
 * @module
 */
import { createHash } from "node:crypto";
import { Redis } from "ioredis";
import type { RedisQuotaParams } from "../../api/mixer/mod.ts";
import { parseDuration } from "../../shared/duration.ts";
import { errorMessage } from "../../shared/errors.ts";
import { type AdapterFactory, Codes, type QuotaOutcome } from "./adapter.ts";
import { resolveLimit, unknownQuota } from "./quota_config.ts";

/** How long one Redis command may take before the allocation counts as failed. */
const COMMAND_TIMEOUT_MS = 1_000;
/** At most this many connections per handler. */
const MAX_CONNECTIONS = 16;

const PRELUDE = `
local t = redis.call("TIME")
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local credit = tonumber(ARGV[1])
local window = tonumber(ARGV[2])
local bucket = tonumber(ARGV[3])
local best = ARGV[4] == "1"
local amount = tonumber(ARGV[5])
local dedup = ARGV[6]
local ttl = math.ceil(window / 1000) + 1000
if dedup ~= "" then
  local prev = redis.call("HMGET", KEYS[3], "granted", "expire", "remaining")
  if prev[1] and prev[2] and now < tonumber(prev[2]) then
    return {tonumber(prev[1]), tonumber(prev[2]) - now, tonumber(prev[3]), tonumber(prev[2]) - now}
  end
end
local function grant(avail)
  if amount <= avail then return amount end
  if best and avail > 0 then return avail end
  return 0
end
local function remember(granted, expire, remaining)
  if dedup ~= "" and granted > 0 then
    redis.call("HSET", KEYS[3], "granted", granted, "expire", expire, "remaining", remaining)
    redis.call("PEXPIRE", KEYS[3], math.ceil((expire - now) / 1000) + 1)
  end
end
`;

/** Fixed window: KEYS[1] holds `used` and `expire` (µs, Redis time). Returns granted, µs valid, remaining, µs to reset. */
export const FIXED_WINDOW_SCRIPT = PRELUDE + `
local used = tonumber(redis.call("HGET", KEYS[1], "used"))
local expire = tonumber(redis.call("HGET", KEYS[1], "expire"))
if not used or not expire or now >= expire then
  used = 0
  expire = now + window
  redis.call("HSET", KEYS[1], "used", 0, "expire", expire)
  redis.call("PEXPIRE", KEYS[1], ttl)
end
local granted = grant(credit - used)
if granted > 0 then redis.call("HINCRBY", KEYS[1], "used", granted) end
local remaining = credit - used - granted
remember(granted, expire, remaining)
local valid = 0
if granted > 0 then valid = expire - now end
return {granted, valid, remaining, expire - now}
`;

/**
 * Rolling window: KEYS[1] holds the window's total `used`, the open bucket's `bused` and `bstart`;
 * KEYS[2] is a sorted set of closed buckets ("seq:amount" scored by their start).
 */
export const ROLLING_WINDOW_SCRIPT = PRELUDE + `
local used = tonumber(redis.call("HGET", KEYS[1], "used")) or 0
local bused = tonumber(redis.call("HGET", KEYS[1], "bused")) or 0
local bstart = tonumber(redis.call("HGET", KEYS[1], "bstart")) or now
if now - bstart >= bucket then
  if bused > 0 then
    local seq = redis.call("HINCRBY", KEYS[1], "seq", 1)
    redis.call("ZADD", KEYS[2], bstart, seq .. ":" .. bused)
  end
  bused = 0
  bstart = now
end
local cutoff = now - window
local expired = redis.call("ZRANGEBYSCORE", KEYS[2], "-inf", cutoff)
for _, v in ipairs(expired) do
  used = used - tonumber(string.match(v, ":(%d+)$"))
end
if #expired > 0 then redis.call("ZREMRANGEBYSCORE", KEYS[2], "-inf", cutoff) end
if used < 0 then used = 0 end
local granted = grant(credit - used)
used = used + granted
bused = bused + granted
redis.call("HSET", KEYS[1], "used", used, "bused", bused, "bstart", bstart)
redis.call("PEXPIRE", KEYS[1], ttl)
redis.call("PEXPIRE", KEYS[2], ttl)
local oldest = redis.call("ZRANGE", KEYS[2], 0, 0, "WITHSCORES")
local reset = bstart + window - now
if oldest[2] then reset = tonumber(oldest[2]) + window - now end
remember(granted, now + window, credit - used)
local valid = 0
if granted > 0 then valid = window end
return {granted, valid, credit - used, reset}
`;

interface Script {
  readonly text: string;
  readonly sha: string;
}

const script = (text: string): Script => ({ text, sha: createHash("sha1").update(text).digest("hex") });
const FIXED = script(FIXED_WINDOW_SCRIPT);
const ROLLING = script(ROLLING_WINDOW_SCRIPT);

/**
 * Runs a script by its SHA, and by its text when Redis answers NOSCRIPT (after a restart or
 * SCRIPT FLUSH); EVAL caches it again.
 */
export async function runScript(
  redis: Redis,
  s: Script,
  keys: readonly string[],
  args: readonly (string | number)[],
): Promise<unknown> {
  try {
    return await redis.evalsha(s.sha, keys.length, ...keys, ...args);
  } catch (err) {
    if (!errorMessage(err).startsWith("NOSCRIPT")) throw err;
    return await redis.eval(s.text, keys.length, ...keys, ...args);
  }
}

/** Splits "host:port" (or "[v6]:port"). */
function hostPort(url: string): { host: string; port: number } {
  const m = /^(?:\[([^\]]+)\]|([^:]+)):(\d+)$/.exec(url);
  if (!m) throw new Error(`redisServerUrl ${JSON.stringify(url)} must be host:port`);
  return { host: m[1] ?? m[2]!, port: Number(m[3]) };
}

/** Builds a redisquota handler. */
export const createRedisQuota: AdapterFactory = (params, env) => {
  const p = params as RedisQuotaParams;
  const quotas = p.quotas ?? [];
  const { host, port } = hostPort(p.redisServerUrl);
  const size = Math.min(MAX_CONNECTIONS, Math.max(1, p.connectionPoolSize || 4));
  const log = env.logger;
  let lastLog = 0;
  const logFailure = (message: string) => {
    const t = env.clock.now();
    if (t - lastLog < 10_000) return;
    lastLog = t;
    log.warn("redisquota: Redis unavailable", {
      handler: env.handler,
      redis: p.redisServerUrl,
      error: message,
    });
  };
  const connections = Array.from({ length: size }, () => {
    const r = new Redis({
      host,
      port,
      lazyConnect: true,
      // Commands wait for the connection being made (start-up, reconnects), bounded by commandTimeout and
      // failed at the first failed reconnection attempt (maxRetriesPerRequest 0).
      enableOfflineQueue: true,
      maxRetriesPerRequest: 0,
      connectTimeout: COMMAND_TIMEOUT_MS,
      commandTimeout: COMMAND_TIMEOUT_MS,
      retryStrategy: (times: number) => Math.min(100 * times, 2_000),
    });
    r.on("error", (err: Error) => logFailure(err.message));
    r.connect().catch((err: unknown) => logFailure(errorMessage(err)));
    return r;
  });
  let next = 0;
  const prefix = `meshd:quota:{${env.handler};`;

  const failed = (message: string, amount: number): QuotaOutcome => {
    logFailure(message);
    if (env.mesh().mixer.failOpen) {
      return { status: { code: Codes.OK, message: "" }, granted: amount, validDurationMs: 0 };
    }
    return {
      status: { code: Codes.UNAVAILABLE, message: `quota store unavailable: ${message}` },
      granted: 0,
      validDurationMs: 0,
    };
  };

  return {
    async quota(inst, args) {
      const limit = resolveLimit(quotas, inst, env.namespace);
      if (!limit) return unknownQuota(env.handler, inst.name);
      const q = quotas.find((x) => x.name === limit.quota)!;
      const rolling = q.rateLimitAlgorithm === "ROLLING_WINDOW";
      const windowUs = Math.round(limit.windowMs * 1000);
      const bucketUs = Math.round((parseDuration(q.bucketDuration ?? "0") ?? 0) * 1000);
      const base = `${prefix}${limit.key}}`;
      const keys = [`${base}:meta`, `${base}:data`, `${base}:dedup:${args.deduplicationId ?? ""}`];
      const redis = connections[next++ % connections.length]!;
      let reply: unknown;
      try {
        reply = await runScript(redis, rolling ? ROLLING : FIXED, keys, [
          limit.maxAmount,
          windowUs,
          Math.max(1, bucketUs),
          args.bestEffort ? "1" : "0",
          args.amount,
          args.deduplicationId ?? "",
        ]);
      } catch (err) {
        return failed(errorMessage(err), args.amount);
      }
      if (!Array.isArray(reply) || reply.length < 4) {
        return failed(`unexpected reply ${String(reply)}`, args.amount);
      }
      const [granted, validUs, remaining, resetUs] = reply.map(Number) as [number, number, number, number];
      return {
        status: { code: Codes.OK, message: "" },
        granted,
        validDurationMs: validUs / 1000,
        limit: { maxAmount: limit.maxAmount, windowMs: limit.windowMs },
        remaining: Math.max(0, remaining),
        resetInMs: Math.max(0, resetUs / 1000),
      };
    },
    async close() {
      await Promise.all(connections.map((r) => r.quit().catch(() => r.disconnect())));
    },
  };
};
