/**
 * Labels as the analyzers print them in messages. The selection rule itself (which labels a
 * selector selects) is Istio's and lives in mod/api.
 *
 * @module
 */
import type { Labels } from "../../api/mod.ts";

/** Formats labels for messages: `{app=reviews,version=v1}`, keys sorted. */
export function formatLabels(labels: Labels | undefined): string {
  const pairs = Object.entries(labels ?? {}).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
  return `{${pairs.map(([k, v]) => `${k}=${v}`).join(",")}}`;
}
