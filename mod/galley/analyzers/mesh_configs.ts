/**
 * More than one MeshConfig. meshd runs with exactly one set of mesh-wide settings; with several
 * resources only the first (in file order) is used and the others are silently ignored. Parsing
 * already refuses a second MeshConfig in the same file; this catches them across files and
 * sources.
 *
 * @module
 */

import { defineAnalyzer } from "./_define.ts";

/** MSH0180: at most one MeshConfig resource. */
export const multipleMeshConfigs = defineAnalyzer({
  code: "MSH0180",
  name: "MultipleMeshConfigs",
  severity: "error",
  description: "More than one MeshConfig resource exists; meshd uses exactly one.",
}, (ctx, report) => {
  const [first, ...rest] = ctx.ofKind("MeshConfig");
  if (!first) return;
  const inForce =
    `${first.metadata.namespace}/${first.metadata.name} (${first.source.file}:${first.source.line})`;
  for (const r of rest) {
    report(
      r,
      "metadata.name",
      `MeshConfig ${inForce} is already in force; a mesh has exactly one MeshConfig and this one is ignored`,
    );
  }
});
