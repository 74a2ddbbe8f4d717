/**
 * Pilot end to end with @grpc/grpc-js-xds: a real proxyless gRPC client (its own Bun process)
 * takes LDS/RDS/CDS/EDS from meshd and calls real grpc-js backends on loopback.
 */
import { grpcScenarios } from "./_grpc_scenarios.ts";

grpcScenarios("grpc-js", { timeouts: true });
