import { expect, test } from "bun:test";
import { readFileSync } from "node:fs";
import { resolve } from "node:path";

const root = resolve(import.meta.dir, "..");
const readJson = (file: string) => JSON.parse(readFileSync(resolve(root, file), "utf8"));

test("every locked package accepts the oldest Node.js that package.json's engines admits", () => {
  const own: string = readJson("package.json").engines.node;
  const oldest = own.match(/^>=\s*(\d+)(?:\.(\d+))?(?:\.(\d+))?$/);
  expect(oldest, `package.json engines.node "${own}" is not of the form >=MAJOR[.MINOR[.PATCH]]`).not
    .toBeNull();
  const version = `${oldest![1]}.${oldest![2] ?? 0}.${oldest![3] ?? 0}`;
  const lock = readJson("package-lock.json") as { packages: Record<string, { engines?: { node?: string } }> };
  const refused = Object.entries(lock.packages)
    .filter(([, p]) => p.engines?.node !== undefined && !Bun.semver.satisfies(version, p.engines.node))
    .map(([path, p]) => `${path.replace(/^.*node_modules\//, "")} needs node ${p.engines!.node}`);
  expect(refused).toEqual([]);
});
