import { describe, expect, test } from "bun:test";
import { simulate } from "../../../mod/pilot/simulate/simulate.ts";
import { readCase } from "../translate/_golden.ts";

describe("simulate() through the bookinfo sample", () => {
  const { push, proxy } = readCase("bookinfo_productpage");

  test("simulate() sends end-user: jason to reviews v2", () => {
    expect(simulate(push, proxy, { host: "reviews", port: 9080, headers: { "end-user": "jason" } })).toEqual({
      listener: "0.0.0.0_9080",
      filterChain: "0.0.0.0_9080",
      routeConfig: "9080",
      virtualHost: "reviews.bookinfo.svc.cluster.local:9080",
      route: "jason",
      cluster: "outbound|9080|v2|reviews.bookinfo.svc.cluster.local",
    });
  });

  test("simulate() splits everyone else 90/10 between reviews v1 and v3", () => {
    const r = simulate(push, proxy, {
      host: "reviews.bookinfo.svc.cluster.local:9080",
      port: 9080,
      headers: { "end-user": "alice" },
    });
    expect(r.route).toBe("canary");
    expect(r.weightedClusters).toEqual([
      { name: "outbound|9080|v1|reviews.bookinfo.svc.cluster.local", weight: 90 },
      { name: "outbound|9080|v3|reviews.bookinfo.svc.cluster.local", weight: 10 },
    ]);
  });

  test("simulate() reaches details v1 and ratings v1 by any of their short names", () => {
    for (const host of ["details", "details.bookinfo", "details.bookinfo.svc", "details:9080"]) {
      expect(simulate(push, proxy, { host, port: 9080 }).cluster).toBe(
        "outbound|9080|v1|details.bookinfo.svc.cluster.local",
      );
    }
    expect(simulate(push, proxy, { host: "ratings", port: 9080, path: "/ratings/0" }).cluster).toBe(
      "outbound|9080|v1|ratings.bookinfo.svc.cluster.local",
    );
  });

  test("simulate() refuses unknown hosts under the sample's REGISTRY_ONLY policy", () => {
    expect(simulate(push, proxy, { host: "www.example.com", port: 443 })).toEqual({
      listener: "virtualOutbound",
      filterChain: "BlackHoleFilterChain",
      cluster: "BlackHoleCluster",
    });
    const http = simulate(push, proxy, { host: "www.example.com", port: 9080 });
    expect([http.virtualHost, http.directResponse]).toEqual(["block_all", 502]);
  });

  test("simulate() routes the ingress gateway's paths to productpage and 404s the rest", () => {
    const gw = readCase("bookinfo_ingress");
    const hit = (path: string) =>
      simulate(gw.push, gw.proxy, { host: "bookinfo.example.com", port: 80, path });
    expect(hit("/productpage").cluster).toBe("outbound|9080||productpage.bookinfo.svc.cluster.local");
    expect(hit("/static/css/site.css").cluster).toBe("outbound|9080||productpage.bookinfo.svc.cluster.local");
    expect(hit("/productpage/extra").error).toBe("no route matches (404)");
    expect(hit("/api/v1/products/1?x=1").route).toBe("productpage");
    expect(simulate(gw.push, gw.proxy, { host: "other.example.com", port: 80 }).error).toBe(
      "no virtual host for authority other.example.com",
    );
    expect(simulate(gw.push, gw.proxy, { host: "bookinfo.example.com", port: 8080 })).toEqual({
      listener: "",
      error: "no listener for port 8080",
    });
  });
});

describe("simulate() through the canary case", () => {
  const { push, proxy } = readCase("canary");
  const go = (req: Parameters<typeof simulate>[2]) => simulate(push, proxy, req);
  const v1 = "outbound|8080|v1|checkout.shop.svc.cluster.local";
  const v2 = "outbound|8080|v2|checkout.shop.svc.cluster.local";

  test("simulate() follows the header and cookie canary matches to v2", () => {
    expect(go({ host: "checkout", port: 8080, headers: { "x-canary": "true" } })).toMatchObject({
      route: "canary-header.header",
      cluster: v2,
    });
    expect(go({ host: "checkout", port: 8080, headers: { cookie: "canary=1; c=d" } })).toMatchObject({
      route: "canary-header.cookie",
      cluster: v2,
    });
    // The regex wants the cookie right after a ";": with a space first it does not match.
    expect(go({ host: "checkout", port: 8080, headers: { cookie: "a=b; canary=1" } }).route).toBe("split");
    expect(go({ host: "checkout", port: 8080, headers: { cookie: "a=b;canary=1" } }).route).toBe(
      "canary-header.cookie",
    );
  });

  test("simulate() applies source-label routes for this proxy only and folds case on request", () => {
    expect(go({ host: "checkout", port: 8080, path: "/CART/items" }).route).toBe("beta-testers");
    expect(go({ host: "checkout", port: 8080, path: "/cart" }).weightedClusters?.map((w) => w.weight))
      .toEqual([50, 50]);
  });

  test("simulate() matches regex paths, methods, query parameters and absent headers", () => {
    const api = { host: "checkout", port: 8080, path: "/api/v2/orders?debug=1", method: "POST" };
    expect(go(api)).toMatchObject({ route: "api", cluster: v2 });
    expect(go({ ...api, method: "GET" }).route).toBe("split");
    expect(go({ ...api, path: "/api/v2/orders?debug=0" }).route).toBe("split");
    expect(go({ ...api, path: "/api/vX/orders?debug=1" }).route).toBe("split");
    expect(go({ ...api, headers: { "x-internal": "yes" } }).route).toBe("split");
    expect(go({ ...api, headers: { "x-internal": "no" } }).route).toBe("api");
  });

  test("simulate() ends everything else on the 80/20 split", () => {
    expect(go({ host: "checkout.shop", port: 8080 }).weightedClusters).toEqual([
      { name: v1, weight: 80 },
      { name: v2, weight: 20 },
    ]);
  });
});

