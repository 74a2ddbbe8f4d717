/**
 * meshd's own Mixer-style API (`meshd.mixer.v1.Mixer`): Check answers a policy decision with how
 * long and how often it may be reused and which attributes it depended on, plus the requested
 * quotas; Report ingests batches of attribute bags. Malformed bags (limits, names, types) are
 * refused with INVALID_ARGUMENT naming the attribute.
 *
 * The methods work on wire bytes: requests are read straight into attribute bags (bag_codec.ts)
 * and answers are written with a BinaryWriter, the parts every caller shares (the referenced
 * attributes, and whole answers without quotas) encoded once. The daemon serves them straight on
 * HTTP/2; {@link mixerService} wraps them as a Connect service for in-process servers.
 *
 * @module
 */
import { fromBinary, toBinary } from "@bufbuild/protobuf";
import { BinaryWriter, WireType } from "@bufbuild/protobuf/wire";
import { Code, ConnectError, type ServiceImpl } from "@connectrpc/connect";
import {
  CheckRequestSchema,
  CheckResponseSchema,
  Mixer,
  ReportRequestSchema,
  ReportResponseSchema,
} from "#gen/meshd/mixer/v1/mixer_pb.ts";
import type { RpcStatus } from "./adapters/adapter.ts";
import {
  BadBagError,
  MalformedMessageError,
  readCheckRequest,
  readReportRequest,
  TooManyEntriesError,
} from "./client/bag_codec.ts";
import { type Ref, refsSignature } from "./client/referenced.ts";
import type { BagLimits } from "./client/wire.ts";
import type { MixerCore } from "./core.ts";

/** Most quotas one Check may ask for. */
export const MAX_QUOTAS = 16;
/** Largest quota amount one Check may ask for. */
const MAX_AMOUNT = 1_000_000_000n;
/** Distinct encoded answers (and reference lists) kept; the caches start over when full. */
const CACHE_ENTRIES = 4096;

/** The Mixer methods on wire bytes: an encoded request in, an encoded response out. */
export interface MixerMethods {
  check(request: Uint8Array): Promise<Uint8Array>;
  report(request: Uint8Array): Promise<Uint8Array>;
}

const EMPTY = new Uint8Array(0);

/** Writes a google.protobuf.Duration field from milliseconds (negative or not finite: zero). */
function writeDuration(w: BinaryWriter, field: number, ms: number): void {
  const safe = Number.isFinite(ms) && ms > 0 ? ms : 0;
  const seconds = Math.floor(safe / 1000);
  const nanos = Math.round((safe - seconds * 1000) * 1_000_000);
  w.tag(field, WireType.LengthDelimited).fork();
  if (seconds !== 0) w.tag(1, WireType.Varint).int64(seconds);
  if (nanos !== 0) w.tag(2, WireType.Varint).int32(nanos);
  w.join();
}

function writeStatus(w: BinaryWriter, field: number, s: RpcStatus): void {
  w.tag(field, WireType.LengthDelimited).fork();
  if (s.code !== 0) w.tag(1, WireType.Varint).int32(s.code);
  if (s.message !== "") w.tag(2, WireType.LengthDelimited).string(s.message);
  w.join();
}

