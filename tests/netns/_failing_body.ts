/**
 * Run by harness.test.ts as `bun test ./tests/netns/_failing_body.ts` (not a test file of its
 * own): makes a test network, prints `NETWORK <id>`, then ends the way FAILING_BODY says:
 * `throw` (a failing test body; afterAll cleans up), `exit` (process.exit in the body; the exit
 * hook cleans up) or `hang` (waits to be killed; only the next run's sweep can clean up).
 */
import { afterAll, test } from "bun:test";
import { createTestNetwork } from "./_harness.ts";

const net = createTestNetwork({ machines: 2 });
afterAll(() => net.cleanup());

test("a body that fails", async () => {
  // A process inside, so cleanup has something to kill as well.
  net.exec(net.machines[0]!, ["sleep", "60"]);
  process.stdout.write(`NETWORK ${net.id}\n`);
  const mode = process.env.FAILING_BODY;
  if (mode === "exit") process.exit(3);
  if (mode === "hang") await Bun.sleep(60_000);
  throw new Error("the body failed");
}, 90_000);
