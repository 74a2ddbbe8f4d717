import { startMesh } from "./_grpc_mesh.ts";
import { syncz } from "./_grpc.ts";
const kind = (process.env.KIND ?? "python") as "python";
const t0 = Date.now();
const mesh = await startMesh(kind, { meshdCommand: process.env.STRACE ? ["strace", "-f", "-tt", "-e", "trace=write,writev,sendto,sendmsg,read,recvfrom,epoll_wait", "-o", "/tmp/st.txt", process.execPath, "main.ts"] : undefined, meshdArgs: ["--log-level=debug", ...(process.env.EXTRA ? [process.env.EXTRA] : [])] });
console.log("started", Date.now() - t0);
const dest = (s?: string) => `{host: echo.test.svc.cluster.local${s ? `, subset: ${s}` : ""}}`;
const t1 = Date.now(); console.log("write at", new Date().toISOString());
try {
  await mesh.route({ http: `- route:\n  - destination: ${dest("v1")}\n    weight: 90\n  - destination: ${dest("v2")}\n    weight: 10` });
  console.log("routed", Date.now() - t1);
} catch (e) { console.log(String(e).slice(0, 300)); }
const t2 = Date.now();
const s = await mesh.calls({ n: 100, concurrency: 20 });
console.log("calls", Date.now() - t2, JSON.stringify(s.byBackend), JSON.stringify(s.errors));
console.log(JSON.stringify(await syncz(mesh.meshd.adminAddr)));

const err = ((globalThis as Record<string, unknown>).meshClient as { stderr(): string } | undefined)?.stderr() ?? "";
await Bun.write("/tmp/py_trace.txt", err);
console.log(mesh.meshd.logs.map((l) => JSON.stringify(l)).join("\n").slice(-6000));
await mesh.close();