describe("simulate() through listeners of other shapes", () => {
  test("simulate() picks VIP listeners, CIDR chains and default chains for TCP", () => {
    const { push, proxy } = readCase("tcp_service");
    expect(simulate(push, proxy, { host: "mysql", port: 3306 })).toEqual({
      listener: "10.96.0.10_3306",
      filterChain: "outbound|3306||mysql.data.svc.cluster.local",
      cluster: "outbound|3306||mysql.data.svc.cluster.local",
    });
    expect(simulate(push, proxy, { host: "10.70.3.4", port: 5432 }).cluster).toBe(
      "outbound|5432||warehouse.data.svc.cluster.local",
    );
    expect(simulate(push, proxy, { host: "10.71.0.1", port: 5432 }).filterChain).toBe(
      "PassthroughFilterChain",
    );
    expect(simulate(push, proxy, { host: "cache", port: 6379 }).cluster).toBe(
      "outbound|6379||cache.data.svc.cluster.local",
    );
    expect(simulate(push, proxy, { host: "10.1.2.3", port: 1234 }).listener).toBe("virtualOutbound");
  });

  test("simulate() matches TLS chains by SNI", () => {
    const { push, proxy } = readCase("dns_service_entry");
    expect(
      simulate(push, proxy, { host: "api.payments.example.com", port: 443, sni: "api.payments.example.com" })
        .cluster,
    )
      .toBe("outbound|443||api.payments.example.com");
    expect(
      simulate(push, proxy, { host: "eu.storage.example.net", port: 443, sni: "eu.storage.example.net" })
        .cluster,
    )
      .toBe("outbound|443||*.storage.example.net");
    expect(
      simulate(push, proxy, { host: "other.example.com", port: 443, sni: "other.example.com" }).filterChain,
    )
      .toBe("PassthroughFilterChain");
  });

  test("simulate() follows gateway HTTPS, redirects, passthrough and weighted TCP", () => {
    const { push, proxy } = readCase("gateway");
    expect(
      simulate(push, proxy, {
        host: "www.shop.example.com",
        port: 443,
        path: "/api/x",
        sni: "www.shop.example.com",
      }),
    )
      .toMatchObject({
        routeConfig: "https.443.https.public.edge",
        cluster: "outbound|8080||storefront.edge.svc.cluster.local",
      });
    expect(simulate(push, proxy, { host: "www.shop.example.com", port: 443 }).error).toBe(
      "no filter chain matches the connection",
    );
    expect(
      simulate(push, proxy, { host: "api.partners.example.com", port: 8443, sni: "api.partners.example.com" })
        .cluster,
    )
      .toBe("outbound|9000||partner-api.partners.svc.cluster.local");
    expect(
      simulate(push, proxy, {
        host: "vault.internal.example.com",
        port: 15443,
        sni: "vault.internal.example.com",
      }).cluster,
    )
      .toBe("outbound|8080||vault.edge.svc.cluster.local");
    expect(simulate(push, proxy, { host: "db", port: 31400 }).weightedClusters).toEqual([
      { name: "outbound|8080||legacy-db.edge.svc.cluster.local", weight: 70 },
      { name: "outbound|8080||storefront.edge.svc.cluster.local", weight: 30 },
    ]);
  });

  test("simulate() reports redirects and direct responses", () => {
    const { push, proxy } = readCase("http_features");
    expect(simulate(push, proxy, { host: "api", port: 8000, path: "/old/page" }).redirect).toBe(
      "302 https://api.example.com:8443/new",
    );
    expect(simulate(push, proxy, { host: "api", port: 8000, path: "/gone" })).toMatchObject({
      route: "gone",
      directResponse: 410,
    });
  });

  test("simulate() sends unknown HTTP hosts through the Sidecar's egress proxy", () => {
    const { push, proxy } = readCase("sidecar_egress");
    expect(simulate(push, proxy, { host: "www.example.com", port: 8080 })).toMatchObject({
      virtualHost: "allow_any",
      cluster: "outbound|8080||egress-gateway.egress.svc.cluster.local",
    });
    expect(simulate(push, proxy, { host: "ledger.billing.svc.cluster.local", port: 8080 }).virtualHost).toBe(
      "allow_any",
    );
  });
});
