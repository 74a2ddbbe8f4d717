/**
 * The admission webhook's HTTPS server: only application/json bodies are read as an
 * AdmissionReview.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { startWebhookServer, type WebhookServer } from "../../mod/galley/webhook.ts";
import { quiet } from "./_harness.ts";

const REVIEW = JSON.stringify({
  apiVersion: "admission.k8s.io/v1",
  kind: "AdmissionReview",
  request: {
    uid: "u-1",
    operation: "CREATE",
    namespace: "default",
    object: {
      apiVersion: "networking.istio.io/v1",
      kind: "VirtualService",
      metadata: { name: "r" },
      spec: { hosts: ["r.example.com"], http: [{ route: [{ destination: { host: "r.example.com" } }] }] },
    },
  },
});

describe("startWebhookServer()", () => {
  let server: WebhookServer;
  beforeAll(async () => {
    server = await startWebhookServer({ addr: "127.0.0.1:0", logger: quiet, maxBytes: 1 << 20 });
  });
  afterAll(() => server.stop());

  const post = (headers: Record<string, string>) =>
    fetch(`https://${server.addr}/validate`, {
      method: "POST",
      headers,
      body: REVIEW,
      tls: { rejectUnauthorized: false },
    });

  test("/validate refuses a body that is not application/json with 415, naming the type", async () => {
    for (const type of ["text/plain", "text/plain;charset=UTF-8", "application/x-www-form-urlencoded"]) {
      const res = await post({ "content-type": type });
      expect(res.status).toBe(415);
      const error = ((await res.json()) as { error: string }).error;
      expect(error).toContain(`Content-Type ${type.split(";")[0]!.toLowerCase()} is not accepted`);
      expect(error).toContain("application/json");
    }
    // No type at all is refused too.
    const none = await post({ "content-type": "" });
    expect(none.status).toBe(415);
  });

  test("/validate answers application/json, with or without parameters", async () => {
    for (const type of ["application/json", "Application/JSON; charset=utf-8"]) {
      const res = await post({ "content-type": type });
      expect(res.status).toBe(200);
      expect(((await res.json()) as { response: { allowed: boolean } }).response.allowed).toBe(true);
    }
  });
});
