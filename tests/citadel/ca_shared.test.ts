/**
 * openSharedCa() and the shared token key against a real etcd (Debian's etcd-server on
 * loopback), through meshd's own etcd client: the creation race, a wrong KEK, a `--ca-dir` that
 * differs from what etcd holds, rotation steps with a compare on the revision read, and a
 * replica following another's steps from its watch.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { mkdirSync } from "node:fs";
import { join } from "node:path";
import {
  caStateKey,
  openSharedCa,
  type SharedCa,
  type SharedCaOptions,
} from "../../mod/citadel/ca_shared.ts";
import { CaLoadError, type CaMaterial } from "../../mod/citadel/ca_store.ts";
import { createKekFile, KekError, readKekFile } from "../../mod/citadel/kek.ts";
import { loadOrCreateSharedTokenKey } from "../../mod/citadel/token_shared.ts";
import { parseCommandLine } from "../../mod/cli/flags.ts";
import { systemClock } from "../../mod/shared/clock.ts";
import { createLogger } from "../../mod/shared/logger.ts";
import type { Store } from "../../mod/store/links.ts";
import { openStore } from "../../mod/store/open_store.ts";
import { STORE_SETTINGS } from "../../mod/store/settings.ts";
import { quiet } from "../galley/_harness.ts";
import { type EtcdCluster, startEtcd } from "../store/_etcd.ts";
import { makeOfflineCa, tempDir } from "./_ca.ts";

const dir = tempDir("meshd-ca-shared-");
const kekAt = (name: string) => {
  const file = join(dir.path, name);
  createKekFile(file);
  return readKekFile(file);
};
const kek = kekAt("kek");
let etcd: EtcdCluster;
const stores: Store[] = [];
const cas: SharedCa[] = [];
let n = 0;

/** A store on a fresh prefix (or `prefix`), as `--store` opens it. */
function store(prefix = `/t${n++}`): Store {
  const argv = ["--store", `etcd://${etcd.endpoints}${prefix}`, "--etcd-timeout", "2s"];
  const s = openStore(parseCommandLine(STORE_SETTINGS, argv, { command: "test", env: {} }).settings, {
    logger: quiet,
  })!;
  stores.push(s);
  return s;
}
async function open(s: Store, o: Partial<SharedCaOptions> = {}): Promise<SharedCa> {
  const ca = await openSharedCa(
    { store: s, kek, keyType: "ec-p256", clock: systemClock, logger: quiet, ...o },
    () => Promise.resolve("cluster.local"),
  );
  cas.push(ca);
  return ca;
}
const fps = (m: CaMaterial) => m.rootFingerprints;
/** The message `p` rejects with (awaited here: bun's expect().rejects does not run etcd calls). */
async function failure(p: Promise<unknown>): Promise<string> {
  try {
    await p;
  } catch (err) {
    return (err as Error).message;
  }
  return "resolved";
}

beforeAll(async () => {
  etcd = await startEtcd(1);
}, 60_000);
afterAll(async () => {
  for (const c of cas) c.close();
  for (const s of stores) s.close();
  await etcd?.stop();
  dir.cleanup();
});

