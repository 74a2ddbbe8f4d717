import { expect, test } from "bun:test";
import { createPushQueue } from "../../mod/xds/push_queue.ts";

test("createPushQueue() merges pending pushes per key, orders types and drains in batches", async () => {
  const pushed: Array<[string, readonly string[]]> = [];
  const order = ["cds", "eds", "lds", "rds"];
  const q = createPushQueue<string>({
    batchSize: 2,
    order: (t) => order.indexOf(t),
    push: (k, types) => pushed.push([k, types]),
  });
  q.enqueue("a", ["lds"]);
  q.enqueue("b", ["rds"]);
  q.enqueue("a", ["cds", "lds"]);
  q.enqueue("c", ["eds"]);
  q.remove("b");
  expect(q.size).toBe(2);
  expect(pushed).toHaveLength(0);
  await new Promise((r) => setImmediate(r));
  expect(pushed).toEqual([["a", ["cds", "lds"]], ["c", ["eds"]]]);
  for (let i = 0; i < 5; i++) q.enqueue(`k${i}`, ["cds"]);
  await new Promise((r) => setImmediate(r));
  expect(pushed).toHaveLength(4);
  await new Promise((r) => setImmediate(r));
  await new Promise((r) => setImmediate(r));
  expect(pushed).toHaveLength(7);
});
