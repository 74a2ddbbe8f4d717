/**
 * `npm test`: every check the project promises, in order, with one summary line at the end.
 * Installs missing Debian packages the tests need first (scripts/system_deps.sh).
 *
 * Usage: bun scripts/check.ts [--only typecheck,lint,fmt,test] [bun test args...]
 */
import { spawnSync } from "node:child_process";
import { resolve } from "node:path";

const root = resolve(import.meta.dir, "..");
const bin = (name: string) => resolve(root, "node_modules/.bin", name);

const argv = process.argv.slice(2);
let only: Set<string> | undefined;
if (argv[0] === "--only") {
  only = new Set(argv[1]!.split(","));
  argv.splice(0, 2);
}

const steps: Array<{ name: string; cmd: string[] }> = [
  { name: "system-deps", cmd: ["bash", resolve(root, "scripts/system_deps.sh")] },
  { name: "typecheck", cmd: [bin("tsc"), "-p", root] },
  { name: "lint", cmd: [bin("deno"), "lint", "--quiet"] },
  { name: "fmt", cmd: [bin("deno"), "fmt", "--check", "--quiet"] },
  { name: "test", cmd: [bin("bun"), "test", ...argv] },
];

let passed = 0;
let failed = 0;
for (const step of steps) {
  if (only && !only.has(step.name)) continue;
  const t0 = performance.now();
  process.stdout.write(`\n== ${step.name}: ${step.cmd.map((c) => c.replace(root + "/", "")).join(" ")}\n`);
  const res = spawnSync(step.cmd[0]!, step.cmd.slice(1), { cwd: root, stdio: "inherit", env: process.env });
  const ok = res.status === 0;
  process.stdout.write(
    `== ${step.name}: ${ok ? "ok" : `FAILED (exit ${res.status ?? res.signal})`} in ${
      ((performance.now() - t0) / 1000).toFixed(1)
    }s\n`,
  );
  if (ok) passed++;
  else failed++;
}
process.stdout.write(`\nchecks: ${passed} passed, ${failed} failed\n`);
process.exit(failed === 0 ? 0 : 1);
