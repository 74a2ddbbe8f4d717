import { create } from "@bufbuild/protobuf";
import { anyPack, StringValueSchema } from "@bufbuild/protobuf/wkt";
import { createGrpcServer } from "../../mod/grpc/server.ts";
import { createLogger } from "../../mod/shared/logger.ts";
import { createAdsServer } from "../../mod/xds/server.ts";
import type { ResourceProvider } from "../../mod/xds/provider.ts";
import { contentVersion } from "../../mod/xds/version.ts";
const TYPE = "type.googleapis.com/google.protobuf.StringValue";
let n = 0;
const ls = new Set<(t: ReadonlySet<string>) => void>();
const provider: ResourceProvider = {
  typeUrls: [TYPE],
  resources() {
    const text = `v${n}`;
    return new Map([["a", { name: "a", version: contentVersion(text), resource: anyPack(StringValueSchema, create(StringValueSchema, { value: text })) }]]);
  },
  watch(l) { ls.add(l); return () => ls.delete(l); },
};
const log = createLogger({ write: () => {} });
const grpc = createGrpcServer({ logger: log });
const ads = createAdsServer({ logger: log });
ads.addProvider(provider);
ads.register(grpc);
const addr = await grpc.listen("127.0.0.1:0");
console.log(addr.port);
setInterval(() => { n++; console.error(`push v${n} at ${Date.now() % 100000}`); for (const l of ls) l(new Set([TYPE])); }, 2000);
