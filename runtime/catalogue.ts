/**
 * The modules `meshd serve` can run, in start order. A new module is one more line here.
 */
import { citadelModule } from "../mod/citadel/mod.ts";
import { galleyModule } from "../mod/galley/mod.ts";
import { mixerModule } from "../mod/mixer/mod.ts";
import { pilotModule } from "../mod/pilot/mod.ts";
import type { ModuleDefinition } from "../mod/runtime/module.ts";

/** Every module in this build, in start order (a module may use links offered before it). */
export const MODULES: readonly ModuleDefinition[] = [galleyModule, pilotModule, mixerModule, citadelModule];
