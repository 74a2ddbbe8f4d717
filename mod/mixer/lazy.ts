/**
 * Mixer's Check/Report client library, for a dynamic `import()` by code that reports only when
 * configured to (the node proxy with `--mixer-addr`): loading it loads grpc-js and mixer's
 * protobuf descriptors, which an agent without a mixer address never needs.
 *
 * @module
 */
export { createMixerClient } from "./client/mod.ts";
