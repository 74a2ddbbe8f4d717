/**
 * Label selection as Istio's `workloadSelector`, `selector.matchLabels` and subset labels use
 * it: every key of the selector must be present in the labels with the same value.
 *
 * @module
 */

/** Labels or a selector: key to value. */
export type Labels = Readonly<Record<string, string>>;

/** True when `labels` carries every key/value pair of `selector`; an empty selector selects all. */
export function selectorMatches(selector: Labels | undefined, labels: Labels | undefined): boolean {
  if (!selector) return true;
  for (const [k, v] of Object.entries(selector)) {
    if (labels?.[k] !== v) return false;
  }
  return true;
}

/** True when the selector is absent or has no keys, which in Istio means "everything in scope". */
export function isEmptySelector(selector: Labels | undefined): boolean {
  return !selector || Object.keys(selector).length === 0;
}

/** Formats labels for messages: `{app=reviews,version=v1}`, keys sorted. */
export function formatLabels(labels: Labels | undefined): string {
  const pairs = Object.entries(labels ?? {}).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
  return `{${pairs.map(([k, v]) => `${k}=${v}`).join(",")}}`;
}
