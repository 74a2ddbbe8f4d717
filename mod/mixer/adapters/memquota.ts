/**
 * The memquota adapter: quotas counted in this process's memory. Each quota has a limit per
 * window (`maxAmount` per `validDuration`), per distinct set of dimension values, with overrides
 * for particular dimension values. Windows are fixed (they start at the first allocation and
 * reset when they end) or rolling (`rollingWindow: true`: allocations age out slot by slot); a
 * quota without `validDuration` never resets (allocation quotas). Retries carrying the same
 * deduplication id within `minDeduplicationDuration` get the first answer again.
 *
 * Allocation is synchronous, and JavaScript runs one call at a time, so concurrent callers can
 * never be granted more than the limit. The counts do not survive a restart and are not shared
 * between meshd replicas (use redisquota for that).
 *
 * @module
 */
import type { MemQuotaParams } from "../../api/mixer/mod.ts";
import type { Timer } from "../../shared/clock.ts";
import { parseDuration } from "../../shared/duration.ts";
import { type AdapterFactory, Codes, type QuotaOutcome } from "./adapter.ts";
import { resolveLimit, unknownQuota } from "./quota_config.ts";

/** Most counters (distinct quota and dimension values) one handler keeps. */
export const MAX_CELLS = 100_000;
/** Longest slot of a rolling window; shorter windows get 100 ms slots. */
const MAX_SLOTS = 600;

interface FixedCell {
  readonly kind: "fixed";
  used: number;
  /** When the window ends (ms); Infinity for a quota that never resets. */
  end: number;
  readonly limit: number;
}

interface RollingCell {
  readonly kind: "rolling";
  readonly limit: number;
  readonly tickMs: number;
  readonly slots: number[];
  current: number;
  currentTick: number;
  avail: number;
}

type Cell = FixedCell | RollingCell;

function roll(c: RollingCell, tick: number): void {
  const behind = Math.min(tick - c.currentTick, c.slots.length);
  for (let i = 0; i < behind; i++) {
    const idx = (c.current + 1 + i) % c.slots.length;
    c.avail += c.slots[idx]!;
    c.slots[idx] = 0;
  }
  if (behind > 0) {
    c.current = (c.current + behind) % c.slots.length;
    c.currentTick = tick;
  }
}

/** Builds a memquota handler. */
export const createMemQuota: AdapterFactory = (params, env) => {
  const p = (params ?? {}) as MemQuotaParams;
  const quotas = p.quotas ?? [];
  const dedupMs = Math.max(1, parseDuration(p.minDeduplicationDuration ?? "1s") ?? 1000);
  const cells = new Map<string, Cell>();
  let recentDedup = new Map<string, QuotaOutcome>();
  let oldDedup = new Map<string, QuotaOutcome>();
  let timer: Timer | undefined;
  const now = () => env.clock.now();

  const reap = () => {
    oldDedup = recentDedup;
    recentDedup = new Map();
    const t = now();
    for (const [key, c] of cells) {
      if (c.kind === "fixed" ? c.end <= t : (roll(c, Math.floor(t / c.tickMs)), c.avail === c.limit)) {
        cells.delete(key);
      }
    }
    timer = env.clock.setTimer(dedupMs, reap);
  };
  timer = env.clock.setTimer(dedupMs, reap);

  return {
    quota(inst, args) {
      const dedupKey = args.deduplicationId ? `${args.deduplicationId}\u0000${inst.name}` : undefined;
      if (dedupKey) {
        const seen = recentDedup.get(dedupKey) ?? oldDedup.get(dedupKey);
        if (seen) return seen;
      }
      const limit = resolveLimit(quotas, inst, env.namespace);
      if (!limit) return unknownQuota(env.handler, inst.name);
      const t = now();
      let cell = cells.get(limit.key);
      if (cell && cell.limit !== limit.maxAmount) cell = undefined; // the limit changed: start over
      if (!cell) {
        if (cells.size >= MAX_CELLS) {
          return {
            status: {
              code: Codes.RESOURCE_EXHAUSTED,
              message: `handler ${env.handler} tracks ${MAX_CELLS} quota cells already`,
            },
            granted: 0,
            validDurationMs: 0,
          };
        }
        if (limit.windowMs > 0 && quotas.find((q) => q.name === limit.quota)?.rollingWindow) {
          const slots = Math.min(MAX_SLOTS, Math.max(1, Math.ceil(limit.windowMs / 100)));
          const tickMs = limit.windowMs / slots;
          cell = {
            kind: "rolling",
            limit: limit.maxAmount,
            tickMs,
            slots: new Array<number>(slots).fill(0),
            current: 0,
            currentTick: Math.floor(t / tickMs),
            avail: limit.maxAmount,
          };
        } else {
          cell = {
            kind: "fixed",
            used: 0,
            end: limit.windowMs > 0 ? t + limit.windowMs : Infinity,
            limit: limit.maxAmount,
          };
        }
        cells.set(limit.key, cell);
      }
      let available: number;
      if (cell.kind === "fixed") {
        if (t >= cell.end) {
          cell.used = 0;
          cell.end = t + limit.windowMs;
        }
        available = cell.limit - cell.used;
      } else {
        roll(cell, Math.floor(t / cell.tickMs));
        available = cell.avail;
      }
      let granted = args.amount;
      if (granted > available) granted = args.bestEffort ? Math.max(0, available) : 0;
      if (cell.kind === "fixed") cell.used += granted;
      else {
        cell.slots[cell.current]! += granted;
        cell.avail -= granted;
      }
      const validDurationMs = granted === 0
        ? 0
        : cell.kind === "fixed"
        ? (Number.isFinite(cell.end) ? cell.end - t : 0)
        : limit.windowMs;
      const outcome: QuotaOutcome = {
        status: { code: Codes.OK, message: "" },
        granted,
        validDurationMs,
        limit: { maxAmount: limit.maxAmount, windowMs: limit.windowMs },
        remaining: available - granted,
        resetInMs: cell.kind === "fixed"
          ? (Number.isFinite(cell.end) ? cell.end - t : undefined)
          : cell.tickMs - (t % cell.tickMs),
      };
      if (dedupKey) recentDedup.set(dedupKey, outcome);
      return outcome;
    },
    close() {
      timer?.cancel();
    },
  };
};
