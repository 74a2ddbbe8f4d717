/**
 * The denier adapter's descriptor: answers checknothing instances with a fixed status.
 * Implementation: mod/mixer/adapters/denier.ts.
 *
 * @module
 */
import { type Infer, t } from "../../schema.ts";
import { optionalDuration } from "../_formats.ts";
import { defineAdapter } from "../adapter.ts";

const params = t.object({
  status: t.object({ code: t.int({ min: 0, max: 16 }), message: t.string(), details: t.array(t.any()) }),
  validDuration: optionalDuration,
  validUseCount: t.int({ min: 0 }),
});

/** denier adapter parameters. */
export type DenierParams = Infer<typeof params>;

/** The denier adapter. */
export const denier = defineAdapter({ name: "denier", templates: ["checknothing"], params });
