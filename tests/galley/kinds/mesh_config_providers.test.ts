/** MeshConfig extensionProviders: Istio's provider kinds parse; ext_authz providers are validated. */
import { describe, expect, test } from "bun:test";
import { defaultMeshConfig, mergeMeshConfig } from "../../../mod/api/kinds/mesh_config.ts";
import { diagnose, errorsOf, expectErrorOn, expectOneError, expectValid, resource } from "./_check.ts";

const mesh = (providers: string) =>
  resource(
    { apiVersion: "config.meshd.io/v1alpha1", kind: "MeshConfig", name: "mesh", namespace: "istio-system" },
    `  extensionProviders:\n${providers}`,
  );

const P = "spec.extensionProviders[0]";

describe("MeshConfig extensionProviders", () => {
  test("validateResource() accepts Istio's ext_authz providers with every field", () => {
    expectValid(mesh(`    - name: grpc
      envoyExtAuthzGrpc:
        service: foo/ext-authz
        port: 9000
        timeout: 0.5s
        failOpen: true
        clearRouteCache: true
        statusOnError: "503"
        includeRequestBodyInCheck: { maxRequestBytes: 4096, allowPartialMessage: true, packAsBytes: true }
    - name: http
      envoyExtAuthzHttp:
        service: oauth2-proxy.auth.svc.cluster.local
        port: 4180
        timeout: 2s
        pathPrefix: /oauth2/auth
        failOpen: false
        statusOnError: "403"
        includeHeadersInCheck: [cookie]
        includeRequestHeadersInCheck: [authorization, "x-auth-*"]
        includeAdditionalHeadersInCheck: { x-source: mesh }
        includeRequestBodyInCheck: { maxRequestBytes: 1024 }
        headersToUpstreamOnAllow: [x-user]
        headersToDownstreamOnDeny: ["*-cookie"]
        headersToDownstreamOnAllow: [set-cookie]
    - name: by-ip
      envoyExtAuthzGrpc: { service: 10.0.0.9, port: 15010 }
`));
  });

  test("zipkin and file access-log providers are used; other tracing and metrics providers parse with a not-supported warning", () => {
    const diagnostics = diagnose(mesh(`    - name: zipkin
      zipkin: { service: zipkin.istio-system.svc.cluster.local, port: 9411, maxTagLength: 256 }
    - name: otel
      opentelemetry:
        service: otel.observability.svc.cluster.local
        port: 4317
        grpc: { timeout: 1s }
    - name: file
      envoyFileAccessLog: { path: /dev/stdout, logFormat: { text: "%START_TIME%" } }
    - name: prom
      prometheus: {}
`));
    expect(diagnostics.filter((d) => d.severity === "error")).toEqual([]);
    const warnings = diagnostics.filter((d) => d.severity === "warning");
    expect(warnings.map((w) => w.field)).toEqual([
      "spec.extensionProviders[1].opentelemetry",
      "spec.extensionProviders[3].prometheus",
    ]);
    expect(warnings[0]!.message).toContain('extension provider "otel": opentelemetry is not supported');
  });

  test("a port out of range is named in the message", () => {
    expectOneError(
      mesh(`    - name: a\n      envoyExtAuthzGrpc: { service: foo/ext-authz, port: 70000 }\n`),
      `${P}.envoyExtAuthzGrpc.port`,
      9,
      "70000",
    );
    expectErrorOn(
      mesh(`    - name: a\n      envoyExtAuthzHttp: { service: foo/ext-authz }\n`),
      `${P}.envoyExtAuthzHttp.port`,
      "",
    );
  });

  test("services must name one host: HOST, NAMESPACE/HOST or an IP address, no wildcards", () => {
    const bad = (service: string, message: string) =>
      expectErrorOn(
        mesh(`    - name: a\n      envoyExtAuthzGrpc: { service: "${service}", port: 9000 }\n`),
        `${P}.envoyExtAuthzGrpc.service`,
        message,
      );
    bad("*.example.com", "wildcards are not allowed");
    bad("a/b/c", "must be HOST or NAMESPACE/HOST");
    bad("Bad_NS/ext-authz", "namespace");
    bad("ext_authz.foo", "is invalid");
    bad("", "must not be empty");
  });

  test("statusOnError, pathPrefix, header wildcards, names and kinds are checked", () => {
    expectOneError(
      mesh(`    - name: a\n      envoyExtAuthzGrpc: { service: foo/x, port: 1, statusOnError: "999" }\n`),
      `${P}.envoyExtAuthzGrpc.statusOnError`,
      9,
      "must be an HTTP status code",
    );
    expectOneError(
      mesh(`    - name: a\n      envoyExtAuthzHttp: { service: foo/x, port: 1, pathPrefix: auth }\n`),
      `${P}.envoyExtAuthzHttp.pathPrefix`,
      9,
      'must be a URL path beginning with "/"',
    );
    expectErrorOn(
      mesh(
        `    - name: a\n      envoyExtAuthzHttp: { service: foo/x, port: 1, headersToUpstreamOnAllow: ["*"] }\n`,
      ),
      `${P}.envoyExtAuthzHttp.headersToUpstreamOnAllow[0]`,
      "a single wildcard",
    );
    expectErrorOn(
      mesh(`    - name: a
      envoyExtAuthzGrpc: { service: foo/x, port: 1 }
    - name: a
      envoyExtAuthzGrpc: { service: foo/y, port: 1 }
`),
      "spec.extensionProviders[1].name",
      'extension provider name "a" is already used by extensionProviders[0]',
    );
    expect(
      errorsOf(mesh(`    - name: a
      envoyExtAuthzGrpc: { service: foo/x, port: 1 }
      envoyExtAuthzHttp: { service: foo/x, port: 1 }
`)).length,
    ).toBeGreaterThan(0);
    expect(errorsOf(mesh(`    - name: a\n`)).length).toBeGreaterThan(0);
    expectErrorOn(mesh(`    - envoyExtAuthzGrpc: { service: foo/x, port: 1 }\n`), `${P}.name`, "");
    expectErrorOn(
      mesh(`    - name: a\n      envoyExtAuthzGrpc: { service: foo/x, port: 1, failopen: true }\n`),
      `${P}.envoyExtAuthzGrpc.failopen`,
      "failOpen",
    );
  });

  test("mergeMeshConfig() keeps the providers as written; none by default", () => {
    expect(defaultMeshConfig.extensionProviders).toEqual([]);
    const providers = [{ name: "a", envoyExtAuthzGrpc: { service: "foo/x", port: 9000 } }];
    expect(mergeMeshConfig({ extensionProviders: providers }).extensionProviders).toEqual(providers);
    expect(mergeMeshConfig({ trustDomain: "example.org" }).extensionProviders).toEqual([]);
  });
});
