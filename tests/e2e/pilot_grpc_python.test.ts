/**
 * Pilot end to end with python3-grpcio (gRPC C-core 1.51, Debian's build, run by
 * /usr/bin/python3): the scenarios of the grpc-js suite but the per-route timeout. This C-core
 * release applies a route's max_stream_duration about 1.5 s early (a 10 s route timeout ends
 * calls after about 8.6 s, a 200 ms one at once), while grpc-js applies it exactly; the
 * grpc-js suite covers the translation.
 */
import { grpcScenarios } from "./_grpc_scenarios.ts";

grpcScenarios("python", { timeouts: false });
