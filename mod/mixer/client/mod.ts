/**
 * meshd's Mixer client library for proxyless gRPC apps: a Check/Report client with a check
 * cache, quota prefetch, report batching and fail-open or fail-closed behaviour, and grpc-js
 * interceptors that check and report every call. It depends on @grpc/grpc-js and protobuf-es
 * only (no Bun APIs, nothing of the daemon).
 */
export {
  createMixerClient,
  type MixerClient,
  type MixerClientOptions,
  type Verdict,
} from "./mixer_client.ts";
export {
  type ClientInterceptorOptions,
  type InterceptorOptions,
  mixerClientInterceptor,
  mixerServerInterceptor,
  type ServerInterceptorOptions,
  type ServiceInfo,
  type WorkloadInfo,
} from "./interceptors.ts";
export { type CheckCache, createCheckCache } from "./check_cache.ts";
export { createQuotaPool, type QuotaPool } from "./quota_pool.ts";
export { createReportBatcher, type ReportBatcher, type ReportBatcherOptions } from "./report_batcher.ts";
export { type Ref, refsSignature, refValueKey } from "./referenced.ts";
export { type AttributeBag, BadBagError, decodeBag, encodeBag } from "./wire.ts";