describe("openSharedCa()", () => {
  test(
    "replicas opening at once on an empty prefix end up with one root, the losers' discarded",
    async () => {
      const lines: string[] = [];
      const logger = createLogger({ write: (l) => lines.push(l), format: "json" });
      for (let round = 0; round < 5; round++) {
        const prefix = `/race${round}`;
        const opened = await Promise.all([1, 2, 3].map(() => open(store(prefix), { logger })));
        const state = JSON.parse(
          await etcd.ctl(["get", caStateKey(prefix), "--print-value-only"]),
        ) as { trusted: string[]; roots: Record<string, unknown> };
        expect(state.trusted).toHaveLength(1);
        expect(Object.keys(state.roots)).toEqual(state.trusted);
        for (const ca of opened) expect(fps(ca.current())).toEqual(fps(opened[0]!.current()));
      }
      const created = lines.filter((l) => l.includes("created a self-signed root in etcd")).length;
      const lost = lines.filter((l) => l.includes("another replica created the CA first")).length;
      expect(created).toBe(5);
      console.log(
        `creation race in one process: ${lost} of 10 other openings lost the create-if-absent write`,
      );
    },
    60_000,
  );

  test("a wrong KEK is a clear error naming the file", async () => {
    const s = store();
    await open(s);
    const wrong = kekAt("wrong");
    const err = await open(store(s.prefix), { kek: wrong }).catch((e) => e);
    expect(err).toBeInstanceOf(KekError);
    expect((err as Error).message).toStartWith(
      `the CA key in etcd does not decrypt with --ca-kek-file ${wrong.file}: wrong key-encryption key?`,
    );
    const tokenErr = await loadOrCreateSharedTokenKey(s, kek).then(() => loadOrCreateSharedTokenKey(s, wrong))
      .catch((e) => e);
    expect((tokenErr as Error).message).toStartWith("the token signing key in etcd does not decrypt");
  });

  test("a root key moved to another root's entry does not decrypt", async () => {
    const s = store();
    const ca = await open(s);
    await ca.rotate("cluster.local");
    const key = caStateKey(s.prefix);
    const state = JSON.parse(await etcd.ctl(["get", key, "--print-value-only"])) as {
      signing: string;
      trusted: string[];
      roots: Record<string, { key: string }>;
    };
    const [newer, older] = state.trusted as [string, string];
    state.roots[older]!.key = state.roots[newer]!.key;
    await etcd.ctl(["put", key], JSON.stringify(state));
    const err = await open(store(s.prefix)).catch((e) => e);
    expect(err).toBeInstanceOf(KekError);
    expect((err as Error).message).toContain(`root ${older}`);
  });

  test("a step writes with a compare on the revision read; another replica follows it from its watch", async () => {
    const s = store();
    const a = await open(s);
    const b = await open(store(s.prefix));
    const seen: CaMaterial[] = [];
    b.follow((m) => seen.push(m));
    const first = fps(a.current())[0]!;
    const rotated = await a.rotate("cluster.local");
    expect(rotated.rootFingerprints).toHaveLength(2);
    expect(rotated.rootFingerprints[0]).toBe(first); // the old root still signs
    const follows = async (want: readonly string[]) => {
      for (let i = 0; i < 200 && JSON.stringify(fps(b.current())) !== JSON.stringify(want); i++) {
        await Bun.sleep(50);
      }
      expect(fps(b.current())).toEqual([...want]);
    };
    await follows(rotated.rootFingerprints);
    const activated = await b.activate();
    expect(activated.rootFingerprints[0]).not.toBe(first);
    b.close(); // b stops following; a must still see b's step when it writes next
    await a.retire();
    expect(fps(a.current())).toEqual([activated.rootFingerprints[0]!]);
    expect(seen.length).toBeGreaterThanOrEqual(1);
    // A step that finds nothing to do writes nothing.
    const c = await open(store(s.prefix));
    const before = await etcd.revision();
    expect(await failure(c.activate())).toBe("no new root is prepared; rotate first");
    expect(await etcd.revision()).toBe(before);
  });

  test("steps taken at once at three replicas: none is lost, the ones that raced are refused", async () => {
    const s = store();
    const replicas = [await open(s), await open(store(s.prefix)), await open(store(s.prefix))];
    for (let round = 0; round < 5; round++) {
      if (round > 0) {
        await replicas[0]!.activate();
        await replicas[0]!.retire();
      }
      const outcomes = await Promise.all(replicas.map((r) => failure(r.rotate("cluster.local"))));
      const ok = outcomes.filter((o) => o === "resolved").length;
      for (const o of outcomes.filter((x) => x !== "resolved")) {
        expect(o).toMatch(
          /^cannot rotate the CA root: the CA changed at another replica meanwhile; look again and retry$|^3 roots are trusted already/,
        );
      }
      const state = JSON.parse(await etcd.ctl(["get", caStateKey(s.prefix), "--print-value-only"])) as {
        trusted: string[];
      };
      // Every step reported done is in etcd: one root before, one more per success.
      expect(state.trusted).toHaveLength(1 + ok);
      expect(ok).toBeGreaterThanOrEqual(1);
    }
  });

  test("--ca-dir: the first replica imports it; a replica with other files or none refuses, naming both", async () => {
    const one = join(dir.path, "byo1");
    const two = join(dir.path, "byo2");
    mkdirSync(one);
    mkdirSync(two);
    makeOfflineCa(one);
    makeOfflineCa(two);
    const s = store();
    const a = await open(s, { caDir: one });
    expect(a.current().mode).toBe("byo");
    expect(fps((await open(store(s.prefix), { caDir: one })).current())).toEqual(fps(a.current()));
    const differs = await open(store(s.prefix), { caDir: two }).catch((e) => e);
    expect(differs).toBeInstanceOf(CaLoadError);
    expect((differs as Error).message).toMatch(
      new RegExp(
        `^--ca-dir ${two} \\(signing certificate sha256 \\w+, roots \\w+\\) differs from the CA in etcd key ${s.prefix}/ca/state \\(signing certificate sha256 \\w+`,
      ),
    );
    expect(await failure(open(store(s.prefix)))).toContain("holds a --ca-dir CA another replica imported");
    expect(await failure(a.rotate("cluster.local"))).toContain("the CA comes from --ca-dir");
  });
});
