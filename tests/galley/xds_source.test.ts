import { expect, test } from "bun:test";
import { createConfigStore } from "../../mod/galley/store.ts";
import { eventually } from "../e2e/_meshd.ts";
import { quiet, xdsHarness } from "./_harness.ts";

const we = (name: string, note: string) =>
  `apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: { name: ${name}, namespace: bookinfo, annotations: { note: "${note}" } }
spec: { address: 192.0.2.1 }
`;

test("createXdsSource() does not read a response over maxResponseBytes, keeps the last good config and says why", async () => {
  const h = await xdsHarness({ maxResponseBytes: 4096 });
  const store = createConfigStore({ logger: quiet });
  const source = h.source();
  const names = () => [...store.snapshot().resources.values()].map((r) => r.metadata.name).sort();
  try {
    await h.put("small.yaml", we("small", "x"));
    await source.start(store.sink(source.name));
    expect(await eventually(() => names().join() === "small")).toBe(true);
    await h.put("big.yaml", we("big", "y".repeat(8192)));
    expect(await eventually(() => store.status().sources[0]?.state === "refused")).toBe(true);
    expect(store.status().sources[0]!.errors).toEqual([
      "the remote galley sent a response over 4096 bytes (--config-max-total-size); it was not read, " +
      "and the last good config is kept",
    ]);
    expect(names()).toEqual(["small"]);
    await h.remove("big.yaml");
    await h.put("other.yaml", we("other", "z"));
    expect(await eventually(() => names().join() === "other,small")).toBe(true);
    expect(store.status().sources[0]!.state).toBe("ok");
  } finally {
    await source.stop();
    await h.close();
  }
});
