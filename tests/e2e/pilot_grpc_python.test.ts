/**
 * Pilot end to end with python3-grpcio (gRPC C-core 1.51, Debian's build), run by
 * /usr/bin/python3: the same scenarios as the grpc-js suite but the per-route timeout, which
 * this C-core release applies too early (see the test at the end of this file).
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { ECHO_HOST } from "./_grpc.ts";
import { type Mesh, startMesh } from "./_grpc_mesh.ts";
import { grpcScenarios } from "./_grpc_scenarios.ts";

grpcScenarios("python", { timeouts: false });
