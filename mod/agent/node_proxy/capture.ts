/**
 * Traffic capture for the node proxy: firewall rules that send the machine's outbound TCP (to
 * mesh addresses, or all of it) to the outbound port, inbound TCP on service ports to the inbound
 * port, and DNS to the DNS proxy, with nftables (capture_nft.ts) or, where nft is missing or when
 * asked, iptables (capture_iptables.ts). Rules are removed when the capture is, and a crashed
 * run's leftovers are removed before installing.
 *
 * @module
 */
import { errorMessage } from "../../shared/errors.ts";
import type { Logger } from "../../shared/logger.ts";
import {
  type CaptureOptions,
  type CapturePlan,
  capturePlan,
  type CaptureTargets,
  captureTargets,
  sameTargets,
} from "./capture_plan.ts";
import { iptablesApply, iptablesFamilies, iptablesRemove } from "./capture_iptables.ts";
import { nftAvailable, nftInstall, nftRemove, nftUpdate } from "./capture_nft.ts";
import { type CommandRunner, runLocalCommand } from "./command.ts";

export type { CaptureOptions } from "./capture_plan.ts";

/** Installed capture rules. */
export interface Capture {
  /**
   * Replaces the captured mesh addresses and inbound ports, atomically (a connection sees the
   * old rules or the new ones). Calls run one after another; after remove() it does nothing.
   */
  update(o: { inboundPorts: number[]; meshCidrs: string[] }): Promise<void>;
  /** Removes every rule. Idempotent. */
  remove(): Promise<void>;
  /** Which firewall holds the rules ("none" for mode "none"). */
  readonly backend: "nft" | "iptables" | "none";
}

/** How one backend installs, updates and removes its rules. */
interface Backend {
  readonly name: "nft" | "iptables";
  install(p: CapturePlan, t: CaptureTargets): Promise<void>;
  update(p: CapturePlan, t: CaptureTargets): Promise<void>;
  remove(): Promise<unknown>;
}

function nftBackend(exec: CommandRunner): Backend {
  return {
    name: "nft",
    install: (p, t) => nftInstall(exec, p, t),
    update: (_p, t) => nftUpdate(exec, t),
    remove: () => nftRemove(exec),
  };
}

async function iptablesBackend(exec: CommandRunner, logger: Logger): Promise<Backend> {
  const families = await iptablesFamilies(exec, logger);
  return {
    name: "iptables",
    install: (p, t) => iptablesApply(exec, families, p, t, true),
    update: (p, t) => iptablesApply(exec, families, p, t, false),
    remove: () => iptablesRemove(exec),
  };
}

async function chooseBackend(o: CaptureOptions, exec: CommandRunner): Promise<Backend> {
  const wanted = o.backend ?? "auto";
  if (wanted !== "auto" && wanted !== "nft" && wanted !== "iptables") {
    throw new Error(`capture: backend: ${JSON.stringify(wanted)} is not one of auto, nft, iptables`);
  }
  if (wanted === "nft" || (wanted === "auto" && (await nftAvailable(exec)))) return nftBackend(exec);
  return iptablesBackend(exec, o.logger);
}

/**
 * Removes whatever capture rules an earlier run left (the nftables table and the iptables chains,
 * whichever exist). Idempotent; tools that are not installed are skipped.
 */
export async function removeLeftoverCapture(
  logger: Logger,
  opts: { exec?: CommandRunner } = {},
): Promise<void> {
  const exec = opts.exec ?? runLocalCommand;
  const nft = await nftRemove(exec);
  const ipt = await iptablesRemove(exec);
  if (nft || ipt) logger.info("removed leftover traffic capture rules", { nft, iptables: ipt });
}

const NO_CAPTURE: Capture = { backend: "none", update: async () => {}, remove: async () => {} };

/**
 * Installs capture rules per `o`, having first removed the leftovers of a crashed run. Throws,
 * naming the field or the failed command and its stderr, when the options are wrong or a
 * firewall tool fails (nothing is left installed then).
 */
export async function installCapture(o: CaptureOptions): Promise<Capture> {
  const exec = o.exec ?? runLocalCommand;
  const logger = o.logger;
  if (o.mode === "none") {
    await removeLeftoverCapture(logger, { exec });
    return NO_CAPTURE;
  }
  const plan = capturePlan({ ...o, mode: o.mode });
  let targets = captureTargets(plan, o);
  const backend = await chooseBackend(o, exec);
  await removeLeftoverCapture(logger, { exec });
  try {
    await backend.install(plan, targets);
  } catch (err) {
    await backend.remove().catch(() => {});
    throw err;
  }
  logger.info("traffic capture installed", {
    backend: backend.name,
    mode: plan.mode,
    dns: plan.captureDns,
    inboundPorts: targets.inboundPorts.length,
    meshCidrs: targets.meshCidrs.v4.length + targets.meshCidrs.v6.length,
  });

  let removed = false;
  let queue: Promise<unknown> = Promise.resolve();
  const serial = <T>(f: () => Promise<T>): Promise<T> => {
    const next = queue.then(f);
    queue = next.catch(() => {});
    return next;
  };
  return {
    backend: backend.name,
    update: (u) =>
      serial(async () => {
        if (removed) return;
        const next = captureTargets(plan, u);
        if (sameTargets(next, targets)) return;
        await backend.update(plan, next);
        targets = next;
      }),
    remove: () =>
      serial(async () => {
        removed = true;
        try {
          await backend.remove();
        } catch (err) {
          logger.error("removing traffic capture failed", { error: errorMessage(err) });
          throw err;
        }
      }),
  };
}
