/**
 * What a compiled-in Mixer adapter says about itself, without any of its running code: its name
 * (the handler's `compiledAdapter`), the schema of a handler's `params`, and the templates whose
 * instances it accepts. Its params type sits next to the schema in the adapter's descriptor file.
 *
 * Each adapter has two halves. The descriptor (`mod/api/mixer/adapters/NAME.ts`) imports nothing
 * heavier than the schema language, so galley can validate and analyse handlers with it. The
 * implementation (`mod/mixer/adapters/NAME.ts`, with Redis clients, timers, files) is attached to
 * the descriptor's name in mixer's factory table, whose type requires one factory per descriptor.
 *
 * @module
 */
import type { Schema } from "../schema.ts";
import type { TemplateName } from "./templates.ts";

/** A compiled-in adapter, described once. */
export interface AdapterDescriptor<N extends string = string> {
  /** The `compiledAdapter` value handlers use. */
  readonly name: N;
  /** The templates whose instances it accepts, in the order messages list them. */
  readonly templates: readonly TemplateName[];
  /** The schema of a handler's `params`. */
  readonly params: Schema;
}

/** Describes an adapter (keeps its name's literal type, so the table yields the name union). */
export function defineAdapter<const N extends string>(d: AdapterDescriptor<N>): AdapterDescriptor<N> {
  return Object.freeze(d);
}
