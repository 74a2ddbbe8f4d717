/**
 * The modules `meshd serve` can run, in start order. A new module is one more line here.
 */
import { citadelModule } from "../citadel/mod.ts";
import { galleyModule } from "../galley/mod.ts";
import { mixerModule } from "../mixer/mod.ts";
import { pilotModule } from "../pilot/mod.ts";
import type { ModuleDefinition } from "./module.ts";

/** Every module in this build, in start order (a module may use links offered before it). */
export const MODULES: readonly ModuleDefinition[] = [galleyModule, pilotModule, mixerModule, citadelModule];