/** The Mixer methods over `core`. */
export function mixerMethods(core: MixerCore, opts: { maxBatch: number; limits: BagLimits }): MixerMethods {
  /** Encoded `referenced_attributes` (field 4 of both CheckResponse and QuotaResult), by list. */
  const refsBytes = new Map<string, Uint8Array>();
  /** Encoded answers of checks without quotas, by everything they say. */
  const answers = new Map<string, Uint8Array>();

  const refsKey = (refs: readonly Ref[]): string => {
    let key = "";
    for (const r of refs) {
      key += r.mapKey === undefined ? r.name + "\u0000" : `${r.name}\u0001${r.mapKey}\u0000`;
    }
    return key;
  };
  const encodedRefs = (key: string, refs: readonly Ref[]): Uint8Array => {
    let bytes = refsBytes.get(key);
    if (!bytes) {
      const w = new BinaryWriter();
      for (const r of refsSignature(refs).refs) {
        w.tag(4, WireType.LengthDelimited).fork().tag(1, WireType.LengthDelimited).string(r.name);
        if (r.mapKey) w.tag(2, WireType.LengthDelimited).string(r.mapKey);
        w.join();
      }
      bytes = w.finish();
      if (refsBytes.size >= CACHE_ENTRIES) refsBytes.clear();
      refsBytes.set(key, bytes);
    }
    return bytes;
  };

  /** Reading a request: its faults become the client's errors, and are counted. */
  const read = <T>(what: string, fn: () => T): T => {
    try {
      return fn();
    } catch (err) {
      if (err instanceof MalformedMessageError) {
        core.refuse("mixer", `malformed ${what}: ${err.message}`);
        throw new ConnectError(`malformed ${what}: ${err.message}`, Code.InvalidArgument);
      }
      if (err instanceof BadBagError) {
        core.refuse("mixer", err.message);
        throw new ConnectError(err.message, Code.InvalidArgument);
      }
      if (err instanceof TooManyEntriesError) {
        core.refuse("mixer", `report: ${err.message}`);
        throw new ConnectError(`${err.message}; the limit is ${opts.maxBatch}`, Code.ResourceExhausted);
      }
      throw err;
    }
  };

  return {
    async check(bytes) {
      const req = read("CheckRequest", () => readCheckRequest(bytes, opts.limits));
      const { bag, quotas } = req;
      if (quotas.size > MAX_QUOTAS) {
        core.refuse("mixer", `${quotas.size} quotas requested`);
        throw new ConnectError(
          `${quotas.size} quotas requested; the limit is ${MAX_QUOTAS}`,
          Code.InvalidArgument,
        );
      }
      for (const [name, p] of quotas) {
        if (p.amount < 1n || p.amount > MAX_AMOUNT) {
          core.refuse("mixer", `quota ${name}: amount ${p.amount}`);
          throw new ConnectError(
            `quota ${name}: amount must be 1 to ${MAX_AMOUNT}, got ${p.amount}`,
            Code.InvalidArgument,
          );
        }
      }
      const d = await core.check("mixer", bag);
      const validUseCount = Math.max(0, Math.min(0x7fff_ffff, d.validUseCount));
      const failOpen = core.mesh().mixer.failOpen;
      const key = refsKey(d.refs);
      const answerKey = quotas.size === 0
        ? `${key}|${d.status.code}|${d.validDurationMs}|${validUseCount}|${
          failOpen ? 1 : 0
        }|${d.status.message}`
        : undefined;
      if (answerKey !== undefined) {
        const cached = answers.get(answerKey);
        if (cached) return cached;
      }
      const w = new BinaryWriter();
      writeStatus(w, 1, d.status);
      writeDuration(w, 2, d.validDurationMs);
      if (validUseCount !== 0) w.tag(3, WireType.Varint).int32(validUseCount);
      w.raw(encodedRefs(key, d.refs));
      for (const [name, p] of quotas) {
        const q = d.status.code === 0
          ? await core.quota(bag, name, {
            amount: Number(p.amount),
            bestEffort: p.bestEffort,
            deduplicationId: req.deduplicationId || undefined,
          })
          : undefined;
        w.tag(5, WireType.LengthDelimited).fork().tag(1, WireType.LengthDelimited).string(name);
        w.tag(2, WireType.LengthDelimited).fork();
        writeDuration(w, 1, q?.validDurationMs ?? 0);
        const granted = q?.granted ?? 0;
        if (granted !== 0) w.tag(2, WireType.Varint).int64(granted);
        writeStatus(w, 3, q ? q.status : { code: d.status.code, message: "policy check failed" });
        const refs = q?.refs ?? [];
        w.raw(encodedRefs(refsKey(refs), refs));
        w.join().join();
      }
      if (failOpen) w.tag(6, WireType.Varint).bool(true);
      const out = w.finish();
      if (answerKey !== undefined) {
        if (answers.size >= CACHE_ENTRIES) answers.clear();
        answers.set(answerKey, out);
      }
      return out;
    },

    async report(bytes) {
      const bags = read("ReportRequest", () => readReportRequest(bytes, opts.limits, opts.maxBatch));
      await core.report("mixer", bags);
      return EMPTY;
    },
  };
}

/** The Mixer service over `core`, for Connect (the same methods, through the generated messages). */
export function mixerService(
  core: MixerCore,
  opts: { maxBatch: number; limits: BagLimits },
): Partial<ServiceImpl<typeof Mixer>> {
  const m = mixerMethods(core, opts);
  return {
    async check(req) {
      return fromBinary(CheckResponseSchema, await m.check(toBinary(CheckRequestSchema, req)));
    },
    async report(req) {
      return fromBinary(ReportResponseSchema, await m.report(toBinary(ReportRequestSchema, req)));
    },
  };
}
