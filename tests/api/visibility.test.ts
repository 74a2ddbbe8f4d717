/**
 * Table tests for Istio's exportTo in mod/api. Galley reads exportTo into a set of namespaces
 * (`visibilityOf`), pilot asks one namespace at a time (`exportedTo`); both must agree on every
 * row.
 */
import { describe, expect, test } from "bun:test";
import { exportedTo, isVisibleFrom, visibilitiesOverlap, visibilityOf } from "../../mod/api/mod.ts";

const OWN = "own";
const NAMESPACES = [OWN, "other", "third"];

describe("exportTo", () => {
  const rows: [exportTo: string[] | undefined, visibleFrom: string[]][] = [
    [undefined, [OWN, "other", "third"]],
    [[], [OWN, "other", "third"]],
    [["*"], [OWN, "other", "third"]],
    [["."], [OWN]],
    [["~"], []],
    [["other"], ["other"]],
    [[".", "other"], [OWN, "other"]],
    [["other", "*"], [OWN, "other", "third"]],
    [["~", "*"], [OWN, "other", "third"]],
  ];
  for (const [exportTo, visibleFrom] of rows) {
    test(`${JSON.stringify(exportTo)} is visible from ${JSON.stringify(visibleFrom)}`, () => {
      const v = visibilityOf(exportTo, OWN);
      for (const ns of NAMESPACES) {
        const want = visibleFrom.includes(ns);
        expect({ ns, galley: isVisibleFrom(v, ns), pilot: exportedTo(exportTo, OWN, ns) })
          .toEqual({ ns, galley: want, pilot: want });
      }
    });
  }
});

test("visibilitiesOverlap(): some namespace sees both", () => {
  expect(visibilitiesOverlap(visibilityOf(["."], "a"), visibilityOf(["."], "b"))).toBe(false);
  expect(visibilitiesOverlap(visibilityOf(["b"], "a"), visibilityOf(["."], "b"))).toBe(true);
  expect(visibilitiesOverlap(visibilityOf(undefined, "a"), visibilityOf(["~"], "b"))).toBe(false);
  expect(visibilitiesOverlap(visibilityOf(["*"], "a"), visibilityOf(["c"], "b"))).toBe(true);
});
