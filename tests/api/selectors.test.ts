/** Table tests for Istio's label selection in mod/api. */
import { describe, expect, test } from "bun:test";
import { isEmptySelector, type Labels, selectorMatches } from "../../mod/api/mod.ts";

describe("selectorMatches", () => {
  const rows: [selector: Labels | undefined, labels: Labels | undefined, want: boolean][] = [
    [undefined, { app: "web" }, true],
    [{}, { app: "web" }, true],
    [{}, undefined, true],
    [undefined, undefined, true],
    [{ app: "web" }, { app: "web", version: "v1" }, true],
    [{ app: "web", version: "v1" }, { app: "web", version: "v1" }, true],
    [{ app: "web", version: "v2" }, { app: "web", version: "v1" }, false],
    [{ app: "web" }, {}, false],
    // Galley's copy accepted absent labels; pilot's required an object. Both now: no labels, no match.
    [{ app: "web" }, undefined, false],
    [{ app: "" }, {}, false],
    [{ app: "" }, { app: "" }, true],
    // Keys are the labels' own: an inherited property is not a label.
    [{ constructor: "x" }, {}, false],
    [{ toString: "x" }, {}, false],
    // Values compare exactly (labels are case-sensitive, unlike host names).
    [{ app: "Web" }, { app: "web" }, false],
  ];
  for (const [selector, labels, want] of rows) {
    test(`${JSON.stringify(selector)} selects ${JSON.stringify(labels)}: ${want}`, () => {
      expect(selectorMatches(selector, labels)).toBe(want);
    });
  }
});

test("isEmptySelector(): absent or without keys", () => {
  expect(isEmptySelector(undefined)).toBe(true);
  expect(isEmptySelector({})).toBe(true);
  expect(isEmptySelector({ app: "web" })).toBe(false);
});
