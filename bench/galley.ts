/**
 * Galley benchmark: parse-and-validate throughput for a large config, against bare YAML parsing
 * of the same text in the same run, and snapshot update latency for a one-file change (in the
 * store, and end to end through the watched directory).
 *
 * Usage: bun bench/galley.ts [--resources N] [--per-file M]
 */
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { parseAllDocuments } from "yaml";
import { createDirSource } from "../mod/galley/dir_source.ts";
import { parseConfig } from "../mod/galley/parse.ts";
import { createConfigStore } from "../mod/galley/store.ts";
import { validateResource } from "../mod/galley/validate.ts";
import { createLogger } from "../mod/shared/logger.ts";
import { benchArgs } from "./_args.ts";

const quiet = createLogger({ write: () => {} });

/** One generated resource of a rotating kind; `salt` changes its content. */
export function generatedResource(i: number, salt = 0): string {
  const ns = `team-${i % 20}`;
  const host = `svc-${i}.${ns}.svc.cluster.local`;
  switch (i % 4) {
    case 0:
      return `apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: { name: svc-${i}, namespace: ${ns} }
spec:
  hosts: [${host}]
  location: MESH_INTERNAL
  resolution: STATIC
  ports: [{ number: ${8000 + (i % 1000)}, name: http, protocol: HTTP }]
  workloadSelector: { labels: { app: svc-${i} } }
`;
    case 1:
      return `apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: { name: vs-${i}, namespace: ${ns} }
spec:
  hosts: [${host}]
  http:
  - match: [{ headers: { end-user: { exact: user-${salt} } } }]
    route: [{ destination: { host: ${host}, subset: v2 } }]
  - timeout: ${5 + salt}s
    retries: { attempts: 3, perTryTimeout: 2s, retryOn: "5xx,reset" }
    route:
    - { destination: { host: ${host}, subset: v1 }, weight: 90 }
    - { destination: { host: ${host}, subset: v2 }, weight: 10 }
`;
    case 2:
      return `apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: { name: dr-${i}, namespace: ${ns} }
spec:
  host: ${host}
  trafficPolicy:
    tls: { mode: ISTIO_MUTUAL }
    outlierDetection: { consecutive5xxErrors: 5, interval: 10s, baseEjectionTime: 30s }
  subsets:
  - { name: v1, labels: { version: v1 } }
  - { name: v2, labels: { version: v2 } }
`;
    default:
      return `apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: { name: we-${i}, namespace: ${ns} }
spec:
  address: 10.${(i >> 16) & 255}.${(i >> 8) & 255}.${i & 255}
  labels: { app: svc-${i - 3}, version: v${1 + (i % 2)} }
  serviceAccount: sa-${i % 50}
`;
  }
}

/** Files of `perFile` resources each, `total` resources in all. */
export function generatedFiles(total: number, perFile: number, salt = 0): Map<string, string> {
  const files = new Map<string, string>();
  for (let f = 0; f * perFile < total; f++) {
    const docs: string[] = [];
    for (let i = f * perFile; i < Math.min(total, (f + 1) * perFile); i++) {
      docs.push(generatedResource(i, salt));
    }
    files.set(`file-${String(f).padStart(4, "0")}.yaml`, docs.join("---\n"));
  }
  return files;
}

/** Results of one run. */
export interface GalleyBench {
  resources: number;
  parseValidatePerSec: number;
  bareYamlPerSec: number;
  storeUpdateMs: number;
  dirUpdateMs: number;
}

/** Runs every scenario once with the given size. */
export async function runGalleyBench(total: number, perFile: number): Promise<GalleyBench> {
  const files = generatedFiles(total, perFile);
  // Bare YAML parse of the same text: the floor.
  let t0 = performance.now();
  let bare = 0;
  for (const text of files.values()) {
    for (const d of parseAllDocuments(text) as ReturnType<typeof parseAllDocuments> & unknown[]) {
      bare += d.toJS() ? 1 : 0;
    }
  }
  const bareMs = performance.now() - t0;
  // Parse with positions, and validate.
  t0 = performance.now();
  let valid = 0;
  for (const [name, text] of files) {
    const parsed = parseConfig(text, name);
    if (parsed.diagnostics.length) {
      throw new Error(`generated config is invalid: ${parsed.diagnostics[0]!.message}`);
    }
    for (const r of parsed.resources) {
      const d = validateResource(r);
      if (d.some((x) => x.severity === "error")) {
        throw new Error(`generated ${r.kind} is invalid: ${d[0]!.message}`);
      }
      valid++;
    }
  }
  const pvMs = performance.now() - t0;
  if (valid !== total || bare !== total) {
    throw new Error(`expected ${total} resources, got ${valid} (bare ${bare})`);
  }

  // Snapshot update latency in the store: one file of `perFile` resources, one of them changed.
  const store = createConfigStore({ logger: quiet });
  const sink = store.sink("bench");
  sink.replace([...files].map(([origin, content]) => ({ origin, content })));
  const first = [...files.keys()][0]!;
  const changed = generatedFiles(perFile, perFile, 1).get("file-0000.yaml")!;
  let published = 0;
  store.subscribe(() => published++);
  t0 = performance.now();
  sink.update([{ origin: first, content: changed }]);
  const storeUpdateMs = performance.now() - t0;
  if (published !== 1) throw new Error("the one-file change did not publish one snapshot");

  // End to end through a watched directory (debounce 1 ms).
  const dir = mkdtempSync(join(tmpdir(), "meshd-bench-galley-"));
  try {
    for (const [name, text] of files) writeFileSync(join(dir, name), text);
    const dstore = createConfigStore({ logger: quiet });
    const src = createDirSource({ dir, logger: quiet, debounceMs: 1, rescanMs: 0 });
    await src.start(dstore.sink(src.name));
    const done = new Promise<number>((resolve) => dstore.subscribe(() => resolve(performance.now())));
    t0 = performance.now();
    writeFileSync(join(dir, first), changed);
    const timeout = new Promise<number>((_, reject) =>
      setTimeout(() => reject(new Error("no update within 10 s")), 10_000)
    );
    const dirUpdateMs = (await Promise.race([done, timeout])) - t0;
    await src.stop();
    return {
      resources: total,
      parseValidatePerSec: total / (pvMs / 1000),
      bareYamlPerSec: total / (bareMs / 1000),
      storeUpdateMs,
      dirUpdateMs,
    };
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

if (import.meta.main) {
  const args = benchArgs();
  const r = await runGalleyBench(args.number("--resources", 10_000), args.number("--per-file", 100));
  console.log(`resources                      ${r.resources}`);
  console.log(`parse+validate                 ${r.parseValidatePerSec.toFixed(0)} resources/s`);
  console.log(`bare YAML parse (same text)    ${r.bareYamlPerSec.toFixed(0)} resources/s`);
  console.log(`ratio parse+validate / bare    ${(r.parseValidatePerSec / r.bareYamlPerSec).toFixed(2)}`);
  console.log(`one-file change, store         ${r.storeUpdateMs.toFixed(1)} ms`);
  console.log(`one-file change, watched dir   ${r.dirUpdateMs.toFixed(1)} ms (write to snapshot)`);
}
