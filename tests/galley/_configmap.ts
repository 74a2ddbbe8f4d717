/**
 * Builds Kubernetes ConfigMap volumes in a directory the way kubelet does, for tests.
 */
import { mkdirSync, renameSync, rmSync, symlinkSync, writeFileSync } from "node:fs";
import { join } from "node:path";

/**
 * Writes one version of a ConfigMap volume into `dir`: the files in a new hidden timestamped
 * directory, then a `..data_tmp` link to it renamed over `..data` (the atomic swap). Returns the
 * timestamped directory's name. Visible links are left to {@link linkVisible}, as kubelet makes
 * them after the swap.
 */
export function projectConfigMap(dir: string, version: string, files: Record<string, string>): string {
  const ts = `..2026_12_03_10_00_00.${version}`;
  mkdirSync(join(dir, ts));
  for (const [name, text] of Object.entries(files)) writeFileSync(join(dir, ts, name), text);
  symlinkSync(ts, join(dir, "..data_tmp"));
  renameSync(join(dir, "..data_tmp"), join(dir, "..data"));
  return ts;
}

/** Makes the visible link `dir/NAME -> ..data/NAME` kubelet keeps for every file. */
export function linkVisible(dir: string, name: string): void {
  symlinkSync(`..data/${name}`, join(dir, name));
}

/** Finishes a swap as kubelet does: links for new names, none for removed ones, old version gone. */
export function finishSwap(
  dir: string,
  opts: { added: readonly string[]; removed: readonly string[]; old: string },
): void {
  for (const name of opts.added) linkVisible(dir, name);
  for (const name of opts.removed) rmSync(join(dir, name));
  rmSync(join(dir, opts.old), { recursive: true });
}
