import { expect, test } from "bun:test";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { serveSettingsTable } from "../scripts/docs.ts";

test("README.md carries the current settings table of meshd serve (bun scripts/docs.ts serve)", () => {
  const readme = readFileSync(join(import.meta.dir, "..", "README.md"), "utf8");
  expect(readme).toContain(serveSettingsTable());
});
