/**
 * meshd's own Mixer-style API (`meshd.mixer.v1.Mixer`): Check answers a policy decision with how
 * long and how often it may be reused and which attributes it depended on, plus the requested
 * quotas; Report ingests batches of attribute bags. Malformed bags (limits, names, types) are
 * refused with INVALID_ARGUMENT naming the attribute.
 *
 * @module
 */
import { create } from "@bufbuild/protobuf";
import { Code, ConnectError, type ServiceImpl } from "@connectrpc/connect";
import {
  type CheckResponse_QuotaResult,
  CheckResponse_QuotaResultSchema,
  CheckResponseSchema,
  Mixer,
  type ReferencedAttribute,
  ReferencedAttributeSchema,
} from "#gen/meshd/mixer/v1/mixer_pb.ts";
import { type Ref, refsSignature } from "./client/referenced.ts";
import { type AttributeBag, BadBagError, type BagLimits, decodeBag, durationFromMs } from "./client/wire.ts";
import type { MixerCore } from "./core.ts";

/** Most quotas one Check may ask for. */
export const MAX_QUOTAS = 16;
/** Largest quota amount one Check may ask for. */
const MAX_AMOUNT = 1_000_000_000n;

function wireRefs(refs: readonly Ref[]): ReferencedAttribute[] {
  return refsSignature(refs).refs.map((r) =>
    create(ReferencedAttributeSchema, { name: r.name, mapKey: r.mapKey ?? "" })
  );
}

/** The Mixer service over `core`. */
export function mixerService(
  core: MixerCore,
  opts: { maxBatch: number; limits: BagLimits },
): Partial<ServiceImpl<typeof Mixer>> {
  const decode = (api: string, attrs: Parameters<typeof decodeBag>[0], where = ""): AttributeBag => {
    try {
      return decodeBag(attrs, opts.limits);
    } catch (err) {
      if (!(err instanceof BadBagError)) throw err;
      core.refuse(api, where + err.message);
      throw new ConnectError(where + err.message, Code.InvalidArgument);
    }
  };
  return {
    async check(req) {
      const bag = decode("mixer", req.attributes);
      const names = Object.keys(req.quotas);
      if (names.length > MAX_QUOTAS) {
        core.refuse("mixer", `${names.length} quotas requested`);
        throw new ConnectError(
          `${names.length} quotas requested; the limit is ${MAX_QUOTAS}`,
          Code.InvalidArgument,
        );
      }
      const d = await core.check("mixer", bag);
      const quotas: Record<string, CheckResponse_QuotaResult> = {};
      for (const name of names) {
        const p = req.quotas[name]!;
        if (p.amount < 1n || p.amount > MAX_AMOUNT) {
          core.refuse("mixer", `quota ${name}: amount ${p.amount}`);
          throw new ConnectError(
            `quota ${name}: amount must be 1 to ${MAX_AMOUNT}, got ${p.amount}`,
            Code.InvalidArgument,
          );
        }
        const q = d.status.code === 0
          ? await core.quota(bag, name, {
            amount: Number(p.amount),
            bestEffort: p.bestEffort,
            deduplicationId: req.deduplicationId || undefined,
          })
          : undefined;
        quotas[name] = create(CheckResponse_QuotaResultSchema, {
          grantedAmount: BigInt(q?.granted ?? 0),
          validDuration: durationFromMs(q?.validDurationMs ?? 0),
          status: q ? q.status : { code: d.status.code, message: "policy check failed" },
          referencedAttributes: wireRefs(q?.refs ?? []),
        });
      }
      return create(CheckResponseSchema, {
        status: d.status,
        validDuration: durationFromMs(d.validDurationMs),
        validUseCount: Math.max(0, Math.min(0x7fff_ffff, d.validUseCount)),
        referencedAttributes: wireRefs(d.refs),
        quotas,
        failOpen: core.mesh().mixer.failOpen,
      });
    },

    async report(req) {
      if (req.entries.length > opts.maxBatch) {
        core.refuse("mixer", `${req.entries.length} report entries`);
        throw new ConnectError(
          `${req.entries.length} entries; the limit is ${opts.maxBatch}`,
          Code.ResourceExhausted,
        );
      }
      const bags = req.entries.map((e, i) => decode("mixer", e, `entries[${i}]: `));
      await core.report("mixer", bags);
      return {};
    },
  };
}
