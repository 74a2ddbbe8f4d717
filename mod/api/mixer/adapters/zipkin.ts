/**
 * The zipkin adapter's descriptor: tracespan instances sent to a Zipkin collector.
 * Implementation: mod/mixer/adapters/zipkin.ts.
 *
 * @module
 */
import { type Infer, t } from "../../schema.ts";
import { urlCheck } from "../_formats.ts";
import { defineAdapter } from "../adapter.ts";

const params = t.object({
  url: t.string({ required: true, check: urlCheck }),
  sampleProbability: t.number({ min: 0, max: 1 }),
});

/** zipkin adapter parameters. */
export type ZipkinParams = Infer<typeof params>;

/** The zipkin adapter. */
export const zipkin = defineAdapter({ name: "zipkin", templates: ["tracespan"], params });
