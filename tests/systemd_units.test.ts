import { expect, test } from "bun:test";
import { readFileSync } from "node:fs";
import { resolve } from "node:path";
import { envName } from "../mod/cli/setting.ts";
import { MODULES } from "../runtime/catalogue.ts";
import { serveSettings } from "../runtime/serve_command.ts";

const root = resolve(import.meta.dir, "..");
const serve = serveSettings(MODULES);
const flags = new Set(serve.map((s) => s.name));
const envs = new Set(serve.map((s) => envName(s)));

for (const unit of ["config/systemd/meshd.service", "config/systemd/meshd.service.d/replica.conf"]) {
  test(`${unit} starts meshd serve with flags and variables it has`, () => {
    const text = readFileSync(resolve(root, unit), "utf8");
    const exec = text.split("\n").filter((l) => l.startsWith("ExecStart=/usr/local/bin/meshd serve "));
    expect(exec).toHaveLength(1);
    const used = [...text.matchAll(/--([a-z][a-z0-9-]*)=/g)].map((m) => m[1]!);
    expect(used.length).toBeGreaterThan(0);
    expect(used.filter((f) => !flags.has(f))).toEqual([]);
    const vars = [...text.matchAll(/\b(MESHD_[A-Z0-9_]+)/g)].map((m) => m[1]!);
    expect(vars.filter((v) => !envs.has(v))).toEqual([]);
  });
}
