/**
 * Istio's label selection, written once: `workloadSelector`, `selector.matchLabels` and subset
 * labels all select the workloads whose labels carry every key/value pair of the selector.
 *
 * @module
 */

/** Labels or a selector: key to value. */
export type Labels = Readonly<Record<string, string>>;

/**
 * True when `labels` carries every key/value pair of `selector` (Istio's `SubsetOf`); an absent
 * or empty selector selects everything. Only the labels' own keys count, so a selector key such
 * as "constructor" never matches an inherited property.
 */
export function selectorMatches(selector: Labels | undefined, labels: Labels | undefined): boolean {
  if (!selector) return true;
  for (const [k, v] of Object.entries(selector)) {
    if (!labels || !Object.hasOwn(labels, k) || labels[k] !== v) return false;
  }
  return true;
}

/** True when the selector is absent or has no keys, which in Istio means "everything in scope". */
export function isEmptySelector(selector: Labels | undefined): boolean {
  return !selector || Object.keys(selector).length === 0;
}
